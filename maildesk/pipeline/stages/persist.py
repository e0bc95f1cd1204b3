"""The persist stage: the message (raw bytes, texts, HTML, attachments), its ticket and its
participants are written, with the events the earlier stages recorded.

Must not: decide anything about the mail (that happened before), send mail, or commit.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from maildesk.config import Settings
from maildesk.language import LanguageGuess, guess_language
from maildesk.message import ParsedMessage
from maildesk.pipeline.context import MessageContext, Needs, PipelineDeps, stage
from maildesk.pipeline.stages.dedupe import stored_content_hash
from maildesk.rules.limits import NewTicketCounts, NewTicketPolicy, check_new_ticket, hold_kind
from maildesk.sanitize import MAX_CLEAN_HTML_CHARS
from maildesk.store import Session
from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store.models import Ticket


def _customer_address(ctx: MessageContext) -> tuple[str, str]:
    msg = ctx.msg
    addr = msg.from_
    if addr is None:
        addr = msg.sender
    if addr is None:
        env = (ctx.meta.get("envelope") or {}).get("mail_from") or ""
        return (str(env).lower() or "unknown@invalid", "")
    return addr.email, addr.name


@stage(needs=Needs(language=True))
def persist(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Store the message (raw bytes, text, HTML, attachments), the ticket and participants.

    The hot path of every message: rows are written with prepared Core statements (see
    `store.queries`), about seven statements for a new ticket."""
    if ctx.duplicate or ctx.handled:
        return
    msg = ctx.msg
    settings = deps.settings
    now = ctx.now
    sender_email, sender_name = _customer_address(ctx)
    if msg.parts_capped:  # parts beyond message.MAX_PARTS are in the raw bytes only
        ctx.note("parts-capped", **msg.parts_capped)
    for report in msg.extra.get("tnef", ()):  # Outlook winmail.dat unpacked into its files
        ctx.note("tnef-unpacked" if not report.get("error") else "tnef-unreadable", **report)
    if msg.html_text_capped:  # text made from the head of the HTML only (message.MAX_HTML_TEXT_CHARS)
        ctx.note("html-text-capped", **msg.html_text_capped)
    if len(msg.html) > MAX_CLEAN_HTML_CHARS:  # the stored, cleaned HTML is its head only
        ctx.note("html-clean-capped", html_chars=len(msg.html), cleaned_chars=MAX_CLEAN_HTML_CHARS)
    ticket: Ticket | None = None
    if ctx.ticket_number is not None:
        ticket = session.get(Ticket, ctx.ticket_number)
    if ticket is None and not ctx.no_new_ticket and ctx.kind == "customer" and not ctx.history:
        held = _new_ticket_refused(session, deps, sender_email, now)
        if held:  # a flood: stored, but no ticket and so no acknowledgement (issue 16)
            ctx.no_new_ticket = True
            ctx.note(oq.NEW_TICKET_HELD, reason=held, limit=hold_kind(held), sender=sender_email)
    if ticket is None and ctx.no_new_ticket:
        _store_message(ctx, session, deps, None, sender_email, sender_name)
        ctx.outcome = f"{ctx.kind}-without-ticket"
        for type_, data in ctx.events:
            q.add_event(session, None, type_, data, now, ctx.message_pk)
        ctx.events.clear()
        return
    people: list[tuple[str, str]] = []
    guess = _guess(ctx, deps) if ctx.kind == "customer" else None
    locale_changed = False
    if ticket is None:
        customer_id, locale_changed = q.customer_for_mail(session, sender_email, sender_name, now, guess)
        number = q.insert_ticket(
            session, subject=msg.subject, customer_id=customer_id, now=now, thread_root=ctx.thread_root
        )
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
    if guess is not None and not ctx.new_ticket:  # a reply: their customer row was not read yet
        locale_changed = q.customer_for_mail(session, sender_email, sender_name, now, guess, create=False)[1]
    if guess is not None and locale_changed:
        found: dict[str, object] = {"customer": sender_email, "locale": guess.locale, "source": guess.source}
        if guess.source == "text":
            found["confidence"] = guess.confidence
        ctx.note("customer-locale", **found)
    for type_, data in ctx.events:
        q.add_event(session, number, type_, data, now, pk)
    ctx.events.clear()


def mail_language(msg: ParsedMessage, visible_text: str, settings: Settings) -> LanguageGuess | None:
    """The sender's language from this mail (headers, then its visible text) among `desk.locales`.

    Pure (no database): `pipeline/prepare.py` runs it in the preparation children."""
    return guess_language(
        content_language=msg.header("Content-Language"),
        accept_language=msg.header("Accept-Language"),
        text=visible_text,
        supported=settings.desk.locales,
    )


def _guess(ctx: MessageContext, deps: PipelineDeps) -> LanguageGuess | None:
    """The sender's language from this mail: prepared before the transaction, or here when
    preparation ran without it (or failed at it: the failure then shows under this stage)."""
    pre = ctx.pre
    if pre is not None and pre.language_done:
        return pre.language
    return mail_language(ctx.msg, ctx.visible_text or ctx.msg.text, deps.settings)


def _new_ticket_refused(session: Session, deps: PipelineDeps, sender: str, now: datetime) -> str:
    """Why `sender` may not open one more ticket now (`limits.new_tickets_*`), or ""."""
    limits = deps.settings.limits
    policy = NewTicketPolicy(limits.new_tickets_per_sender_hour, limits.new_tickets_per_domain_hour)
    if not policy.per_sender_hour and not policy.per_domain_hour:
        return ""
    sender_hour, domain_hour, known = oq.new_ticket_counts(session, sender=sender, now=now)
    decision = check_new_ticket(policy, NewTicketCounts(sender_hour, domain_hour, known), sender=sender)
    return "" if decision.allowed else decision.reason


def store_message(
    ctx: MessageContext, session: Session, deps: PipelineDeps, number: int | None, sender_email: str, sender_name: str
) -> int:
    """Write the message row (and attachments) as it is in `ctx`; its pk (also `ctx.message_pk`)."""
    return _store_message(ctx, session, deps, number, sender_email, sender_name)


def _store_message(
    ctx: MessageContext, session: Session, deps: PipelineDeps, number: int | None, sender_email: str, sender_name: str
) -> int:
    msg = ctx.msg
    if ctx.pre is not None:
        html = ctx.pre.html
    else:
        html = deps.sanitize_html(msg.html) if msg.html else ""
    message_id = ctx.stored_message_id or msg.message_id
    values = {
        "ticket_number": number,
        "direction": "in",
        "kind": ctx.kind,
        "message_id": message_id,
        "mid_hash": q.mid_hash(message_id),
        "content_hash": stored_content_hash(ctx),
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
        "screen": ctx.screen_verdict,
        "internal": ctx.internal,
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
