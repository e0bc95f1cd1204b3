"""Pipeline stages that run inside the one transaction of a message.

Each stage is a function `(ctx, session, deps) -> None` that reads the context, may write
through `store.queries`, and records its decisions as events. A stage that raises makes
the whole message roll back and go to failed/ with the stage's name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from maildesk.config import Settings
from maildesk.message import ParsedMessage, synthetic_message_id
from maildesk.pipeline.context import MessageContext
from maildesk.store import queries as q
from maildesk.store.models import Ticket


class Stage(Protocol):
    __name__: str

    def __call__(self, ctx: MessageContext, session: Session, deps: PipelineDeps) -> None: ...


@dataclass
class PipelineDeps:
    """What stages may use. Built by the composition root (app.py)."""

    settings: Settings
    extras: dict[str, Any] = field(default_factory=dict)


def content_hash(msg: ParsedMessage) -> str:
    """Hash of what makes two deliveries the same mail (trace headers excluded)."""
    raw = msg.raw
    cut = raw.find(b"\r\n\r\n")
    if cut < 0:
        cut = raw.find(b"\n\n")
    body = raw[cut:] if cut >= 0 else b""
    digest = hashlib.sha256()
    for name in ("From", "To", "Cc", "Subject", "Date", "In-Reply-To"):
        digest.update(msg.header(name).encode("utf-8", "surrogateescape") + b"\0")
    digest.update(body.replace(b"\r\n", b"\n").rstrip())
    return digest.hexdigest()


def _content_hash(ctx: MessageContext) -> str:
    return str(ctx.pre.content_hash) if ctx.pre is not None else content_hash(ctx.msg)


def dedupe(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Exactly once: a Message-ID already stored with the same content is a duplicate;
    the same id with other content is kept under a synthetic id, never dropped."""
    msg = ctx.msg
    ctx.stored_message_id = msg.message_id
    existing = q.stored_facts(session, msg.message_id)
    if existing is None:
        return
    existing_id, existing_hash, existing_ticket = existing
    if existing_hash == _content_hash(ctx):
        ctx.duplicate = True
        ctx.outcome = "duplicate"
        q.add_event(
            session,
            existing_ticket,
            "duplicate-delivery",
            {"message_id": msg.message_id, "source": ctx.meta.get("source", ""), "rcpt": ctx.envelope_recipients},
            ctx.now,
            existing_id,
        )
        return
    synthetic = synthetic_message_id(msg.raw)
    if q.stored_facts(session, synthetic) is not None:
        ctx.duplicate = True
        ctx.outcome = "duplicate"
        return
    ctx.stored_message_id = synthetic
    ctx.note(
        "message-id-collision",
        message_id=msg.message_id,
        stored_as=synthetic,
        other_message=existing_id,
        detail="another message with this Message-ID but different content is stored; kept under a synthetic id",
    )


def _customer_address(ctx: MessageContext) -> tuple[str, str]:
    msg = ctx.msg
    addr = msg.from_
    if addr is None:
        addr = msg.sender
    if addr is None:
        env = (ctx.meta.get("envelope") or {}).get("mail_from") or ""
        return (str(env).lower() or "unknown@invalid", "")
    return addr.email, addr.name


def persist(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Store the message (raw bytes, text, HTML, attachments), the ticket and participants.

    The hot path of every message: rows are written with prepared Core statements (see
    `store.queries`), about seven statements for a new ticket."""
    if ctx.duplicate:
        return
    msg = ctx.msg
    settings = deps.settings
    now = ctx.now
    sender_email, sender_name = _customer_address(ctx)
    ticket: Ticket | None = None
    if ctx.ticket_number is not None:
        ticket = session.get(Ticket, ctx.ticket_number)
    if ticket is None and ctx.no_new_ticket:
        _store_message(ctx, session, deps, None, sender_email, sender_name)
        ctx.outcome = f"{ctx.kind}-without-ticket"
        for type_, data in ctx.events:
            q.add_event(session, None, type_, data, now, ctx.message_pk)
        ctx.events.clear()
        return
    people: list[tuple[str, str]] = []
    if ticket is None:
        customer_id = q.customer_id_for(session, sender_email, sender_name, now)
        number = q.insert_ticket(session, {
            "subject": msg.subject[:2000],
            "status": "new",
            "queue": "default",
            "tier": "L1",
            "priority": "normal",
            "customer_id": customer_id,
            "tags": [],
            "fields": {},
            "created_at": now,
            "updated_at": now,
            "thread_root": ctx.thread_root,
        })
        ctx.new_ticket = True
        ctx.ticket_number = number
        ctx.outcome = "ticket-created"
        people.append((sender_email, "customer"))
    else:
        number = ticket.number
        ticket.updated_at = now
        ctx.outcome = ctx.outcome or "appended"
        if ctx.kind == "customer":
            people.append((sender_email, "customer"))
    if ctx.kind == "customer":
        for addr in msg.to + msg.cc:
            if not settings.is_support_address(addr.email) and addr.email != sender_email:
                people.append((addr.email, "cc"))
    if people:
        q.add_participants(session, number, people, new_ticket=ctx.new_ticket)
    pk = _store_message(ctx, session, deps, number, sender_email, sender_name)
    received = {
        "message_id": ctx.stored_message_id or msg.message_id,
        "from": sender_email,
        "subject": msg.subject[:300],
        "source": str(ctx.meta.get("source", ""))[:200],
        "size": len(msg.raw),
        "attachments": len(msg.attachments),
        "defects": list(msg.defects),
    }
    q.add_event(session, number, "ticket-created" if ctx.new_ticket else "message-received", received, now, pk)
    for type_, data in ctx.events:
        q.add_event(session, number, type_, data, now, pk)
    ctx.events.clear()


def _store_message(
    ctx: MessageContext, session: Session, deps: PipelineDeps, number: int | None, sender_email: str, sender_name: str
) -> int:
    msg = ctx.msg
    if ctx.pre is not None:
        html = ctx.pre.html
    else:
        sanitize = deps.extras.get("sanitize_html")
        html = sanitize(msg.html) if (sanitize and msg.html) else ""
    message_id = ctx.stored_message_id or msg.message_id
    values = {
        "ticket_number": number,
        "direction": "in",
        "kind": ctx.kind,
        "message_id": message_id,
        "mid_hash": q.mid_hash(message_id),
        "content_hash": _content_hash(ctx),
        "raw": msg.raw,
        "raw_size": len(msg.raw),
        "subject": msg.subject[:2000],
        "sender": sender_email,
        "sender_name": sender_name[:300],
        "recipients": [a.email for a in msg.to + msg.cc],
        "sent_at": msg.date,
        "created_at": ctx.now,
        "source": str(ctx.meta.get("source", ""))[:200],
        "full_text": msg.text,
        "visible_text": ctx.visible_text or msg.text,
        "quoted_text": ctx.quoted_text,
        "signature": ctx.signature,
        "html": html,
        "thread_root": None,
        "screen": getattr(ctx.screen, "verdict", "human") if ctx.screen is not None else "human",
        "internal": False,
    }
    attachments = [
        {
            "filename": att.filename,
            "content_type": att.content_type[:255],
            "size": att.size,
            "sha256": hashlib.sha256(att.payload).hexdigest(),
            "content_id": att.content_id[:255],
            "disposition": att.disposition[:30],
            "data": att.payload,
        }
        for att in msg.attachments
    ]
    ctx.message_pk = q.insert_message(session, values, attachments)
    return ctx.message_pk


DEFAULT_STAGES: tuple[Stage, ...] = (dedupe, persist)

