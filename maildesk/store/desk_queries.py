"""Queries behind the operator's desk commands: ticket lists, full-text search, loads,
customer data for export and erasure, retention.

Owns the SQL of `maildesk/services/tickets.py` (and the dialect differences: SQLite FTS5 vs
PostgreSQL tsvector, JSON tag tests). Functions take an open Session; the caller owns the
transaction. It must not decide anything: which rows to change and how is for the caller.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from maildesk.domain import OPEN_STATUSES
from maildesk.store.models import (
    Agent,
    Attachment,
    AutoSend,
    Customer,
    Event,
    Message,
    OutboxItem,
    Participant,
    SlaClock,
    Suppression,
    Ticket,
)
from maildesk.store.queries import agent_by_email, all_agents, customer_by_email  # noqa: F401 - used here and by callers

PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
SORTS = ("created", "updated", "priority", "number")

# PostgreSQL only: the generated tsvector column made by migrations 0002 and 0015 (not in models.py).
PG_SEARCH_VECTOR = "messages.search_vector"
# Our own automatic mail (acknowledgements quote the subject, notices, rule replies) is not
# what a person searches for: it is left out of the search, so a ticket ranks by its
# customer's and agents' words. Since migration 0015 the index does not hold it either
# (SQLite's triggers skip it, PostgreSQL's vector is NULL); the queries keep the filter, so a
# change of this list needs a migration like 0015 for the index, not for the answers.
SEARCH_EXCLUDED_KINDS = ("auto",)
_NOT_AUTO = "m.kind NOT IN (" + ", ".join(f"'{k}'" for k in SEARCH_EXCLUDED_KINDS) + ")"
_PG_VECTOR_M = "m.search_vector"  # PG_SEARCH_VECTOR on the alias `m`
# Private-use characters mark matches inside snippets (never ambiguous with text from mail).
SNIPPET_OPEN, SNIPPET_CLOSE = "\ue000", "\ue001"


def utc(value: datetime | None) -> datetime | None:
    """Datetimes read back from SQLite are naive; everything maildesk stores is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# Search ------------------------------------------------------------------------------------
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')


def fts5_query(user: str) -> str:
    """Turn what a person types (like PostgreSQL's websearch syntax) into a safe FTS5 query.

    Words are ANDed, "quoted phrases" stay phrases, `-word` excludes, `or` between terms
    means either. Every term is quoted, so FTS5 operators typed by the user are just words.
    Returns "" when nothing positive is left to search for.
    """
    groups: list[list[str]] = []
    negatives: list[str] = []
    pending_or = False
    for match in _TOKEN.finditer(user):
        neg, phrase, word = match.group(1), match.group(2), match.group(3)
        if word is not None:
            if word.lower() == "or" and groups:
                pending_or = True
                continue
            neg = "-" if word.startswith("-") and len(word) > 1 else ""
            phrase = word[1:] if neg else word
        assert phrase is not None
        term = phrase.replace('"', " ").strip()
        if not term or not re.search(r"\w", term):
            continue
        quoted = '"' + term + '"'
        if neg:
            negatives.append(quoted)
        elif pending_or:
            groups[-1].append(quoted)
        else:
            groups.append([quoted])
        pending_or = False
    if not groups:
        return ""
    query = " AND ".join("(" + " OR ".join(g) + ")" if len(g) > 1 else g[0] for g in groups)
    for n in negatives:
        query += f" NOT {n}"
    return query


@dataclass(frozen=True)
class SearchHit:
    ticket_number: int
    subject: str
    snippet: str
    rank: float  # larger is better, comparable only within one search
    message_pk: int

    @property
    def marked(self) -> str:
        """The snippet with matches between SNIPPET_OPEN and SNIPPET_CLOSE."""
        return self.snippet

    @property
    def text(self) -> str:
        """The snippet for people and JSON: matches in [brackets]."""
        return self.snippet.replace(SNIPPET_OPEN, "[").replace(SNIPPET_CLOSE, "]")


def search(session: Session, query: str, limit: int = 20) -> list[SearchHit]:
    """Tickets whose messages match `query`, best first; one hit (its best message) per ticket."""
    if _dialect(session) == "sqlite":
        match = fts5_query(query)
        if not match:
            return []
        best = session.execute(
            text(
                "WITH hits AS MATERIALIZED (SELECT rowid AS id, bm25(messages_fts, 4.0, 1.0) AS score"
                " FROM messages_fts WHERE messages_fts MATCH :q) "
                "SELECT m.ticket_number, m.id, MIN(hits.score) AS score "
                f"FROM hits JOIN messages m ON m.id = hits.id WHERE m.ticket_number IS NOT NULL AND {_NOT_AUTO} "
                "GROUP BY m.ticket_number ORDER BY score, m.ticket_number DESC LIMIT :limit"
            ),
            {"q": match, "limit": limit},
        ).all()
        rows = [(int(n), int(pk), -float(score)) for n, pk, score in best]
        snippets: dict[int, str] = {}
        if rows:
            stmt = text(
                "SELECT rowid, snippet(messages_fts, -1, :o, :c, '…', 16) FROM messages_fts "
                "WHERE messages_fts MATCH :q AND rowid IN :ids"
            ).bindparams(bindparam("ids", expanding=True))
            params = {"q": match, "o": SNIPPET_OPEN, "c": SNIPPET_CLOSE, "ids": [pk for _, pk, _ in rows]}
            snippets = {int(pk): str(s) for pk, s in session.execute(stmt, params)}
    else:
        if not query.strip():
            return []
        best = session.execute(
            text(
                "WITH hits AS ("
                f" SELECT m.id, m.ticket_number, ts_rank({_PG_VECTOR_M}, q.q) AS rank"
                " FROM messages m, websearch_to_tsquery('english'::regconfig, :q) AS q(q)"
                f" WHERE {_PG_VECTOR_M} @@ q.q AND m.ticket_number IS NOT NULL AND {_NOT_AUTO}),"
                " best AS (SELECT DISTINCT ON (ticket_number) ticket_number, id, rank FROM hits"
                " ORDER BY ticket_number, rank DESC)"
                " SELECT ticket_number, id, rank FROM best ORDER BY rank DESC, ticket_number DESC LIMIT :limit"
            ),
            {"q": query, "limit": limit},
        ).all()
        rows = [(int(n), int(pk), float(rank)) for n, pk, rank in best]
        snippets = {}
        if rows:
            stmt = text(
                "SELECT m.id, ts_headline('english'::regconfig,"
                " CASE WHEN m.visible_text = '' THEN m.subject ELSE m.visible_text END,"
                " websearch_to_tsquery('english'::regconfig, :q),"
                " 'StartSel="
                + SNIPPET_OPEN
                + ", StopSel="
                + SNIPPET_CLOSE
                + ", MaxWords=20, MinWords=8, MaxFragments=1')"
                " FROM messages m WHERE m.id IN :ids"
            ).bindparams(bindparam("ids", expanding=True))
            snippets = {int(pk): str(s) for pk, s in session.execute(stmt, {"q": query, "ids": [r[1] for r in rows]})}
    subjects = dict(
        session.execute(select(Ticket.number, Ticket.subject).where(Ticket.number.in_([r[0] for r in rows]))).all()
    )
    return [SearchHit(n, subjects.get(n, ""), " ".join(snippets.get(pk, "").split()), rank, pk) for n, pk, rank in rows]


def _matching_tickets(session: Session, query: str) -> ColumnElement[bool]:
    """A condition on Ticket.number: some message of the ticket matches the search."""
    if _dialect(session) == "sqlite":
        match = fts5_query(query) or '""'
        sub = text(
            "SELECT m.ticket_number FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
            f"WHERE messages_fts MATCH :text_q AND {_NOT_AUTO}"
        ).bindparams(text_q=match)
    else:
        sub = text(
            f"SELECT m.ticket_number FROM messages m WHERE {_PG_VECTOR_M} @@ "
            f"websearch_to_tsquery('english'::regconfig, :text_q) AND {_NOT_AUTO}"
        ).bindparams(text_q=query)
    return Ticket.number.in_(
        select(column("ticket_number", Integer)).select_from(sub.columns(column("ticket_number", Integer)).subquery())
    )


# Ticket lists ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TicketFilter:
    """What `tickets list` may filter and sort by. Empty tuples and None mean "any"."""

    statuses: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    assignee: str | None = None  # "none" means unassigned
    customer: str | None = None  # part of the customer's address, any case
    tag: str | None = None
    breaching: bool = False  # an SLA clock breached or overdue
    created_before: datetime | None = None
    text: str | None = None  # full-text match on any message
    sort: str = "number"
    desc: bool = False
    limit: int | None = 500


def _has_tag(session: Session, tag: str) -> ColumnElement[bool]:
    if _dialect(session) == "sqlite":
        return text("EXISTS (SELECT 1 FROM json_each(tickets.tags) AS jt WHERE jt.value = :tag_v)").bindparams(
            tag_v=tag
        )  # type: ignore[return-value]
    return text("CAST(tickets.tags AS jsonb) @> jsonb_build_array(CAST(:tag_v AS text))").bindparams(tag_v=tag)  # type: ignore[return-value]


def breaching_clock(now: datetime) -> ColumnElement[bool]:
    """A target clock (not a follow-up timer) that is not stopped and breached or overdue at `now`."""
    return and_(
        SlaClock.stopped_at.is_(None),
        SlaClock.kind.not_in(("followup", "autoresolve")),
        or_(
            SlaClock.breached_at.is_not(None),
            and_(SlaClock.due_at.is_not(None), SlaClock.paused_at.is_(None), SlaClock.due_at <= now),
        ),
    )


def list_tickets(session: Session, f: TicketFilter, now: datetime) -> list[Ticket]:
    stmt = select(Ticket).join(Customer, Customer.id == Ticket.customer_id)
    if f.statuses:
        stmt = stmt.where(Ticket.status.in_(f.statuses))
    if f.queues:
        stmt = stmt.where(Ticket.queue.in_(f.queues))
    if f.tiers:
        stmt = stmt.where(Ticket.tier.in_([t.upper() for t in f.tiers]))
    if f.priorities:
        stmt = stmt.where(Ticket.priority.in_(f.priorities))
    if f.assignee is not None:
        if f.assignee.lower() in ("none", "-", ""):
            stmt = stmt.where(Ticket.assignee.is_(None))
        else:
            stmt = stmt.where(Ticket.assignee == f.assignee.strip().lower())  # stored lower-case (0010)
    if f.customer:
        stmt = stmt.where(func.lower(Customer.email).contains(f.customer.lower(), autoescape=True))
    if f.tag:
        stmt = stmt.where(_has_tag(session, f.tag))
    if f.breaching:
        stmt = stmt.where(
            exists(select(SlaClock.id).where(SlaClock.ticket_number == Ticket.number, breaching_clock(now)))
        )
    if f.created_before is not None:
        stmt = stmt.where(Ticket.created_at < f.created_before)
    if f.text:
        stmt = stmt.where(_matching_tickets(session, f.text))
    key: Any = {
        "created": Ticket.created_at,
        "updated": Ticket.updated_at,
        "priority": case(PRIORITY_RANK, value=Ticket.priority, else_=1),
        "number": Ticket.number,
    }[f.sort]
    stmt = stmt.order_by(key.desc() if f.desc else key.asc(), Ticket.number.desc() if f.desc else Ticket.number.asc())
    if f.limit:
        stmt = stmt.limit(f.limit)
    return list(session.scalars(stmt).unique())


def clocks_for(session: Session, numbers: Sequence[int]) -> dict[int, list[SlaClock]]:
    out: dict[int, list[SlaClock]] = {n: [] for n in numbers}
    if not numbers:
        return out
    for clock in session.scalars(
        select(SlaClock).where(SlaClock.ticket_number.in_(list(numbers))).order_by(SlaClock.id)
    ):
        out[clock.ticket_number].append(clock)
    return out


def merged_into_this(session: Session, number: int) -> list[int]:
    return list(session.scalars(select(Ticket.number).where(Ticket.merged_into == number).order_by(Ticket.number)))


# Agents ------------------------------------------------------------------------------------
def agents(session: Session) -> list[Agent]:
    return all_agents(session)


def open_load(session: Session) -> list[tuple[str, str, int]]:
    """(assignee, tier, open tickets) for every assignee of an open ticket."""
    rows = session.execute(
        select(Ticket.assignee, Ticket.tier, func.count())
        .where(Ticket.status.in_(OPEN_STATUSES), Ticket.assignee.is_not(None))
        .group_by(Ticket.assignee, Ticket.tier)
    ).all()
    return [(str(a), str(t), int(c)) for a, t, c in rows]


# Customers ---------------------------------------------------------------------------------


def tickets_of_customer(session: Session, customer_id: int) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(Ticket.customer_id == customer_id).order_by(Ticket.number)))


def tickets_with_participant(session: Session, address: str) -> list[int]:
    return list(
        session.scalars(
            select(Participant.ticket_number).where(func.lower(Participant.address) == address.lower()).distinct()
        )
    )


def suppressions_for(session: Session, address: str) -> list[Suppression]:
    return list(session.scalars(select(Suppression).where(func.lower(Suppression.address) == address.lower())))


def messages_of(session: Session, numbers: Sequence[int], sender: str) -> list[Message]:
    """Messages on the given tickets plus every message sent by `sender`, oldest first."""
    cond = func.lower(Message.sender) == sender.lower()
    if numbers:
        cond = or_(Message.ticket_number.in_(list(numbers)), cond)
    return list(session.scalars(select(Message).where(cond).order_by(Message.created_at, Message.id)))


def participants_of(session: Session, numbers: Sequence[int], address: str) -> list[Participant]:
    cond = func.lower(Participant.address) == address.lower()
    if numbers:
        cond = or_(Participant.ticket_number.in_(list(numbers)), cond)
    return list(session.scalars(select(Participant).where(cond).order_by(Participant.ticket_number, Participant.id)))


def events_of(
    session: Session, numbers: Sequence[int], message_pks: Sequence[int], needles: Sequence[str]
) -> list[Event]:
    """Events on the tickets, on the messages, or whose data mentions any needle (any case)."""
    conds: list[ColumnElement[bool]] = []
    if numbers:
        conds.append(Event.ticket_number.in_(list(numbers)))
    if message_pks:
        conds.append(Event.message_pk.in_(list(message_pks)))
    for needle in needles:
        if needle:
            conds.append(func.lower(cast(Event.data, Text)).contains(needle.lower(), autoescape=True))
    if not conds:
        return []
    return list(session.scalars(select(Event).where(or_(*conds)).order_by(Event.at, Event.id)))


def messages_mentioning(session: Session, needle: str, exclude: Sequence[int]) -> list[Message]:
    """Other messages whose recipients or texts mention `needle` (an address)."""
    low = needle.lower()
    cond = or_(
        func.lower(cast(Message.recipients, Text)).contains(low, autoescape=True),
        func.lower(Message.full_text).contains(low, autoescape=True),
        func.lower(Message.visible_text).contains(low, autoescape=True),
        func.lower(Message.quoted_text).contains(low, autoescape=True),
    )
    stmt = select(Message).where(cond)
    if exclude:
        stmt = stmt.where(Message.id.not_in(list(exclude)))
    return list(session.scalars(stmt))


def forget_automatic(session: Session, address: str) -> int:
    """Drop the automatic-mail limit log of an address (erasure); returns how many rows went."""
    result = session.execute(delete(AutoSend).where(AutoSend.recipient == address.lower()))
    return int(getattr(result, "rowcount", 0) or 0)


def outbox_of(session: Session, numbers: Sequence[int], address: str) -> list[OutboxItem]:
    cond: ColumnElement[bool] = func.lower(cast(OutboxItem.recipients, Text)).contains(address.lower(), autoescape=True)
    if numbers:
        cond = or_(OutboxItem.ticket_number.in_(list(numbers)), cond)
    return list(session.scalars(select(OutboxItem).where(cond)))


# Retention ---------------------------------------------------------------------------------
def closed_before(session: Session, cutoff: datetime) -> list[int]:
    return list(
        session.scalars(
            select(Ticket.number).where(
                Ticket.status == "closed", Ticket.closed_at.is_not(None), Ticket.closed_at < cutoff
            )
        )
    )


def drop_stored_bytes(session: Session, numbers: Sequence[int]) -> dict[str, int]:
    """Remove raw mail and attachment data of the tickets' messages; counts what went."""
    if not numbers:
        return {"messages": 0, "raw_bytes": 0, "attachments": 0, "attachment_bytes": 0}
    nums = list(numbers)
    msg_ids = select(Message.id).where(Message.ticket_number.in_(nums))
    raw_count, raw_bytes = session.execute(
        select(func.count(), func.coalesce(func.sum(Message.raw_size), 0)).where(
            Message.ticket_number.in_(nums), Message.raw.is_not(None)
        )
    ).one()
    att_count, att_bytes = session.execute(
        select(func.count(), func.coalesce(func.sum(Attachment.size), 0)).where(
            Attachment.message_pk.in_(msg_ids), Attachment.data.is_not(None)
        )
    ).one()
    session.execute(
        update(Message).where(Message.ticket_number.in_(nums), Message.raw.is_not(None)).values(raw=None),
        execution_options={"synchronize_session": False},
    )
    session.execute(
        update(Attachment).where(Attachment.message_pk.in_(msg_ids), Attachment.data.is_not(None)).values(data=None),
        execution_options={"synchronize_session": False},
    )
    return {
        "messages": int(raw_count),
        "raw_bytes": int(raw_bytes),
        "attachments": int(att_count),
        "attachment_bytes": int(att_bytes),
    }


def tickets_with_stored_bytes(session: Session, numbers: Sequence[int]) -> list[int]:
    """Those of the tickets that still hold raw mail or attachment data."""
    if not numbers:
        return []
    nums = list(numbers)
    with_raw = select(Message.ticket_number).where(Message.ticket_number.in_(nums), Message.raw.is_not(None))
    with_att = (
        select(Message.ticket_number)
        .join(Attachment, Attachment.message_pk == Message.id)
        .where(Message.ticket_number.in_(nums), Attachment.data.is_not(None))
    )
    return sorted({int(n) for n in session.scalars(with_raw.union(with_att)) if n is not None})


# Erasure -----------------------------------------------------------------------------------
def prepare_erasure(session: Session) -> None:
    """SQLite: overwrite freed pages with zeros from now on in this connection, so erased
    data does not linger in the file. (PostgreSQL keeps old row versions until VACUUM.)"""
    if _dialect(session) == "sqlite":
        session.execute(text("PRAGMA secure_delete = ON"))


def compact_search_index(session: Session) -> None:
    """SQLite: merge the FTS5 index so deleted entries' tokens are really gone."""
    if _dialect(session) == "sqlite":
        session.execute(text("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')"))


# Agent mail --------------------------------------------------------------------------------
def latest_conversation_message(session: Session, number: int, exclude: int | None = None) -> int:
    """The id of the ticket's newest customer mail or sent agent reply (0: none); the
    sequence an agent's notification must not be older than (collision hold)."""
    conversation = or_(
        and_(Message.direction == "in", Message.kind == "customer"),
        and_(Message.direction == "out", Message.kind == "agent-reply"),
    )
    query = select(func.max(Message.id)).where(Message.ticket_number == number, conversation)
    if exclude is not None:
        query = query.where(Message.id != exclude)
    return int(session.scalar(query) or 0)


def conversation_since(session: Session, number: int, after: int, limit: int = 10) -> list[Message]:
    """Customer mail and sent agent replies on the ticket newer than message id `after`."""
    conversation = or_(
        and_(Message.direction == "in", Message.kind == "customer"),
        and_(Message.direction == "out", Message.kind == "agent-reply"),
    )
    return list(
        session.scalars(
            select(Message)
            .where(Message.ticket_number == number, Message.id > after, conversation)
            .order_by(Message.id)
            .limit(limit)
        )
    )


def ticket_events_of(session: Session, number: int, types: Sequence[str]) -> list[Event]:
    """The ticket's events of these types, oldest first."""
    return list(
        session.scalars(
            select(Event).where(Event.ticket_number == number, Event.type.in_(list(types))).order_by(Event.id)
        )
    )
