"""The one ticket-change path (`maildesk.services.tickets`): every kind of change made by an
operator, by the rules or by threading goes through its change function, records its event
and passes the `_consequences` seam; the same status change gives the same bookkeeping
(resolved_at / closed_at, SLA clocks stopped) whoever made it. Real desk, both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.domain import Direction, MessageKind, Status, Tier
from maildesk.rules.engine import evaluate
from maildesk.rules.model import RuleInput, TicketState
from maildesk.services import tickets as ops
from maildesk.store.models import Event, Message, SlaClock, Ticket
from tests.rules.rules_kit import ruleset
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk, team_settings

RULES = """
rules:
  - name: customer says done
    when: reply
    if: {body: {regex: '(?i)all fixed'}}
    then: [resolve]
  - name: customer says close
    when: reply
    if: {body: {regex: '(?i)please close'}}
    then: [{status: closed}]
  - name: manager
    when: reply
    if: {body: {regex: '(?i)manager'}}
    then: [{escalate: {note: "Customer wants a manager."}}, {priority: high}, {tags: [vip]}]
"""


@pytest.fixture
def desk(tmp_path: Path, database_url: str) -> Iterator[Desk]:
    d = Desk(team_settings(tmp_path, database_url, RULES))
    yield d
    d.close()


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[ops.TicketChange]:
    """Every TicketChange that reaches the seam (the real `_consequences` still runs)."""
    changes: list[ops.TicketChange] = []
    real = ops._consequences

    def spy(session: Any, ticket: Ticket, change: ops.TicketChange, now: datetime) -> None:
        changes.append(change)
        real(session, ticket, change, now)

    monkeypatch.setattr(ops, "_consequences", spy)
    return changes


def _new_ticket(d: Desk, n: int) -> int:
    m = d.say(eml(subject=f"Printer {n} on fire", message_id=f"<t{n}@customer.example>"))
    assert m.ticket_number is not None
    with d.app.store.session() as s:  # SLA clocks as the SLA module will start them
        for kind in ("first_response", "resolution"):
            s.add(SlaClock(ticket_number=m.ticket_number, kind=kind, started_at=d.now, due_at=d.now))
    return m.ticket_number


def _customer_says(d: Desk, n: int, body: str, i: int) -> None:
    d.later(minutes=5)
    d.say(
        eml(
            subject=f"Re: Printer {n} on fire",
            message_id=f"<t{n}-{i}@customer.example>",
            body=body,
            extra=f"In-Reply-To: <t{n}@customer.example>",
        )
    )


def _bookkeeping(d: Desk, number: int) -> tuple[str, datetime | None, datetime | None, list[bool]]:
    with d.app.store.reader() as s:
        t = s.get(Ticket, number)
        assert t is not None
        clocks = s.scalars(select(SlaClock.stopped).where(SlaClock.ticket_number == number).order_by(SlaClock.kind))
        return t.status, t.resolved_at, t.closed_at, list(clocks)


def _events(d: Desk, number: int, type_: str) -> list[dict[str, Any]]:
    with d.app.store.reader() as s:
        rows = s.scalars(select(Event).where(Event.ticket_number == number, Event.type == type_).order_by(Event.id))
        return [e.data for e in rows]


def _same_time(a: datetime | None, b: datetime) -> bool:
    return a is not None and a.replace(tzinfo=None) == b.replace(tzinfo=None)  # SQLite drops the zone


def test_every_operator_action_goes_through_the_seam_and_records_its_event(
    desk: Desk, seen: list[ops.TicketChange]
) -> None:
    a, b = _new_ticket(desk, 1), _new_ticket(desk, 2)
    seen.clear()
    by, now = "agent@example.com", desk.now
    with desk.app.store.session() as s:
        ops.add_note(s, a, "Looked at it", by, now)
        ops.assign(s, a, "cem@example.com", by, now)
        ops.set_tier(s, a, "l2", by, now)
        ops.escalate(s, a, "needs engineering", by, now)
        ops.set_priority(s, a, "urgent", by, now)
        ops.change_tags(s, a, ["+vip", "+printer"], by, now)
        ops.change_tags(s, a, ["-printer"], by, now)
        ops.resolve(s, a, by, now)
        ops.reopen(s, a, by, now)
        ops.close(s, a, by, now)
        ops.merge(s, a, b, by, now)
    kinds = [(c.kind, c.via) for c in seen]
    assert kinds == [
        ("note", "cli"),
        ("assignee", "cli"),
        ("tier", "cli"),
        ("note", "cli"),  # the hand-off note ...
        ("tier", "cli"),  # ... and the escalation itself
        ("priority", "cli"),
        ("tags", "cli"),
        ("tags", "cli"),
        ("status", "cli"),
        ("status", "cli"),
        ("status", "cli"),
        ("status", "cli"),  # merge closes b (b had no tags to carry over)
    ]
    assert [c.new for c in seen if c.kind == "status"] == ["resolved", "open", "closed", "closed"]
    assert seen[4].old == "L2" and seen[4].new == "L3" and seen[4].reason == "L2 -> L3"
    for type_ in ("note-added", "assigned", "tier-changed", "escalated", "priority-changed", "tags-changed", "status"):
        got = _events(desk, a, type_)
        assert got and all(e["via"] == "cli" and e["by"] == by for e in got), type_
    assert [(e["from"], e["to"], e["reason"]) for e in _events(desk, a, "status")] == [
        ("new", "resolved", "resolved by an agent"),
        ("resolved", "open", "reopened by an agent"),
        ("open", "closed", "closed by an agent"),
    ]
    assert _events(desk, b, "merged-into") == [{"into": a, "old_status": "new", "by": by, "via": "cli"}]
    status, resolved_at, closed_at, clocks = _bookkeeping(desk, b)
    assert status == "closed" and _same_time(closed_at, now) and _same_time(resolved_at, now) and clocks == [True, True]


def test_a_change_that_changes_nothing_records_nothing(desk: Desk, seen: list[ops.TicketChange]) -> None:
    a = _new_ticket(desk, 1)
    seen.clear()
    with desk.app.store.session() as s:
        assert ops.set_priority(s, a, "normal", "x@example.com", desk.now).changed is False
        assert ops.change_tags(s, a, ["-nothere"], "x@example.com", desk.now).changed is False
        assert ops.reopen(s, a, "x@example.com", desk.now).changed is False
    assert seen == [] and _events(desk, a, "priority-changed") == []


@pytest.mark.parametrize(("body", "cli", "status"), [("It is all fixed", ops.resolve, "resolved")])
def test_cli_and_rules_resolve_with_the_same_bookkeeping(
    desk: Desk, seen: list[ops.TicketChange], body: str, cli: Any, status: str
) -> None:
    by_cli, by_rules = _new_ticket(desk, 1), _new_ticket(desk, 2)
    desk.later(hours=1)
    with desk.app.store.session() as s:
        cli(s, by_cli, "agent@example.com", desk.now)
    seen.clear()
    _customer_says(desk, 2, body, 1)
    assert [(c.kind, c.via, c.new) for c in seen if c.kind == "status"] == [("status", "rules", status)]
    cli_state, rules_state = _bookkeeping(desk, by_cli), _bookkeeping(desk, by_rules)
    assert cli_state[0] == rules_state[0] == status
    assert cli_state[2] is None and rules_state[2] is None  # not closed
    assert cli_state[3] == rules_state[3] == [True, True]  # SLA clocks stopped by both
    assert cli_state[1] is not None and rules_state[1] is not None
    routed = _events(desk, by_rules, "routed")[-1]
    assert routed["changes"]["status"] == ["new", status]  # the rules' change is in `routed`


def test_cli_and_rules_close_with_the_same_bookkeeping(desk: Desk) -> None:
    by_cli, by_rules = _new_ticket(desk, 1), _new_ticket(desk, 2)
    with desk.app.store.session() as s:
        ops.close(s, by_cli, "agent@example.com", desk.now)
    _customer_says(desk, 2, "Please close this one.", 1)
    for number in (by_cli, by_rules):
        status, resolved_at, closed_at, clocks = _bookkeeping(desk, number)
        assert status == "closed" and resolved_at is not None and closed_at is not None and clocks == [True, True]


def test_threading_reopens_like_the_cli_and_pending_opens(desk: Desk, seen: list[ops.TicketChange]) -> None:
    by_cli, by_mail, pending = _new_ticket(desk, 1), _new_ticket(desk, 2), _new_ticket(desk, 3)
    with desk.app.store.session() as s:
        for n in (by_cli, by_mail):
            ops.resolve(s, n, "agent@example.com", desk.now)
        ticket = ops.get_ticket(s, pending)
        ops.change_status(s, ticket, Status.PENDING, by="agent@example.com", via="cli", reason="test", now=desk.now)
    desk.later(hours=2)
    with desk.app.store.session() as s:
        ops.reopen(s, by_cli, "agent@example.com", desk.now)
    seen.clear()
    _customer_says(desk, 2, "Sorry, it broke again.", 1)
    _customer_says(desk, 3, "Here is the answer you asked for.", 1)
    assert [(c.kind, c.via, c.old, c.new) for c in seen if c.kind == "status"] == [
        ("status", "thread", "resolved", "open"),
        ("status", "thread", "pending", "open"),
    ]
    assert _bookkeeping(desk, by_cli)[:3] == _bookkeeping(desk, by_mail)[:3] == ("open", None, None)
    reopened = _events(desk, by_mail, "reopened")
    assert [(e["from"], e["to"], e["via"]) for e in reopened] == [("resolved", "open", "thread")]
    assert [(e["from"], e["to"]) for e in _events(desk, pending, "status")][-1] == ("pending", "open")


def test_rules_changes_go_through_the_path_and_notes_are_alike(desk: Desk, seen: list[ops.TicketChange]) -> None:
    t = _new_ticket(desk, 1)
    with desk.app.store.session() as s:
        ops.add_note(s, t, "An agent's note", "agent@example.com", desk.now)
    seen.clear()
    _customer_says(desk, 1, "I want to talk to your manager.", 1)
    assert [(c.kind, c.via) for c in seen] == [
        ("priority", "rules"),
        ("note", "rules"),
        ("tier", "rules"),
        ("tags", "rules"),
    ]
    [esc] = _events(desk, t, "escalated")
    assert (esc["from"], esc["to"], esc["rule"], esc["note"]) == ("L1", "L2", "manager", "Customer wants a manager.")
    with desk.app.store.reader() as s:
        notes = list(s.scalars(select(Message).where(Message.kind == MessageKind.AGENT_NOTE).order_by(Message.id)))
    assert [(n.sender, n.source) for n in notes] == [("agent@example.com", "cli"), ("maildesk", "rules")]
    assert all(n.direction == Direction.OUT and n.internal for n in notes)  # one rule for every note


def test_decision_carries_escalations_as_data() -> None:
    rules = ruleset("- name: up\n  then: [{escalate: {note: one}}, {escalate: {note: two}}]\n")
    inp = RuleInput(event="reply", sender="a@example.com", ticket=TicketState(tier="L2"))
    decision = evaluate(rules, inp)
    assert [(e.rule, e.from_tier, e.to_tier, e.note) for e in decision.escalations] == [
        ("up", "L2", "L3", "one"),
        ("up", "L3", "L3", "two"),
    ]
    assert decision.tier == Tier.L3 and decision.escalate == ("one", "two")
    assert decision.escalations[1].what.startswith("already at L3")
