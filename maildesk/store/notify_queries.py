"""Queries behind the agent notifications (`services/notify.py`).

Owns the SQL for: the ticket's newest message and event ids (the notification's sequence
number and the change it is about), the customer's earlier tickets with how they ended, the
agents who took part in a ticket, and the latest event of a type. Functions take an open
Session; the caller owns the transaction. Must not: decide who is notified, or build mail.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maildesk.store.models import Agent, Event, Message, Participant, Ticket
from maildesk.store.queries import all_agents


def newest_message_id(session: Session, ticket_number: int) -> int:
    """The id of the newest message row on the ticket (0: none): ids only grow."""
    return int(session.scalar(select(func.max(Message.id)).where(Message.ticket_number == ticket_number)) or 0)


def latest_event(session: Session, ticket_number: int, types: tuple[str, ...]) -> Event | None:
    """The newest event of one of `types` on the ticket."""
    return session.scalars(
        select(Event)
        .where(Event.ticket_number == ticket_number, Event.type.in_(types))
        .order_by(Event.id.desc())
        .limit(1)
    ).first()


def earlier_tickets(session: Session, customer_id: int, before: int, limit: int = 5) -> list[Ticket]:
    """The customer's other tickets opened before ticket `before`, newest first (merged ones left out)."""
    return list(
        session.scalars(
            select(Ticket)
            .where(Ticket.customer_id == customer_id, Ticket.number < before, Ticket.merged_into.is_(None))
            .order_by(Ticket.number.desc())
            .limit(limit)
        )
    )


def ticket_agents(session: Session, ticket_number: int) -> list[str]:
    """Addresses that took part in the ticket as agents (participants with role `agent`)."""
    return list(
        session.scalars(
            select(Participant.address)
            .where(Participant.ticket_number == ticket_number, Participant.role == "agent")
            .order_by(Participant.id)
        )
    )


def is_customer_address(session: Session, ticket_number: int, address: str) -> bool:
    """Whether `address` is the ticket's customer or one of its customer-side participants."""
    address = address.lower()
    ticket = session.get(Ticket, ticket_number)
    if ticket is not None and ticket.customer.email.lower() == address:
        return True
    found = session.scalar(
        select(func.count())
        .select_from(Participant)
        .where(
            Participant.ticket_number == ticket_number,
            func.lower(Participant.address) == address,
            Participant.role.in_(("customer", "cc")),
        )
    )
    return bool(found)


def agent(session: Session, email: str) -> Agent | None:
    return session.scalars(select(Agent).where(func.lower(Agent.email) == email.lower())).first()


def agents(session: Session) -> list[Agent]:
    return all_agents(session)


def note_authors(session: Session, ticket_number: int) -> list[str]:
    """Who wrote internal notes on the ticket (sender addresses, oldest first)."""
    rows = session.scalars(
        select(Message.sender)
        .where(Message.ticket_number == ticket_number, Message.kind == "agent-note")
        .order_by(Message.id)
    )
    return list(dict.fromkeys(r for r in rows if r))
