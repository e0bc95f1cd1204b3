"""The SQL behind `maildesk report`: set-based reads over one period, fast on a million tickets.

Owns the queries `services/kpis.py` computes from: the tickets created in the period (and
the 7 days before it, for repeat tickets) or resolved in it, with only the columns the KPIs
need, as plain `TicketRow`s whose instants are POSIX microseconds computed by the database
(no datetime object per value); what each such ticket's report events say, folded into one
`TicketFacts` per ticket from a single events read in which the database extracts the few
JSON keys needed; the open backlog counted by group and age bucket in SQL; the agent
replies of the period counted by agent in SQL. No ORM objects are built per ticket (Core
selects, plain tuples); the indexes they rely on are `tickets.created_at`,
`tickets.resolved_at`, `tickets (status, queue)`, `tickets (status, assignee)`,
`events.ticket_number` and `events (type, at)` (migration 0006).

Must not: compute a KPI, format anything, or write.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    String,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    or_,
    select,
    type_coerce,
    union,
)
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
    """One counted ticket; instants are POSIX microseconds (UTC), exact and cheap to compare."""

    number: int
    created: int
    status: str
    queue: str
    tier: str
    priority: str
    assignee: str | None
    customer_id: int
    customer_email: str
    subject: str
    tags: tuple[str, ...]
    first_response: int | None
    resolved: int | None


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What a ticket's report events before `until` say, aggregated per ticket in SQL.

    `escalated_from`/`tiers` hold only values of `TIERS`, `sla_started`/`sla_breached`
    only the known SLA kinds (`sla_any`: an `sla-started` event of any kind);
    `first_agent`: `data.agent` of the earliest `agent-replied` event (ties: the one stored
    first); `ratings`: `data.rating` of its `survey-answered` events as stored, oldest first."""

    replies: int = 0
    reopened: bool = False
    escalated: bool = False
    escalated_from: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    sla_any: bool = False
    sla_started: frozenset[str] = frozenset()
    sla_breached: frozenset[str] = frozenset()
    first_agent: str | None = None
    ratings: tuple[Any, ...] = ()


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _epoch_us(session: Session, column: Any) -> Any:
    """`column` (a UTC instant) as POSIX microseconds, computed by the database.

    SQLite stores SQLAlchemy's text `YYYY-MM-DD HH:MM:SS.ffffff` (naive UTC): whole seconds
    from its first 19 characters (`strftime('%s')` of the full text rounds to milliseconds
    and could carry into the next second), microseconds from the digits after the dot.
    PostgreSQL: `EXTRACT(EPOCH ...)` is an exact numeric. NULL stays NULL."""
    if _is_sqlite(session):
        raw = type_coerce(column, String)
        seconds = cast(func.strftime("%s", func.substr(raw, 1, 19)), Integer)
        micro = case(
            (func.substr(raw, 20, 1) == ".", cast(func.substr(raw.concat("000000"), 21, 6), Integer)),
            else_=0,
        )
        return seconds * 1_000_000 + micro
    return cast(extract("epoch", column) * 1_000_000, BigInteger)


def _counted() -> Any:
    """Tickets the report counts: not spam, not merged into another."""
    return and_(Ticket.spam.is_(False), Ticket.merged_into.is_(None))


def _in_scope(since: datetime, until: datetime, lookback: timedelta) -> Any:
    return or_(
        and_(Ticket.created_at >= since - lookback, Ticket.created_at < until),
        and_(Ticket.resolved_at >= since, Ticket.resolved_at < until),
    )


def period_tickets(session: Session, since: datetime, until: datetime, lookback: timedelta) -> list[TicketRow]:
    """Counted tickets created in [since - lookback, until) or resolved in [since, until), by number.

    Instants come back as integers computed in SQL (no datetime object per value); tags are
    decoded only for the tickets created in the period (the only ones a KPI reads them of)."""
    created = _epoch_us(session, Ticket.created_at).label("created")
    in_period = and_(Ticket.created_at >= since, Ticket.created_at < until)
    stmt = (
        select(
            Ticket.number,
            created,
            Ticket.status,
            Ticket.queue,
            Ticket.tier,
            Ticket.priority,
            Ticket.assignee,
            Ticket.customer_id,
            Customer.email,
            Ticket.subject,
            case((in_period, type_coerce(Ticket.tags, String)), else_=None),
            _epoch_us(session, Ticket.first_response_at),
            _epoch_us(session, Ticket.resolved_at),
        )
        .join(Customer, Customer.id == Ticket.customer_id)
        .where(_counted(), _in_scope(since, until, lookback))
        .order_by(Ticket.number)
    )
    decoded: dict[str, tuple[str, ...]] = {}  # most tickets share a few tag lists: decode each text once

    def tags(value: Any) -> tuple[str, ...]:
        if not isinstance(value, str):  # a driver that decodes JSON itself
            return _tags(value)
        known = decoded.get(value)
        if known is None:
            known = decoded[value] = _tags(json.loads(value))
        return known

    return [
        TicketRow(
            r[0],
            r[1],
            r[2],
            r[3] or "default",
            r[4] or "",
            r[5] or "",
            r[6],
            r[7],
            r[8] or "",
            r[9] or "",
            tags(r[10]) if r[10] is not None else (),
            r[11],
            r[12],
        )
        for r in session.connection().execute(stmt).all()
    ]


def _tags(value: Any) -> tuple[str, ...]:
    return tuple(map(str, value)) if isinstance(value, list) else ()


def _period_numbers(since: datetime, until: datetime) -> Any:
    """The counted tickets created or resolved in [since, until): a UNION of two index range reads."""
    created = select(Ticket.number).where(_counted(), Ticket.created_at >= since, Ticket.created_at < until)
    resolved = select(Ticket.number).where(_counted(), Ticket.resolved_at >= since, Ticket.resolved_at < until)
    return union(created, resolved).subquery("numbers")


_KEY1 = {"status": "from", "escalated": "from", "tier-changed": "old", "sla-started": "kind", "sla-breached": "kind"}
_KEY2 = {"status": "to", "escalated": "to", "tier-changed": "new"}


def period_facts(
    session: Session, since: datetime, until: datetime, tiers: Sequence[str], kinds: Sequence[str]
) -> dict[int, TicketFacts]:
    """`TicketFacts` of the counted tickets created or resolved in [since, until) that have a
    report event before `until` (the others have none: `TicketFacts()`).

    One read of the events joined to `events.ticket_number` through the period's ticket
    numbers (a UNION of two index range reads, not an `IN (... OR ...)` subquery, which
    would scan the events by type). The database extracts the one or two JSON keys each
    event type needs (no JSON document reaches Python but a survey's rating) and drops the
    `status` events that are not reopens (most events are status changes); the rows come
    ordered by ticket, time and id, and are folded here, one small tuple each."""
    numbers = _period_numbers(since, until)
    key1 = case(
        *((Event.type == t, Event.data[k].as_string()) for t, k in _KEY1.items()),
        (Event.type == "agent-replied", Event.data["agent"].as_string()),
        else_=None,
    )
    key2 = case(*((Event.type == t, Event.data[k].as_string()) for t, k in _KEY2.items()), else_=None)
    rating = type_coerce(case((Event.type == "survey-answered", Event.data["rating"]), else_=None), JSON)
    reopen = and_(
        Event.data["from"].as_string().in_(sorted(CLOSED_STATUSES)),
        Event.data["to"].as_string().in_(list(OPEN_STATUSES)),
    )
    stmt = (
        select(Event.ticket_number, Event.type, key1, key2, rating)
        .join(numbers, numbers.c.number == Event.ticket_number)
        .where(Event.type.in_(REPORT_EVENTS), Event.at < until, or_(Event.type != "status", reopen))
        .order_by(Event.ticket_number, Event.at, Event.id)
    )
    known_tiers, known_kinds = frozenset(tiers), frozenset(kinds)
    none: frozenset[str] = frozenset()
    out: dict[int, TicketFacts] = {}
    rows = session.connection().execute(stmt).all()
    for n, group in groupby(rows, key=itemgetter(0)):
        replies, first_agent, reopened, escalated, sla_any = 0, None, False, False, False
        escalated_from = at_tiers = started = breached = none
        ratings: tuple[Any, ...] = ()
        for _, type_, k1, k2, value in group:
            if type_ == "agent-replied":
                replies += 1
                if first_agent is None:
                    first_agent = k1 or ""
            elif type_ == "sla-started":
                sla_any = True
                if k1 in known_kinds:
                    started = started | {k1}
            elif type_ == "sla-breached":
                if k1 in known_kinds:
                    breached = breached | {k1}
            elif type_ == "status":
                reopened = True
            elif type_ == "escalated":
                escalated = True
                if k1 in known_tiers:
                    escalated_from = escalated_from | {k1}
                at_tiers = at_tiers | {k for k in (k1, k2) if k in known_tiers}
            elif type_ == "tier-changed":
                at_tiers = at_tiers | {k for k in (k1, k2) if k in known_tiers}
            elif type_ == "survey-answered":
                ratings = (*ratings, value)
        out[n] = TicketFacts(
            replies, reopened, escalated, escalated_from, at_tiers, sla_any, started, breached, first_agent, ratings
        )
    return out


@dataclass(frozen=True, slots=True)
class OpenNow:
    """The counted tickets open now: `backlog` (group, bucket, count) of those created before
    `until`, and `by_assignee` (assignee or '', count) of them all."""

    backlog: list[tuple[str, str, int]]
    by_assignee: dict[str, int]


def open_now(session: Session, until: datetime, by: str, bounds: Sequence[tuple[str, timedelta]]) -> OpenNow:
    """The open tickets counted once for both the backlog and the agents' open load.

    A ticket's bucket is the first of `bounds` (label, age) whose age its age at `until` is
    under ('older' after the last; created at or after `until`: not in the backlog). One
    query per open status (`status = ?`, not `IN`): SQLite's statistics give every status
    the same share, so for an `IN` of three it walks a whole index or table; for one status
    it reads that status's range of `(status, queue)` / `(status, assignee)`."""
    group = GROUP_COLUMNS[by]
    whens = [(Ticket.created_at > until - age, literal(label)) for label, age in bounds]
    bucket = case((Ticket.created_at >= until, literal("")), *whens, else_=literal("older")).label("bucket")
    backlog: Counter[tuple[str, str]] = Counter()
    assigned: Counter[str] = Counter()
    for status in OPEN_STATUSES:
        stmt = (
            select(group, Ticket.assignee, bucket, func.count())
            .where(_counted(), Ticket.status == status)
            .group_by(group, Ticket.assignee, bucket)
        )
        for g, a, b, n in session.connection().execute(stmt):
            assigned[a or ""] += int(n)
            if b:
                backlog[g if g is not None else "", str(b)] += int(n)
    return OpenNow([(g, b, n) for (g, b), n in backlog.items()], dict(assigned))


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
    "TicketFacts",
    "period_tickets",
    "period_facts",
    "OpenNow",
    "open_now",
    "replies_by_agent",
]
