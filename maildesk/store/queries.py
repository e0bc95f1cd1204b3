"""Queries and small writes used by the pipeline, CLI and reports.

Owns the SQL (ORM statements) so that callers never build queries themselves. Functions
take an open Session; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maildesk.store.models import Agent, Customer, Event, Message, OutboxItem, Participant, Suppression, Ticket


def mid_hash(message_id: str) -> str:
    return hashlib.sha256(message_id.strip().lower().encode("utf-8", "surrogateescape")).hexdigest()


def message_by_hash(session: Session, digest: str) -> Message | None:
    return session.scalars(select(Message).where(Message.mid_hash == digest)).first()


def message_by_id(session: Session, message_id: str) -> Message | None:
    return message_by_hash(session, mid_hash(message_id))


def stored_facts(session: Session, message_id: str) -> tuple[int, str, int | None] | None:
    """(row id, content hash, ticket) of a stored message, without loading its bytes."""
    row = session.execute(
        select(Message.id, Message.content_hash, Message.ticket_number).where(Message.mid_hash == mid_hash(message_id))
    ).first()
    return (row[0], row[1], row[2]) if row is not None else None


def tickets_for_message_ids(session: Session, ids: Sequence[str]) -> dict[str, int]:
    """Stored Message-ID (as given) -> ticket number, for incoming and outgoing mail."""
    if not ids:
        return {}
    by_hash = {mid_hash(i): i for i in ids}
    rows = session.execute(
        select(Message.mid_hash, Message.ticket_number).where(Message.mid_hash.in_(list(by_hash)))
    ).all()
    return {by_hash[h]: n for h, n in rows if n is not None}


def ticket_for_thread_root(session: Session, root: str) -> int | None:
    return session.scalars(
        select(Ticket.number).where(Ticket.thread_root == root).order_by(Ticket.number.desc()).limit(1)
    ).first()


def participants(session: Session, number: int) -> list[str]:
    return list(session.scalars(select(Participant.address).where(Participant.ticket_number == number)))


def customer_by_email(session: Session, email: str) -> Customer | None:
    return session.scalars(select(Customer).where(func.lower(Customer.email) == email.strip().lower())).first()


def agent_by_email(session: Session, email: str) -> Agent | None:
    return session.scalars(select(Agent).where(func.lower(Agent.email) == email.lower())).first()


def get_or_create_customer(session: Session, email: str, name: str, now: datetime) -> Customer:
    customer = session.scalars(select(Customer).where(Customer.email == email)).first()
    if customer is None:
        customer = Customer(email=email, name=name, created_at=now)
        session.add(customer)
        session.flush()
    elif name and not customer.name:
        customer.name = name
    return customer


def add_participant(session: Session, number: int, address: str, role: str) -> bool:
    """Add an address to a ticket unless it is already there. True when added."""
    exists = session.scalars(
        select(Participant.id).where(Participant.ticket_number == number, Participant.address == address)
    ).first()
    if exists:
        return False
    session.add(Participant(ticket_number=number, address=address, role=role))
    return True


def add_event(
    session: Session,
    ticket: int | None,
    type_: str,
    data: dict[str, Any],
    now: datetime,
    message_pk: int | None = None,
) -> Event:
    ev = Event(ticket_number=ticket, type=type_, data=data, at=now, message_pk=message_pk)
    session.add(ev)
    return ev


def events_for_ticket(session: Session, number: int) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.ticket_number == number).order_by(Event.at, Event.id)))


def events_for_message(session: Session, message_pk: int) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.message_pk == message_pk).order_by(Event.at, Event.id)))


def messages_for_ticket(session: Session, number: int) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.ticket_number == number).order_by(Message.created_at, Message.id)))


def counts(session: Session) -> dict[str, Any]:
    tickets_by_status = dict(session.execute(select(Ticket.status, func.count()).group_by(Ticket.status)).all())
    return {
        "tickets": sum(tickets_by_status.values()),
        "tickets_by_status": tickets_by_status,
        "messages": session.scalar(select(func.count()).select_from(Message)) or 0,
        "customers": session.scalar(select(func.count()).select_from(Customer)) or 0,
        "outbox": dict(session.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all()),
        "suppressions": session.scalar(select(func.count()).select_from(Suppression)) or 0,
    }


def is_suppressed(session: Session, address: str, now: datetime) -> Suppression | None:
    row = session.scalars(select(Suppression).where(Suppression.address == address.lower())).first()
    if row is None:
        return None
    until = row.until
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=now.tzinfo)
    if until is not None and until < now:
        return None
    return row


def ticket(session: Session, number: int) -> Ticket | None:
    return session.get(Ticket, number)


def resolve_merged(session: Session, number: int) -> int:
    seen: set[int] = set()
    current = number
    while current not in seen:
        seen.add(current)
        row = session.get(Ticket, current)
        if row is None or row.merged_into is None:
            return current
        current = row.merged_into
    return current


def all_message_ids(session: Session, numbers: Iterable[int]) -> list[str]:
    return list(session.scalars(select(Message.message_id).where(Message.ticket_number.in_(list(numbers)))))
