"""What another SLA configuration would have done: recompute clocks from the stored events.

Owns `replay_desk(session, settings, since, until)`: for each ticket with SLA events since
`since`, the inputs recorded on them (`on`: customer message, agent reply, status, priority,
queue, tier, policy choice, with the ticket's state at that moment) are folded through
`sla.clocks.apply` under the policies of `settings` and swept once at `until`, giving the due
times, breaches and compliance per target. Nothing is written and nothing is sent.

Known limit: the history is what happened live, including changes the live sweep made
(an escalation, a raised priority, an auto-resolve); a different policy would not undo them.

Must not: write to the database, send mail or read the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from maildesk.sla.calendar import BusinessCalendar
from maildesk.sla.clocks import (
    AgentReply,
    Breach,
    Clocks,
    ClockState,
    CustomerMessage,
    Event,
    PolicyChanged,
    PriorityChanged,
    SlaRemoved,
    StatusChanged,
    apply,
    due_actions,
)
from maildesk.sla.policy import KINDS, SlaPolicy, SlaSettings, select_policy
from maildesk.store import Session
from maildesk.store import sla_queries as sq


@dataclass
class TicketReplay:
    number: int
    clocks: dict[str, dict[str, Any]]  # kind -> {due_at, breached_at, state}
    breaches: list[tuple[str, datetime]] = field(default_factory=list)
    history: list[ClockState] = field(default_factory=list)


@dataclass
class DeskReplay:
    tickets: list[TicketReplay]

    def compliance(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for kind in KINDS:
            met = breached = running = 0
            for t in self.tickets:
                for clock in t.history:
                    if clock.kind != kind:
                        continue
                    if clock.breached_at is not None:
                        breached += 1
                    elif clock.stop_reason in ("met", "resolved"):
                        met += 1
                    elif clock.stopped_at is None:
                        running += 1
            done = met + breached
            out[kind] = {"met": met, "breached": breached, "open": running, "compliance": met / done if done else None}
        return out


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def inputs(events: Iterable[tuple[datetime, dict[str, Any]]]) -> list[tuple[datetime, dict[str, Any]]]:
    """The distinct inputs behind a ticket's SLA events (several events of one input share its `on`)."""
    out: list[tuple[datetime, dict[str, Any]]] = []
    for at, data in events:
        on = data.get("on")
        if not isinstance(on, dict):
            continue
        if out and out[-1][1] == on and out[-1][0] == _utc(at):
            continue
        out.append((_utc(at), on))
    return out


def _calendar(settings: SlaSettings, policy: SlaPolicy | None) -> BusinessCalendar:
    for name in ((policy.calendar,) if policy else ()) + ("default",):
        try:
            return settings.calendar(name)
        except KeyError:
            continue
    return BusinessCalendar(name="default")


def _event(on: dict[str, Any], at: datetime, policy: SlaPolicy | None, clocks: Clocks) -> Event:
    kind = on.get("input")
    if kind == "customer-message":
        return CustomerMessage(at)
    if kind == "agent-reply":
        return AgentReply(at)
    if kind == "status":
        return StatusChanged(at, str(on.get("status")))
    if policy is None:
        return SlaRemoved(at)
    if policy.name != clocks.policy:
        return PolicyChanged(at, policy.name)
    return PriorityChanged(at, str(on.get("priority")))


def replay_ticket(
    number: int, events: Sequence[tuple[datetime, dict[str, Any]]], settings: SlaSettings, until: datetime
) -> TicketReplay:
    policies = settings.policies if settings.enabled else ()
    clocks = Clocks()
    policy: SlaPolicy | None = None
    history: dict[tuple[str, datetime], ClockState] = {}
    breaches: list[tuple[str, datetime]] = []
    for at, on in inputs(events):
        policy = select_policy(
            policies,
            str(on.get("priority", "normal")),
            str(on.get("queue", "default")),
            str(on.get("tier", "L1")),
            bool(on.get("vip", False)),
            on.get("choice"),
        )
        if policy is None and not clocks.clocks:
            continue
        clocks, actions = apply(clocks, _event(on, at, policy, clocks), policy, _calendar(settings, policy))
        breaches.extend((a.kind, a.due_at) for a in actions if isinstance(a, Breach))
        history.update(((c.kind, c.started_at), c) for c in clocks.clocks)
    clocks, actions = due_actions(clocks, until, policy)
    breaches.extend((a.kind, a.due_at) for a in actions if isinstance(a, Breach))
    history.update(((c.kind, c.started_at), c) for c in clocks.clocks)
    final = {
        c.kind: {
            "due_at": c.due_at.isoformat() if c.due_at else None,
            "breached_at": c.breached_at.isoformat() if c.breached_at else None,
            "state": c.stop_reason or ("paused" if c.paused_at else "running"),
        }
        for c in clocks.clocks
    }
    return TicketReplay(number, final, breaches, list(history.values()))


def replay_desk(session: Session, settings: SlaSettings, since: datetime, until: datetime) -> DeskReplay:
    out = []
    for number in sq.tickets_with_sla_events(session, since):
        events = [(e.at, e.data or {}) for e in sq.sla_events(session, number)]
        out.append(replay_ticket(number, events, settings, until))
    return DeskReplay(out)


def compare(before: DeskReplay, after: DeskReplay) -> dict[str, Any]:
    """Before (the configuration in force) and after (the other one), for `maildesk sla replay`."""
    old = {t.number: t for t in before.tickets}
    changed = []
    for t in after.tickets:
        was = old.get(t.number)
        if was is None or was.clocks != t.clocks:
            changed.append({"ticket": t.number, "before": was.clocks if was else {}, "after": t.clocks})
    return {
        "tickets": len(after.tickets),
        "before": {"compliance": before.compliance(), "breaches": sum(len(t.breaches) for t in before.tickets)},
        "after": {"compliance": after.compliance(), "breaches": sum(len(t.breaches) for t in after.tickets)},
        "changed": changed,
    }
