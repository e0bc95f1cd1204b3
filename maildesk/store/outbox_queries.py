"""Queries for the outbox: idempotency look-ups, automatic-mail counts, claiming due rows.

Owns the SQL behind `outbound/outbox.py` and `outbound/sender.py`. Functions take an open
Session; the caller owns the transaction. Claiming uses `FOR UPDATE SKIP LOCKED` on
PostgreSQL (several nodes share one outbox); SQLite has one writer, so the clause is
simply not rendered there.

It must not: decide whether mail may be sent (that is `rules/limits.py`), build or send
mail, or read the clock (`now` is passed in).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, case, delete, distinct, func, insert, literal_column, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from maildesk.store.fast import FastIn, FastStatement
from maildesk.store.models import (
    Agent,
    AutoSend,
    Customer,
    Event,
    Message,
    OutboxItem,
    SlaClock,
    Suppression,
    Ticket,
    email_domain,
)
from maildesk.store.notify import mark_outbox_queued
from maildesk.store.queries import (
    SuppressionFacts,
    agent_by_email,  # noqa: F401 - used here and by callers
    all_agents,
    attach_persistent,
    core,
    customer_tickets,  # noqa: F401 - the acknowledgement's "your other tickets"
    insert_message,
    mid_hash,
    suppression_in_force,
)
from maildesk.store.sla_queries import known_clockless


def item_by_key(session: Session, key: str) -> OutboxItem | None:
    return session.scalars(select(OutboxItem).where(OutboxItem.idempotency_key == key)).first()


_KEY_QUEUED = FastStatement(select(OutboxItem.id).where(OutboxItem.idempotency_key == bindparam("k")).limit(1))


def key_queued(session: Session, key: str) -> bool:
    """Whether a mail was queued under `key` (its unique index; no row is loaded)."""
    return _KEY_QUEUED.first(core(session), {"k": key[:200]}) is not None


def _insert_unless_key(dialect: str) -> Any:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, for this dialect."""
    build = sqlite_insert if dialect == "sqlite" else pg_insert
    return build(OutboxItem).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(OutboxItem.id)


_INSERT_OUTBOX = {
    name: FastStatement(
        _insert_unless_key(name), OutboxItem.__table__, [c.key for c in OutboxItem.__table__.c if c.key != "id"]
    )
    for name in ("sqlite", "postgresql")
}
_NEW_AUTO_SEND = FastStatement(
    insert(AutoSend), AutoSend.__table__, ["outbox_id", "recipient", "domain", "ticket_number", "at", "mail_first"]
)


def add_unless_queued(session: Session, key: str, item: dict[str, Any], message: dict[str, Any]) -> OutboxItem | None:
    """Add the outbox row and its Message row from their column values; None when `key` was
    queued before (also by a concurrent enqueue: the unique key refuses it, and `ON CONFLICT
    DO NOTHING` keeps the caller's transaction usable without a savepoint). Two Core
    INSERTs; the outbox row is returned as a persistent object with its id, holding the
    values given (the others load when read), as if the session had flushed it."""
    conn = core(session)
    new_id = _INSERT_OUTBOX[conn.dialect.name].scalar(conn, item)
    if new_id is None:
        return None
    row: OutboxItem = attach_persistent(session, OutboxItem, {**item, "id": new_id})
    insert_message(session, message)
    if row.state == "queued":
        mark_outbox_queued(session)  # wake the sender once this commits
    return row


_RECIPIENT_HOUR = select(func.count()).where(AutoSend.recipient == bindparam("r"), AutoSend.at >= bindparam("hour"))
_RECIPIENT_DAY = select(func.count()).where(AutoSend.recipient == bindparam("r"), AutoSend.at >= bindparam("day"))
_TICKET_DAY = select(func.count(distinct(AutoSend.outbox_id))).where(
    AutoSend.ticket_number == bindparam("t"), AutoSend.at >= bindparam("day")
)
_GLOBAL_HOUR = select(func.count()).where(AutoSend.mail_first == true(), AutoSend.at >= bindparam("hour"))
_AUTOMATIC_COUNTS = select(
    _RECIPIENT_HOUR.scalar_subquery(),
    _RECIPIENT_DAY.scalar_subquery(),
    _TICKET_DAY.scalar_subquery(),
    _GLOBAL_HOUR.scalar_subquery(),
)


def automatic_counts(
    session: Session, *, recipient: str, ticket_number: int | None, now: datetime
) -> tuple[int, int, int, int]:
    """Automatic mails queued or sent: (recipient last hour, recipient last 24 h, ticket last 24 h, all last hour).
    One statement over the indexed `auto_sends` log."""
    row = (
        core(session)
        .execute(
            _AUTOMATIC_COUNTS,
            {
                "r": recipient.lower(),
                "t": ticket_number if ticket_number is not None else -1,
                "hour": now - timedelta(hours=1),
                "day": now - timedelta(days=1),
            },
        )
        .one()
    )
    recipient_hour, recipient_day, ticket_day, global_hour = (int(v or 0) for v in row)
    return recipient_hour, recipient_day, ticket_day, global_hour


_KNOWN = select(func.count()).where(Customer.email == bindparam("r"), Customer.created_at < bindparam("hour"))
_DOMAIN_HOUR = select(func.count(distinct(AutoSend.outbox_id))).where(
    AutoSend.domain == bindparam("d"), AutoSend.at >= bindparam("hour")
)


def first_contact_counts(session: Session, *, recipient: str, now: datetime) -> tuple[bool, int]:
    """(was `recipient` a customer before the last hour, automatic mails to its domain in the
    last hour). The domain count reads the last hour of `auto_sends` only (its `at` index)."""
    recipient = recipient.lower()
    hour = now - timedelta(hours=1)
    if core(session).execute(_KNOWN, {"r": recipient, "hour": hour}).scalar():
        return True, 0
    return False, int(core(session).execute(_DOMAIN_HOUR, {"hour": hour, "d": email_domain(recipient)}).scalar() or 0)


_LIMIT_FACTS = select(
    _RECIPIENT_HOUR.scalar_subquery(),
    _RECIPIENT_DAY.scalar_subquery(),
    _TICKET_DAY.scalar_subquery(),
    _GLOBAL_HOUR.scalar_subquery(),
    _KNOWN.scalar_subquery(),
    _DOMAIN_HOUR.scalar_subquery(),
)


def limit_facts(
    session: Session, *, recipient: str, ticket_number: int | None, now: datetime
) -> tuple[tuple[int, int, int, int], tuple[bool, int]]:
    """`automatic_counts` and `first_contact_counts` in one statement (each automatic mail
    to a customer needs both)."""
    recipient = recipient.lower()
    hour = now - timedelta(hours=1)
    row = (
        core(session)
        .execute(
            _LIMIT_FACTS,
            {
                "r": recipient,
                "t": ticket_number if ticket_number is not None else -1,
                "hour": hour,
                "day": now - timedelta(days=1),
                "d": email_domain(recipient),
            },
        )
        .one()
    )
    rh, rd, td, gh, known, dh = (int(v or 0) for v in row)
    return (rh, rd, td, gh), (bool(known), 0 if known else dh)


_SUPPRESSED_REASON = select(Suppression.reason).where(Suppression.address == bindparam("r"))
_SUPPRESSED_UNTIL = select(Suppression.until).where(Suppression.address == bindparam("r"))
_SUPPRESSED = select(func.count()).where(Suppression.address == bindparam("r"))
# The hour's automatic mails, counted up to the global limit only: the decision needs no
# more (`count >= limit`), and the cost stays that of `cap` index entries, not of the hour.
# (`SELECT 1`, not the id: SQLite then counts the index entries 1.6x faster, measured at 1,000.)
_GLOBAL_HOUR_CAPPED = select(func.count()).select_from(
    select(literal_column("1").label("one"))
    .select_from(AutoSend)
    .where(AutoSend.mail_first == true(), AutoSend.at >= bindparam("hour"))
    .limit(bindparam("cap"))
    .subquery()
)


def _first_contact_only(count: Any) -> Any:
    """`count` for a first-contact recipient, 0 for a known customer (the limit does not apply)."""
    return case((_KNOWN.scalar_subquery() > 0, 0), else_=count.scalar_subquery())


_RECIPIENT_FACTS = FastStatement(
    select(
        _RECIPIENT_HOUR.scalar_subquery(),
        _RECIPIENT_DAY.scalar_subquery(),
        _TICKET_DAY.scalar_subquery(),
        _first_contact_only(_GLOBAL_HOUR_CAPPED),
        _KNOWN.scalar_subquery(),
        _first_contact_only(_DOMAIN_HOUR),
        _SUPPRESSED.scalar_subquery(),
        _SUPPRESSED_REASON.scalar_subquery(),
        _SUPPRESSED_UNTIL.scalar_subquery(),
    )
)


def recipient_facts(
    session: Session, *, recipient: str, ticket_number: int | None, now: datetime, global_cap: int
) -> tuple[SuppressionFacts | None, tuple[int, int, int, int], tuple[bool, int]]:
    """What an automatic mail to a customer needs to know, in one statement on the driver:
    the suppression in force (`q.is_suppressed`), and `limit_facts` — except that the
    hour's mails in all are counted up to `global_cap` (the global limit) only, and the
    global and domain counts only for a first-contact recipient (0 for a known one)."""
    recipient = recipient.lower()
    hour = now - timedelta(hours=1)
    row = _RECIPIENT_FACTS.first(
        core(session),
        {
            "r": recipient,
            "t": ticket_number if ticket_number is not None else -1,
            "hour": hour,
            "day": now - timedelta(days=1),
            "d": email_domain(recipient),
            "cap": max(0, global_cap),
        },
    )
    assert row is not None  # a SELECT of scalar subqueries has one row
    rh, rd, td, gh, known, dh = (int(v or 0) for v in row[:6])
    suppression = suppression_in_force(SuppressionFacts(recipient, row[7] or "", row[8]), now) if row[6] else None
    return suppression, (rh, rd, td, gh), (bool(known), 0 if known else dh)


def record_automatic(
    session: Session,
    outbox_id: int,
    recipients: Sequence[str],
    ticket_number: int | None,
    now: datetime,
    *,
    first: bool = True,
) -> None:
    """Log an automatic mail that was queued, once per recipient, for the limits. `first`:
    these are the mail's first rows (the first one is marked: the global count counts mails)."""
    rows = [
        {
            "outbox_id": outbox_id,
            "recipient": r.lower(),
            "domain": email_domain(r),
            "ticket_number": ticket_number,
            "at": now,
            "mail_first": first and i == 0,
        }
        for i, r in enumerate(dict.fromkeys(recipients))
    ]
    if rows:
        _NEW_AUTO_SEND.execute_many(core(session), rows)


def prune_automatic(session: Session, now: datetime) -> None:
    """The limits look back one day; older log rows are of no use."""
    session.execute(delete(AutoSend).where(AutoSend.at < now - timedelta(days=2)))


def held_automatic(session: Session, since: datetime) -> list[tuple[datetime, str]]:
    """`(created_at, reason)` of the automatic mails held by a limit since `since`."""
    stmt = select(OutboxItem.created_at, OutboxItem.last_error).where(
        OutboxItem.automatic.is_(True), OutboxItem.state == "held", OutboxItem.created_at >= since
    )
    return [(created, reason or "") for created, reason in session.execute(stmt)]


NEW_TICKET_HELD = "new-ticket-held"  # the event a message stored without a new ticket gets

_SENDER_TICKETS_HOUR = (
    select(func.count())
    .select_from(Ticket)
    .join(Customer, Customer.id == Ticket.customer_id)
    .where(Customer.email == bindparam("r"), Ticket.created_at >= bindparam("hour"))
)
# The domain's customers created in the hour (`ix_customers_domain_created_at`), then their
# tickets of the hour (`ix_tickets_customer_id`): the cost follows that domain's new
# customers, not every ticket of the hour (issue 17, migration 0011).
_DOMAIN_NEW_TICKETS_HOUR = (
    select(func.count())
    .select_from(Customer)
    .join(Ticket, Ticket.customer_id == Customer.id)
    .where(
        Customer.domain == bindparam("d"),
        Customer.created_at >= bindparam("hour"),
        Ticket.created_at >= bindparam("hour"),
    )
)


def new_ticket_counts(session: Session, *, sender: str, now: datetime) -> tuple[int, int, bool]:
    """(tickets `sender` opened in the last hour, tickets first-contact senders of its domain
    opened in the last hour, was `sender` a customer before the last hour). One statement;
    the domain count is 0 for a known sender (the domain limit never applies to one)."""
    sender = sender.lower()
    params = {"r": sender, "hour": now - timedelta(hours=1), "d": sender.rpartition("@")[2]}
    row = _NEW_TICKET_FACTS.first(core(session), params)
    sender_hour, known, domain_hour = (int(v or 0) for v in row or (0, 0, 0))
    return sender_hour, 0 if known else domain_hour, bool(known)


_NEW_TICKET_FACTS = FastStatement(  # once per new ticket: run on the driver's cursor (store/fast.py)
    select(
        _SENDER_TICKETS_HOUR.scalar_subquery(), _KNOWN.scalar_subquery(), _DOMAIN_NEW_TICKETS_HOUR.scalar_subquery()
    ),
    Customer.__table__,
)


def held_new_tickets(session: Session, since: datetime) -> list[tuple[datetime, str]]:
    """`(at, reason)` of the messages stored without a new ticket by a limit since `since`."""
    stmt = select(Event.at, Event.data).where(Event.type == NEW_TICKET_HELD, Event.at >= since)
    return [(at, str((data or {}).get("reason", ""))) for at, data in session.execute(stmt)]


_CLAIM_ROWS = FastStatement(
    select(
        OutboxItem.id,
        OutboxItem.raw,
        OutboxItem.sender,
        OutboxItem.recipients,
        OutboxItem.attempts,
        OutboxItem.ticket_number,
        OutboxItem.template,
        OutboxItem.message_id,
    )
    .where(OutboxItem.state == "queued", OutboxItem.next_try <= bindparam("now", type_=OutboxItem.next_try.type))
    .order_by(OutboxItem.next_try, OutboxItem.id)
    .limit(bindparam("n", type_=Integer))
    .with_for_update(skip_locked=True)
)
_TAKE_ROW = FastStatement(
    update(OutboxItem)
    .where(OutboxItem.id == bindparam("i", type_=Integer), OutboxItem.state == "queued")
    .values(
        state="sending",
        attempts=bindparam("a", type_=Integer),
        next_try=bindparam("until", type_=OutboxItem.next_try.type),
    )
)


def claim_due_rows(
    session: Session, now: datetime, limit: int, until: datetime
) -> list[tuple[int, bytes, str, list[str], int, int | None, str, str]]:
    """The sender's claim, on the driver: up to `limit` due queued rows, earliest first
    (`ix_outbox_state_next_try`, no sort), locked for this transaction on PostgreSQL (rows
    others hold are skipped), each set
    to `sending` with one more attempt and `next_try = until` (its lease). Returns `(id, raw,
    sender, recipients, attempts after this claim, ticket, template, Message-ID)`; no ORM
    object is made (the sender keeps a snapshot, outside any transaction, anyway)."""
    conn = core(session)
    rows = _CLAIM_ROWS.all(conn, {"now": now, "n": limit})
    if not rows:
        return []
    _TAKE_ROW.execute_many(conn, [{"i": row[0], "a": int(row[4] or 0) + 1, "until": until} for row in rows])
    return [
        (int(r[0]), bytes(r[1]), str(r[2]), list(r[3] or []), int(r[4] or 0) + 1, r[5], str(r[6]), str(r[7]))
        for r in rows
    ]


_SENDING_OF = FastIn(
    lambda n: select(OutboxItem.id, OutboxItem.message_id).where(
        OutboxItem.id.in_([bindparam(f"v{i}", type_=Integer) for i in range(n)]), OutboxItem.state == "sending"
    )
)
_SENT = FastStatement(
    update(OutboxItem)
    .where(OutboxItem.id == bindparam("i", type_=Integer), OutboxItem.state == "sending")
    .values(state="sent", sent_at=bindparam("at", type_=OutboxItem.sent_at.type), last_error="")
)


def mark_sent_many(session: Session, ids: Sequence[int], at: datetime) -> set[int]:
    """Record rows handed over for good: those of `ids` still in `sending` become `sent` at
    `at` (their outgoing Message rows get `sent_at`), without loading them. Returns the ids
    it marked; one that is not among them was changed meanwhile (taken back by `recover`
    after its lease ran out, or deleted)."""
    if not ids:
        return set()
    conn = core(session)
    found = _SENDING_OF.all(conn, list(ids))
    if found:
        _SENT.execute_many(conn, [{"i": row[0], "at": at} for row in found])
        _MESSAGE_SENT.execute_many(conn, [{"h": mid_hash(str(row[1])), "at": at} for row in found])
    return {int(row[0]) for row in found}


def load_outbox_rows(session: Session, ids: Sequence[int]) -> list[OutboxItem]:
    """The outbox rows with these ids, in one statement (they stay in the session's identity map)."""
    return list(session.scalars(select(OutboxItem).where(OutboxItem.id.in_(list(ids))))) if ids else []


def next_due(session: Session) -> datetime | None:
    """When the earliest queued row is due (None: nothing queued): how long the sender may sleep."""
    return session.scalar(select(func.min(OutboxItem.next_try)).where(OutboxItem.state == "queued"))


def stale_sending(session: Session, now: datetime) -> Sequence[OutboxItem]:
    """Rows left in `sending` whose lease (kept in next_try) has run out: their sender died."""
    stmt = (
        select(OutboxItem)
        .where(OutboxItem.state == "sending", OutboxItem.next_try <= now)
        .order_by(OutboxItem.id)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def items_by_state(session: Session, state: str, limit: int = 100) -> list[OutboxItem]:
    return list(
        session.scalars(select(OutboxItem).where(OutboxItem.state == state).order_by(OutboxItem.id).limit(limit))
    )


_MESSAGE_SENT = FastStatement(
    update(Message)
    .where(Message.mid_hash == bindparam("h"))
    .values(sent_at=bindparam("at", type_=Message.sent_at.type))
)


def mark_message_sent(session: Session, message_id: str, at: datetime) -> None:
    """Set `sent_at` of the outgoing Message row with this Message-ID (one UPDATE; the row
    and its bytes are not loaded)."""
    _MESSAGE_SENT.execute(core(session), {"h": mid_hash(message_id), "at": at})


def latest_inbound(session: Session, ticket_number: int) -> Message | None:
    """The newest mail a customer (not an agent or bounce) sent on the ticket."""
    return session.scalars(
        select(Message)
        .where(Message.ticket_number == ticket_number, Message.direction == "in", Message.kind == "customer")
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    ).first()


def first_inbound(session: Session, ticket_number: int) -> Message | None:
    return session.scalars(
        select(Message)
        .where(Message.ticket_number == ticket_number, Message.direction == "in")
        .order_by(Message.created_at, Message.id)
        .limit(1)
    ).first()


def agents_for_queue(session: Session, queue: str, limit: int = 5) -> list[Agent]:
    """Active agents serving `queue`; when none names it, all active agents (first `limit`)."""
    active = sorted((a for a in all_agents(session) if a.active), key=lambda a: a.id)
    serving = [a for a in active if queue in (a.queues or [])]
    return (serving or active)[:limit]


def sla_due(session: Session, ticket_number: int) -> dict[str, datetime]:
    """kind -> due_at of the running (not stopped) SLA clocks of a ticket (next_response also as next_update)."""
    if known_clockless(session, ticket_number):
        return {}
    rows = session.execute(
        select(SlaClock.kind, SlaClock.due_at).where(
            SlaClock.ticket_number == ticket_number, SlaClock.stopped_at.is_(None), SlaClock.due_at.is_not(None)
        )
    ).all()
    due = {kind: due for kind, due in rows if due is not None}
    if "next_response" in due:
        due["next_update"] = due["next_response"]
    return due


def customer(session: Session, customer_id: int) -> Customer | None:
    return session.get(Customer, customer_id)


def suppress(session: Session, address: str, reason: str, ticket_number: int | None, now: datetime) -> Suppression:
    """Suppress `address` for good (or refresh the reason of an existing suppression)."""
    address = address.lower()
    row = session.scalars(select(Suppression).where(Suppression.address == address)).first()
    if row is None:
        row = Suppression(address=address, reason=reason, ticket_number=ticket_number, created_at=now, until=None)
        session.add(row)
    else:
        row.reason, row.until, row.ticket_number = reason, None, ticket_number
    session.flush()
    return row


UNSENT_STATES = ("queued", "sending", "failed", "held")


def unsent_counts(session: Session) -> dict[str, int]:
    """Outbox rows per state that is not `sent` (the metrics endpoint; reads the state index,
    never the sent rows)."""
    rows = session.execute(
        select(OutboxItem.state, func.count()).where(OutboxItem.state.in_(UNSENT_STATES)).group_by(OutboxItem.state)
    ).all()
    found = {state: 0 for state in UNSENT_STATES}
    found.update({state: int(n) for state, n in rows})
    return found
