"""What an operator can do to suppressions, templates and the outbox (`maildesk/commands/admin.py`).

Owns the semantics of each admin action: list and lift suppressions, check and preview
templates (with sample data or with a real ticket's curated context), list, show and retry
outbox rows. Every change records an Event saying who did what. Functions take an open
Session (the caller owns the transaction), the Settings and `now`; they return plain dicts
and dataclasses.

The real context for `templates preview --ticket N` is built from the same pieces the
respond stage uses (`Mailer`, `Mailer._inputs`, `Mailer.agent_input`,
`outbound.context.build_context`); sections only a particular flow fills (SLA, survey,
bounce, refusal, follow-up) come from the sample context and are named in the result.

Must not: print, know about Typer or Rich, read the clock, send mail, or build SQL beyond
the queries in `store/admin_queries.py` and `store/outbox_queries.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from email import policy as email_policy
from email.parser import BytesHeaderParser
from typing import Any

from maildesk.config import Settings
from maildesk.outbound.context import (
    AGENT_FACING,
    AgentInput,
    MessageInput,
    normalize_locale,
    sample_context,
)
from maildesk.outbound.mailer import Mailer
from maildesk.outbound.render import Rendered, RenderError, TemplateProblem, TemplateRenderer
from maildesk.services.tickets import OperationError
from maildesk.store import Session
from maildesk.store import admin_queries as aq
from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store.admin_queries import OUTBOX_STATES
from maildesk.store.models import Message, OutboxItem, Suppression, Ticket
from maildesk.threading import find_tag, format_tag, reply_subject

__all__ = ["OUTBOX_STATES", "OperationError", "Preview", "RETRYABLE_STATES"]

RETRYABLE_STATES = ("failed", "held")
# Sections of the context that only one flow fills; a ticket preview borrows them from the sample.
FLOW_SECTIONS = ("sla", "survey", "bounce", "refusal", "followup")
# Templates whose `message` is the agent's text, not the customer's latest mail.
AGENT_TEXT_TEMPLATES = frozenset({"agent_reply"})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _aware(value: datetime | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=now.tzinfo)


# Suppressions ------------------------------------------------------------------------------


def _suppression_json(row: Suppression, now: datetime) -> dict[str, Any]:
    until = _aware(row.until, now)
    return {
        "address": row.address,
        "reason": row.reason,
        "ticket": row.ticket_number,
        "created_at": _iso(_aware(row.created_at, now)),
        "until": _iso(until),
        "active": until is None or until >= now,
    }


def list_suppressions(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Every suppressed address (expired ones too, marked `active: false`)."""
    return [_suppression_json(row, now) for row in aq.suppressions(session, now, include_expired=True)]


def remove_suppression(session: Session, address: str, now: datetime, *, by: str) -> dict[str, Any]:
    """Lift the suppression of `address`; automatic mail may go to it again. Records an Event."""
    row = aq.suppression(session, address)
    if row is None:
        raise OperationError(f"{address.strip().lower()} is not suppressed")
    data = _suppression_json(row, now)
    session.delete(row)
    session.flush()
    q.add_event(
        session,
        row.ticket_number,
        "suppression-removed",
        {"address": row.address, "reason": row.reason, "suppressed_at": data["created_at"], "by": by},
        now,
    )
    return data


# Templates ---------------------------------------------------------------------------------


def renderer_for(settings: Settings) -> TemplateRenderer:
    """The renderer the desk's Mailer uses: site templates (if configured) over the built-in ones."""
    desk = settings.desk
    site = settings.resolve(desk.templates_dir) if desk.templates_dir else None
    return TemplateRenderer(site, default_locale=desk.locale, locales=desk.locales)


def check_templates(settings: Settings) -> list[TemplateProblem]:
    """Every built-in and site template compiled and rendered with sample data; the problems."""
    return renderer_for(settings).check()


def template_names(settings: Settings) -> list[str]:
    return sorted(renderer_for(settings).names())


@dataclass(frozen=True)
class Preview:
    name: str
    locale: str
    subject: str
    text: str
    html: str | None
    template_path: str
    source: str  # "sample" | "ticket <n>"
    sample_sections: tuple[str, ...] = ()  # context sections filled with sample data
    errors: tuple[str, ...] = ()  # broken site templates that fell back to the built-in one
    reader: str = ""  # who the mail is for (customer or agent address)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["sample_sections"] = list(self.sample_sections)
        data["errors"] = list(self.errors)
        return data


def _render(renderer: TemplateRenderer, name: str, ctx: dict[str, Any], queue: str | None) -> Rendered:
    names = renderer.names()
    if name not in names:
        raise OperationError(f"no template {name!r}; known: {', '.join(sorted(names))}")
    return renderer.render(name, ctx, locale=str(ctx["locale"]), queue=queue)


def preview_sample(settings: Settings, name: str, now: datetime, *, locale: str | None = None) -> Preview:
    """`name` rendered with the made-up sample context (every section filled)."""
    loc = normalize_locale(locale or settings.desk.locale, settings.desk.locale)
    ctx = sample_context(loc, template=name, now=now)
    rendered = _render(renderer_for(settings), name, ctx, None)
    return Preview(
        name,
        str(ctx["locale"]),
        rendered.subject,
        rendered.text,
        rendered.html,
        rendered.template_path,
        "sample",
        tuple(k for k in ctx if isinstance(ctx[k], dict)),
        rendered.errors,
        str((ctx.get("recipient") or {}).get("email", "")),
    )


def _message_input(row: Message | None) -> MessageInput | None:
    """The stored customer mail as the template sees it (visible text, sender, attachments)."""
    if row is None:
        return None
    return MessageInput(
        text=row.visible_text or row.full_text,
        sender_name=row.sender_name,
        sender_email=row.sender,
        received_at=row.created_at,
        attachment_names=tuple(a.filename for a in row.attachments),
    )


def _agents(session: Session, ticket: Ticket) -> AgentInput | None:
    if ticket.assignee:
        return Mailer.agent_input(oq.agent_by_email(session, ticket.assignee), ticket.assignee)
    serving = oq.agents_for_queue(session, ticket.queue or "default", 1)
    return Mailer.agent_input(serving[0]) if serving else None


def preview_ticket(
    session: Session, settings: Settings, name: str, ticket_number: int, now: datetime, *, locale: str | None = None
) -> Preview:
    """`name` rendered for ticket `ticket_number` with the curated context respond.py would build.

    The reader is the customer (for agent-facing templates: the assignee, else an agent of
    the ticket's queue). `locale` overrides the reader's language. Nothing is written.
    """
    ticket = session.get(Ticket, ticket_number)
    if ticket is None:
        raise OperationError(f"no ticket {ticket_number}")
    mailer = Mailer(settings)
    desk = settings.desk
    customer, tinput = mailer._inputs(session, ticket, now)
    sample = sample_context(
        normalize_locale(locale or customer.locale or desk.locale, desk.locale), template=name, now=now
    )
    notes: list[str] = []
    borrowed: list[str] = []
    agent = _agents(session, ticket)
    reader: AgentInput | None = None
    if name in AGENT_FACING:
        reader = agent or AgentInput(name="Agent", email=mailer.ticket_support_address(session, ticket_number))
        if agent is None:
            notes.append("no agent serves this queue: the reader is a placeholder agent")
    if locale:
        customer = replace(customer, locale=locale)
        reader = replace(reader, locale=locale) if reader is not None else None
    latest = oq.latest_inbound(session, ticket_number)
    message = None if name in AGENT_TEXT_TEMPLATES else _message_input(latest)
    sender = mailer.ticket_support_address(session, ticket_number)
    ctx = mailer.context(
        now=now,
        sender=sender,
        customer=customer,
        ticket=tinput,
        agent=agent if name in AGENT_TEXT_TEMPLATES else None,  # only an agent's reply names its agent
        message=message,
        recipient=reader,
    )
    if name in AGENT_TEXT_TEMPLATES:
        ctx["message"] = sample["message"]  # the agent's text is only known when they write it
        borrowed.append("message")
        if ctx["agent"] is None:
            ctx["agent"] = sample["agent"]
            borrowed.append("agent")
    try:
        rendered = _render(mailer.renderer, name, ctx, ticket.queue or None)
    except RenderError:
        # A template of one flow (SLA, survey, bounce, …) needs its section: borrow what is missing.
        for section in ("agent", "message", *FLOW_SECTIONS):
            if ctx[section] is None:
                ctx[section] = sample[section]
                borrowed.append(section)
        rendered = _render(mailer.renderer, name, ctx, ticket.queue or None)
    subject = rendered.subject
    if find_tag(desk.subject_tag, subject) != ticket_number:  # what Mailer.send does to every subject
        subject = (
            reply_subject(subject, desk.subject_tag, ticket_number)
            if latest is not None
            else f"{format_tag(desk.subject_tag, ticket_number)} {subject}"
        )
    return Preview(
        name,
        str(ctx["locale"]),
        subject,
        rendered.text,
        rendered.html,
        rendered.template_path,
        f"ticket {ticket_number}",
        tuple(borrowed),
        rendered.errors,
        str((ctx.get("recipient") or {}).get("email", "")),
        notes,
    )


# Outbox ------------------------------------------------------------------------------------


def _state(state: str | None) -> str | None:
    if state is None:
        return None
    value = state.strip().lower()
    if value not in OUTBOX_STATES:
        raise OperationError(f"unknown outbox state {state!r}; use one of {', '.join(OUTBOX_STATES)}")
    return value


def _subject(raw: bytes) -> str:
    headers = BytesHeaderParser(policy=email_policy.compat32).parsebytes(raw[:65536])
    return " ".join(str(headers.get("Subject", "")).split())


def _item_json(row: OutboxItem, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "ticket": row.ticket_number,
        "template": row.template,
        "recipients": list(row.recipients or []),
        "sender": row.sender,
        "subject": _subject(row.raw or b""),
        "automatic": bool(row.automatic),
        "attempts": row.attempts,
        "next_try": _iso(_aware(row.next_try, now)),
        "created_at": _iso(_aware(row.created_at, now)),
        "sent_at": _iso(_aware(row.sent_at, now)),
        "last_error": row.last_error or "",
        "message_id": row.message_id,
    }


def list_outbox(session: Session, now: datetime, *, state: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Outbox rows, newest first, optionally of one state."""
    return [_item_json(row, now) for row in aq.outbox_items(session, state=_state(state), limit=limit)]


def _item(session: Session, item_id: int) -> OutboxItem:
    row = aq.outbox_item(session, item_id)
    if row is None:
        raise OperationError(f"no outbox item {item_id}")
    return row


def show_outbox(session: Session, item_id: int, now: datetime) -> dict[str, Any]:
    """One outbox row: its state, attempts, last error, the mail's headers (unfolded) and its events."""
    row = _item(session, item_id)
    parsed = BytesHeaderParser(policy=email_policy.compat32).parsebytes(row.raw or b"")
    data = _item_json(row, now)
    data["headers"] = [[name, " ".join(str(value).split())] for name, value in parsed.items()]
    data["size"] = len(row.raw or b"")
    data["events"] = [
        {"type": e.type, "at": _iso(_aware(e.at, now)), "data": e.data} for e in aq.outbox_events(session, row)
    ]
    return data


def retry_outbox(session: Session, item_id: int, now: datetime, *, by: str) -> dict[str, Any]:
    """Put a failed or held mail back in the queue, due now, with a fresh set of attempts.

    A held mail retried this way goes out although it was over an automatic-mail limit: the
    operator decided so, and the event says it. A recipient that is still suppressed is
    refused: lift the suppression first.
    """
    row = _item(session, item_id)
    if row.state not in RETRYABLE_STATES:
        raise OperationError(f"outbox item {item_id} is {row.state}; only failed or held mail can be retried")
    for rcpt in row.recipients or []:
        blocked = q.is_suppressed(session, str(rcpt), now)
        if blocked is not None:
            raise OperationError(
                f"{blocked.address} is suppressed ({blocked.reason}); lift it first with "
                f"`maildesk suppressions remove {blocked.address}`"
            )
    data: dict[str, Any] = {
        "outbox_id": row.id,
        "template": row.template,
        "message_id": row.message_id,
        "previous_state": row.state,
        "previous_attempts": row.attempts,
        "previous_error": (row.last_error or "")[:500],
        "by": by,
    }
    if row.state == "held" and row.automatic:
        data["note"] = "released by an operator past the automatic-mail limits"
    row.state, row.next_try, row.attempts, row.last_error = "queued", now, 0, ""
    session.flush()
    q.add_event(session, row.ticket_number, "outbox-retried", data, now)
    return _item_json(row, now)
