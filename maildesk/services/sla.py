"""SLA clocks on the ticket-change path: each change or message becomes a clock event.

Owns the bridge from what happens to a ticket to the pure engine (`sla.clocks.apply`):
`on_change` (status, priority, queue and tier changes, called by `services.tickets._consequences`),
`withdraw_gone_policy` (the sweep: a policy removed from the configuration stops its clocks),
`on_customer_message` (the thread stage), `on_agent_reply` (an agent's reply, CLI or mail) and
`choose_policy` (a rule's `sla: NAME` / `sla: none`). Each loads the ticket's clocks, applies
the event under the policy in force after it, saves the clocks and records every clock change
as an event (`sla-started`, `sla-paused`, `sla-resumed`, `sla-stopped`, `sla-recomputed`), each
carrying `on`: the input and the ticket's state, from which `sla replay` recomputes.

The desk's SLA settings reach the change path through `session.info["sla"]` (an `SlaContext`
the App puts into every session of its store): no global state and no settings parameter on
every change function. Without one, no policy applies (clocks that exist still stop on
resolve). The context also carries `act` (the sweep's way to act on warnings and breaches
that fell due before an event) and `rearm` (tell the scheduler a clock is due earlier).

Must not: send mail or change the ticket itself (actions go back to the sweep through
`act`), read the clock, or build SQL (`store/sla_queries.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from maildesk.domain import TicketChange
from maildesk.sla.calendar import BusinessCalendar
from maildesk.sla.clocks import (
    TIMER_KINDS,
    Action,
    AgentReply,
    Clocks,
    ClockState,
    CustomerMessage,
    Event,
    PolicyChanged,
    PriorityChanged,
    SlaRemoved,
    StatusChanged,
    apply,
    withdraw,
)
from maildesk.sla.policy import SlaPolicy, SlaSettings, select_policy
from maildesk.store import Session
from maildesk.store import queries as q
from maildesk.store import sla_queries as sq
from maildesk.store.models import Ticket

CHANGE_KINDS = ("status", "priority", "queue", "tier")


@dataclass
class SlaContext:
    """What the change path needs from the desk: its SLA settings and two callbacks."""

    settings: SlaSettings
    act: Callable[[Session, Ticket, Sequence[Action], datetime], None] | None = None
    rearm: Callable[[datetime], None] | None = None


_NO_SLA = SlaContext(SlaSettings(enabled=False))


def context(session: Session) -> SlaContext:
    ctx = session.info.get("sla")
    return ctx if isinstance(ctx, SlaContext) else _NO_SLA


def policies(ctx: SlaContext) -> tuple[SlaPolicy, ...]:
    return ctx.settings.policies if ctx.settings.enabled else ()


def policy_for(session: Session, ticket: Ticket, ctx: SlaContext | None = None) -> SlaPolicy | None:
    ctx = ctx or context(session)
    if not policies(ctx):
        return None  # no SLAs on this desk: no look-up
    vip = sq.customer_vip(session, ticket.customer_id)
    return select_policy(policies(ctx), ticket.priority, ticket.queue, ticket.tier, vip, ticket.sla_choice)


def calendar_for(settings: SlaSettings, policy: SlaPolicy | None, fallback: str = "") -> BusinessCalendar:
    name = policy.calendar if policy is not None else fallback
    for candidate in (name, "default"):
        try:
            return settings.calendar(candidate)
        except KeyError:
            continue
    return BusinessCalendar(name="default")


# Hooks --------------------------------------------------------------------------------------
def on_change(session: Session, ticket: Ticket, change: TicketChange, now: datetime) -> None:
    """A status, priority, queue or tier change (from `_consequences`)."""
    if change.kind not in CHANGE_KINDS:
        return
    if change.kind == "status":
        _run(session, ticket, StatusChanged(now, str(change.new)), str(change.old), now, "status")
        return
    ctx = context(session)
    policy = policy_for(session, ticket, ctx)
    if policy is None and sq.known_clockless(session, ticket.number):
        return  # no SLA, and a ticket made in this transaction that never had clocks
    event: Event
    current = sq.load_clocks(session, ticket.number, ticket.status).policy
    if policy is None:
        event = SlaRemoved(now)
    elif policy.name != current:
        event = PolicyChanged(now, policy.name)
    else:
        event = PriorityChanged(now, ticket.priority)
    _run(session, ticket, event, ticket.status, now, change.kind, ctx=ctx, policy=policy)


def on_customer_message(session: Session, ticket: Ticket, now: datetime) -> None:
    """A customer's mail is on the ticket (after the thread stage reopened it if it must)."""
    _run(session, ticket, CustomerMessage(now), ticket.status, now, "customer-message")


def on_agent_reply(session: Session, ticket: Ticket, now: datetime) -> None:
    """An agent answered the customer (CLI `ticket reply` or a reply by mail)."""
    _run(session, ticket, AgentReply(now), ticket.status, now, "agent-reply")


def choose_policy(session: Session, ticket: Ticket, choice: str, now: datetime) -> bool:
    """A rule's `sla: NAME` (or `none`); True when the choice changed."""
    if (ticket.sla_choice or "") == choice:
        return False
    ticket.sla_choice = choice
    ctx = context(session)
    policy = policy_for(session, ticket, ctx)
    event: Event = SlaRemoved(now) if policy is None else PolicyChanged(now, policy.name)
    _run(session, ticket, event, ticket.status, now, "policy", ctx=ctx, policy=policy)
    return True


def policy_gone(ctx: SlaContext, clocks: Clocks) -> bool:
    """The clocks run under a policy the desk's configuration no longer has (or SLAs are off)."""
    if ctx is _NO_SLA or not clocks.policy:
        return False  # no desk settings in this session: nothing to compare with
    return not ctx.settings.enabled or ctx.settings.policy(clocks.policy) is None


def withdraw_gone_policy(session: Session, ticket: Ticket, now: datetime) -> bool:
    """The sweep's check before acting: when the ticket's running clocks belong to a policy that
    is no longer in the configuration (or SLAs were switched off), they stop ("removed") and
    nothing they owed is acted on; a policy that applies to the ticket now takes over with the
    time already counted. Returns True when the clocks changed."""
    ctx = context(session)
    before = sq.load_clocks(session, ticket.number, ticket.status, lock=True)
    if not policy_gone(ctx, before) or not any(c.stopped_at is None for c in before.clocks):
        return False
    calendar = calendar_for(ctx.settings, None)  # the gone policy's calendar is unknown now
    after = withdraw(before, now, calendar)
    policy = policy_for(session, ticket, ctx)
    event: Event = SlaRemoved(now)
    if policy is not None:
        event = PolicyChanged(now, policy.name)
        after, _ = apply(after, event, policy, calendar_for(ctx.settings, policy))
    sq.save_clocks(session, ticket.number, after)
    on = on_data(ticket, "policy", event, sq.customer_vip(session, ticket.customer_id))
    on["gone"] = before.policy
    record_changes(session, ticket.number, before, after, now, on, always=True)
    _rearm(ctx, after)
    return True


# The engine run ------------------------------------------------------------------------------
_UNSET: Any = object()


def _run(
    session: Session,
    ticket: Ticket,
    event: Event,
    status_before: str,
    now: datetime,
    input_: str,
    *,
    ctx: SlaContext | None = None,
    policy: SlaPolicy | None = _UNSET,
) -> None:
    ctx = ctx or context(session)
    if policy is _UNSET:
        policy = policy_for(session, ticket, ctx)
    if policy is None and sq.known_clockless(session, ticket.number):
        return  # no SLA, and a ticket made in this transaction that never had clocks
    before = sq.load_clocks(session, ticket.number, status_before, lock=True)
    if policy is None and not any(c.stopped_at is None for c in before.clocks):
        return  # no SLA, nothing running: nothing to do (the fast path on a desk without SLAs)
    calendar = calendar_for(ctx.settings, policy, _old_calendar(ctx, before))
    after, actions = apply(before, event, policy, calendar)
    sq.save_clocks(session, ticket.number, after)
    on = on_data(ticket, input_, event, sq.customer_vip(session, ticket.customer_id))
    record_changes(
        session, ticket.number, before, after, now, on, always=input_ not in ("customer-message", "agent-reply")
    )
    _rearm(ctx, after)
    if actions and ctx.act is not None:
        ctx.act(session, ticket, actions, now)


def _old_calendar(ctx: SlaContext, clocks: Clocks) -> str:
    old = ctx.settings.policy(clocks.policy) if clocks.policy else None
    return old.calendar if old is not None else ""


def _rearm(ctx: SlaContext, clocks: Clocks) -> None:
    if ctx.rearm is None:
        return
    times = [t for c in clocks.clocks if (t := sq.next_at(c)) is not None]
    if times:
        ctx.rearm(min(times))


def on_data(ticket: Ticket, input_: str, event: Event, vip: bool) -> dict[str, Any]:
    """The input as replay needs it: what happened and the ticket's state after it."""
    data: dict[str, Any] = {
        "input": input_,
        "priority": ticket.priority,
        "queue": ticket.queue,
        "tier": ticket.tier,
        "vip": vip,
        "choice": ticket.sla_choice,
    }
    if isinstance(event, StatusChanged):
        data["status"] = event.status
    if isinstance(event, SlaRemoved):
        data["removed"] = True
    return data


def record_changes(
    session: Session,
    number: int,
    before: Clocks,
    after: Clocks,
    now: datetime,
    on: dict[str, Any] | None,
    *,
    always: bool = False,
) -> int:
    """One event per clock change between `before` and `after`; returns how many.

    `always`: an input that changed no clock still gets one `sla-recomputed` (replay needs
    every status, priority and policy input of an SLA ticket)."""
    recorded = 0
    for clock in after.clocks:
        for type_, data in _diff(before.get(clock.kind), clock):
            payload = {"kind": clock.kind, "policy": after.policy, **data}
            if on is not None:
                payload["on"] = on
            q.add_event(session, number, type_, payload, now)
            recorded += 1
    if not recorded and always and on is not None:
        q.add_event(session, number, "sla-recomputed", {"kind": None, "policy": after.policy, "on": on}, now)
        recorded = 1
    return recorded


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _diff(old: ClockState | None, new: ClockState) -> list[tuple[str, dict[str, Any]]]:
    if old is None or old.started_at != new.started_at:
        out = [("sla-started", {"due_at": _iso(new.due_at), "started_at": _iso(new.started_at)})]
        if new.stopped_at is not None:
            out.append(("sla-stopped", {"reason": new.stop_reason}))
        return out
    if old.stopped_at is None and new.stopped_at is not None:
        if new.stop_reason == "fired":
            return []  # a timer firing is the sweep's followup-sent / auto-resolved
        return [("sla-stopped", {"reason": new.stop_reason, "counted_seconds": new.counted.total_seconds()})]
    if old.stopped_at is not None and new.stopped_at is None:
        return [("sla-resumed", {"restarted": True, "due_at": _iso(new.due_at), "counted_seconds": _secs(new)})]
    if new.stopped_at is not None:
        return []
    if old.paused_at is None and new.paused_at is not None:
        return [("sla-paused", {"counted_seconds": _secs(new)})]
    if old.paused_at is not None and new.paused_at is None:
        paused = (new.paused_total - old.paused_total).total_seconds()
        return [("sla-resumed", {"due_at": _iso(new.due_at), "paused_seconds": paused})]
    if old.due_at != new.due_at and new.kind not in TIMER_KINDS:
        return [("sla-recomputed", {"old_due_at": _iso(old.due_at), "due_at": _iso(new.due_at)})]
    return []


def _secs(clock: ClockState) -> float:
    return clock.counted.total_seconds()


def without_late_warnings(actions: Sequence[Action]) -> list[Action]:
    """A warning whose breach comes in the same batch is not worth a mail any more."""
    from maildesk.sla.clocks import Breach, Warn

    breached = {a.kind for a in actions if isinstance(a, Breach)}
    return [a for a in actions if not (isinstance(a, Warn) and a.kind in breached)]


__all__ = [
    "SlaContext",
    "context",
    "policy_for",
    "calendar_for",
    "on_change",
    "on_customer_message",
    "on_agent_reply",
    "choose_policy",
    "policy_gone",
    "withdraw_gone_policy",
    "record_changes",
    "on_data",
    "without_late_warnings",
]
