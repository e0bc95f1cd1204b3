"""SLA clocks on business time, on the live path: tickets from real mail through the pipeline,
changes through services/tickets, sweeps through `sla.sweep` at chosen moments. Across a night,
a weekend, a Bavarian public holiday, a lunch break and both DST changes; pause and resume with
the paused time recorded; follow-up then auto-resolve with their mails; replay agreeing with the
live clocks; and the anchors' failure modes (an update overriding the first response, escalating
after the agent replied, going on after the SLA was removed). Both backends."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from maildesk.app import App
from maildesk.services import tickets as ops
from maildesk.services import views
from maildesk.sla.policy import parse_sla
from maildesk.sla.replay import replay_desk
from maildesk.store.models import Event, OutboxItem, SlaClock
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk, team_settings

SLA = """
[[sla.calendar]]
name = "office"
timezone = "Europe/Berlin"
days = "mon-fri"
hours = "09:00-12:00, 13:00-17:00"
holidays = "DE-BY"

[[sla.calendar]]
name = "nights"                 # a night shift every day: both DST changes fall into it
timezone = "Europe/Berlin"
days = "mon-sun"
hours = "01:00-04:00"

[[sla.policy]]
name = "urgent"
priority = ["urgent"]
calendar = "office"
first_response = "30m"
resolution = "1d"
warn_at = 0.5
on_breach = ["escalate", "raise_priority", "notify_lead"]

[[sla.policy]]
name = "office"
calendar = "office"
first_response = "2h"
next_response = "4h"
resolution = "2d"               # 2 x 7 business hours
warn_at = 0.5
on_breach = ["escalate", "raise_priority", "notify_lead"]
followup_after = "1d"
resolve_after = "2d"

[[sla.policy]]
name = "nightly"                # only the rule picks it
calendar = "nights"
priority = ["urgent"]
first_response = "2h"
warn_at = 0.5
on_breach = ["escalate", "raise_priority", "notify_lead"]
"""
RULES = """
rules:
  - name: the night shift
    if: {subject: {contains: "[night]"}}
    then: [{sla: nightly}]
"""
AGENTS = [
    {"email": "lia@example.com", "name": "Lia", "tiers": ["L1"], "queues": []},
    {"email": "max@example.com", "name": "Max", "tiers": ["L2"], "queues": []},
    {"email": "lead@example.com", "name": "Lead", "tiers": ["L3"], "queues": []},
]
SECOND = timedelta(seconds=1)
H = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def make_desk(tmp_path: Path, database_url: str) -> Iterator[object]:
    desks: list[Desk] = []

    def make(now: datetime) -> Desk:
        settings = team_settings(tmp_path, database_url, RULES, agents=AGENTS)
        d = Desk(replace(settings, sla=parse_sla(tomllib.loads(SLA)["sla"])), now=now)
        desks.append(d)
        return d

    yield make
    for d in desks:
        d.close()


def _new(d: Desk, subject: str = "Printer", mid: str = "<t1@customer.example>") -> int:
    number = d.say(eml(subject=subject, message_id=mid)).ticket_number
    assert number is not None
    return number


def _customer_reply(d: Desk, subject: str = "Printer", i: int = 1) -> None:
    d.say(
        eml(subject=f"Re: {subject}", message_id=f"<r{i}@customer.example>", extra="In-Reply-To: <t1@customer.example>")
    )


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC))


def _clock(d: Desk, number: int, kind: str) -> SlaClock:
    with d.app.store.reader() as s:
        row = s.scalars(select(SlaClock).where(SlaClock.ticket_number == number, SlaClock.kind == kind)).one()
        s.expunge(row)
        return row


def _types(d: Desk, number: int, *types: str) -> list[str]:
    with d.app.store.reader() as s:
        rows = s.scalars(select(Event.type).where(Event.ticket_number == number).order_by(Event.id))
        return [t for t in rows if t in types]


def _first_response_events(d: Desk, number: int) -> list[str]:
    """The warnings, breaches and escalations the first-response clock caused, in order."""
    with d.app.store.reader() as s:
        rows = s.scalars(select(Event).where(Event.ticket_number == number).order_by(Event.id))
        return [
            e.type
            for e in rows
            if e.type in ("sla-warning", "sla-breached", "escalated")
            and (e.data or {}).get("kind", (e.data or {}).get("sla")) == "first_response"
        ]


def _mails(d: Desk, template: str) -> list[OutboxItem]:
    return [o for o in d.outbox() if o.template == template]


def _reply(d: Desk, number: int, status: str = "open") -> None:
    with d.app.store.session() as s:
        ops.reply(s, d.app.deps, number, "Have you tried turning it off?", "lia@example.com", d.now, status=status)


def _replay_agrees(d: Desk, number: int, until: datetime) -> None:
    """Replay under the desk's own policy gives the due and breach times the live clocks have."""
    with d.app.store.reader() as s:
        replayed = {t.number: t for t in replay_desk(s, d.app.settings.sla, until - timedelta(days=400), until).tickets}
        live = {c.kind: c for c in s.scalars(select(SlaClock).where(SlaClock.ticket_number == number))}
    clocks = replayed[number].clocks
    assert set(clocks) == set(live)
    for kind, row in live.items():
        due, breached = _utc(row.due_at), _utc(row.breached_at)
        assert clocks[kind]["due_at"] == (due.isoformat() if due else None), kind
        assert clocks[kind]["breached_at"] == (breached.isoformat() if breached else None), kind


# Business time, end to end -------------------------------------------------------------------------
# (arrival, subject, warning at, due at): first response 2 business hours, warning at 1 h
CASES = {
    # Tuesday 16:00 CET: one hour left that day, the second on Wednesday from 09:00
    "night": (utc(2026, 3, 3, 15), "Printer", utc(2026, 3, 3, 16), utc(2026, 3, 4, 9)),
    # Friday 16:30 CET: 30 minutes, then Monday from 09:00
    "weekend": (utc(2026, 3, 6, 15, 30), "Printer", utc(2026, 3, 9, 8, 30), utc(2026, 3, 9, 9, 30)),
    # Monday 16:00 CET before Epiphany (Tuesday 6 January, a holiday in Bavaria): Wednesday 10:00
    "holiday": (utc(2026, 1, 5, 15), "Printer", utc(2026, 1, 5, 16), utc(2026, 1, 7, 9)),
    # Tuesday 11:30 CET: 30 minutes before lunch, then from 13:00
    "lunch": (utc(2026, 3, 3, 10, 30), "Printer", utc(2026, 3, 3, 12, 30), utc(2026, 3, 3, 13, 30)),
    # Friday 16:00 CET before the spring change: Monday 10:00 CEST is 08:00 UTC
    "dst-office": (utc(2026, 3, 27, 15), "Printer", utc(2026, 3, 27, 16), utc(2026, 3, 30, 8)),
    # the night shift 01:00 CET-04:00 CEST on 29 March is 2 real hours (00:00-02:00 UTC)
    "dst-spring": (utc(2026, 3, 28, 5), "[night] Printer", utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)),
    # and 01:00 CEST-04:00 CET on 25 October is 4 (23:00-03:00 UTC)
    "dst-autumn": (utc(2026, 10, 24, 5), "[night] Printer", utc(2026, 10, 25, 0), utc(2026, 10, 25, 1)),
}


@pytest.mark.parametrize(
    ("backend", "case"),
    [("sqlite", c) for c in CASES] + [("postgresql", c) for c in CASES if c.startswith("dst")],
    indirect=["backend"],
)  # the calendar does not depend on the backend; the stored times around a DST change might
def test_warning_breach_and_escalation_on_business_time(make_desk: object, backend: str, case: str) -> None:
    arrival, subject, warn, due = CASES[case]
    d: Desk = make_desk(arrival)  # type: ignore[operator]
    number = _new(d, subject)
    first = _clock(d, number, "first_response")
    assert (_utc(first.warn_at), _utc(first.due_at)) == (warn, due)
    assert first.policy == ("nightly" if "[night]" in subject else "office")
    d.app.sla_sweep(warn - SECOND)
    assert _first_response_events(d, number) == []
    for now in (warn, warn, due - SECOND):
        d.app.sla_sweep(now)
    assert _first_response_events(d, number) == ["sla-warning"]
    assert _utc(_clock(d, number, "first_response").warned_at) == warn
    assert [o.recipients for o in _mails(d, "sla_warning")] == [["lia@example.com"]]
    for now in (due, due, due + H, due + timedelta(days=1)):
        d.app.sla_sweep(now)
    assert _first_response_events(d, number) == ["sla-warning", "sla-breached", "escalated"]
    first = _clock(d, number, "first_response")
    assert _utc(first.breached_at) == due and first.next_at is None
    t = d.ticket(number)
    assert (t.tier, t.priority) == ("L2", "high")  # one tier up, one step up: once
    breach_mails = [o for o in _mails(d, "sla_breach") if ":first_response:" in o.idempotency_key]
    assert [o.recipients for o in breach_mails] == [["lead@example.com"]]
    handoff = [n.visible_text for n in d.notes(number) if "target was missed" in n.visible_text]
    assert len(handoff) == 1 and "first response" in handoff[0]
    _replay_agrees(d, number, due + timedelta(days=1))


def test_pending_pauses_on_business_time_and_the_customer_resumes(make_desk: object) -> None:
    d: Desk = make_desk(utc(2026, 3, 3, 8))  # Tuesday 09:00 CET
    number = _new(d)
    d.now = utc(2026, 3, 3, 9, 30)  # 10:30 CET: the agent answers and waits for the customer
    _reply(d, number, status="pending")
    resolution = _clock(d, number, "resolution")
    assert resolution.paused_at is not None and resolution.due_at is None and resolution.counted == 1.5 * 3600
    assert _clock(d, number, "first_response").stop_reason == "met"
    d.now = utc(2026, 3, 4, 9)  # Wednesday 10:00 CET: the customer answers
    _customer_reply(d)
    assert d.ticket(number).status == "open"
    resolution = _clock(d, number, "resolution")
    # paused: Tuesday 10:30-12 and 13-17, Wednesday 09-10 = 6.5 business hours (the night does not count)
    assert resolution.paused_at is None and resolution.paused_total == 6.5 * 3600
    # 14 h target: 1.5 h before the pause, 6 h on Wednesday, 3 h + 3.5 h on Thursday → 16:30 CET
    assert _utc(resolution.due_at) == utc(2026, 3, 5, 15, 30)
    assert _utc(_clock(d, number, "next_response").due_at) == utc(2026, 3, 4, 14)  # 4 h: 10-12, 13-15 CET
    assert _clock(d, number, "followup").stop_reason == _clock(d, number, "autoresolve").stop_reason == "cancelled"
    resumed = d.events(number, "sla-resumed")
    assert [e["paused_seconds"] for e in resumed if e["kind"] == "resolution"] == [6.5 * 3600]
    with d.app.store.reader() as s:  # what `ticket show` shows
        shown = {c["kind"]: c for c in views.ticket_view(s, number, d.now)["sla"]}
    assert shown["resolution"]["paused_seconds"] == 6.5 * 3600 and shown["resolution"]["target"] == "2d business"
    for now in (utc(2026, 3, 4, 14), utc(2026, 3, 5, 15, 30), utc(2026, 3, 6, 9)):
        d.app.sla_sweep(now)
    breaches = [(e["kind"], e["due_at"]) for e in d.events(number, "sla-breached")]
    assert breaches == [
        ("next_response", utc(2026, 3, 4, 14).isoformat()),
        ("resolution", utc(2026, 3, 5, 15, 30).isoformat()),
    ]
    assert d.ticket(number).tier == "L3"  # escalated once per breach
    _replay_agrees(d, number, utc(2026, 3, 6, 9))


def test_follow_up_then_auto_resolve_on_business_time_with_their_mails(make_desk: object) -> None:
    d: Desk = make_desk(utc(2026, 3, 3, 8))
    number = _new(d)
    d.now = utc(2026, 3, 3, 10)  # Tuesday 11:00 CET: pending
    _reply(d, number, status="pending")
    reminder, close = utc(2026, 3, 4, 10), utc(2026, 3, 5, 10)  # 7 and 14 business hours later
    assert _utc(_clock(d, number, "followup").due_at) == reminder
    assert _utc(_clock(d, number, "autoresolve").due_at) == close
    d.app.sla_sweep(reminder - SECOND)
    assert _mails(d, "followup") == []
    for now in (reminder, reminder, close - SECOND):
        d.app.sla_sweep(now)
    followups = _mails(d, "followup")
    assert len(followups) == 1 and followups[0].recipients == ["anna@customer.example"]
    body = _outgoing_text(d, followups[0])
    assert "checking in" in body and '"Printer"' in body and "within 1 days" in body
    for now in (close, close, close + timedelta(days=3)):
        d.app.sla_sweep(now)
    assert _types(d, number, "followup-sent", "auto-resolved") == ["followup-sent", "auto-resolved"]
    assert d.ticket(number).status == "resolved"
    assert sum("Resolved automatically" in n.visible_text for n in d.notes(number)) == 1
    resolved = _mails(d, "resolved")
    assert len(resolved) == 1 and resolved[0].recipients == ["anna@customer.example"]
    assert "marked your request" in _outgoing_text(d, resolved[0])


def test_a_customer_reply_cancels_the_follow_up_and_the_auto_resolve(make_desk: object) -> None:
    d: Desk = make_desk(utc(2026, 3, 3, 8))
    number = _new(d)
    d.now = utc(2026, 3, 3, 10)
    _reply(d, number, status="pending")
    d.now = utc(2026, 3, 4, 8)  # before the reminder
    _customer_reply(d)
    for now in (utc(2026, 3, 4, 10), utc(2026, 3, 5, 10), utc(2026, 3, 12, 10)):
        d.app.sla_sweep(now)
    assert _types(d, number, "followup-sent", "auto-resolved") == []
    assert _mails(d, "followup") == [] and _mails(d, "resolved") == []
    assert d.ticket(number).status == "open"


def test_a_priority_change_recomputes_on_business_time(make_desk: object) -> None:
    d: Desk = make_desk(utc(2026, 3, 6, 15, 30))  # Friday 16:30 CET
    number = _new(d)
    assert _utc(_clock(d, number, "first_response").due_at) == utc(2026, 3, 9, 9, 30)
    d.now = utc(2026, 3, 6, 15, 45)
    with d.app.store.session() as s:
        ops.set_priority(s, number, "urgent", "lia@example.com", d.now)
    first = _clock(d, number, "first_response")
    assert first.policy == "urgent" and _utc(first.due_at) == utc(2026, 3, 6, 16)  # 30 min from 16:30: 17:00 CET
    assert _utc(_clock(d, number, "resolution").due_at) == utc(2026, 3, 9, 15, 30)  # 7 h: Monday 16:30 CET
    recomputed = [e for e in d.events(number, "sla-recomputed") if e["kind"] == "first_response"]
    assert [(e["old_due_at"], e["due_at"]) for e in recomputed] == [
        (utc(2026, 3, 9, 9, 30).isoformat(), utc(2026, 3, 6, 16).isoformat())
    ]
    d.now = utc(2026, 3, 6, 15, 50)
    with d.app.store.session() as s:  # back to normal: the standard targets again, counted from the start
        ops.set_priority(s, number, "normal", "lia@example.com", d.now)
    assert _utc(_clock(d, number, "first_response").due_at) == utc(2026, 3, 9, 9, 30)
    d.app.sla_sweep(utc(2026, 3, 9, 12))
    _replay_agrees(d, number, utc(2026, 3, 9, 12))


# The anchors' failure modes ------------------------------------------------------------------------
def test_a_later_update_does_not_override_the_first_response(make_desk: object) -> None:
    """Zammad #5177: an update after the first response moved the first-response time."""
    d: Desk = make_desk(utc(2026, 3, 3, 8))
    number = _new(d)
    d.now = utc(2026, 3, 3, 9)
    _reply(d, number)
    for later, change in enumerate(("reply", "note", "priority", "pending", "customer", "reply"), start=1):
        d.now = utc(2026, 3, 3, 9) + later * H
        with d.app.store.session() as s:
            if change == "reply":
                ops.reply(s, d.app.deps, number, f"Update {later}", "max@example.com", d.now)
            elif change == "note":
                ops.add_note(s, number, "Called them", "max@example.com", d.now)
            elif change == "priority":
                ops.set_priority(s, number, "high", "max@example.com", d.now)
            elif change == "pending":
                ops.reply(s, d.app.deps, number, "Waiting on you", "max@example.com", d.now, status="pending")
        if change == "customer":
            _customer_reply(d)
    first = _clock(d, number, "first_response")
    assert (_utc(first.stopped_at), first.stop_reason) == (utc(2026, 3, 3, 9), "met")
    assert _utc(d.ticket(number).first_response_at) == utc(2026, 3, 3, 9)
    assert [e["kind"] for e in d.events(number, "sla-started")].count("first_response") == 1  # never restarted
    following = _clock(d, number, "next_response")  # the customer's reply started it, the last reply met it
    assert (_utc(following.stopped_at), following.stop_reason) == (utc(2026, 3, 3, 15), "met")


def test_no_escalation_after_the_agent_replied(make_desk: object) -> None:
    """Zammad #3140: escalated although the agent had answered in time."""
    d: Desk = make_desk(utc(2026, 3, 3, 8))
    number = _new(d)
    d.now = utc(2026, 3, 3, 9, 45)  # after the warning (10:00 CET + 1 h = 09:00 UTC), before the breach
    d.app.sla_sweep(d.now)
    _reply(d, number)
    for now in (utc(2026, 3, 3, 10), utc(2026, 3, 3, 12), utc(2026, 3, 4, 9)):
        d.app.sla_sweep(now)
    assert _first_response_events(d, number) == ["sla-warning"]
    assert d.ticket(number).tier == "L1" and _mails(d, "sla_breach") == []


def test_removing_the_sla_stops_escalating(make_desk: object, tmp_path: Path) -> None:
    """Zammad #4353: escalations went on after the SLA was removed. Removed here twice over: the
    policy leaves the configuration (a restart with a new config), and a rule's `sla: none`."""
    d: Desk = make_desk(utc(2026, 3, 3, 8))
    number = _new(d)
    d.app.sla_sweep(utc(2026, 3, 3, 9, 30))
    assert _types(d, number, "sla-warning") == ["sla-warning"]
    office, nightly = SLA.index('[[sla.policy]]\nname = "office"'), SLA.index('[[sla.policy]]\nname = "nightly"')
    without = parse_sla(tomllib.loads(SLA[:office] + SLA[nightly:])["sla"])
    restarted = App(replace(d.app.settings, sla=without))
    restarted.migrate()
    try:
        for now in (utc(2026, 3, 3, 10), utc(2026, 3, 3, 12), utc(2026, 3, 20, 9)):
            restarted.sla_sweep(now)
    finally:
        restarted.store.dispose()
    assert _types(d, number, "sla-warning", "sla-breached", "escalated") == ["sla-warning"]
    assert _mails(d, "sla_breach") == [] and d.ticket(number).tier == "L1"
    stopped = {e["kind"]: e["reason"] for e in d.events(number, "sla-stopped")}
    assert stopped == {"first_response": "removed", "resolution": "removed"}
    with d.app.store.reader() as s:
        assert all(c["state"] == "stopped" for c in views.ticket_view(s, number, utc(2026, 3, 20, 9))["sla"])


def _outgoing_text(d: Desk, item: OutboxItem) -> str:
    from maildesk.store.models import Message

    with d.app.store.reader() as s:
        msg = s.scalars(select(Message).where(Message.message_id == item.message_id)).one()
        return msg.full_text or msg.visible_text
