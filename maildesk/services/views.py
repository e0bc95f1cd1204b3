"""What an operator reads: ticket lists and filters, one ticket with its conversation and
history, full-text search, and the shared ways of showing rows (`iso`, `jsonable`,
`summarize`, `message_view`, `event_view`) that customers.py uses for exports too.

Read-only: functions take an open Session and `now` and return plain dicts and dataclasses.

Must not: change a row (changes go through `services.tickets`), print, know about Typer or
Rich, read the clock, or build SQL (queries live in `store/desk_queries.py`, `store/queries.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from maildesk.agentmail.verdict import agent_mail_line
from maildesk.domain import PRIORITIES, STATUSES, TIERS
from maildesk.services import sla as sla_service
from maildesk.services.tickets import OperationError, get_ticket
from maildesk.store import Session
from maildesk.store import desk_queries as dq
from maildesk.store import queries as q
from maildesk.store import sla_queries as sq
from maildesk.store.desk_queries import SearchHit, TicketFilter, utc
from maildesk.store.models import Event, Message, SlaClock, Ticket

# Showing rows -----------------------------------------------------------------------------------
_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(value: str) -> timedelta:
    """'3d' -> 3 days; units s, m, h, d, w."""
    match = _AGE.match(value)
    if not match:
        raise OperationError(f"cannot read age {value!r}: use a number and a unit s/m/h/d/w, like 3d or 12h")
    return timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})


def iso(value: datetime | None) -> str | None:
    value = utc(value)
    return value.isoformat() if value is not None else None


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


TIMER_KINDS = ("followup", "autoresolve")


def clock_state(clock: SlaClock, now: datetime) -> str:
    """stopped (met, resolved, removed, fired, cancelled) | breached | paused | overdue | warned | running."""
    due = utc(clock.due_at)
    if clock.stopped_at is not None:
        return "stopped"
    if clock.breached_at is not None:
        return "breached"
    if clock.paused_at is not None:
        return "paused"
    if due is not None and due <= now:
        return "overdue"
    if clock.warned_at is not None:
        return "warned"
    return "running"


def clock_dict(clock: SlaClock, now: datetime, target: str = "") -> dict[str, Any]:
    """One clock as shown: kind, target, due, state, paused time, warned/breached at."""
    paused = timedelta(seconds=clock.paused_total or 0.0)
    return {
        "kind": clock.kind,
        "policy": clock.policy,
        "target": target,
        "started_at": iso(clock.started_at),
        "due_at": iso(clock.due_at),
        "warn_at": iso(clock.warn_at),
        "state": clock_state(clock, now),
        "stop_reason": clock.stop_reason,
        "paused_at": iso(clock.paused_at),
        "paused_seconds": int(paused.total_seconds()),
        "warned_at": iso(clock.warned_at),
        "breached_at": iso(clock.breached_at),
        "stopped_at": iso(clock.stopped_at),
    }


def clock_targets(session: Session) -> Callable[[SlaClock], str]:
    """A clock's target text under the desk's policies ("8h business"); "" when its policy is gone."""
    settings = sla_service.context(session).settings

    def target(clock: SlaClock) -> str:
        policy = settings.policy(clock.policy) if clock.policy else None
        return policy.target_text(clock.kind) if policy is not None else ""

    return target


def _short(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else ""


def clock_line(c: dict[str, Any]) -> str:
    """One clock on one line, for tables and CSV: kind, target, state, due, paused, warned, breached."""
    state = c["state"] + (f" ({c['stop_reason']})" if c.get("stop_reason") else "")
    parts = [f"{c['kind']}{' ' + c['target'] if c.get('target') else ''}: {state}"]
    if c.get("due_at"):
        parts.append(f"due {_short(c['due_at'])}")
    if c.get("paused_seconds"):
        parts.append(f"paused {c['paused_seconds'] // 3600}h{c['paused_seconds'] % 3600 // 60:02d}m")
    if c.get("warned_at"):
        parts.append(f"warned {_short(c['warned_at'])}")
    if c.get("breached_at"):
        parts.append(f"breached {_short(c['breached_at'])}")
    return ", ".join(parts)


# Lists and views ---------------------------------------------------------------------------
@dataclass
class TicketSummary:
    number: int
    subject: str
    status: str
    queue: str
    tier: str
    priority: str
    assignee: str | None
    customer: str
    tags: list[str]
    created_at: str | None
    updated_at: str | None
    next_due: str | None  # earliest due time of a running SLA clock
    breaching: bool
    clocks: list[dict[str, Any]]  # every SLA clock (`clock_dict`), stopped ones too

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    ticket: Ticket, clocks: Sequence[SlaClock], now: datetime, target: Callable[[SlaClock], str] | None = None
) -> TicketSummary:
    targets = [c for c in clocks if c.kind not in TIMER_KINDS and c.stopped_at is None]
    running = [utc(c.due_at) for c in targets if c.paused_at is None and c.due_at is not None]
    due = min((d for d in running if d is not None), default=None)
    breaching = any(clock_state(c, now) in ("breached", "overdue") for c in targets)
    return TicketSummary(
        number=ticket.number,
        subject=ticket.subject,
        status=ticket.status,
        queue=ticket.queue,
        tier=ticket.tier,
        priority=ticket.priority,
        assignee=ticket.assignee,
        customer=ticket.customer.email,
        tags=list(ticket.tags or []),
        created_at=iso(ticket.created_at),
        updated_at=iso(ticket.updated_at),
        next_due=iso(due),
        breaching=breaching,
        clocks=[clock_dict(c, now, target(c) if target else "") for c in clocks],
    )


def validate_filter(f: TicketFilter) -> None:
    for name, values, allowed in (
        ("status", f.statuses, STATUSES),
        ("tier", tuple(t.upper() for t in f.tiers), TIERS),
        ("priority", f.priorities, PRIORITIES),
    ):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise OperationError(f"unknown {name} {', '.join(bad)}; use {', '.join(allowed)}")
    if f.sort not in dq.SORTS:
        raise OperationError(f"unknown sort {f.sort!r}; use {', '.join(dq.SORTS)}")


def list_tickets(session: Session, f: TicketFilter, now: datetime) -> list[TicketSummary]:
    validate_filter(f)
    tickets = dq.list_tickets(session, f, now)
    clocks = dq.clocks_for(session, [t.number for t in tickets])
    target = clock_targets(session)
    return [summarize(t, clocks[t.number], now, target) for t in tickets]


def message_view(msg: Message) -> dict[str, Any]:
    text = msg.visible_text or msg.full_text
    return {
        "id": msg.id,
        "at": iso(msg.sent_at or msg.created_at),
        "received_at": iso(msg.created_at),
        "direction": msg.direction,
        "kind": msg.kind,
        "internal": bool(msg.internal),
        "from": msg.sender,
        "from_name": msg.sender_name,
        "to": list(msg.recipients or []),
        "subject": msg.subject,
        "text": text,
        "quoted_lines": len(msg.quoted_text.splitlines()) if msg.quoted_text else 0,
        "screen": msg.screen,
        "raw_kept": msg.raw is not None,
        "size": msg.raw_size,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size, "data_kept": a.data is not None}
            for a in msg.attachments
        ],
    }


def event_view(ev: Event) -> dict[str, Any]:
    return {"id": ev.id, "at": iso(ev.at), "type": ev.type, "message": ev.message_pk, "data": jsonable(ev.data or {})}


def _merged_sources(session: Session, number: int, limit: int = 50) -> list[int]:
    """Every ticket merged into `number`, directly or through another merged one (bounded)."""
    found: list[int] = []
    todo = [number]
    while todo and len(found) < limit:
        for n in dq.merged_into_this(session, todo.pop(0)):
            if n not in found and n != number:
                found.append(n)
                todo.append(n)
    return found[:limit]


def _by_time(item: dict[str, Any]) -> tuple[str, int]:
    return (str(item.get("at") or ""), int(item.get("id") or 0))


def ticket_view(session: Session, number: int, now: datetime) -> dict[str, Any]:
    """Everything about one ticket, as a person reads it: fields, clocks, conversation, history.

    The messages and events of tickets merged into this one are part of it, in time order,
    each marked with `from_ticket` (the merged ticket's number; None for this ticket's own)."""
    ticket = get_ticket(session, number, allow_merged=True)
    sources = _merged_sources(session, number)
    messages: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for src in [number, *sources]:
        from_ticket = None if src == number else src
        own_events = q.events_for_ticket(session, src)
        by_message: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        for ev in own_events:
            if ev.message_pk is not None:
                by_message.setdefault(ev.message_pk, []).append((ev.type, ev.data or {}))
        for m in q.messages_for_ticket(session, src):
            view = message_view(m)
            view["agent_mail"] = agent_mail_line(by_message.get(m.id, [])) if m.direction == "in" else None
            messages.append({**view, "from_ticket": from_ticket})
        events += [{**event_view(e), "from_ticket": from_ticket} for e in own_events]
    if sources:
        messages.sort(key=_by_time)
        events.sort(key=_by_time)
    clocks = dq.clocks_for(session, [number])[number]
    target = clock_targets(session)
    summary = summarize(ticket, clocks, now, target).to_dict()
    return {
        **summary,
        "customer_name": ticket.customer.name,
        "fields": jsonable(ticket.fields or {}),
        "asked": jsonable(ticket.ask) if ticket.ask else None,
        "spam": bool(ticket.spam),
        "first_response_at": iso(ticket.first_response_at),
        "resolved_at": iso(ticket.resolved_at),
        "closed_at": iso(ticket.closed_at),
        "merged_into": ticket.merged_into,
        "merged_from": sources,
        "linked_to": ticket.linked_to,
        "participants": q.participants(session, number),
        "sla": summary.pop("clocks"),
        "messages": messages,
        "events": events,
    }


def search(session: Session, query: str, limit: int = 20) -> list[SearchHit]:
    if limit < 1:
        raise OperationError("limit must be at least 1")
    return dq.search(session, query, limit)


__all__ = [
    "OperationError",
    "SearchHit",
    "TicketFilter",
    "TicketSummary",
    "parse_age",
    "validate_filter",
    "list_tickets",
    "ticket_view",
    "search",
    "iso",
    "jsonable",
    "summarize",
    "message_view",
    "event_view",
    "clock_dict",
    "clock_line",
]


# SLA clocks --------------------------------------------------------------------------------
def sla_status(
    session: Session, now: datetime, *, breaching: bool = False, due_within: timedelta | None = None
) -> list[dict[str, Any]]:
    """Every clock that is not stopped (`maildesk sla status`), soonest due first: with
    `breaching` only breached or overdue ones, with `due_within` only those due by then."""
    numbers = sq.open_clock_tickets(session, breaching_at=now if breaching else None)
    if due_within is not None:
        soon = set(sq.due_within(session, now + due_within))
        numbers = [n for n in numbers if n in soon]
    clocks = dq.clocks_for(session, numbers)
    target = clock_targets(session)
    out = []
    for ticket in sq.tickets(session, numbers):
        for clock in clocks[ticket.number]:
            if clock.stopped_at is not None:
                continue
            row = clock_dict(clock, now, target(clock))
            if breaching and row["state"] not in ("breached", "overdue"):
                continue
            if due_within is not None and (clock.due_at is None or utc(clock.due_at) > now + due_within):  # type: ignore[operator]
                continue
            out.append({"ticket": ticket.number, "subject": ticket.subject, "status": ticket.status, **row})
    return sorted(out, key=lambda r: (r["due_at"] is None, r["due_at"] or "", r["ticket"]))
