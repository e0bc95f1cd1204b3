"""The threading stage: which ticket an incoming message belongs to, and the visible text.

Adapts the store to the pure `maildesk.threading` decision (a `ThreadLookup` backed by
indexed queries, so the cost does not grow with history) and records the decision as an
event on the ticket. The decision itself lives in `maildesk.threading.decide`; what it
changes on the ticket (reopen, pending -> open) goes through `services.tickets`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from maildesk.config import Settings
from maildesk.domain import CLOSED_STATUSES, Status
from maildesk.message import ParsedMessage
from maildesk.pipeline.context import MessageContext, Needs, PipelineDeps, stage
from maildesk.services import sla, tickets
from maildesk.store import Session
from maildesk.store import queries as q
from maildesk.store.models import Ticket
from maildesk.threading import (
    ThreadDecision,
    ThreadInput,
    TicketFacts,
    decide_thread,
    find_tag,
    normalize_subject,
    thread_index_root,
)
from maildesk.threading.quotes import MAX_SPLIT_CHARS, split_reply


class StoreThreadLookup:
    """ThreadLookup over the database (each call is one indexed query).

    `history`: for `import --history`, where every ticket of the import is closed as it is
    stored, a closed ticket is offered as open: old mail follows its thread whatever the
    gap, and nothing is reopened."""

    def __init__(self, session: Session, *, history: bool = False) -> None:
        self.session = session
        self.history = history

    def tickets_for_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
        return q.tickets_for_message_ids(self.session, ids)

    def ticket(self, number: int) -> TicketFacts | None:
        row = q.ticket_thread_facts(self.session, number)
        if row is None:
            return None
        number_, status, closed_at, resolved_at, merged_into, email = row
        if self.history and status in CLOSED_STATUSES:
            status, closed_at, resolved_at = Status.OPEN.value, None, None
        return TicketFacts(
            number=number_,
            status=status,
            participants=frozenset(q.participants(self.session, number_)),
            customer_domain=email.rpartition("@")[2],
            closed_at=closed_at or resolved_at,
            merged_into=merged_into,
        )

    def ticket_for_thread_index(self, root: str) -> int | None:
        return q.ticket_for_thread_root(self.session, root)


def thread_input(msg: ParsedMessage, ctx: MessageContext) -> ThreadInput:
    sender = msg.from_.email if msg.from_ else (msg.sender.email if msg.sender else "")
    recipients = tuple(a.email for a in msg.to + msg.cc) + tuple(ctx.envelope_recipients)
    return ThreadInput(
        message_id=msg.message_id,
        sender=sender,
        recipients=tuple(dict.fromkeys(recipients)),
        subject=msg.subject,
        in_reply_to=msg.in_reply_to,
        references=msg.references,
        now=ctx.now,
        thread_index=msg.header("Thread-Index"),
        thread_topic=msg.header("Thread-Topic"),
    )


def decide(msg: ParsedMessage, ctx: MessageContext, lookup: Any, settings: Settings) -> ThreadDecision:
    return decide_thread(
        thread_input(msg, ctx),
        lookup,
        secret=settings.secret,
        tag_format=settings.desk.subject_tag,
        reopen_days=settings.desk.reopen_days,
    )


@stage(needs=Needs(reply=True))
def visible_text(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Separate what the person wrote from quoted history and signature."""
    if ctx.duplicate:
        return
    pre = ctx.pre
    reply = pre.reply if pre is not None and pre.reply is not None else split_reply(ctx.msg.text, ctx.msg.html)
    ctx.visible_text, ctx.quoted_text, ctx.signature = reply.visible, reply.quoted, reply.signature
    if reply.capped:
        ctx.note("visible-text-capped", chars=reply.capped, split=MAX_SPLIT_CHARS)


@stage()
def thread(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Decide the ticket; record why as an event (written by persist)."""
    if ctx.duplicate or ctx.thread_locked or ctx.handled:
        return
    decision = decide(ctx.msg, ctx, StoreThreadLookup(session, history=ctx.history), deps.settings)
    ctx.thread = decision
    ctx.ticket_number = decision.ticket
    ctx.thread_root = thread_index_root(ctx.msg.header("Thread-Index")) if ctx.msg.header("Thread-Index") else None
    ctx.note(
        "threaded",
        method=decision.method,
        detail=decision.detail,
        refused=list(decision.refused),
        reopen=decision.reopen,
        linked_to=decision.linked_to,
    )


@stage()
def apply_thread_outcome(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """After persist: reopen a resolved/closed ticket, or link a new one to the old."""
    decision: ThreadDecision | None = ctx.thread
    if ctx.duplicate or ctx.handled or decision is None or ctx.ticket_number is None:
        return
    ticket = session.get(Ticket, ctx.ticket_number)
    if ticket is None:
        return
    if ctx.kind != "customer":
        return  # automatic mail is recorded on its ticket without reopening it
    who: dict[str, Any] = {"by": "customer", "via": tickets.VIA_THREAD, "now": ctx.now, "message_pk": ctx.message_pk}
    if decision.reopen and ticket.status in CLOSED_STATUSES:
        reason = "customer replied within the reopen window"
        tickets.change_status(session, ticket, Status.OPEN, reason=reason, event="reopened", **who)
    elif not ctx.new_ticket and ticket.status == Status.PENDING:
        tickets.change_status(session, ticket, Status.OPEN, reason="customer replied", **who)
    sla.on_customer_message(session, ticket, ctx.now)  # starts, resumes or follows up the SLA clocks
    if decision.linked_to is not None and ctx.new_ticket:
        ticket.linked_to = decision.linked_to
        q.add_event(
            session,
            decision.linked_to,
            "linked",
            {"new_ticket": ticket.number, "reason": "reply after the reopen window"},
            ctx.now,
        )


def describe_threading(
    msg: ParsedMessage, settings: Settings, store: Any = None, no_history: str = "no database given"
) -> dict[str, Any]:
    """`maildesk parse` additions: visible text and the threading evidence, decided against
    the database when `store` (a migrated `Store`, read only) is given; else without history,
    and the output says why (`history`) instead of calling a ticket missing."""

    class _NoHistory:
        def tickets_for_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
            return {}

        def ticket(self, number: int) -> TicketFacts | None:
            return None

        def ticket_for_thread_index(self, root: str) -> int | None:
            return None

    ctx = MessageContext(entry_id="", meta={}, msg=msg, now=msg.date or datetime.now(UTC))
    history = "database"
    decision: ThreadDecision | None = None
    if store is not None:
        try:
            with store.reader() as session:
                decision = decide(msg, ctx, StoreThreadLookup(session), settings)
        except Exception as exc:  # noqa: BLE001 - an unreadable database: decide without history, say so
            no_history = f"database not readable: {str(exc).splitlines()[0][:200]}"
    if decision is None:
        history = f"not looked up ({no_history})"
        decision = decide(msg, ctx, _NoHistory(), settings)
        refused = [
            re.sub(r": no such ticket$|, but ticket #\d+ does not exist$", f": not looked up ({no_history})", r)
            for r in decision.refused
        ]
        decision = replace(decision, refused=tuple(refused))
    reply = split_reply(msg.text, msg.html)
    return {
        "visible_text": reply.visible,
        "quoted_text": reply.quoted,
        "signature": reply.signature,
        "threading": {
            "in_reply_to": list(msg.in_reply_to),
            "references": list(msg.references),
            "subject_tag": find_tag(settings.desk.subject_tag, msg.subject),
            "normalized_subject": normalize_subject(msg.subject, settings.desk.subject_tag),
            "thread_index_root": thread_index_root(msg.header("Thread-Index")) if msg.header("Thread-Index") else None,
            "history": history,
            "decision": {
                "method": decision.method,
                "ticket": decision.ticket,
                "detail": decision.detail,
                "refused": list(decision.refused),
            },
        },
    }
