"""SQLAlchemy models: the tables maildesk keeps.

Owns the schema (changed only through Alembic migrations in `store/migrations/`). No
business decisions live here; other layers read and write through `store.db.Store` and the
query helpers in `store/queries.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    type_coerce,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.sql.elements import ColumnElement

from maildesk.domain import Priority, Status, Tier


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


TZDateTime = DateTime(timezone=True)


def email_domain(email: str) -> str:
    """`customers.domain` of an address: lower-case, the part after its last "@" ("" without one)."""
    return email.rpartition("@")[2].lower() if "@" in email else ""


def _domain_default(context: Any) -> str:
    """A Core INSERT that names no domain gets the one of its email."""
    return email_domain(context.get_current_parameters().get("email") or "")


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # 0011: kept with the email (`_email_sets_domain`; `queries._NEW_CUSTOMER` passes it): the
    # new-ticket limit counts a domain's new customers by `(domain, created_at)`
    domain: Mapped[str] = mapped_column(String(320), default=_domain_default, server_default="")
    name: Mapped[str] = mapped_column(String(300), default="")
    locale: Mapped[str] = mapped_column(String(20), default="")
    # Who set `locale`: "" (nobody: the desk default), "operator" (`customer set`: mail never
    # changes it), "header" (Content-Language / Accept-Language), "text" (detected).
    locale_source: Mapped[str] = mapped_column(String(16), default="", server_default="")
    tz: Mapped[str] = mapped_column(String(64), default="")
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(TZDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)

    __table_args__ = (
        Index("ix_customers_email_lower", func.lower(email)),  # 0010: customer_by_email
        Index("ix_customers_domain_created_at", "domain", "created_at"),  # 0011: new_ticket_counts
    )

    @validates("email")
    def _email_sets_domain(self, _key: str, email: str) -> str:
        self.domain = email_domain(email or "")
        return email


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    tiers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    queues: Mapped[list[Any]] = mapped_column(JSON, default=list)
    signature: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (Index("ix_agents_email_lower", func.lower(email)),)  # 0010: agent_by_email


class Ticket(Base):
    """A conversation. Its number is its primary key (stable, unique on every backend)."""

    __tablename__ = "tickets"
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    # active_history: a change knows the value it replaces (the agent_loads counters need it)
    status: Mapped[str] = mapped_column(String(16), default=Status.NEW.value, index=True, active_history=True)
    queue: Mapped[str] = mapped_column(String(100), default="default", index=True)
    tier: Mapped[str] = mapped_column(String(4), default=Tier.L1.value)
    priority: Mapped[str] = mapped_column(String(16), default=Priority.NORMAL.value)
    assignee: Mapped[str | None] = mapped_column(  # lower-case; indexes below
        String(320), nullable=True, active_history=True
    )
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    spam: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True, index=True)  # 0006
    closed_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)
    merged_into: Mapped[int | None] = mapped_column(Integer, nullable=True)
    linked_to: Mapped[int | None] = mapped_column(Integer, nullable=True)
    thread_root: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    sla_choice: Mapped[str | None] = mapped_column(String(64), nullable=True)  # a rule's `sla: NAME` (or "none")
    ask: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # 0007: a rule's `ask:` and its state

    customer: Mapped[Customer] = relationship(lazy="joined")

    __table_args__ = (  # 0006: the report's open backlog by queue and open tickets per assignee
        Index("ix_tickets_status_queue", "status", "queue"),
        Index("ix_tickets_status_assignee", "status", "assignee"),
        # 0010 (replaces the plain assignee index): least_loaded's count per agent, covering
        Index("ix_tickets_assignee_status", "assignee", "status"),
    )


class AgentLoad(Base):
    """Open tickets (status new, open or pending) per assignee (lower-case), kept by every
    flush that changes a ticket's status or assignee (`store.routing_queries`, 0012), so
    that `least_loaded` reads a few rows instead of counting the open tickets."""

    __tablename__ = "agent_loads"
    assignee: Mapped[str] = mapped_column(String(320), primary_key=True)
    open_tickets: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Message(Base):
    """One mail in or out. `raw` is kept as it came; everything else is derived from it."""

    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_number: Mapped[int | None] = mapped_column(ForeignKey("tickets.number"), index=True, nullable=True)
    direction: Mapped[str] = mapped_column(String(3))  # maildesk.domain.Direction
    kind: Mapped[str] = mapped_column(String(20))  # maildesk.domain.MessageKind
    message_id: Mapped[str] = mapped_column(String(998))
    mid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    raw_size: Mapped[int] = mapped_column(BigInteger, default=0)
    subject: Mapped[str] = mapped_column(Text, default="")
    sender: Mapped[str] = mapped_column(String(320), default="", index=True)
    sender_name: Mapped[str] = mapped_column(String(300), default="")
    recipients: Mapped[list[Any]] = mapped_column(JSON, default=list)
    sent_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime)
    source: Mapped[str] = mapped_column(String(200), default="")
    full_text: Mapped[str] = mapped_column(Text, default="")
    visible_text: Mapped[str] = mapped_column(Text, default="")
    quoted_text: Mapped[str] = mapped_column(Text, default="")
    signature: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")  # sanitised
    thread_root: Mapped[str | None] = mapped_column(String(64), nullable=True)
    screen: Mapped[str] = mapped_column(String(20), default="human")
    internal: Mapped[bool] = mapped_column(Boolean, default=False)

    attachments: Mapped[list[Attachment]] = relationship(back_populates="message", lazy="selectin")

    # No index on `message_id`: every look-up by Message-ID goes through `mid_hash` (unique);
    # 0016 dropped the one 0001 made.


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[str] = mapped_column(String(255), default="")
    disposition: Mapped[str] = mapped_column(String(30), default="")
    data: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    message: Mapped[Message] = relationship(back_populates="attachments")


class Participant(Base):
    __tablename__ = "participants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_number: Mapped[int] = mapped_column(ForeignKey("tickets.number"), index=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    role: Mapped[str] = mapped_column(String(20))  # customer | cc | agent
    __table_args__ = (UniqueConstraint("ticket_number", "address", name="uq_participant"),)


class Event(Base):
    """Something maildesk decided or did, with why. The audit trail behind `explain`."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_number: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    message_pk: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    type: Mapped[str] = mapped_column(String(50))  # found through ix_events_type_at (0016 dropped ix_events_type)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(TZDateTime, index=True)

    __table_args__ = (Index("ix_events_type_at", "type", "at"),)  # 0006: the report's replies per period


class OutboxItem(Base):
    """One outgoing mail. Written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    ticket_number: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    message_id: Mapped[str] = mapped_column(String(998))
    template: Mapped[str] = mapped_column(String(100), default="")
    sender: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[Any]] = mapped_column(JSON, default=list)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # queued|sending|sent|failed|held
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_try: Mapped[datetime] = mapped_column(TZDateTime, index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(TZDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)

    # 0014: the sender's next due row is the first entry of the `queued` range (no sort)
    __table_args__ = (Index("ix_outbox_state_next_try", "state", "next_try", "id"),)


class AutoSend(Base):
    """One automatic mail queued for one recipient: what the loop limits count. Indexed by
    recipient and time, so a limit check reads a few index entries, where counting the
    outbox's JSON recipient lists meant scanning every automatic row of the last day."""

    __tablename__ = "auto_sends"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(Integer)
    recipient: Mapped[str] = mapped_column(String(320))
    ticket_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    at: Mapped[datetime] = mapped_column(TZDateTime)
    # 0013: `email_domain(recipient)`, for the per-domain limit (a LIKE '%@domain' read the hour)
    domain: Mapped[str] = mapped_column(String(320), default="", server_default="")
    # 0013: true on one row of each mail, so the global hourly count needs no DISTINCT
    mail_first: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    __table_args__ = (
        Index("ix_auto_sends_recipient_at", "recipient", "at"),
        Index("ix_auto_sends_domain_at", "domain", "at"),
        Index("ix_auto_sends_first_at", "mail_first", "at"),
        Index("ix_auto_sends_ticket_at", "ticket_number", "at"),
        Index("ix_auto_sends_at", "at"),
    )


class SlaClock(Base):
    """One SLA clock of a ticket: the stored form of `sla.clocks.ClockState` (one row per kind).

    `next_at` is when the sweep must next look at the clock (its warning, breach or timer),
    None when nothing is pending; the sweep reads only rows whose `next_at` has come, through
    a partial index, so its cost follows the due clocks, not the stored tickets."""

    __tablename__ = "sla_clocks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_number: Mapped[int] = mapped_column(ForeignKey("tickets.number"), index=True)
    kind: Mapped[str] = mapped_column(
        String(30)
    )  # first_response | next_response | resolution | followup | autoresolve
    policy: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime] = mapped_column(TZDateTime)
    due_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True, index=True)
    warn_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)
    paused_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)
    resumed_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)
    paused_total: Mapped[float] = mapped_column(Float, default=0.0)  # seconds of business time paused
    counted: Mapped[float] = mapped_column(Float, default=0.0)  # seconds counted before resumed_at
    warned_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)
    breached_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)
    stop_reason: Mapped[str] = mapped_column(String(20), default="")
    next_at: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)
    __table_args__ = (
        UniqueConstraint("ticket_number", "kind", name="uq_sla_clock"),
        Index(
            "ix_sla_clocks_next_at",
            "next_at",
            postgresql_where=text("next_at IS NOT NULL"),
            sqlite_where=text("next_at IS NOT NULL"),
        ),
    )

    @hybrid_property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    @stopped.inplace.expression
    @classmethod
    def _stopped_expression(cls) -> ColumnElement[bool]:
        return type_coerce(cls.stopped_at.is_not(None), Boolean)

    @property
    def warned(self) -> bool:
        return self.warned_at is not None

    @property
    def breached(self) -> bool:
        return self.breached_at is not None


class Suppression(Base):
    __tablename__ = "suppressions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    ticket_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime)
    until: Mapped[datetime | None] = mapped_column(TZDateTime, nullable=True)


class KeyValue(Base):
    """Small persistent state (rule round-robin cursors, schema facts)."""

    __tablename__ = "kv"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ImapLease(Base):
    """Which node polls an IMAP mailbox (several nodes on one PostgreSQL): the holder renews
    `expires_at`; another node takes the row over once it has expired (migration 0008)."""

    __tablename__ = "imap_leases"
    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(TZDateTime)
    acquired_at: Mapped[datetime] = mapped_column(TZDateTime)


class ImapProgress(Base):
    """Per mailbox folder: the UIDVALIDITY and the highest UID taken (shared by the nodes, so
    the node that takes a lease over goes on where the holder stopped; migration 0008)."""

    __tablename__ = "imap_progress"
    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    folder: Mapped[str] = mapped_column(String(500), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, default=0)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    fetched: Mapped[int] = mapped_column(BigInteger, default=0)
