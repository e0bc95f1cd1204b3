"""Queries the routing stage needs: customer facts, agent loads, round-robin cursors.

SQL lives in the store; `pipeline/route.py` only decides what to do with the answers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from maildesk.domain import OPEN_STATUSES
from maildesk.store.models import Agent, Event, KeyValue, Message, Ticket
from maildesk.store.queries import (  # noqa: F401 - used here and by callers
    agent_by_email,
    customer_by_email,
    customer_id_vip,
    customer_tickets,
)


def customer_ticket_counts(
    session: Session, customer_id: int, exclude_ticket: int | None, before: datetime | None = None
) -> tuple[int, int]:
    """(all tickets, open tickets) of a customer, the current ticket excluded."""
    is_open = case((Ticket.status.in_(OPEN_STATUSES), 1), else_=0)
    stmt = (
        select(func.count(), func.coalesce(func.sum(is_open), 0))
        .select_from(Ticket)
        .where(Ticket.customer_id == customer_id)
    )
    if exclude_ticket is not None:
        stmt = stmt.where(Ticket.number != exclude_ticket)
    if before is not None:
        stmt = stmt.where(Ticket.created_at < before)
    tickets, open_tickets = session.execute(stmt).one()
    return int(tickets), int(open_tickets)


def reopened_from(session: Session, message_pk: int) -> str | None:
    """The status a ticket had before the message `message_pk` reopened it, if it did."""
    ev = session.scalars(
        select(Event).where(Event.message_pk == message_pk, Event.type == "reopened").order_by(Event.id)
    ).first()
    return str(ev.data.get("from")) if ev is not None and ev.data.get("from") else None


def open_loads(session: Session, members: Sequence[str], exclude_ticket: int) -> dict[str, int]:
    """Open tickets per agent (by address, case-insensitive), the current ticket excluded.

    Assignees are stored lower-case (`services.tickets.change_assignee`, migration 0010), so
    this is a count over index ranges of `ix_tickets_assignee_status`, `(assignee, status)`
    for each member and open status, read from the index alone: the cost follows the
    members' open tickets, not the size of the table. The current ticket is taken off
    afterwards (a `number != n` filter would need every row on PostgreSQL)."""
    loads = dict.fromkeys(members, 0)
    lowered = {m.lower(): m for m in members}
    rows = session.execute(
        select(Ticket.assignee, func.count())
        .where(Ticket.status.in_(OPEN_STATUSES), Ticket.assignee.in_(list(lowered)))
        .group_by(Ticket.assignee)
    ).all()
    for name, count in rows:
        loads[lowered[str(name)]] = int(count)
    current = session.execute(select(Ticket.status, Ticket.assignee).where(Ticket.number == exclude_ticket)).first()
    if current is not None and current[0] in OPEN_STATUSES and current[1] and current[1] in lowered:
        member = lowered[current[1]]
        loads[member] = max(0, loads[member] - 1)
    return loads


def all_agents(session: Session) -> list[Agent]:
    return list(session.scalars(select(Agent)))


def routing_events(session: Session, message_pk: int) -> list[Event]:
    """The `routed` and `ticket-created` events of one message, oldest first (rules replay)."""
    return list(
        session.scalars(
            select(Event)
            .where(Event.message_pk == message_pk, Event.type.in_(("routed", "ticket-created")))
            .order_by(Event.id)
        )
    )


def customer_mail_since(session: Session, since: datetime, limit: int | None) -> Iterator[Message]:
    """Incoming customer mail with a ticket since `since`, oldest first, streamed (rules replay)."""
    stmt = (
        select(Message)
        .where(
            Message.direction == "in",
            Message.kind == "customer",
            Message.ticket_number.is_not(None),
            Message.created_at >= since,
        )
        .order_by(Message.id)
    )
    if limit:
        stmt = stmt.limit(limit)
    yield from session.scalars(stmt.execution_options(yield_per=200))


def round_robin_last(session: Session, group: str) -> str | None:
    """The agent the group's round robin gave the last ticket to (row locked until commit)."""
    cursor = session.get(KeyValue, f"round_robin:{group}", with_for_update=True)
    return str(cursor.value.get("last")) if cursor is not None and cursor.value.get("last") else None


def set_round_robin_last(session: Session, group: str, agent: str) -> None:
    key = f"round_robin:{group}"
    cursor = session.get(KeyValue, key)
    if cursor is None:
        session.add(KeyValue(key=key, value={"last": agent}))
    else:
        cursor.value = {"last": agent}
