"""The agent-mail stage: is this human mail an agent's (reply, note, commands, forward), a
refused attempt at one, or a customer's?

Runs after `screen`, before `thread`. It reads the real sender from the raw From header
(never the display name), builds the plain facts and asks the pure
`maildesk.agentmail.classify`. Customer mail (`NotAgentMail`) goes on unchanged. Anything
else is stored here, never as customer mail (kind `agent-reply` or `agent-note`, internal
where it is not a reply), and applied by `services.agent_mail`; the stage then marks the
context `handled`, so threading, persist, routing and the acknowledgement skip it: agent
mail never reopens a ticket, never gets an ack and never runs the customer rules.

Must not: decide what a command means (services), send mail itself, or commit.
"""

from __future__ import annotations

import re

from maildesk.agentmail.classify import (
    DISPLAY_NAME_SPOOF,
    NOT_AN_AGENT,
    AgentDesk,
    AgentForward,
    AgentRefused,
    AgentReply,
    MailFacts,
    NotAgentMail,
    classify,
    real_sender,
)
from maildesk.agentmail.sender_auth import AuthVerdict, sender_authenticated
from maildesk.agentmail.strip import agent_words
from maildesk.message import ParsedMessage
from maildesk.pipeline.context import MessageContext, Needs, PipelineDeps, stage
from maildesk.pipeline.stages.persist import store_message
from maildesk.services import agent_mail as am
from maildesk.store import Session
from maildesk.store import queries as q
from maildesk.store.models import Ticket
from maildesk.threading.tokens import agent_token_base, parse_agent_address

_CLAIMED = re.compile(r"\+a(\d{1,12})\.", re.IGNORECASE)
_FWD_PREFIX = re.compile(r"^\s*(?:(?:fwd?|wg|tr|rv|vs)\s*:\s*)+", re.IGNORECASE)


def _forwarded_from(msg: ParsedMessage) -> str:
    """The original sender of an attached message/rfc822, if the agent forwarded one as attachment."""
    for att in msg.attachments:
        if att.content_type.lower() == "message/rfc822" and att.payload:
            return real_sender(att.payload)[1]
    return ""


def _tokens(desk: AgentDesk, recipients: tuple[str, ...]) -> list[str]:
    return [r for r in recipients if desk.ours(agent_token_base(r) or "")]


def _attachments(msg: ParsedMessage) -> tuple[tuple[str, str, bytes], ...]:
    """What the agent attached to send along (not inline images of a signature, not forwarded mail)."""
    return tuple(
        (a.filename or "attachment", a.content_type, a.payload)
        for a in msg.attachments
        if a.disposition.lower() != "inline" and not a.content_type.lower().startswith(("message/", "multipart/"))
    )


def _store(
    ctx: MessageContext,
    session: Session,
    deps: PipelineDeps,
    number: int | None,
    kind: str,
    internal: bool,
    sender: str,
) -> am.AgentMail:
    """Store the agent's mail as `kind` on ticket `number` with the events so far."""
    ctx.kind, ctx.internal, ctx.handled = kind, internal, True
    name = ctx.msg.from_.name if ctx.msg.from_ else ""
    pk = store_message(ctx, session, deps, number, sender, name)
    if number is not None:
        ticket = session.get(Ticket, number)
        if ticket is not None:
            ticket.updated_at = ctx.now
    received = {"message_id": ctx.stored_message_id or ctx.msg.message_id, "from": sender, "kind": kind}
    q.add_event(session, number, "agent-mail-received", received, ctx.now, pk)
    for type_, data in ctx.events:
        q.add_event(session, number, type_, data, ctx.now, pk)
    ctx.events.clear()
    return am.AgentMail(pk, ctx.msg.subject[:300], _attachments(ctx.msg))


def _words(ctx: MessageContext, desk: AgentDesk, sender: str) -> None:
    entry = desk.agent(sender)
    words = agent_words(ctx.msg.text, ctx.msg.html, entry.signature if entry else "")
    ctx.visible_text, ctx.quoted_text, ctx.signature = words.text, words.quoted, words.signature


def _authentication(
    ctx: MessageContext, deps: PipelineDeps, desk: AgentDesk, sender: str, recipients: tuple[str, ...]
) -> AuthVerdict | None:
    """DKIM / trusted Authentication-Results for an active agent's mail that could be a
    forward (no token, to one of our addresses) when forwards need it; None otherwise, so
    replies (which carry a signed token) and customer mail cost no DNS look-up."""
    entry = desk.agent(sender)
    if entry is None or not entry.active or not desk.forward_needs_authentication:
        return None
    if _tokens(desk, recipients) or not any(desk.ours(r) for r in recipients):
        return None
    return sender_authenticated(
        ctx.msg.raw, sender, trusted_authserv_ids=deps.settings.desk.trusted_authserv_ids, dnsfunc=deps.dkim_dns
    )


@stage(needs=Needs(agent=True))
def agent_mail(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Recognise agent mail and apply it; leave customer mail to the customer path."""
    if ctx.duplicate or ctx.handled or ctx.screen_verdict != "human":
        return
    msg, settings = ctx.msg, deps.settings
    pre = ctx.pre
    display, sender = ctx.real_sender()
    recipients = ctx.recipients
    desk = am.agent_desk(session, settings)
    verdict = _authentication(ctx, deps, desk, sender, recipients)
    facts = MailFacts(
        sender=sender,
        subject=msg.subject,
        display_name=display,
        recipients=recipients,
        text=msg.text,
        html=msg.html,
        authenticated=verdict.passed if verdict is not None else None,
        forwarded_from=_forwarded_from(msg),
        words=pre.words if pre is not None else None,
    )
    outcome = classify(facts, desk)
    if verdict is not None and isinstance(outcome, (AgentForward, AgentRefused)):
        event = "agent-sender-authenticated" if verdict.passed else "agent-sender-not-authenticated"
        ctx.note(event, by=verdict.by, detail=verdict.detail)
    mailer = deps.mailer
    if isinstance(outcome, NotAgentMail):
        if am.is_agent(desk, sender):  # an agent writing in like a customer: never a ticket
            _words(ctx, desk, sender)
            mail = _store(ctx, session, deps, None, "agent-note", True, sender)
            am.how_to(session, mailer, agent=sender, mail=mail, now=ctx.now)
            ctx.outcome = "agent-mail-not-a-ticket"
        return
    if isinstance(outcome, AgentRefused):
        tokens = _tokens(desk, recipients)
        if not tokens and outcome.reason in (NOT_AN_AGENT, DISPLAY_NAME_SPOOF):
            # a stranger's mail that starts with '#': their own words, on their own ticket
            ctx.note("agent-commands-ignored", reason=outcome.reason, detail=outcome.detail)
            return
        _refused(ctx, session, deps, desk, outcome, tokens, sender)
        return
    _words(ctx, desk, sender)
    if isinstance(outcome, AgentReply):
        _reply(ctx, session, deps, outcome, sender)
    elif isinstance(outcome, AgentForward):
        _forward(ctx, session, deps, outcome, sender)


def _refused(
    ctx: MessageContext,
    session: Session,
    deps: PipelineDeps,
    desk: AgentDesk,
    refused: AgentRefused,
    tokens: list[str],
    sender: str,
) -> None:
    """Recorded as internal on the ticket its token really names (else on no ticket); nothing else."""
    claimed = next((int(m.group(1)) for t in tokens if (m := _CLAIMED.search(t))), None)
    verified: int | None = None
    for token in tokens:
        for agent in desk.agents:
            found = parse_agent_address(desk.secret, token, agent.email)
            if found is not None and session.get(Ticket, found[0]) is not None:
                verified = found[0]
    _words(ctx, desk, sender)
    mail = _store(ctx, session, deps, verified, "agent-note", True, sender)
    am.refuse(
        session,
        deps.mailer,
        refused,
        sender=sender,
        ticket_number=verified,
        claimed_ticket=claimed,
        mail=mail,
        now=ctx.now,
    )
    ctx.ticket_number = verified
    ctx.outcome = "agent-mail-refused"


def _reply(ctx: MessageContext, session: Session, deps: PipelineDeps, reply: AgentReply, sender: str) -> None:
    ticket = q.ticket(session, reply.ticket)
    while ticket is not None and ticket.merged_into is not None:
        ticket = q.ticket(session, ticket.merged_into)
    if ticket is None:
        mail = _store(ctx, session, deps, None, "agent-note", True, sender)
        refused = AgentRefused("bad-token", f"no ticket #{reply.ticket}", answer=reply.agent)
        am.refuse(
            session,
            deps.mailer,
            refused,
            sender=sender,
            ticket_number=None,
            claimed_ticket=reply.ticket,
            mail=mail,
            now=ctx.now,
        )
        ctx.outcome = "agent-mail-refused"
        return
    kind = "agent-note" if reply.note else "agent-reply"
    mail = _store(ctx, session, deps, ticket.number, kind, reply.note, sender)
    ctx.ticket_number = ticket.number
    ctx.outcome = am.apply_reply(session, deps.mailer, ticket, reply, mail, ctx.now)


def _forward(ctx: MessageContext, session: Session, deps: PipelineDeps, forward: AgentForward, sender: str) -> None:
    errors = am.check_forward(session, deps.mailer, forward)
    if errors:
        mail = _store(ctx, session, deps, None, "agent-note", True, sender)
        q.add_event(
            session,
            None,
            "agent-commands-refused",
            {"agent": forward.agent, "errors": [str(e) for e in errors]},
            ctx.now,
            mail.message_pk,
        )
        from maildesk.agentmail.commands import refusal_text

        am.mail_agent(
            session,
            deps.mailer,
            key=f"agent-commands:{mail.message_pk}",
            to=forward.agent,
            ticket_number=None,
            code="other",
            detail="no ticket was opened",
            subject=mail.subject,
            extra_text=refusal_text(errors),
            now=ctx.now,
            message_pk=mail.message_pk,
        )
        ctx.outcome = "agent-commands-refused"
        return
    now = ctx.now
    customer_id = q.customer_id_for(session, forward.customer, "", now)
    subject = _FWD_PREFIX.sub("", ctx.msg.subject).strip() or ctx.msg.subject
    number = q.insert_ticket(session, subject=subject, customer_id=customer_id, now=now, thread_root=None)
    q.add_participants(session, number, [(forward.customer, "customer")], new_ticket=True)
    ctx.ticket_number, ctx.new_ticket = number, True
    ctx.visible_text = ctx.msg.text or ctx.visible_text  # the forwarded mail is the customer's request
    mail = _store(ctx, session, deps, number, "agent-note", True, sender)
    ticket = session.get(Ticket, number)
    assert ticket is not None
    ctx.outcome = am.open_for_customer(session, deps.mailer, forward, ticket=ticket, mail=mail, now=now)
