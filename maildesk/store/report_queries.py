"""The SQL behind `maildesk report`: set-based reads over one period, fast on a million tickets.

Owns the queries `services/kpis.py` computes from: the tickets created in the period (and
the 7 days before it, for repeat tickets) or resolved in it, with only the columns the KPIs
need, as plain `TicketRow`s; the report's events of those tickets as `EventRow`s; the open
backlog counted by group and age bucket in SQL; the agent replies of the period counted by
agent in SQL. No ORM objects are built per ticket (Core selects, plain tuples); the indexes
they rely on are `tickets.created_at`, `tickets.resolved_at`, `tickets (status, queue)`,
`tickets (status, assignee)`,
`events.ticket_number` and `events (type, at)` (migration 0006).

Must not: compute a KPI, format anything, or write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, union
from sqlalchemy.orm import Session

from maildesk.domain import CLOSED_STATUSES, OPEN_STATUSES
from maildesk.store.models import Customer, Event, Ticket

# The events the KPIs read (see services/kpis.py for what each means).
REPORT_EVENTS = (
    "status",
    "agent-replied",
    "escalated",
    "tier-changed",
    "sla-started",
    "sla-breached",
    "survey-answered",
)
GROUP_COLUMNS = {"queue": Ticket.queue, "tier": Ticket.tier, "priority": Ticket.priority, "agent": Ticket.assignee}


@dataclass(frozen=True, slots=True)
class TicketRow:
    number: int
    created_at: datetime
    status: str
    queue: str
    tier: str
    priority: str
    assignee: str | None
    customer_id: int
    customer_email: str
    subject: str
    tags: tuple[str, ...]
    first_response_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class EventRow:
    ticket_number: int
    type: str
    at: datetime
    data: dict[str, Any]


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive UTC; PostgreSQL aware: always aware UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _counted() -> Any:
    """Tickets the report counts: not spam, not merged into another."""
    return and_(Ticket.spam.is_(False), Ticket.merged_into.is_(None))


def _in_scope(since: datetime, until: datetime, lookback: timedelta) -> Any:
    return or_(
        and_(Ticket.created_at >= since - lookback, Ticket.created_at < until),
        and_(Ticket.resolved_at >= since, Ticket.resolved_at < until),
    )


def period_tickets(session: Session, since: datetime, until: datetime, lookback: timedelta) -> list[TicketRow]:
    """Counted tickets created in [since - lookback, until) or resolved in [since, until)."""
    stmt = (
        select(
            Ticket.number,
            Ticket.created_at,
            Ticket.status,
            Ticket.queue,
            Ticket.tier,
            Ticket.priority,
            Ticket.assignee,
            Ticket.customer_id,
            Customer.email,
            Ticket.subject,
            Ticket.tags,
            Ticket.first_response_at,
            Ticket.resolved_at,
        )
        .join(Customer, Customer.id == Ticket.customer_id)
        .where(_counted(), _in_scope(since, until, lookback))
    )
    out: list[TicketRow] = []
    for r in session.connection().execute(stmt).all():
        out.append(
            TicketRow(
                r[0],
                _utc(r[1]),  # type: ignore[arg-type]
                r[2],
                r[3] or "default",
                r[4] or "",
                r[5] or "",
                r[6],
                r[7],
                r[8] or "",
                r[9] or "",
                tuple(str(t) for t in (r[10] or ())),
                _utc(r[11]),
                _utc(r[12]),
            )
        )
    return out


def period_events(
    session: Session, since: datetime, until: datetime, types: Sequence[str] = REPORT_EVENTS
) -> list[EventRow]:
    """The events of `types` before `until` on the tickets created or resolved in [since, until).

    Of the `status` events only the reopens (from resolved/closed to new/open/pending) are
    read: they are the only status changes a KPI looks at, and most events are status changes.
    The tickets are a UNION of two index range reads (created, resolved) joined to
    `events.ticket_number`, not an `IN (... OR ...)` subquery (a scan of the events by type)."""
    created = select(Ticket.number).where(_counted(), Ticket.created_at >= since, Ticket.created_at < until)
    resolved = select(Ticket.number).where(_counted(), Ticket.resolved_at >= since, Ticket.resolved_at < until)
    numbers = union(created, resolved).subquery("numbers")
    reopen = and_(
        Event.data["from"].as_string().in_(sorted(CLOSED_STATUSES)),
        Event.data["to"].as_string().in_(list(OPEN_STATUSES)),
    )
    stmt = (
        select(Event.ticket_number, Event.type, Event.at, Event.data)
        .join(numbers, numbers.c.number == Event.ticket_number)
        .where(Event.type.in_(list(types)), Event.at < until, or_(Event.type != "status", reopen))
    )
    return [
        EventRow(r[0], r[1], _utc(r[2]), r[3] or {})  # type: ignore[arg-type]
        for r in session.connection().execute(stmt).all()
    ]


def backlog_by_age(
    session: Session, until: datetime, by: str, bounds: Sequence[tuple[str, timedelta]]
) -> list[tuple[str, str, int]]:
    """(group, bucket, count) of the counted tickets open now and created before `until`; a
    ticket's bucket is the first of `bounds` (label, age) whose age its age at `until` is under.

    One query per open status (`status = ?`, not `IN`): SQLite's statistics give every
    status the same share, so for an `IN` of three it walks a whole index or table; for
    one status it reads that status's range of `(status, queue)` / `(status, assignee)`."""
    group = GROUP_COLUMNS[by]
    whens = [(Ticket.created_at > until - age, literal(label)) for label, age in bounds]
    bucket = case(*whens, else_=literal("older")).label("bucket")
    counts: Counter[tuple[str, str]] = Counter()
    for status in OPEN_STATUSES:
        stmt = (
            select(group, bucket, func.count())
            .where(_counted(), Ticket.status == status, Ticket.created_at < until)
            .group_by(group, bucket)
        )
        for g, b, n in session.execute(stmt):
            counts[g if g is not None else "", str(b)] += int(n)
    return [(g, b, n) for (g, b), n in counts.items()]


def open_by_assignee(session: Session) -> dict[str, int]:
    """Counted open tickets per assignee now ('' for unassigned); one query per open status
    (see backlog_by_age)."""
    counts: Counter[str] = Counter()
    for status in OPEN_STATUSES:
        stmt = (
            select(Ticket.assignee, func.count()).where(_counted(), Ticket.status == status).group_by(Ticket.assignee)
        )
        for a, n in session.execute(stmt):
            counts[a or ""] += int(n)
    return dict(counts)


def replies_by_agent(session: Session, since: datetime, until: datetime) -> dict[str, int]:
    """`agent-replied` events in [since, until) counted per agent (data.agent)."""
    agent = Event.data["agent"].as_string()
    stmt = (
        select(agent, func.count())
        .where(Event.type == "agent-replied", Event.at >= since, Event.at < until)
        .group_by(agent)
    )
    return {a or "": int(n) for a, n in session.execute(stmt)}


__all__ = [
    "REPORT_EVENTS",
    "GROUP_COLUMNS",
    "TicketRow",
    "EventRow",
    "period_tickets",
    "period_events",
    "backlog_by_age",
    "open_by_assignee",
    "replies_by_agent",
]
