"""Queries and small writes used by the pipeline, CLI and reports.

Owns the SQL (ORM statements) so that callers never build queries themselves. Functions
take an open Session; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, event, func, insert, inspect, or_, select, true, update
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, class_mapper, make_transient_to_detached

from maildesk.domain import OPEN_STATUSES
from maildesk.language import LanguageGuess, replaces
from maildesk.store.fast import FastIn, FastStatement, as_stored, inline_in
from maildesk.store.models import (
    Agent,
    Attachment,
    Customer,
    Event,
    Message,
    OutboxItem,
    Participant,
    Suppression,
    Ticket,
    email_domain,
)
from maildesk.store.sla_queries import forget_clockless, mark_clockless


def mid_hash(message_id: str) -> str:
    return hashlib.sha256(message_id.strip().lower().encode("utf-8", "surrogateescape")).hexdigest()


def message_by_hash(session: Session, digest: str) -> Message | None:
    return session.scalars(select(Message).where(Message.mid_hash == digest)).first()


def message_by_id(session: Session, message_id: str) -> Message | None:
    return message_by_hash(session, mid_hash(message_id))


# Hot-path statements of the pipeline, built once and run on the session's DB-API
# connection (see store/fast.py): about a third of the cost of the same Core statement.
_FACTS = FastStatement(
    select(Message.id, Message.content_hash, Message.ticket_number).where(Message.mid_hash == bindparam("h")),
    Message.__table__,
)
_CUSTOMER = FastStatement(
    select(Customer.id, Customer.name, Customer.locale, Customer.locale_source).where(Customer.email == bindparam("e")),
    Customer.__table__,
)
_NEW_CUSTOMER = FastStatement(
    insert(Customer).returning(Customer.id),
    Customer.__table__,
    ["email", "domain", "name", "created_at", "locale", "locale_source"],
)
_TICKET_KEYS = [
    "subject",
    "status",
    "queue",
    "tier",
    "priority",
    "customer_id",
    "tags",
    "fields",
    "created_at",
    "updated_at",
    "thread_root",
]
_NEW_TICKET = FastStatement(insert(Ticket).returning(Ticket.number), Ticket.__table__, _TICKET_KEYS)
_MESSAGE_KEYS = [
    "ticket_number",
    "direction",
    "kind",
    "message_id",
    "mid_hash",
    "content_hash",
    "raw",
    "raw_size",
    "subject",
    "sender",
    "sender_name",
    "recipients",
    "sent_at",
    "created_at",
    "source",
    "full_text",
    "visible_text",
    "quoted_text",
    "signature",
    "html",
    "thread_root",
    "screen",
    "internal",
]
_NEW_MESSAGE = FastStatement(insert(Message).returning(Message.id), Message.__table__, _MESSAGE_KEYS)
_NEW_ATTACHMENT = FastStatement(
    insert(Attachment),
    Attachment.__table__,
    ["message_pk", "filename", "content_type", "size", "sha256", "content_id", "disposition", "data"],
)
_NEW_EVENT = FastStatement(insert(Event), Event.__table__, ["ticket_number", "type", "data", "at", "message_pk"])
_NEW_PARTICIPANT = FastStatement(insert(Participant), Participant.__table__, ["ticket_number", "address", "role"])
_TICKET_PARTICIPANTS = FastStatement(
    select(Participant.address).where(Participant.ticket_number == bindparam("n")), Participant.__table__
)


def core(session: Session) -> Connection:
    """The session's connection for Core statements, after flushing pending ORM changes
    so that Core reads see them and rows keep their order."""
    if session.dirty:
        _write_ticket_changes(session)
    session.flush()  # returns at once when nothing is pending
    return session.connection()


# Ticket columns whose changes `core()` writes itself: a rule's queue, tier, priority and tags,
# `updated_at`, fields, the ask state... (status and assignee go through the ORM flush: the
# agent-load counters are kept in its `before_flush` hook, `store.routing_queries`).
_DIRECT_TICKET_COLUMNS = frozenset(
    {"subject", "queue", "tier", "priority", "tags", "fields", "spam", "updated_at", "first_response_at"}
    | {"linked_to", "thread_root", "sla_choice", "ask"}
)
_TICKET_UPDATES: dict[frozenset[str], FastStatement] = {}
_WRITTEN_DIRECTLY = "maildesk.tickets_written_directly"


def _write_ticket_changes(session: Session) -> None:
    """Write changed tickets with one UPDATE each on the driver, instead of the unit of work
    (which cost about a millisecond per ticket, more than the rest of the flush); only when
    every changed attribute is a plain column of `_DIRECT_TICKET_COLUMNS`. The object is then
    clean, as after a flush. A rollback expires these objects (`_written_rolled_back`): a
    savepoint's rollback expires only what the unit of work wrote."""
    for obj in session.dirty:
        if type(obj) is not Ticket:
            continue
        state = inspect(obj)
        changed = frozenset(state.committed_state)
        if not changed or not changed <= _DIRECT_TICKET_COLUMNS or state.expired_attributes & changed:
            continue
        stmt = _TICKET_UPDATES.get(changed)
        if stmt is None:
            columns = sorted(changed)
            stmt = _TICKET_UPDATES[changed] = FastStatement(
                update(Ticket)
                .where(Ticket.number == bindparam("number_"))
                .values({c: bindparam(c, type_=Ticket.__table__.c[c].type) for c in columns}),
                Ticket.__table__,
            )
        values = {c: state.dict.get(c) for c in changed}
        values["number_"] = obj.number
        stmt.execute(session.connection(), values)
        state._commit_all(state.dict, session.identity_map)  # clean, as the unit of work leaves it
        session.info.setdefault(_WRITTEN_DIRECTLY, []).append(obj)
        memo = session.info.get(_CUSTOMER_TICKETS_MEMO)
        if memo is not None and memo[0][1] != obj.number:
            forget_customer_tickets(session)


def attach_persistent(session: Session, cls: type[Any], values: dict[str, Any]) -> Any:
    """A row just inserted (with its key among `values`) as a persistent object of the
    session, made as the ORM's loader makes one: no attribute events for values that are
    stored already, and no INSERT; attributes not in `values` load when read."""
    obj = class_mapper(cls).class_manager.new_instance()
    obj.__dict__.update(values)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


def _attach(session: Session, cls: type[Ticket] | type[Customer], conn: Connection, values: dict[str, Any]) -> None:
    """Make the row just inserted with `values` a persistent object of the session, as if
    it had been loaded (no SELECT when a stage asks for it next), unless one is there."""
    row = as_stored(conn, cls.__table__, values)
    if session.identity_key(cls, row["number" if cls is Ticket else "id"]) in session.identity_map:
        return
    session.info.setdefault(_PINNED, []).append(attach_persistent(session, cls, row))


def stored_facts(session: Session, message_id: str) -> tuple[int, str, int | None] | None:
    """(row id, content hash, ticket) of a stored message, without loading its bytes."""
    row = _FACTS.first(core(session), {"h": mid_hash(message_id)})
    return (row[0], row[1], row[2]) if row is not None else None


_TICKETS_FOR_HASHES = FastIn(
    lambda n: select(Message.mid_hash, Message.ticket_number).where(
        Message.mid_hash.in_([bindparam(f"v{i}", type_=Message.mid_hash.type) for i in range(n)])
    )
)


def tickets_for_message_ids(session: Session, ids: Sequence[str]) -> dict[str, int]:
    """Stored Message-ID (as given) -> ticket number, for incoming and outgoing mail."""
    if not ids:
        return {}
    by_hash = {mid_hash(i): i for i in ids}
    rows = _TICKETS_FOR_HASHES.all(core(session), list(by_hash))
    return {by_hash[h]: n for h, n in rows if n is not None}


def ticket_for_thread_root(session: Session, root: str) -> int | None:
    return session.scalars(
        select(Ticket.number).where(Ticket.thread_root == root).order_by(Ticket.number.desc()).limit(1)
    ).first()


def participants(session: Session, number: int) -> list[str]:
    return [str(a) for a in _TICKET_PARTICIPANTS.column(core(session), {"n": number})]


def participants_with_role(session: Session, number: int, role: str) -> list[str]:
    """The ticket's participant addresses of one role (`cc`, `customer`)."""
    return list(
        session.scalars(
            select(Participant.address).where(Participant.ticket_number == number, Participant.role == role)
        )
    )


_THREAD_FACTS = FastStatement(
    select(Ticket.number, Ticket.status, Ticket.closed_at, Ticket.resolved_at, Ticket.merged_into, Customer.email)
    .join(Customer, Customer.id == Ticket.customer_id)
    .where(Ticket.number == bindparam("n"))
)


def ticket_thread_facts(
    session: Session, number: int
) -> tuple[int, str, datetime | None, datetime | None, int | None, str] | None:
    """(number, status, closed_at, resolved_at, merged_into, customer email) for threading."""
    row = _THREAD_FACTS.first(core(session), {"n": number})
    return (row[0], row[1], row[2], row[3], row[4], row[5]) if row is not None else None


def warm_up(session: Session) -> None:
    """Touch the hot tables once so the mappers and the connection are set up."""
    session.execute(select(Ticket.number).limit(1)).all()
    session.execute(select(Message.id).limit(1)).all()


def customer_by_email(session: Session, email: str) -> Customer | None:
    return session.scalars(select(Customer).where(func.lower(Customer.email) == email.strip().lower())).first()


_CUSTOMER_KEY = FastStatement(
    select(Customer.id, Customer.vip).where(func.lower(Customer.email) == bindparam("e", type_=Customer.email.type))
)


def customer_id_vip(session: Session, email: str) -> tuple[int, bool] | None:
    """(id, VIP flag) of the customer with this address (case-insensitive), without an ORM load."""
    row = _CUSTOMER_KEY.first(core(session), {"e": email.strip().lower()})
    return (int(row[0]), bool(row[1])) if row is not None else None


@dataclass(frozen=True)
class CustomerTickets:
    """A customer's other tickets (one excluded: the current one), as routing rules and the
    templates see them: all, open, not open (past), and the newest open ones."""

    total: int
    open: int
    newest_open: tuple[tuple[int, str, str, datetime], ...]  # (number, subject, status, created_at)

    @property
    def past(self) -> int:
        return self.total - self.open


NEWEST_OPEN = 5
_OPEN = inline_in(Ticket.status, list(OPEN_STATUSES))
_OTHERS_COUNTS = (
    select(
        func.count().label("total"),
        func.coalesce(func.sum(case((_OPEN, 1), else_=0)), 0).label("open_n"),
    )
    .where(Ticket.customer_id == bindparam("c"), Ticket.number != bindparam("x", type_=Ticket.number.type))
    .subquery("counts")
)
_OTHERS_NEWEST = (
    select(Ticket.number, Ticket.subject, Ticket.status, Ticket.created_at)
    .where(Ticket.customer_id == bindparam("c"), Ticket.number != bindparam("x", type_=Ticket.number.type), _OPEN)
    .order_by(Ticket.created_at.desc(), Ticket.number.desc())
    .limit(NEWEST_OPEN)
    .subquery("newest")
)
_CUSTOMER_TICKETS = FastStatement(
    select(
        _OTHERS_COUNTS.c.total,
        _OTHERS_COUNTS.c.open_n,
        _OTHERS_NEWEST.c.number,
        _OTHERS_NEWEST.c.subject,
        _OTHERS_NEWEST.c.status,
        _OTHERS_NEWEST.c.created_at,
    )
    .select_from(_OTHERS_COUNTS.outerjoin(_OTHERS_NEWEST, true()))
    .order_by(_OTHERS_NEWEST.c.created_at.desc(), _OTHERS_NEWEST.c.number.desc())
)
_CUSTOMER_TICKETS_MEMO = "maildesk.customer_tickets"
# Customers inserted in this transaction that have no ticket yet (`insert_ticket` knows
# their first one has no others); forgotten at the transaction's end.
_TICKETLESS = "maildesk.ticketless_customers"


def customer_tickets(session: Session, customer_id: int, exclude: int) -> CustomerTickets:
    """The customer's tickets other than `exclude`, in one statement. Remembered for the
    session until a ticket other than `exclude` is written (the route stage and the
    acknowledgement of one message both ask; what they change is the excluded ticket)."""
    key = (customer_id, exclude)
    memo = session.info.get(_CUSTOMER_TICKETS_MEMO)
    if memo is not None and memo[0] == key:
        return memo[1]  # type: ignore[no-any-return]
    rows = _CUSTOMER_TICKETS.all(core(session), {"c": customer_id, "x": exclude})
    total, open_n = (int(rows[0][0] or 0), int(rows[0][1] or 0)) if rows else (0, 0)
    found = CustomerTickets(
        total=total,
        open=open_n,
        newest_open=tuple((r[2], r[3], r[4], r[5]) for r in rows if r[2] is not None),
    )
    session.info[_CUSTOMER_TICKETS_MEMO] = (key, found)
    return found


def forget_customer_tickets(session: Session) -> None:
    session.info.pop(_CUSTOMER_TICKETS_MEMO, None)


@event.listens_for(Session, "after_flush")
def _tickets_changed(session: Session, context: object) -> None:
    memo = session.info.get(_CUSTOMER_TICKETS_MEMO)
    if memo is None:
        return
    exclude = memo[0][1]
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Ticket) and obj.number != exclude:
            forget_customer_tickets(session)
            return


def agent_by_email(session: Session, email: str) -> Agent | None:
    return session.scalars(select(Agent).where(func.lower(Agent.email) == email.lower())).first()


def customer_id_for(session: Session, email: str, name: str, now: datetime) -> int:
    """The id of the customer with this address, created when new (Core: two statements
    at most; the name is filled in when it was unknown)."""
    return customer_for_mail(session, email, name, now, None)[0]


def customer_for_mail(
    session: Session, email: str, name: str, now: datetime, guess: LanguageGuess | None, *, create: bool = True
) -> tuple[int, bool]:
    """The sender's customer id (created when new; 0 when not there and not `create`) and
    whether `guess`, their language from this mail, was stored (`language.replaces`
    decides; an operator's locale never changes).

    The hot path: the one lookup `customer_id_for` makes anyway reads the locale too, a new
    customer is inserted with it, and only a real change costs a write."""
    conn = core(session)
    row = _CUSTOMER.first(conn, {"e": email})
    if row is None and not create:
        return 0, False
    if row is None:
        values = {
            "email": email,
            "domain": email_domain(email),  # explicit: a FastStatement runs no context-dependent default
            "name": name[:300],
            "created_at": now,
            "locale": "",
            "locale_source": "",
        }
        if guess is not None:
            values.update(locale=guess.locale[:20], locale_source=guess.stored_source)
        customer_id = int(_NEW_CUSTOMER.scalar(conn, values))
        _attach(session, Customer, conn, {**values, "id": customer_id})
        session.info.setdefault(_TICKETLESS, set()).add(customer_id)
        return customer_id, guess is not None
    changed = guess is not None and replaces(row[2] or "", row[3] or "", guess)
    if (name and not row[1]) or changed:
        customer = session.get(Customer, row[0])
        if customer is not None:
            if name and not row[1]:
                customer.name = name[:300]
            if changed and guess is not None:
                customer.locale, customer.locale_source = guess.locale[:20], guess.stored_source
    return int(row[0]), changed


def insert_ticket(
    session: Session, *, subject: str, customer_id: int, now: datetime, thread_root: str | None = None
) -> int:
    """Insert a new ticket (new, default queue, L1, normal); returns its number."""
    values = {
        "subject": subject[:2000],
        "status": "new",
        "queue": "default",
        "tier": "L1",
        "priority": "normal",
        "customer_id": customer_id,
        "tags": [],
        "fields": {},
        "created_at": now,
        "updated_at": now,
        "thread_root": thread_root,
    }
    conn = core(session)
    number = int(_NEW_TICKET.scalar(conn, values))
    _attach(session, Ticket, conn, {**values, "number": number})
    forget_customer_tickets(session)
    ticketless = session.info.get(_TICKETLESS)
    if ticketless is not None and customer_id in ticketless:
        # The first ticket of a customer made in this transaction: it has no other ticket,
        # so routing and the acknowledgement need not ask (one statement per new customer).
        ticketless.discard(customer_id)
        session.info[_CUSTOMER_TICKETS_MEMO] = ((customer_id, number), CustomerTickets(0, 0, ()))
    mark_clockless(session, number)  # so SLA hooks need not look for its clocks
    return number


def insert_message(session: Session, values: dict[str, Any], attachments: Sequence[dict[str, Any]] = ()) -> int:
    """Insert a message row and its attachments; returns the message's row id."""
    conn = core(session)
    pk = int(_NEW_MESSAGE.scalar(conn, values))
    if attachments:
        _NEW_ATTACHMENT.execute_many(conn, [{**att, "message_pk": pk} for att in attachments])
    return pk


def add_participants(
    session: Session, number: int, people: Sequence[tuple[str, str]], *, new_ticket: bool = False
) -> int:
    """Add (address, role) pairs to a ticket, skipping addresses already on it (the first
    role given for an address wins). One statement for a new ticket. Returns how many
    were added."""
    conn = core(session)
    known = set() if new_ticket else set(_TICKET_PARTICIPANTS.column(conn, {"n": number}))
    rows = []
    for address, role in people:
        if address not in known:
            known.add(address)
            rows.append({"ticket_number": number, "address": address, "role": role})
    if rows:
        _NEW_PARTICIPANT.execute_many(conn, rows)
    return len(rows)


def add_participant(session: Session, number: int, address: str, role: str) -> bool:
    """Add an address to a ticket unless it is already there. True when added."""
    return add_participants(session, number, [(address, role)]) == 1


_PENDING_EVENTS = "maildesk.pending_events"


def add_event(
    session: Session,
    ticket: int | None,
    type_: str,
    data: dict[str, Any],
    now: datetime,
    message_pk: int | None = None,
) -> None:
    """Record an event. Events are kept in the session and written together, in the order
    they were recorded, by one multi-row INSERT (`flush_events`): before the transaction
    commits, before any ORM statement that reads events, and by the worker after each
    message. A rollback forgets the ones not written yet."""
    row = {"ticket_number": ticket, "type": type_, "data": dict(data), "at": now, "message_pk": message_pk}
    session.info.setdefault(_PENDING_EVENTS, []).append(row)


def flush_events(session: Session) -> None:
    """Write the events recorded in this session and not written yet (one statement)."""
    rows = session.info.pop(_PENDING_EVENTS, None)
    if rows:  # executemany on the driver: 1.4-2x cheaper than Core's (bench/hot_statements_bench.py)
        _NEW_EVENT.execute_many(core(session), rows)


def discard_events(session: Session) -> None:
    """Forget the events recorded and not written yet (their work was rolled back)."""
    session.info.pop(_PENDING_EVENTS, None)


@event.listens_for(Session, "do_orm_execute")
def _events_before_reading_them(state: ORMExecuteState) -> None:
    if state.session.info.get(_PENDING_EVENTS) and any(m.class_ is Event for m in state.all_mappers):
        flush_events(state.session)


_PINNED = "maildesk.pinned"


@event.listens_for(Session, "loaded_as_persistent")
def _pin_tickets(session: Session, instance: object) -> None:
    """Keep loaded tickets and customers for the session's life. The identity map holds
    objects weakly, so each stage's `session.get(Ticket, n)` loaded the ticket again once
    the previous stage had let go of it (three loads per message)."""
    if isinstance(instance, Ticket | Customer):
        session.info.setdefault(_PINNED, []).append(instance)


_AGENTS = "maildesk.agents"


def all_agents(session: Session) -> list[Agent]:
    """Every agent, by e-mail address. Read once per session (the worker asked for them two
    to three times per message); a flush that adds, changes or deletes an agent, and a
    rollback, make the next call read them again."""
    known = session.info.get(_AGENTS)
    if known is not None and any(isinstance(o, Agent) for o in (*session.new, *session.deleted)):
        known = None  # an agent added or deleted and not flushed yet: the query's autoflush writes it
    if known is None:
        known = list(session.scalars(select(Agent).order_by(Agent.email)))
        session.info[_AGENTS] = known
    return list(known)


@event.listens_for(Session, "after_flush")
def _agents_changed(session: Session, context: object) -> None:
    if _AGENTS in session.info and any(isinstance(o, Agent) for o in (*session.new, *session.dirty, *session.deleted)):
        session.info.pop(_AGENTS, None)


@event.listens_for(Session, "before_commit")
def _events_before_commit(session: Session) -> None:
    flush_events(session)


@event.listens_for(Session, "after_commit")
def _written_committed(session: Session) -> None:
    session.info.pop(_WRITTEN_DIRECTLY, None)
    session.info.pop(_TICKETLESS, None)


@event.listens_for(Session, "after_soft_rollback")
def _written_rolled_back(session: Session, previous: SessionTransaction) -> None:
    for obj in session.info.pop(_WRITTEN_DIRECTLY, ()):
        if inspect(obj).persistent:
            session.expire(obj)  # read again: the database may hold the values from before


@event.listens_for(Session, "after_soft_rollback")
def _events_rolled_back(session: Session, previous: SessionTransaction) -> None:
    discard_events(session)  # a message run in a savepoint writes its events inside it: all pending are its own
    forget_clockless(session)
    forget_customer_tickets(session)
    session.info.pop(_TICKETLESS, None)  # a customer it made may be gone; another may have tickets
    session.info.pop(_AGENTS, None)


def events_for_ticket(session: Session, number: int) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.ticket_number == number).order_by(Event.at, Event.id)))


def events_for_message(session: Session, message_pk: int) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.message_pk == message_pk).order_by(Event.at, Event.id)))


def messages_for_ticket(session: Session, number: int) -> list[Message]:
    return list(
        session.scalars(select(Message).where(Message.ticket_number == number).order_by(Message.created_at, Message.id))
    )


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


@dataclass(frozen=True)
class SuppressionFacts:
    address: str
    reason: str
    until: datetime | None


_SUPPRESSION = FastStatement(
    select(Suppression.address, Suppression.reason, Suppression.until).where(Suppression.address == bindparam("a"))
)


def is_suppressed(session: Session, address: str, now: datetime) -> SuppressionFacts | None:
    """The suppression in force for `address` (columns only: this runs for every automatic mail)."""
    found = _SUPPRESSION.first(core(session), {"a": address.lower()})
    if found is None:
        return None
    return suppression_in_force(SuppressionFacts(found[0], found[1], found[2]), now)


def suppression_in_force(row: SuppressionFacts, now: datetime) -> SuppressionFacts | None:
    """`row` unless its `until` has passed."""
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


def close_from_history(session: Session, number: int, at: datetime, *, new: bool, agent_reply: bool) -> bool:
    """One UPDATE for `services.tickets.close_from_history`: closed (and resolved) as of the
    newest of `at` and the stored times, created at the oldest, first answered at the earliest
    agent reply. An existing ticket is changed only when it is resolved or closed. True when
    a row changed. (Times are UTC on both backends, so they compare as stored.)"""

    def later(column: Any) -> Any:
        return case((or_(column.is_(None), column < at), at), else_=column)

    values: dict[str, Any] = {
        "status": "closed",
        "created_at": case((Ticket.created_at > at, at), else_=Ticket.created_at),
        "resolved_at": at if new else later(Ticket.resolved_at),
        "closed_at": at if new else later(Ticket.closed_at),
        "updated_at": at if new else later(Ticket.closed_at),
    }
    if agent_reply:
        values["first_response_at"] = case(
            (or_(Ticket.first_response_at.is_(None), Ticket.first_response_at > at), at), else_=Ticket.first_response_at
        )
    stmt = update(Ticket).where(Ticket.number == number).values(values).execution_options(synchronize_session=False)
    if not new:
        stmt = stmt.where(Ticket.status.in_(("resolved", "closed")))
    result = core(session).execute(stmt)
    forget_customer_tickets(session)
    return bool(getattr(result, "rowcount", 0))
