"""The dedupe stage (first): a Message-ID already stored with the same content makes the
mail a duplicate, so a replay does nothing at all; the same id with other content is kept
under a synthetic id, never dropped.
"""

from __future__ import annotations

import hashlib

from maildesk.message import ParsedMessage, synthetic_message_id
from maildesk.pipeline.context import MessageContext, PipelineDeps, stage
from maildesk.store import Session
from maildesk.store import queries as q


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


def stored_content_hash(ctx: MessageContext) -> str:
    return ctx.pre.content_hash if ctx.pre is not None else content_hash(ctx.msg)


@stage()
def dedupe(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Exactly once: a Message-ID already stored with the same content is a duplicate;
    the same id with other content is kept under a synthetic id, never dropped."""
    msg = ctx.msg
    ctx.stored_message_id = msg.message_id
    existing = q.stored_facts(session, msg.message_id)
    if existing is None:
        return
    existing_id, existing_hash, existing_ticket = existing
    if existing_hash == stored_content_hash(ctx):
        ctx.duplicate = True
        ctx.outcome = "duplicate"
        if ctx.history:  # re-importing history adds nothing, not even an event
            return
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
