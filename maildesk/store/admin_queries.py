"""Queries behind the operator's admin commands: suppressions and the outbox.

Owns the SQL for listing suppressions and outbox rows and for finding the events that
concern one outbox row. Functions take an open Session; the caller owns the transaction.

It must not: decide anything (that is `maildesk/services/admin.py`), change rows, or read the
clock (`now` is passed in).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from maildesk.store.models import Event, OutboxItem, Suppression

OUTBOX_STATES = ("queued", "sending", "sent", "failed", "held")

# Events that carry `outbox_id` in their data (written by outbox.py and sender.py).
OUTBOX_EVENT_TYPES = (
    "mail-queued",
    "mail-held",
    "automatic-mail-held",
    "mail-sent",
    "send-deferred",
    "send-failed",
    "send-interrupted",
    "address-suppressed",
    "agent-replied",
    "outbox-retried",
)


def suppressions(session: Session, now: datetime, *, include_expired: bool = False) -> list[Suppression]:
    """Suppressed addresses, alphabetically; expired ones (`until` passed) only when asked."""
    stmt = select(Suppression).order_by(Suppression.address)
    if not include_expired:
        stmt = stmt.where(or_(Suppression.until.is_(None), Suppression.until >= now))
    return list(session.scalars(stmt))


def suppression(session: Session, address: str) -> Suppression | None:
    return session.scalars(select(Suppression).where(Suppression.address == address.strip().lower())).first()


def outbox_items(session: Session, *, state: str | None = None, limit: int = 200) -> list[OutboxItem]:
    """Outbox rows, newest first, optionally of one state (`limit` 0: all)."""
    stmt = select(OutboxItem).order_by(OutboxItem.id.desc())
    if state:
        stmt = stmt.where(OutboxItem.state == state)
    if limit:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def outbox_item(session: Session, item_id: int) -> OutboxItem | None:
    return session.get(OutboxItem, item_id)


def outbox_events(session: Session, item: OutboxItem, limit: int = 500) -> list[Event]:
    """The events naming this outbox row (`data.outbox_id`), oldest first.

    Filtered in Python on purpose: JSON path syntax differs between SQLite and PostgreSQL,
    and the candidates are already narrowed to the row's ticket and the outbox event types.
    """
    ticket = (
        Event.ticket_number == item.ticket_number if item.ticket_number is not None else Event.ticket_number.is_(None)
    )
    stmt = (
        select(Event)
        .where(ticket, Event.type.in_(OUTBOX_EVENT_TYPES), Event.at >= item.created_at)
        .order_by(Event.at, Event.id)
        .limit(limit)
    )
    return [e for e in session.scalars(stmt) if isinstance(e.data, dict) and e.data.get("outbox_id") == item.id]
