"""The respond stage, and the other ticket mails callers ask for (agent replies, resolution).

Owns *whether* maildesk answers: the acknowledgement for a new ticket from a human, the
replies a rule asked for, an agent's reply and the resolution notice. With rules, the
decision's `mails` are the list (at most one answer per incoming mail: a rule's `reply:` or
`ask:` question takes the acknowledgement's place, `ack: false` drops it, `also: true`
adds one; an `ack-replaced` event says so on a new ticket); without rules a new ticket
gets the acknowledgement. Each goes through
`outbound.mailer.Mailer` into the outbox, inside the caller's transaction, with an
idempotency key (`ack:<ticket>`, `rule:<message pk>:<template>`, …) so a replay never sends
twice.

Who gets the acknowledgement: the From address of the customer's mail (never its Reply-To:
a forged Reply-To would make us mail a stranger), and only when the screen found a human,
the mail is not a duplicate and neither the ticket nor the rules marked it spam or discard.

It must not: send or talk SMTP, change ticket status (an agent reply only records an event
and the first response time), or commit.
"""

from __future__ import annotations

from datetime import datetime

from maildesk.outbound import agent_reply
from maildesk.outbound.context import MessageInput
from maildesk.outbound.mailer import COMPOSE_ERRORS, Parent, Recipient, SendRequest, compose_failed
from maildesk.pipeline.context import MessageContext, PipelineDeps, stage
from maildesk.services import sla, survey
from maildesk.store import Session
from maildesk.store import queries as q
from maildesk.store.models import OutboxItem, Ticket

ACK_TEMPLATE = "ack"


def _junk(ctx: MessageContext, ticket: Ticket) -> str:
    decision = ctx.decision
    if ticket.spam:
        return "ticket marked spam"
    if decision is not None and decision.spam is not None:
        return f"rules marked spam: {decision.spam}"
    if decision is not None and decision.discard is not None:
        return f"rules discarded: {decision.discard}"
    return ""


def _customer(ctx: MessageContext, ticket: Ticket) -> Recipient:
    addr = ctx.msg.from_ or ctx.msg.sender
    if addr is not None and addr.email:
        return Recipient(addr.email.lower(), addr.name)
    return Recipient(ticket.customer.email, ticket.customer.name)


def _message_input(ctx: MessageContext) -> MessageInput:
    addr = ctx.msg.from_ or ctx.msg.sender
    return MessageInput(
        text=ctx.visible_text or ctx.msg.text,
        sender_name=addr.name if addr else "",
        sender_email=addr.email if addr else "",
        received_at=ctx.now,
        attachment_names=tuple(a.filename for a in ctx.msg.attachments),
    )


@stage()
def respond(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Acknowledge a new ticket from a human; send the templates the rules named."""
    if ctx.duplicate or ctx.handled or ctx.ticket_number is None:
        return
    ticket = session.get(Ticket, ctx.ticket_number)
    if ticket is None:
        return
    if ctx.screen_verdict != "human" or ctx.kind != "customer":
        return
    skip = _junk(ctx, ticket)
    if skip:
        if ctx.new_ticket:
            q.add_event(session, ticket.number, "auto-reply-skipped", {"reason": skip}, ctx.now, ctx.message_pk)
        return
    mailer = deps.mailer
    to = _customer(ctx, ticket)
    from_addr = mailer.support_address([*ctx.envelope_recipients, *(a.email for a in ctx.msg.to + ctx.msg.cc)])
    parent = Parent.of(ctx.msg)
    templates: list[tuple[str, str]] = []
    if ctx.decision is None:  # no rules: a new ticket is acknowledged
        if ctx.new_ticket:
            templates.append((f"ack:{ticket.number}", ACK_TEMPLATE))
    else:  # the rules decided which mails go out (engine: one answer per mail unless `also`)
        for mail in ctx.decision.mails:
            if mail.kind == "ack" and ctx.new_ticket:
                templates.append((f"ack:{ticket.number}", mail.template))
            elif mail.kind != "ack":
                templates.append((f"rule:{ctx.message_pk}:{mail.template}", mail.template))
        if ctx.new_ticket and all(m.kind != "ack" for m in ctx.decision.mails):
            data = {"mails": [m.to_json() for m in ctx.decision.mails], "notes": list(ctx.decision.notes)}
            q.add_event(session, ticket.number, "ack-replaced", data, ctx.now, ctx.message_pk)
    memo: dict[object, object] = {}  # the ticket does not change between these mails
    for key, template in templates:
        try:
            request = SendRequest(
                key=key,
                ticket_number=ticket.number,
                template=template,
                to=to,
                automatic=True,
                parent=parent,
                from_addr=from_addr,
                message=_message_input(ctx),
                kind="auto",
                message_pk=ctx.message_pk,
            )
            # A new ticket's keys (its number, this message's row) cannot have been queued before.
            mailer.send(session, request, ctx.now, new_key=ctx.new_ticket, memo=memo)
        except COMPOSE_ERRORS as exc:
            compose_failed(session, ticket.number, template, exc, ctx.now, ctx.message_pk)


def send_agent_reply(
    session: Session,
    deps: PipelineDeps,
    ticket_number: int,
    text: str,
    agent_email: str,
    now: datetime,
    *,
    key: str | None = None,
) -> OutboxItem | None:
    """`outbound.agent_reply.send_agent_reply` with the desk's Mailer from `deps`."""
    item = agent_reply.send_agent_reply(session, deps.mailer, ticket_number, text, agent_email, now, key=key)
    ticket = session.get(Ticket, ticket_number) if item is not None else None
    if ticket is not None:
        sla.on_agent_reply(session, ticket, now)  # an agent's reply by mail stops the response clock
    return item


def send_resolution_notice(
    session: Session, deps: PipelineDeps, ticket_number: int, now: datetime, *, key: str | None = None
) -> OutboxItem | None:
    """Queue the `resolved` notice (with the survey, as `[survey]` says) to the customer;
    None: already queued or turned off. The change path sends it by itself when a ticket is
    resolved (`services.survey.on_change`); this is for callers that resolve otherwise.

    The default key allows one notice per resolution (`resolved:<ticket>:<resolved_at>`).
    """
    ticket = session.get(Ticket, ticket_number)
    if ticket is None:
        raise ValueError(f"no ticket {ticket_number}")
    return survey.send_resolution_notice(session, deps.mailer, ticket, now, key=key)
