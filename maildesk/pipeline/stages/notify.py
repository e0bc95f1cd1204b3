"""The notify stage: tell the agents about a customer's mail, after routing and the reply.

Runs after `respond`, so the assignee, queue and tier the rules chose are known. Owns only
*whether* a mail is worth telling the agents about: a customer's mail (never automatic mail,
bounces, agents' mail or duplicates) that the screen found human, on a ticket not marked spam
or discarded, and not imported history (`maildesk import` spools entries with the source
`import:<name>`; importing old mail must never notify anyone). Whom to tell and what is
`services.notify.on_customer_mail`.

Must not: send, commit, change the ticket, or render anything itself.
"""

from __future__ import annotations

from maildesk.pipeline.context import MessageContext, PipelineDeps, stage
from maildesk.pipeline.stages.respond import _junk
from maildesk.services import notify as notices
from maildesk.store import Session
from maildesk.store.models import Ticket

HISTORY_SOURCE = "import:"  # the spool source of `maildesk import` (ingest/bulk.py)


def is_history(ctx: MessageContext) -> bool:
    """Mail imported from an old mailbox: stored and threaded, never announced."""
    return str(ctx.meta.get("source", "")).startswith(HISTORY_SOURCE) or bool(ctx.meta.get("history"))


@stage()
def notify(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Notify the assignee (else the queue's agents at the tier) of a new ticket or a reply."""
    if ctx.duplicate or ctx.ticket_number is None or ctx.message_pk is None or ctx.kind != "customer":
        return
    if ctx.screen_verdict != "human" or is_history(ctx):
        return
    ticket = session.get(Ticket, ctx.ticket_number)
    if ticket is None or _junk(ctx, ticket):
        return
    escalations = ctx.decision.escalations if ctx.decision is not None else ()
    notices.on_customer_mail(
        session,
        deps.mailer,
        ticket,
        ctx.message_pk,
        new_ticket=ctx.new_ticket,
        now=ctx.now,
        escalation_notes=tuple(e.note or f"Escalated {e.what} by rule {e.rule!r}." for e in escalations),
    )
