"""Builders for Message rows that are not incoming mail: internal notes, by an agent or by
the rules. Direction, kind and `internal` are decided here once, for every caller.

A note is `Direction.OUT`: "in" means mail that *arrived* and is read that way across the
desk (dedupe and threading by Message-ID, the parent of an agent reply, the first inbound
mail, erasure renaming received Message-IDs, replay picking customer mail). A note never
arrived from anywhere; it was written at the desk, like a reply, so it is "out" — and
`internal=True` with kind `agent-note` keeps it from ever being mailed or shown to the
customer. (Before this module the rules wrote notes as "in" and the CLI as "out".)

Outgoing mail rows are built by `outbound.outbox` (they carry the rendered mail) and
incoming ones by the persist stage; neither lives here.

Must not: add the row to a session, flush, commit, or decide whether a note should exist.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from maildesk.domain import Direction, MessageKind
from maildesk.store.models import Message, Ticket
from maildesk.store.queries import mid_hash

RULES_SENDER = "maildesk"
RULES_SENDER_NAME = "maildesk rules"


def _note(
    ticket: Ticket, text: str, *, message_id: str, sender: str, sender_name: str, source: str, now: datetime
) -> Message:
    return Message(
        ticket_number=ticket.number,
        direction=Direction.OUT.value,
        kind=MessageKind.AGENT_NOTE.value,
        message_id=message_id,
        mid_hash=mid_hash(message_id),
        content_hash=hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest(),
        raw=None,
        raw_size=0,
        subject=ticket.subject,
        sender=sender,
        sender_name=sender_name,
        recipients=[],
        sent_at=now,
        created_at=now,
        source=source,
        full_text=text,
        visible_text=text,
        internal=True,
    )


def agent_note(ticket: Ticket, text: str, by: str, now: datetime, *, source: str = "cli") -> Message:
    """An internal note an agent wrote (a random Message-ID: every note is its own)."""
    mid = f"note-{secrets.token_hex(12)}@maildesk.invalid"
    return _note(ticket, text, message_id=mid, sender=by, sender_name="", source=source, now=now)


def rules_note(ticket: Ticket, text: str, now: datetime, *, message_pk: int | None, step: int) -> Message:
    """An internal note the rules wrote for the mail `message_pk` (step `step` of its
    decision); the Message-ID is derived from both, so the same decision gives the same id."""
    mid = f"rule-note-{message_pk}-{step}@maildesk.invalid"
    return _note(
        ticket, text, message_id=mid, sender=RULES_SENDER, sender_name=RULES_SENDER_NAME, source="rules", now=now
    )


__all__ = ["agent_note", "rules_note", "RULES_SENDER", "RULES_SENDER_NAME"]
