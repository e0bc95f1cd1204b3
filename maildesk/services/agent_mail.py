"""Agent mail applied: what an agent's reply, note, commands or forward does to the desk.

Owns turning a decision of the pure `maildesk.agentmail.classify` into changes: the
commands go through the one change path (`services.tickets`: status, assignee, tier,
escalation, priority, tags, merge), a note becomes an internal note shared with the agents
(`attach_note`), reply text goes to the customer through `outbound.agent_reply` (the
`agent_reply` template, threaded, from the support address under the agent's name, with the
agent's attachments), the collision hold (a reply to an outdated notification is kept, the
agent is told what they missed and releases it with `#send`), agents' forwards that open a
ticket, and every answer to the agent (refusals, command errors, the how-to): automatic
mail, so the automatic-mail limits keep it from looping. Every step is an event on the
agent's message, so `explain` and `ticket show` say what was recognised and why.

Must not: decide whether a mail is agent mail (that is `classify`), commit, read the clock,
talk SMTP, or ever store an agent's words as the customer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maildesk.agentmail.classify import (
    AgentDesk,
    AgentEntry,
    AgentForward,
    AgentRefused,
    AgentReply,
    collision,
)
from maildesk.agentmail.commands import Command, CommandError, parse_commands, refusal_text, status_of
from maildesk.agentmail.strip import marker_line
from maildesk.config import Settings
from maildesk.outbound import outbox
from maildesk.outbound.agent_reply import send_agent_reply
from maildesk.outbound.compose import OutgoingMail, check_address
from maildesk.outbound.context import AgentInput, CustomerInput, RefusalInput, TicketInput
from maildesk.outbound.mailer import COMPOSE_ERRORS, Mailer
from maildesk.rules.engine import escalate_tier
from maildesk.services import tickets
from maildesk.store import Session, rows
from maildesk.store import desk_queries as dq
from maildesk.store import queries as q
from maildesk.store.models import Agent, Message, Ticket
from maildesk.threading import make_message_id
from maildesk.threading.tokens import make_agent_address

VIA_MAIL = "mail"  # `via` of the changes an agent makes by mail

# classify's refusal reasons -> the `refused_reply` template's codes
_REFUSAL_CODES = {
    "sender-not-an-agent": "unknown_sender",
    "display-name-spoof": "unknown_sender",
    "inactive-agent": "unknown_sender",
    "sender-not-authenticated": "other",  # the detail says what is missing (DKIM or a trusted Authentication-Results)
    "bad-token": "bad_token",
    "token-for-another-agent": "bad_token",
    "tokens-for-several-tickets": "bad_token",
    "commands-without-ticket": "no_ticket",
}

HOW_TO = (
    "Mail from your agent address is not turned into a ticket. To answer a customer, reply to the"
    " notification about their request. To open a ticket for a customer, forward their mail to the"
    " support address with '#customer ADDRESS' on the first line."
)


def agent_desk(session: Session, settings: Settings) -> AgentDesk:
    """The agents (from the agents table, else the configuration), secret and our addresses."""
    agents: tuple[AgentEntry, ...] = tuple(
        AgentEntry(a.email.lower(), bool(a.active), a.signature or "") for a in dq.agents(session)
    )
    if not agents:
        agents = tuple(AgentEntry(a.email.lower(), a.active, a.signature) for a in settings.agents)
    return AgentDesk(
        secret=settings.secret,
        agents=agents,
        support_addresses=settings.desk.support_addresses,
        note_addresses=settings.desk.note_addresses,
        forward_needs_authentication=settings.desk.agent_forward_needs_dkim,
    )


def is_agent(desk: AgentDesk, email: str, *, active: bool = True) -> bool:
    entry = desk.agent(email)
    return entry is not None and (entry.active or not active)


@dataclass(frozen=True)
class AgentMail:
    """The agent's incoming message as stored, and what came with it."""

    message_pk: int
    subject: str
    attachments: tuple[tuple[str, str, bytes], ...] = ()


# -- answers to the agent (automatic mail) --------------------------------------------------


def _agent_input(session: Session, email: str) -> AgentInput:
    row = dq.agent_by_email(session, email)
    return AgentInput(name=(row.name if row is not None else "") or email.partition("@")[0], email=email)


def mail_agent(
    session: Session,
    mailer: Mailer,
    *,
    key: str,
    to: str,
    ticket_number: int | None,
    code: str,
    detail: str,
    subject: str,
    now: datetime,
    extra_text: str = "",
    message_pk: int | None = None,
) -> bool:
    """Tell agent `to` (a configured address, never a raw sender) that their mail was not
    done as sent: `refused_reply` with `extra_text` below. Automatic mail (rate limited);
    on the ticket as internal mail when there is one. False when it could not be composed."""
    try:
        reader = _agent_input(session, to)
        ticket = session.get(Ticket, ticket_number) if ticket_number is not None else None
        inputs: dict[str, Any] = {"customer": CustomerInput(email=to, name=reader.name)}
        if ticket is not None:
            inputs = {
                "customer": Mailer._customer_input(session, ticket, now),
                "ticket": Mailer._ticket_input(session, ticket, now),
            }
        ctx = mailer.context(
            now=now, sender="", recipient=reader, refusal=RefusalInput(code, detail, subject), **inputs
        )
        rendered = mailer.renderer.render("refused_reply", ctx, locale=str(ctx["locale"]))
        sender = mailer.support_address()
        text = rendered.text + (f"\n{extra_text.strip()}\n" if extra_text.strip() else "")
        mail = OutgoingMail(
            from_addr=sender,
            from_name=mailer.settings.outbound.from_name or mailer.settings.desk.name,
            to=(check_address(to.lower(), "to"),),
            subject=rendered.subject,
            text=text,
            message_id=make_message_id(
                mailer.settings.secret, ticket_number or 0, sender.rpartition("@")[2], outbox.nonce_for(key)
            ),
            automatic=True,
            loop_value=mailer.loop_value,
        )
    except COMPOSE_ERRORS as exc:
        q.add_event(session, ticket_number, "mail-not-composed", {"template": "refused_reply", "error": str(exc)}, now)
        return False
    outbox.enqueue(
        session,
        key=key,
        ticket_number=ticket_number,
        mail=mail,
        template="refused_reply",
        automatic=True,
        now=now,
        policy=mailer.policy,
        signer=mailer.signer,
        facts=outbox.MessageFacts(kind="auto", text=text, internal=True),
        message_pk=message_pk,
    )
    return True


def refuse(
    session: Session,
    mailer: Mailer,
    refused: AgentRefused,
    *,
    sender: str,
    ticket_number: int | None,
    claimed_ticket: int | None,
    mail: AgentMail,
    now: datetime,
) -> None:
    """Nothing changes, nothing is relayed: record the attempt; answer the configured agent
    address classify named (never the raw sender)."""
    data = {"reason": refused.reason, "detail": refused.detail, "sender": sender, "claimed_ticket": claimed_ticket}
    q.add_event(session, ticket_number, "agent-mail-refused", data, now, mail.message_pk)
    if refused.answer:
        mail_agent(
            session,
            mailer,
            key=f"agent-refused:{mail.message_pk}",
            to=refused.answer,
            ticket_number=ticket_number,
            code=_REFUSAL_CODES.get(refused.reason, "other"),
            detail=refused.detail,
            subject=mail.subject,
            now=now,
            message_pk=mail.message_pk,
        )


def how_to(session: Session, mailer: Mailer, *, agent: str, mail: AgentMail, now: datetime) -> None:
    """Mail from an agent that is neither a token reply nor a forward: no ticket, no ack;
    a short how-to (rate limited)."""
    q.add_event(session, None, "agent-mail-not-a-ticket", {"agent": agent, "detail": HOW_TO}, now, mail.message_pk)
    mail_agent(
        session,
        mailer,
        key=f"agent-howto:{mail.message_pk}",
        to=agent,
        ticket_number=None,
        code="no_ticket",
        detail="mail from an agent address never opens a ticket",
        subject=mail.subject,
        extra_text=HOW_TO,
        now=now,
        message_pk=mail.message_pk,
    )


def _command_errors(
    session: Session,
    mailer: Mailer,
    *,
    agent: str,
    ticket: Ticket,
    errors: Sequence[CommandError],
    mail: AgentMail,
    now: datetime,
) -> None:
    """Command errors: nothing changed, nothing to the customer; the agent hears why."""
    q.add_event(
        session,
        ticket.number,
        "agent-commands-refused",
        {"agent": agent, "errors": [str(e) for e in errors]},
        now,
        mail.message_pk,
    )
    mail_agent(
        session,
        mailer,
        key=f"agent-commands:{mail.message_pk}",
        to=agent,
        ticket_number=ticket.number,
        code="other",
        detail="a command could not be done",
        subject=mail.subject,
        extra_text=refusal_text(list(errors)),
        now=now,
        message_pk=mail.message_pk,
    )


# -- commands --------------------------------------------------------------------------------


def _find_agent(session: Session, who: str, sender: str) -> Agent | str:
    """The agent `#assign` names (me, an address or a name), else the problem."""
    if who.lower() == "me":
        who = sender
    agents = dq.agents(session)
    wanted = who.strip().lower()
    found = [a for a in agents if a.email.lower() == wanted]
    if not found:
        found = [a for a in agents if (a.name or "").strip().lower() == wanted]
    if not found:
        found = [a for a in agents if a.email.lower().partition("@")[0] == wanted]
    if len(found) != 1:
        return f"no agent {who!r}" if not found else f"{who!r} names several agents"
    if not found[0].active:
        return f"agent {found[0].email} is not active"
    return found[0]


def _check_commands(
    session: Session, mailer: Mailer, ticket: Ticket, commands: Sequence[Command], sender: str
) -> list[CommandError]:
    """Errors only the desk can find (unknown agent, ticket or macro); classify found the rest."""
    errors: list[CommandError] = []
    for c in commands:
        line = f"#{c.name} {c.argument}".strip()
        if c.name == "assign":
            found = _find_agent(session, c.argument, sender)
            if isinstance(found, str):
                errors.append(CommandError(c.line, line, found))
        elif c.name == "merge":
            target = q.ticket(session, int(c.argument))
            if target is None:
                errors.append(CommandError(c.line, line, f"no ticket #{c.argument}"))
            elif target.merged_into is not None:
                errors.append(CommandError(c.line, line, f"#{c.argument} is merged into #{target.merged_into}"))
            elif target.number == ticket.number:
                errors.append(CommandError(c.line, line, "a ticket cannot merge into itself"))
        elif c.name == "macro" and c.argument.lower() not in mailer.renderer.macro_names():
            names = ", ".join(sorted(mailer.renderer.macro_names())) or "none"
            errors.append(CommandError(c.line, line, f"no macro {c.argument!r}; macros are: {names}"))
    return errors


def render_macro(session: Session, mailer: Mailer, ticket: Ticket, name: str, agent_email: str, now: datetime) -> str:
    """Macro `name` personalised for this ticket, its customer and the agent."""
    customer: CustomerInput = Mailer._customer_input(session, ticket, now)
    tinput: TicketInput = Mailer._ticket_input(session, ticket, now)
    agent = Mailer.agent_input(dq.agent_by_email(session, agent_email), agent_email)
    ctx = mailer.context(now=now, sender="", customer=customer, ticket=tinput, agent=agent, recipient=None)
    return mailer.renderer.render_macro(name, ctx)


def apply_commands(
    session: Session, ticket: Ticket, commands: Sequence[Command], *, by: str, now: datetime, message_pk: int | None
) -> list[str]:
    """Run the (checked) commands through the change path; what was done, for the event."""
    done: list[str] = []
    who: dict[str, Any] = {"by": by, "via": VIA_MAIL, "now": now, "message_pk": message_pk}
    add = [c.argument for c in commands if c.name == "tag"]
    remove = [c.argument for c in commands if c.name == "untag"]
    for c in commands:
        if c.name == "assign":
            agent = _find_agent(session, c.argument, by)
            assert not isinstance(agent, str)
            tickets.change_assignee(session, ticket, agent.email, **who)
        elif c.name == "tier":
            tickets.change_tier(session, ticket, c.argument, **who)
        elif c.name == "priority":
            tickets.change_priority(session, ticket, c.argument, **who)
        elif c.name == "escalate":
            new, what = escalate_tier(ticket.tier)
            note = rows.agent_note(ticket, f"Escalated {what}.\n\n{c.argument}", by, now, source="mail")
            tickets.escalate_ticket(
                session,
                ticket,
                new,
                what=what,
                note=note,
                note_text=c.argument,
                by=by,
                via=VIA_MAIL,
                now=now,
                message_pk=message_pk,
            )
        elif c.name in ("tag", "untag", "send", "macro", "merge") or status_of(c) is not None:
            continue  # below: tags at once, status last, merge after it; send/macro by the caller
        done.append(f"#{c.name} {c.argument}".strip())
    if add or remove:
        tickets.retag(session, ticket, add, remove, **who)
        done += [f"#tag {t}" for t in add] + [f"#untag {t}" for t in remove]
    for c in commands:
        status = status_of(c)
        if status is not None:
            tickets.change_status(session, ticket, status, reason=f"#{c.name} by mail", **who)
            done.append(f"#{c.name}")
    for c in commands:
        if c.name == "merge":
            tickets.merge(session, int(c.argument), ticket.number, by, now)
            done.append(f"#merge {c.argument}")
    return done


# -- replies, notes, holds -------------------------------------------------------------------


def _held(session: Session, ticket: int, agent: str) -> list[int]:
    """Message pks of this agent's replies on the ticket that are held and not yet settled."""
    settled: set[int] = set()
    held: list[int] = []
    for event in dq.ticket_events_of(
        session, ticket, ("agent-reply-held", "agent-reply-released", "agent-reply-superseded")
    ):
        if event.data.get("agent") != agent or event.message_pk is None:
            continue
        pk = int(event.data.get("held_message", event.message_pk))
        if event.type == "agent-reply-held":
            held.append(pk)
        else:
            settled.add(pk)
    return [pk for pk in held if pk not in settled]


def _hold(
    session: Session,
    mailer: Mailer,
    ticket: Ticket,
    reply: AgentReply,
    latest: int,
    mail: AgentMail,
    now: datetime,
) -> None:
    """Keep the reply (internal, nothing sent or changed); send the agent what they missed,
    with a fresh token, to release it with `#send` or to write anew."""
    row = session.get(Message, mail.message_pk)
    if row is not None:
        row.internal = True
    data = {
        "agent": reply.agent,
        "seq": reply.seq,
        "latest": latest,
        "detail": "the ticket changed since the notification",
    }
    q.add_event(session, ticket.number, "agent-reply-held", data, now, mail.message_pk)
    missed = dq.conversation_since(session, ticket.number, reply.seq)
    support = mailer.ticket_support_address(session, ticket.number)
    reply_to = make_agent_address(mailer.settings.secret, support, ticket.number, reply.agent, latest)
    parts = [
        marker_line(),
        "",
        f"Your reply on {mailer.settings.desk.subject_tag.format(number=ticket.number)} was NOT sent:"
        " the ticket changed after the notification you answered.",
        "",
        "What you missed:",
    ]
    for m in missed:
        who = "Customer" if m.direction == "in" else "Agent reply"
        parts += [
            "",
            f"{who} ({m.sender}, {m.created_at:%Y-%m-%d %H:%M}):",
            *(f"> {line}" for line in (m.visible_text or "").splitlines()),
        ]
    parts += ["", "Your held reply:", *(f"> {line}" for line in reply.text.splitlines())]
    parts += [
        "",
        "Reply to this mail with #send to send it as it is, or write a new reply (the held one is then dropped).",
    ]
    key = f"agent-held:{mail.message_pk}"
    subject = f"Held: {mailer.settings.desk.subject_tag.format(number=ticket.number)} {ticket.subject}"
    try:
        out = OutgoingMail(
            from_addr=support,
            from_name=mailer.settings.outbound.from_name or mailer.settings.desk.name,
            to=(check_address(reply.agent, "to"),),
            reply_to=reply_to,
            subject=subject[:900],
            text="\n".join(parts) + "\n",
            message_id=make_message_id(
                mailer.settings.secret, ticket.number, support.rpartition("@")[2], outbox.nonce_for(key)
            ),
            automatic=True,
            loop_value=mailer.loop_value,
        )
    except COMPOSE_ERRORS as exc:
        q.add_event(session, ticket.number, "mail-not-composed", {"template": "held", "error": str(exc)}, now)
        return
    outbox.enqueue(
        session,
        key=key,
        ticket_number=ticket.number,
        mail=out,
        template="agent_reply_held",
        automatic=True,
        now=now,
        policy=mailer.policy,
        signer=mailer.signer,
        facts=outbox.MessageFacts(kind="auto", text=out.text, internal=True),
        message_pk=mail.message_pk,
    )


def _send_reply(
    session: Session, mailer: Mailer, ticket: Ticket, agent: str, text: str, mail: AgentMail, now: datetime, key: str
) -> bool:
    row = dq.agent_by_email(session, agent)
    name = (row.name if row is not None else "") or agent.partition("@")[0]
    desk_name = mailer.settings.outbound.from_name or mailer.settings.desk.name
    try:
        item = send_agent_reply(
            session,
            mailer,
            ticket.number,
            text,
            agent,
            now,
            key=key,
            attachments=mail.attachments,
            from_name=f"{name} ({desk_name})" if desk_name else name,
            message_pk=mail.message_pk,
        )
    except COMPOSE_ERRORS as exc:
        q.add_event(
            session,
            ticket.number,
            "mail-not-composed",
            {"template": "agent_reply", "error": str(exc)},
            now,
            mail.message_pk,
        )
        return False
    return item is not None


def apply_reply(
    session: Session, mailer: Mailer, ticket: Ticket, reply: AgentReply, mail: AgentMail, now: datetime
) -> str:
    """Apply an authenticated agent reply; returns what it was (for the outcome)."""
    commands = list(reply.commands)
    errors = list(reply.errors) or _check_commands(session, mailer, ticket, commands, reply.agent)
    releasing = [c for c in commands if c.name == "send"]
    held = _held(session, ticket.number, reply.agent)
    if releasing and not held:
        errors.append(CommandError(releasing[0].line, "#send", "you have no held reply on this ticket"))
    if errors:
        _command_errors(session, mailer, agent=reply.agent, ticket=ticket, errors=errors, mail=mail, now=now)
        return "agent-commands-refused"
    recognised = {
        "agent": reply.agent,
        "seq": reply.seq,
        "note": reply.note,
        "commands": [f"#{c.name} {c.argument}".strip() for c in commands],
        "text_chars": len(reply.text),
    }
    q.add_event(session, ticket.number, "agent-mail-recognised", recognised, now, mail.message_pk)
    latest = dq.latest_conversation_message(session, ticket.number, exclude=mail.message_pk)
    if releasing:
        return _release(session, mailer, ticket, reply, held[-1], latest, mail, now)
    wants_reply = bool(reply.text.strip() or any(c.name == "macro" for c in commands)) and not reply.note
    if wants_reply and collision(reply.seq, latest):
        _hold(session, mailer, ticket, reply, latest, mail, now)
        return "agent-reply-held"
    for pk in held:  # a new reply after a hold notice replaces the held one
        q.add_event(
            session,
            ticket.number,
            "agent-reply-superseded",
            {"agent": reply.agent, "held_message": pk},
            now,
            mail.message_pk,
        )
    return _carry_out(session, mailer, ticket, reply.agent, commands, reply.text, reply.note, mail, now)


def _carry_out(
    session: Session,
    mailer: Mailer,
    ticket: Ticket,
    agent: str,
    commands: Sequence[Command],
    text: str,
    note: bool,
    mail: AgentMail,
    now: datetime,
    key: str | None = None,
) -> str:
    outcome = "agent-commands"
    if note:
        row = session.get(Message, mail.message_pk)
        if row is not None and text.strip():
            row.internal = True
            tickets.attach_note(session, ticket, row, by=agent, via=VIA_MAIL, now=now, data={"chars": len(text)})
            outcome = "agent-note"
    else:
        macros = [render_macro(session, mailer, ticket, c.argument, agent, now) for c in commands if c.name == "macro"]
        body = "\n\n".join(part.strip("\n") for part in [text, *macros] if part.strip())
        if body:
            if _send_reply(session, mailer, ticket, agent, body, mail, now, key or f"agent-mail:{mail.message_pk}"):
                if not any(status_of(c) for c in commands):
                    tickets.change_status(
                        session,
                        ticket,
                        "pending",
                        by=agent,
                        via=VIA_MAIL,
                        reason="agent replied",
                        now=now,
                        message_pk=mail.message_pk,
                    )
            outcome = "agent-reply"
    done = apply_commands(session, ticket, commands, by=agent, now=now, message_pk=mail.message_pk)
    if done:
        q.add_event(
            session, ticket.number, "agent-commands-done", {"agent": agent, "commands": done}, now, mail.message_pk
        )
    return outcome


def _release(
    session: Session,
    mailer: Mailer,
    ticket: Ticket,
    reply: AgentReply,
    held_pk: int,
    latest: int,
    mail: AgentMail,
    now: datetime,
) -> str:
    """`#send`: the held reply goes out as it was written (its commands too)."""
    row = session.get(Message, held_pk)
    if row is None:
        return "agent-commands"
    parsed = parse_commands(row.visible_text)
    q.add_event(
        session,
        ticket.number,
        "agent-reply-released",
        {"agent": reply.agent, "held_message": held_pk},
        now,
        mail.message_pk,
    )
    held_mail = AgentMail(
        held_pk,
        row.subject,
        tuple((a.filename, a.content_type, a.data or b"") for a in row.attachments if a.disposition != "inline"),
    )
    others = [c for c in reply.commands if c.name != "send"]
    commands = [c for c in parsed.commands if c.name != "send"] + others
    return _carry_out(
        session, mailer, ticket, reply.agent, commands, parsed.text, False, held_mail, now, key=f"agent-mail:{held_pk}"
    )


# -- forwards --------------------------------------------------------------------------------


def check_forward(session: Session, mailer: Mailer, forward: AgentForward) -> list[CommandError]:
    """Desk-side checks of a forward's commands (before a ticket exists)."""
    errors = list(forward.errors)
    for c in forward.commands:
        line = f"#{c.name} {c.argument}".strip()
        if c.name == "assign" and isinstance(found := _find_agent(session, c.argument, forward.agent), str):
            errors.append(CommandError(c.line, line, found))
        if c.name == "macro" and c.argument.lower() not in mailer.renderer.macro_names():
            errors.append(CommandError(c.line, line, f"no macro {c.argument!r}"))
    return errors


def open_for_customer(
    session: Session, mailer: Mailer, forward: AgentForward, *, ticket: Ticket, mail: AgentMail, now: datetime
) -> str:
    """The ticket a forward opened: the agent is its opener; their commands and words apply."""
    q.add_event(
        session,
        ticket.number,
        "ticket-opened-by-agent",
        {"agent": forward.agent, "customer": forward.customer, "found_by": forward.found_by},
        now,
        mail.message_pk,
    )
    q.add_participant(session, ticket.number, forward.agent, "agent")
    done = apply_commands(session, ticket, forward.commands, by=forward.agent, now=now, message_pk=mail.message_pk)
    if done:
        q.add_event(
            session,
            ticket.number,
            "agent-commands-done",
            {"agent": forward.agent, "commands": done},
            now,
            mail.message_pk,
        )
    return "ticket-opened-by-agent"


def reply_with_macro(
    session: Session, deps: Any, number: int, text: str, macro: str, by: str, now: datetime, status: str = "pending"
) -> tickets.ActionResult:
    """`maildesk ticket reply N --macro NAME`: the agent's text (if any), then the macro,
    personalised for the ticket, as one reply through `services.tickets.reply`."""
    ticket = tickets.get_ticket(session, number)
    try:
        rendered = render_macro(session, deps.mailer, ticket, macro, by, now)
    except COMPOSE_ERRORS as exc:
        raise tickets.OperationError(str(exc)) from exc
    body = "\n\n".join(part.strip("\n") for part in (text, rendered) if part.strip())
    return tickets.reply(session, deps, number, body, by, now, status=status)


def macros(mailer: Mailer) -> list[dict[str, str]]:
    """The macros this desk has: name and file (a site macro hides a built-in one)."""
    return [{"name": name, "file": str(path)} for name, path in sorted(mailer.renderer.macro_names().items())]


__all__ = [
    "AgentMail",
    "HOW_TO",
    "VIA_MAIL",
    "agent_desk",
    "apply_commands",
    "apply_reply",
    "check_forward",
    "how_to",
    "is_agent",
    "mail_agent",
    "open_for_customer",
    "refuse",
    "render_macro",
    "reply_with_macro",
    "macros",
]
