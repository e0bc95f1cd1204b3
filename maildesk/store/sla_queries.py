"""SLA clock storage: a ticket's clocks to and from `sla.clocks.Clocks`, and the sweep's claim.

Owns the mapping between `SlaClock` rows and the pure `ClockState` (one row per kind; a new
clock of a kind replaces the old row), `next_at` (when the sweep must next look at a clock),
`claim_due` (tickets with a clock whose time has come, locked with `FOR UPDATE SKIP LOCKED`
on PostgreSQL so two sweeps never take the same ticket) and the next due time for the
scheduler.

Must not: decide anything about clocks (that is `sla.clocks`), send mail or read the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maildesk.sla.clocks import TIMER_KINDS, Clocks, ClockState
from maildesk.store.models import Customer, Event, SlaClock, Ticket


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def clock_rows(session: Session, ticket_number: int, *, lock: bool = False) -> list[SlaClock]:
    stmt = select(SlaClock).where(SlaClock.ticket_number == ticket_number).order_by(SlaClock.id)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return list(session.scalars(stmt))


def to_state(row: SlaClock) -> ClockState:
    return ClockState(
        kind=row.kind,
        started_at=_utc(row.started_at) or datetime.min.replace(tzinfo=UTC),
        due_at=_utc(row.due_at),
        paused_at=_utc(row.paused_at),
        paused_total=timedelta(seconds=row.paused_total or 0.0),
        counted=timedelta(seconds=row.counted or 0.0),
        warned_at=_utc(row.warned_at),
        breached_at=_utc(row.breached_at),
        stopped_at=_utc(row.stopped_at),
        resumed_at=_utc(row.resumed_at),
        warn_due_at=_utc(row.warn_at),
        stop_reason=row.stop_reason or "",
    )


def next_at(clock: ClockState) -> datetime | None:
    """When the sweep must next look at this clock: its timer, warning or breach; None: nothing pending."""
    if clock.stopped_at is not None:
        return None
    if clock.kind in TIMER_KINDS:
        return clock.due_at
    if clock.paused_at is not None or clock.breached_at is not None:
        return None
    if clock.warned_at is None and clock.warn_due_at is not None:
        return clock.warn_due_at
    return clock.due_at


def load_clocks(session: Session, ticket_number: int, status: str, *, lock: bool = False) -> Clocks:
    """The ticket's clocks as the engine sees them; `status` is the ticket's status before the change."""
    rows = clock_rows(session, ticket_number, lock=lock)
    policy = next((r.policy for r in rows if r.policy), "")
    clocks = Clocks(status=status, policy=policy)
    for row in rows:
        clocks = clocks.put(to_state(row))
    return clocks


_CLOCKLESS = "maildesk.clockless_tickets"


def mark_clockless(session: Session, ticket_number: int) -> None:
    """A ticket made in this session's transaction: it has no clocks until save_clocks."""
    session.info.setdefault(_CLOCKLESS, set()).add(ticket_number)


def forget_clockless(session: Session) -> None:
    """After a rollback: ask the database again."""
    session.info.pop(_CLOCKLESS, None)


def known_clockless(session: Session, ticket_number: int) -> bool:
    """True when the ticket is known to have no clocks without asking the database."""
    return ticket_number in session.info.get(_CLOCKLESS, ())


def save_clocks(session: Session, ticket_number: int, clocks: Clocks) -> None:
    """Write the clocks that changed; a value equal to the stored one is not written again
    (SQLite hands times back naive, so they are compared in UTC)."""
    session.info.get(_CLOCKLESS, set()).discard(ticket_number)
    rows = {r.kind: r for r in clock_rows(session, ticket_number)}
    for clock in clocks.clocks:
        row = rows.get(clock.kind)
        if row is None:
            row = SlaClock(ticket_number=ticket_number, kind=clock.kind)
            session.add(row)
        values = {
            "policy": clocks.policy,
            "started_at": clock.started_at,
            "due_at": clock.due_at,
            "warn_at": clock.warn_due_at,
            "paused_at": clock.paused_at,
            "resumed_at": clock.resumed_at,
            "paused_total": clock.paused_total.total_seconds(),
            "counted": clock.counted.total_seconds(),
            "warned_at": clock.warned_at,
            "breached_at": clock.breached_at,
            "stopped_at": clock.stopped_at,
            "stop_reason": clock.stop_reason,
            "next_at": next_at(clock),
        }
        for name, value in values.items():
            old = getattr(row, name)
            if isinstance(value, datetime | None) and isinstance(old, datetime | None):
                if _utc(old) == _utc(value):
                    continue
            elif old == value:
                continue
            setattr(row, name, value)
    session.flush()


def claim_due(session: Session, now: datetime, limit: int = 200) -> list[int]:
    """Numbers of tickets with a clock due by `now`, locked for this transaction.

    On PostgreSQL the tickets are locked `FOR UPDATE SKIP LOCKED`: a ticket another sweep (or
    a worker changing it) holds is left for the next sweep. SQLite has one writer anyway."""
    numbers = list(
        session.scalars(
            select(SlaClock.ticket_number)
            .where(SlaClock.next_at.is_not(None), SlaClock.next_at <= now)
            .group_by(SlaClock.ticket_number)
            .order_by(func.min(SlaClock.next_at))
            .limit(limit)
        )
    )
    if not numbers or session.get_bind().dialect.name != "postgresql":
        return numbers
    locked = set(
        session.scalars(
            select(Ticket.number).where(Ticket.number.in_(numbers)).with_for_update(skip_locked=True, of=Ticket)
        )
    )
    return [n for n in numbers if n in locked]


def next_due(session: Session) -> datetime | None:
    """The earliest moment any clock needs the sweep."""
    return _utc(session.scalar(select(func.min(SlaClock.next_at)).where(SlaClock.next_at.is_not(None))))


def due_within(session: Session, until: datetime) -> list[int]:
    """Numbers of tickets with a running clock due (or breached) by `until`."""
    stmt = (
        select(SlaClock.ticket_number)
        .where(SlaClock.stopped_at.is_(None), SlaClock.due_at.is_not(None), SlaClock.due_at <= until)
        .group_by(SlaClock.ticket_number)
        .order_by(func.min(SlaClock.due_at))
    )
    return list(session.scalars(stmt))


def open_clock_tickets(session: Session, *, breaching_at: datetime | None = None) -> list[int]:
    """Tickets with a clock that is not stopped; with `breaching_at`, only those breached or overdue then."""
    stmt = select(SlaClock.ticket_number).where(SlaClock.stopped_at.is_(None))
    if breaching_at is not None:
        stmt = stmt.where(
            (SlaClock.breached_at.is_not(None))
            | (SlaClock.due_at.is_not(None) & SlaClock.paused_at.is_(None) & (SlaClock.due_at <= breaching_at))
        )
        stmt = stmt.where(SlaClock.kind.not_in(TIMER_KINDS))
    return list(session.scalars(stmt.group_by(SlaClock.ticket_number).order_by(SlaClock.ticket_number)))


def tickets_with_sla_events(session: Session, since: datetime) -> list[int]:
    stmt = (
        select(Event.ticket_number)
        .where(Event.type.like("sla-%"), Event.at >= since)
        .group_by(Event.ticket_number)
        .order_by(Event.ticket_number)
    )
    return [n for n in session.scalars(stmt) if n is not None]


def sla_events(session: Session, ticket_number: int) -> list[Event]:
    stmt = (
        select(Event)
        .where(Event.ticket_number == ticket_number, Event.type.like("sla-%") | Event.type.in_(_ACTION_EVENTS))
        .order_by(Event.id)
    )
    return list(session.scalars(stmt))


_ACTION_EVENTS = ("followup-sent", "auto-resolved")


def customer_vip(session: Session, customer_id: int) -> bool:
    customer = session.get(Customer, customer_id)
    return bool(customer is not None and customer.vip)


def tickets(session: Session, numbers: Sequence[int]) -> list[Ticket]:
    if not numbers:
        return []
    return list(session.scalars(select(Ticket).where(Ticket.number.in_(list(numbers))).order_by(Ticket.number)))
