"""Queries the routing stage needs: customer facts, agent loads (and the `agent_loads`
counters they are read from), round-robin cursors.

SQL lives in the store; `pipeline/route.py` only decides what to do with the answers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, case, event, func, inspect, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from maildesk.domain import OPEN_STATUSES, Status
from maildesk.store.models import Agent, AgentLoad, Event, KeyValue, Message, Ticket
from maildesk.store.queries import (  # noqa: F401 - used here and by callers
    agent_by_email,
    core,
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

    Read from the `agent_loads` counters (0012; kept by `_keep_loads` at every flush), one
    primary-key look-up per member: the cost no longer follows the members' open tickets
    or the size of the table. The current ticket is taken off afterwards (from the session
    when it holds the ticket as stored, else by its primary key)."""
    loads = dict.fromkeys(members, 0)
    lowered = {m.lower(): m for m in members}
    rows = session.execute(
        select(AgentLoad.assignee, AgentLoad.open_tickets).where(AgentLoad.assignee.in_(list(lowered)))
    ).all()
    for name, count in rows:
        loads[lowered[str(name)]] = max(0, int(count))
    current = _stored_status_and_assignee(session, exclude_ticket)
    if current is not None and current[0] in OPEN_STATUSES and current[1] and current[1].lower() in lowered:
        member = lowered[current[1].lower()]
        loads[member] = max(0, loads[member] - 1)
    return loads


def _stored_status_and_assignee(session: Session, number: int) -> tuple[str, str | None] | None:
    """(status, assignee) of ticket `number` as flushed: the session's copy when it has one
    with no pending change (the route stage's pinned ticket), else one look-up by number."""
    held = session.identity_map.get(session.identity_key(Ticket, number))
    if held is not None:
        state = inspect(held)
        if not state.modified and not ({"status", "assignee"} & state.unloaded):
            return held.status, held.assignee
    row = session.execute(select(Ticket.status, Ticket.assignee).where(Ticket.number == number)).first()
    return (str(row[0]), row[1]) if row is not None else None


# The agent_loads counters ------------------------------------------------------------------
# One row per assignee (lower-case) with its open tickets. Every flush that adds, deletes or
# changes the status or assignee of a Ticket object adjusts them in the same transaction
# (`_keep_loads`), whoever made the change (`services.tickets`, tests, tools); on
# PostgreSQL the UPDATE's row lock orders concurrent nodes. The one Core UPDATE of tickets,
# `queries.close_from_history`, changes no load: it closes a ticket the import just created
# (stored with no assignee; the import runs no rules) or one already resolved or closed.


def _upsert_load(dialect: str) -> Any:
    """INSERT … ON CONFLICT (assignee) DO UPDATE: add :d to a counter, never below 0."""
    build = sqlite_insert if dialect == "sqlite" else pg_insert
    d = bindparam("d", type_=Integer)
    added = AgentLoad.open_tickets + d
    return (
        build(AgentLoad)
        .values(assignee=bindparam("a"), open_tickets=bindparam("start", type_=Integer))
        .on_conflict_do_update(index_elements=["assignee"], set_={"open_tickets": case((added < 0, 0), else_=added)})
    )


_UPSERT_LOAD = {name: _upsert_load(name) for name in ("sqlite", "postgresql")}


def _load_key(assignee: str | None) -> str | None:
    return assignee.lower() if assignee else None


def _add_delta(deltas: dict[str, int], assignee: str | None, is_open: bool, step: int) -> None:
    key = _load_key(assignee)
    if key is not None and is_open:
        deltas[key] = deltas.get(key, 0) + step


def _apply_loads(session: Session, deltas: dict[str, int]) -> None:
    """One statement for the counters that move (in address order: PostgreSQL row locks are
    then taken in one order by every node). Uses the session's connection without a flush:
    it runs inside one (`_keep_loads`)."""
    rows = [{"a": a, "d": d, "start": max(d, 0)} for a, d in sorted(deltas.items()) if d]
    if rows:
        conn = session.connection()
        conn.execute(_UPSERT_LOAD[conn.dialect.name], rows)


def adjust_load(
    session: Session, old_assignee: str | None, old_open: bool, new_assignee: str | None, new_open: bool
) -> None:
    """A ticket went from (`old_assignee`, open or not) to (`new_assignee`, open or not):
    move the counters; nothing when neither changed."""
    deltas: dict[str, int] = {}
    _add_delta(deltas, old_assignee, old_open, -1)
    _add_delta(deltas, new_assignee, new_open, +1)
    _apply_loads(session, deltas)


def _stored(session: Session, ticket: Ticket, state: Any) -> tuple[str | None, str | None]:
    """(status, assignee) of a persistent ticket before its pending changes. `active_history`
    on both columns keeps the replaced values; should one be unknown, the row still has it."""
    old: list[str | None] = []
    for name in ("status", "assignee"):
        hist = state.attrs[name].history
        if hist.deleted:
            old.append(hist.deleted[0])
        elif not hist.added:
            old.append(getattr(ticket, name))  # unchanged (loaded now if it was not)
        else:
            stmt = select(Ticket.status, Ticket.assignee).where(Ticket.number == ticket.number)
            status, assignee = session.connection().execute(stmt).one()
            return status, assignee
    return old[0], old[1]


@event.listens_for(Session, "before_flush")
def _keep_loads(session: Session, context: object, instances: object) -> None:
    if _AGENTS_MEMO in session.info and any(
        isinstance(o, Agent) for o in (*session.new, *session.dirty, *session.deleted)
    ):
        _forget_agents(session)
    deltas: dict[str, int] = {}
    for obj in session.new:
        if isinstance(obj, Ticket):
            _add_delta(deltas, obj.assignee, (obj.status or Status.NEW.value) in OPEN_STATUSES, +1)
    for obj in session.dirty:
        if isinstance(obj, Ticket):
            state = inspect(obj)
            if not (state.attrs.status.history.has_changes() or state.attrs.assignee.history.has_changes()):
                continue
            status, assignee = _stored(session, obj, state)
            _add_delta(deltas, assignee, status in OPEN_STATUSES, -1)
            _add_delta(deltas, obj.assignee, obj.status in OPEN_STATUSES, +1)
    for obj in session.deleted:
        if isinstance(obj, Ticket):
            status, assignee = _stored(session, obj, inspect(obj))
            _add_delta(deltas, assignee, status in OPEN_STATUSES, -1)
    _apply_loads(session, deltas)


def recount_agent_loads(session: Session, *, repair: bool = True) -> dict[str, tuple[int, int]]:
    """Compare the counters with a count of the open tickets; returns {assignee: (kept,
    counted)} where they differ and, with `repair`, sets them to the count. What migration
    0012 fills the table with. Not for a busy desk on PostgreSQL: a transaction that has
    changed tickets and not yet committed is in neither figure."""
    key = func.lower(Ticket.assignee)
    counted = {
        str(a): int(n)
        for a, n in core(session).execute(
            select(key, func.count())
            .where(Ticket.status.in_(OPEN_STATUSES), Ticket.assignee.is_not(None), Ticket.assignee != "")
            .group_by(key)
        )
    }
    kept = {str(a): int(n) for a, n in session.execute(select(AgentLoad.assignee, AgentLoad.open_tickets))}
    both = {a: (kept.get(a, 0), counted.get(a, 0)) for a in sorted(kept.keys() | counted.keys())}
    wrong = {a: pair for a, pair in both.items() if pair[0] != pair[1]}
    if repair and wrong:
        _apply_loads(session, {a: c - k for a, (k, c) in wrong.items()})
    return wrong


_AGENTS_MEMO = "maildesk.all_agents"


def all_agents(session: Session) -> list[Agent]:
    """Every agent. Remembered for the session's transaction (the worker routes a batch of
    50 in one: one read instead of one per assigned ticket); forgotten at its end and when
    an agent is written in this session (an added or deleted one not yet flushed is read
    again, as the query's autoflush would have shown it)."""
    memo = session.info.get(_AGENTS_MEMO)
    if memo is not None and not any(isinstance(o, Agent) for o in (*session.new, *session.deleted)):
        return list(memo)
    agents = list(session.scalars(select(Agent)))
    session.info[_AGENTS_MEMO] = agents
    return list(agents)


def _forget_agents(session: Session, *args: object) -> None:
    session.info.pop(_AGENTS_MEMO, None)


for _name in ("after_commit", "after_rollback", "after_soft_rollback"):
    event.listen(Session, _name, _forget_agents)


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
