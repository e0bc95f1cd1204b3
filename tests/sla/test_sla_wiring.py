"""The SLA engine wired into the desk: clocks from real mail through the pipeline, the change
path, the sweep (exactly once, across restarts and two sweeping nodes) and replay. A fixed
clock; calendar-time targets keep the arithmetic readable (the calendars have their own tests).
Both backends."""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.app import App
from maildesk.services import tickets as ops
from maildesk.sla.policy import parse_sla
from maildesk.sla.replay import replay_desk
from maildesk.store.models import Event, OutboxItem, SlaClock
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk, team_settings

SLA = """
[[sla.policy]]
name = "urgent"
priority = ["urgent"]
time = "calendar"
first_response = "15m"
resolution = "4h"

[[sla.policy]]
name = "standard"
time = "calendar"
first_response = "1h"
next_response = "2h"
resolution = "8h"
warn_at = 0.5
on_breach = ["escalate", "raise_priority", "notify_lead"]
followup_after = "1d"
resolve_after = "3d"
"""
AGENTS = [
    {"email": "lia@example.com", "name": "Lia", "tiers": ["L1"], "queues": []},
    {"email": "max@example.com", "name": "Max", "tiers": ["L2"], "queues": []},
    {"email": "lead@example.com", "name": "Lead", "tiers": ["L3"], "queues": []},
]
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def desk(tmp_path: Path, database_url: str) -> Iterator[Desk]:
    settings = team_settings(tmp_path, database_url, None, agents=AGENTS)
    settings = replace(settings, sla=parse_sla(tomllib.loads(SLA)["sla"]))
    d = Desk(settings, now=T0)
    yield d
    d.close()


def _new(d: Desk, n: int = 1) -> int:
    m = d.say(eml(subject=f"Printer {n}", message_id=f"<t{n}@customer.example>"))
    assert m.ticket_number is not None
    return m.ticket_number


def _reply_from_customer(d: Desk, n: int, i: int) -> None:
    d.say(
        eml(
            subject=f"Re: Printer {n}",
            message_id=f"<t{n}-{i}@customer.example>",
            extra=f"In-Reply-To: <t{n}@customer.example>",
        )
    )


def _clocks(d: Desk, number: int) -> dict[str, SlaClock]:
    with d.app.store.reader() as s:
        return {c.kind: c for c in s.scalars(select(SlaClock).where(SlaClock.ticket_number == number))}


def _types(d: Desk, number: int, prefix: str = "") -> list[str]:
    with d.app.store.reader() as s:
        rows = s.scalars(select(Event.type).where(Event.ticket_number == number).order_by(Event.id))
        return [t for t in rows if t.startswith(prefix)]


def _mails(d: Desk, template: str) -> list[OutboxItem]:
    return [o for o in d.outbox() if o.template == template]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC))


def _reply(d: Desk, number: int, status: str = "pending") -> None:
    with d.app.store.session() as s:
        ops.reply(s, d.app.deps, number, "Have you tried turning it off?", "lia@example.com", d.now, status=status)


def test_a_mail_starts_first_response_and_resolution(desk: Desk) -> None:
    number = _new(desk)
    clocks = _clocks(desk, number)
    assert set(clocks) == {"first_response", "resolution"}
    assert _utc(clocks["first_response"].due_at) == T0 + timedelta(hours=1)
    assert _utc(clocks["first_response"].warn_at) == T0 + timedelta(minutes=30)
    assert _utc(clocks["resolution"].due_at) == T0 + timedelta(hours=8)
    assert clocks["resolution"].policy == "standard"
    assert _types(desk, number, "sla-").count("sla-started") == 2


def test_warning_breach_and_escalation_each_once_across_sweeps_and_a_restart(desk: Desk) -> None:
    number = _new(desk)
    for minutes in (31, 32):
        desk.app.sla_sweep(T0 + timedelta(minutes=minutes))
    assert _types(desk, number, "sla-warning") == ["sla-warning"]
    assert [o.recipients for o in _mails(desk, "sla_warning")] == [["lia@example.com"]]  # the L1 group: nobody assigned
    for minutes in (61, 62, 90):
        desk.app.sla_sweep(T0 + timedelta(minutes=minutes))
    again = App(desk.app.settings)  # a restart: a new App on the same data
    again.migrate()
    again.sla_sweep(T0 + timedelta(hours=2))
    again.store.dispose()
    assert _types(desk, number, "sla-breached") == ["sla-breached"]
    assert _types(desk, number, "escalated") == ["escalated"]
    t = desk.ticket(number)
    assert (t.tier, t.priority) == ("L2", "high")
    assert [o.recipients for o in _mails(desk, "sla_breach")] == [["lead@example.com"]]
    assert len(_mails(desk, "sla_warning")) == 1
    first = _clocks(desk, number)["first_response"]
    assert _utc(first.breached_at) == T0 + timedelta(hours=1) and first.next_at is None
    with desk.app.store.reader() as s:  # replay under the same policy agrees with what the sweep did
        replayed = replay_desk(s, desk.app.settings.sla, T0 - timedelta(days=1), T0 + timedelta(hours=2))
    assert replayed.tickets[0].breaches == [("first_response", T0 + timedelta(hours=1))]


def test_agent_reply_stops_first_response_pending_pauses_customer_resumes(desk: Desk) -> None:
    number = _new(desk)
    desk.later(minutes=20)
    _reply(desk, number)
    clocks = _clocks(desk, number)
    assert clocks["first_response"].stop_reason == "met"
    assert clocks["resolution"].paused_at is not None and clocks["resolution"].due_at is None
    assert {"followup", "autoresolve"} <= set(clocks)
    desk.later(hours=2)
    _reply_from_customer(desk, number, 1)
    clocks = _clocks(desk, number)
    assert desk.ticket(number).status == "open"
    assert clocks["resolution"].paused_at is None and clocks["resolution"].paused_total == 2 * 3600
    assert _utc(clocks["resolution"].due_at) == T0 + timedelta(hours=10)  # 8 h target + 2 h paused
    assert clocks["next_response"].stopped_at is None
    assert clocks["followup"].stop_reason == clocks["autoresolve"].stop_reason == "cancelled"
    desk.app.sla_sweep(desk.now + timedelta(days=4))
    assert _types(desk, number, "followup-sent") == [] and _types(desk, number, "auto-resolved") == []
    types = _types(desk, number, "sla-")
    assert {"sla-paused", "sla-resumed", "sla-stopped"} <= set(types)


def test_follow_up_then_auto_resolve_each_once(desk: Desk) -> None:
    number = _new(desk)
    _reply(desk, number)
    for _ in range(2):
        desk.app.sla_sweep(T0 + timedelta(days=1, minutes=1))
    assert _types(desk, number, "followup-sent") == ["followup-sent"]
    followups = _mails(desk, "followup")
    assert len(followups) == 1 and followups[0].recipients == ["anna@customer.example"]
    for _ in range(2):
        desk.app.sla_sweep(T0 + timedelta(days=3, minutes=1))
    assert _types(desk, number, "auto-resolved") == ["auto-resolved"]
    assert desk.ticket(number).status == "resolved"
    assert any("Resolved automatically" in n.visible_text for n in desk.notes(number))


def test_a_priority_change_recomputes_the_due_times(desk: Desk) -> None:
    number = _new(desk)
    desk.later(minutes=5)
    with desk.app.store.session() as s:
        ops.set_priority(s, number, "urgent", "lia@example.com", desk.now)
    clocks = _clocks(desk, number)
    assert clocks["first_response"].policy == "urgent"
    assert _utc(clocks["first_response"].due_at) == T0 + timedelta(minutes=15)
    assert _utc(clocks["resolution"].due_at) == T0 + timedelta(hours=4)
    assert "sla-recomputed" in _types(desk, number, "sla-")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite has one writer: no concurrent claim
def test_two_sweeps_at_once_act_once(desk: Desk, backend: str) -> None:
    numbers = [_new(desk, n) for n in range(1, 13)]
    apps = [App(desk.app.settings) for _ in range(2)]
    for app in apps:
        app.migrate()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(app: App) -> None:
        try:
            barrier.wait()
            app.sla_sweep(T0 + timedelta(minutes=45))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for app in apps:
        app.store.dispose()
    assert not errors
    for number in numbers:
        assert _types(desk, number, "sla-warning") == ["sla-warning"]
    assert len(_mails(desk, "sla_warning")) == len(numbers)


def test_sweep_dry_run_changes_nothing(desk: Desk) -> None:
    number = _new(desk)
    report: Any = desk.app.sla_sweep(T0 + timedelta(hours=2), dry_run=True)
    assert [a["action"] for a in report.actions] == ["warning", "breach"]
    assert _types(desk, number, "sla-warning") == [] and _mails(desk, "sla_breach") == []
    assert _clocks(desk, number)["first_response"].breached_at is None
