"""Notifications to agents: who is told what when a customer writes or a ticket changes.

Owns the outgoing half of "agents work from their mail client":
- `on_customer_mail` (the pipeline's `notify` stage, after routing): a new ticket or a
  customer's reply goes to the assignee, else to the active agents of the ticket's queue at
  its tier (`rules.teams.queue_group`); when the rules escalated the ticket on this mail, the
  agent picked at the new tier hears of it too, with the hand-off notes.
- `on_change` (`services.tickets._consequences`): an assignment tells the new assignee; an
  escalation (or a move to a higher tier) tells the agent picked at the new tier — the
  least-loaded active agent of the ticket's queue at that tier — else that tier's group,
  with the hand-off note; a note tells the assignee and the agents who took part (assigned
  once, or wrote notes), never its author. Changes made by the rules are left to
  `on_customer_mail`, which runs for the same mail and already reaches those agents.
- `agent_reply_to`: the signed agent token a rule's `notify:` mail carries.

Every notification is one ordinary outbox row (`Mailer.send`, template
`agent_notification`, automatic and internal like the rules' `notify:` mail, so suppressions
and the automatic-mail limits apply), rendered from stored rows only: the customer's visible
text (never their HTML), the ticket summary, the customer's earlier tickets with how they
ended, the attachments (named with sizes, and attached when stored and under
`ATTACH_LIMIT` bytes in all), the marker line (`agentmail.strip.marker_line`) first, and the
command list (`agentmail.commands.HELP_TEXT`) at the bottom.

For the incoming side (reading an agent's answer):
- Reply-To is `make_agent_address(secret, support address, ticket, agent, seq)`, bound to
  THIS agent and THIS ticket. `seq` is the id of the newest Message row of the ticket when
  the notification was made (taken before the notification's own row is written). Message
  ids only grow, so a reply whose `seq` is lower than the id of a customer message or agent
  reply on the ticket answers an outdated notification (collision hold).
- Threading: every notification of ticket N to agent A carries In-Reply-To and References
  `thread_root(secret, N, A, domain)` — a Message-ID made with `make_message_id` and the nonce
  `outbox.nonce_for("notify-root:N:A")`, never sent itself — a Thread-Index under a stable
  per-(ticket, agent) root, and the stable subject `[#N] <subject>`.
- Idempotency keys: `agent-notify:<event>:<id>:<agent>`: new/reply: the customer message's id;
  assigned/escalated: the id of the change's event; note: the note message's id.
- Events: `agent-notified` {to, event, outbox_id, state, seq} per notification;
  `agent-notify-refused` {to, event, reason} when an address may not get one (inactive
  agent, a customer of the ticket who is not an agent, one of our own addresses).

How `on_change` reaches the desk's Mailer: the App puts a factory into every session's
`info` (`install`); a session without one (a bare Store in a test) notifies nobody of changes.

Must not: commit, read the clock, decide routing or assignment (it only picks whom to
tell), send customer HTML to an agent, or notify a customer address that is not an agent.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from maildesk.agentmail.commands import HELP_TEXT
from maildesk.agentmail.strip import marker_line
from maildesk.domain import TIERS, TicketChange
from maildesk.outbound import outbox
from maildesk.outbound.context import AttachmentRef, MessageInput, NoticeInput, TicketRef
from maildesk.outbound.mailer import COMPOSE_ERRORS, Mailer, Parent, Recipient, SendRequest, compose_failed
from maildesk.rules.engine import pick_least_loaded
from maildesk.rules.teams import queue_group, tier_pool
from maildesk.store import Session
from maildesk.store import notify_queries as nq
from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store import routing_queries as rq
from maildesk.store.models import Agent, Message, OutboxItem, Ticket
from maildesk.threading import make_message_id, new_thread_index
from maildesk.threading.tokens import make_agent_address

log = logging.getLogger("maildesk.notify")

TEMPLATE = "agent_notification"
MAILER_KEY = "maildesk.notify.mailer"  # in `session.info`: a callable giving the desk's Mailer
ATTACH_LIMIT = 10 * 1024 * 1024  # attach the customer's files when all of them fit in this
RULES_VIA = "rules"  # `TicketChange.via` of the rules' changes (services.tickets.VIA_RULES)

NEW, REPLY, ASSIGNED, ESCALATED, NOTE = "new", "reply", "assigned", "escalated", "note"
LOW_RATING = "low-rating"


def install(info: dict[str, Any], mailer: Callable[[], Mailer]) -> None:
    """Let sessions made with `info` notify agents of ticket changes through `mailer()`."""
    info[MAILER_KEY] = mailer


def bound_mailer(session: Session) -> Mailer | None:
    """The desk's Mailer `install` put into the session's info (None: a bare Store)."""
    factory = session.info.get(MAILER_KEY)
    return factory() if callable(factory) else None


# Threading and tokens ------------------------------------------------------------------------
def thread_root(secret: str, ticket_number: int, agent_email: str, domain: str) -> str:
    """The Message-ID every notification of this ticket to this agent answers (never sent)."""
    nonce = outbox.nonce_for(f"notify-root:{ticket_number}:{agent_email.lower()}")
    return make_message_id(secret, ticket_number, domain, nonce)


def _parent(mailer: Mailer, ticket: Ticket, agent_email: str, support: str) -> Parent:
    secret = mailer.settings.secret
    root = thread_root(secret, ticket.number, agent_email, support.rpartition("@")[2])
    guid = hashlib.sha256(f"{secret}:{root}".encode()).digest()[:16]
    return Parent(root, (), new_thread_index(ticket.created_at, guid))


def agent_reply_to(session: Session, mailer: Mailer, ticket: Ticket, agent_email: str) -> str:
    """The signed reply address bound to `agent_email` and `ticket`, with the ticket's current seq."""
    support = mailer.ticket_support_address(session, ticket.number)
    seq = nq.newest_message_id(session, ticket.number)
    return make_agent_address(mailer.settings.secret, support, ticket.number, agent_email, seq)


# Who -----------------------------------------------------------------------------------------
def refusal(session: Session, mailer: Mailer, ticket: Ticket, email: str) -> str:
    """Why `email` may not get a notification on `ticket` ("" when it may)."""
    agent = nq.agent(session, email)
    if agent is not None:
        return "" if agent.active else f"agent {agent.email} is not active"
    if mailer.settings.is_support_address(email):
        return f"{email} is one of the desk's own addresses"
    if nq.is_customer_address(session, ticket.number, email):
        return f"{email} is a customer of ticket #{ticket.number}, not an agent"
    return ""


def _queue_agents(session: Session, ticket: Ticket) -> list[str]:
    return queue_group(nq.agents(session), ticket.queue, ticket.tier)


def _tier_pick(session: Session, ticket: Ticket, tier: str) -> list[str]:
    """The agent picked at `tier` (least loaded in the ticket's queue there), else the tier's group."""
    pool, exact = tier_pool(nq.agents(session), ticket.queue, tier)
    if not exact or not pool:
        return pool
    return [pick_least_loaded(rq.open_loads(session, pool, ticket.number))]


def _unique(addresses: Sequence[str | None], without: str = "") -> list[str]:
    seen: dict[str, str] = {}
    for a in addresses:
        if a and a.lower() != without.lower() and a.lower() not in seen:
            seen[a.lower()] = a
    return list(seen.values())


# The mail ------------------------------------------------------------------------------------
def _message_input(row: Message | None) -> MessageInput | None:
    """The customer's visible words: stored plain text only (the HTML never reaches an agent)."""
    if row is None:
        return None
    return MessageInput(
        text=row.visible_text or row.full_text,
        sender_name=row.sender_name,
        sender_email=row.sender,
        received_at=row.created_at,
        attachment_names=tuple(a.filename for a in row.attachments),
    )


def _files(row: Message | None) -> tuple[tuple[AttachmentRef, ...], tuple[tuple[str, str, bytes], ...]]:
    if row is None:
        return (), ()
    refs = tuple(AttachmentRef(a.filename, int(a.size or 0)) for a in row.attachments)
    stored = [a for a in row.attachments if a.data is not None]
    if len(stored) != len(row.attachments) or sum(len(a.data or b"") for a in stored) > ATTACH_LIMIT:
        return refs, ()
    return refs, tuple((a.filename, a.content_type or "application/octet-stream", a.data or b"") for a in stored)


def _history(session: Session, ticket: Ticket) -> tuple[TicketRef, ...]:
    return tuple(
        TicketRef(t.number, t.subject, t.status, t.created_at, t.closed_at or t.resolved_at)
        for t in nq.earlier_tickets(session, ticket.customer_id, ticket.number)
    )


def _send(
    session: Session,
    mailer: Mailer,
    ticket: Ticket,
    to: str,
    *,
    event: str,
    key_id: str,
    now: datetime,
    message: Message | None,
    message_pk: int | None = None,
    by: str = "",
    note: str = "",
) -> OutboxItem | None:
    """One notification to `to`; refused addresses get an event instead. None: not queued now."""
    why = refusal(session, mailer, ticket, to)
    if why:
        refused = {"to": to, "event": event, "reason": why}
        q.add_event(session, ticket.number, "agent-notify-refused", refused, now, message_pk)
        return None
    agent = nq.agent(session, to)
    email = agent.email if agent is not None else to.lower()
    support = mailer.ticket_support_address(session, ticket.number)
    seq = nq.newest_message_id(session, ticket.number)
    attachments, files = _files(message)
    request = SendRequest(
        key=f"agent-notify:{event}:{key_id}:{email.lower()}",
        ticket_number=ticket.number,
        template=TEMPLATE,
        to=Recipient(email, agent.name if agent is not None else ""),
        automatic=True,
        kind="auto",
        internal=True,
        parent=_parent(mailer, ticket, email, support),
        from_addr=support,
        reader_agent=Mailer.agent_input(agent, email),
        message=_message_input(message),
        message_pk=message_pk,
        reply_to=make_agent_address(mailer.settings.secret, support, ticket.number, email, seq),
        notice=NoticeInput(
            event=event,
            marker=marker_line(mailer.settings.desk.locale),
            commands=HELP_TEXT,
            by=by,
            note=note,
            history=_history(session, ticket),
            attachments=attachments,
        ),
        attachments=files,
    )
    try:
        item = mailer.send(session, request, now)
    except COMPOSE_ERRORS as exc:
        compose_failed(session, ticket.number, TEMPLATE, exc, now, message_pk)
        return None
    if item is not None:
        data: dict[str, Any] = {"to": email, "event": event, "outbox_id": item.id, "state": item.state, "seq": seq}
        q.add_event(session, ticket.number, "agent-notified", data, now, message_pk)
    return item


# Entry points --------------------------------------------------------------------------------
def on_customer_mail(
    session: Session,
    mailer: Mailer,
    ticket: Ticket,
    message_pk: int,
    *,
    new_ticket: bool,
    now: datetime,
    escalation_notes: Sequence[str] = (),
) -> list[OutboxItem]:
    """Tell the agents about a customer's mail (new ticket or reply), after routing.

    To the assignee, else the queue's agents at the ticket's tier; `escalation_notes` (the
    rules escalated the ticket on this mail) add the agent picked at the new tier."""
    event = NEW if new_ticket else REPLY
    recipients = [ticket.assignee] if ticket.assignee else _queue_agents(session, ticket)
    if escalation_notes:
        recipients += _tier_pick(session, ticket, ticket.tier)
    if not recipients:
        return []  # a desk without agents: one look-up per mail, nothing else
    row = session.get(Message, message_pk)
    note = "\n\n".join(n.strip() for n in escalation_notes if n.strip())
    sent = []
    for to in _unique(recipients):
        item = _send(
            session,
            mailer,
            ticket,
            to,
            event=event,
            key_id=str(message_pk),
            now=now,
            message=row,
            message_pk=message_pk,
            note=note,
        )
        if item is not None:
            sent.append(item)
    return sent


def on_change(session: Session, ticket: Ticket, change: TicketChange, now: datetime) -> None:
    """Tell the agents a change concerns (assignment, escalation, a note); see the module doc."""
    if change.via == RULES_VIA:
        return  # the rules run on a customer's mail; on_customer_mail tells the agents
    mailer = bound_mailer(session)
    if mailer is None:
        return
    if change.kind == "assignee" and change.new:
        _assigned(session, mailer, ticket, change, now)
    elif change.kind == "tier" and _escalation(change):
        _escalated(session, mailer, ticket, change, now)
    elif change.kind == "note" and change.new is not None:
        _noted(session, mailer, ticket, change, now)


def queue_lead_agents(session: Session, ticket: Ticket) -> list[Agent]:
    """The queue's lead: its active agents at the highest tier any of them works (no lead
    setting yet); the SLA sweep's breach mail and the low-rating notice both go to them."""
    team = [a for a in nq.agents(session) if a.active and (not a.queues or ticket.queue in a.queues)]
    for tier in reversed(TIERS):
        lead = [a for a in team if tier in (a.tiers or [])]
        if lead:
            return lead
    return []


def queue_lead(session: Session, ticket: Ticket) -> list[str]:
    """The addresses of `queue_lead_agents`."""
    return [a.email for a in queue_lead_agents(session, ticket)]


def on_low_rating(
    session: Session,
    mailer: Mailer,
    ticket: Ticket,
    rating: int,
    comment: str,
    *,
    now: datetime,
    message_pk: int | None,
) -> list[OutboxItem]:
    """A customer rated the ticket poorly: tell the assignee and the queue's lead, with the
    rating and the comment (plain text, in the body)."""
    row = session.get(Message, message_pk) if message_pk is not None else None
    note = f"Rating: {rating}/5" + (f"\n\n{comment}" if comment else "")
    key_id = str(message_pk) if message_pk is not None else f"{ticket.number}-{now:%Y%m%dT%H%M%S%f}"
    sent = []
    for to in _unique([ticket.assignee, *queue_lead(session, ticket)]):
        item = _send(
            session,
            mailer,
            ticket,
            to,
            event=LOW_RATING,
            key_id=key_id,
            now=now,
            message=row,
            message_pk=message_pk,
            by=ticket.customer.email,
            note=note,
        )
        if item is not None:
            sent.append(item)
    return sent


def _escalation(change: TicketChange) -> bool:
    """An escalation step (it may stay at the top tier), or a move to a higher tier."""
    if change.reason:
        return True
    old, new = str(change.old or ""), str(change.new or "")
    return old in TIERS and new in TIERS and TIERS.index(new) > TIERS.index(old)


def _change_id(session: Session, ticket: Ticket, types: tuple[str, ...], now: datetime) -> str:
    event = nq.latest_event(session, ticket.number, types)
    if event is not None:
        return str(event.id)
    return f"{nq.newest_message_id(session, ticket.number)}-{now:%Y%m%dT%H%M%S%f}"


def _assigned(session: Session, mailer: Mailer, ticket: Ticket, change: TicketChange, now: datetime) -> None:
    if str(change.new).lower() == change.by.lower():
        return  # taking a ticket yourself needs no mail
    key_id = _change_id(session, ticket, ("assigned",), now)
    latest = oq.latest_inbound(session, ticket.number)
    _send(
        session, mailer, ticket, str(change.new), event=ASSIGNED, key_id=key_id, now=now, message=latest, by=change.by
    )


def _escalated(session: Session, mailer: Mailer, ticket: Ticket, change: TicketChange, now: datetime) -> None:
    event = nq.latest_event(session, ticket.number, ("escalated", "tier-changed"))
    note = str((event.data or {}).get("note") or "") if event is not None and event.type == "escalated" else ""
    key_id = _change_id(session, ticket, ("escalated", "tier-changed"), now)
    note_id = (event.data or {}).get("note_message") if event is not None else None
    latest = oq.latest_inbound(session, ticket.number)
    for to in _unique(_tier_pick(session, ticket, str(change.new)), without=change.by):
        if note_id is not None and _noted_already(session, note_id, to):
            continue  # the hand-off note reached this agent a moment ago
        _send(
            session,
            mailer,
            ticket,
            to,
            event=ESCALATED,
            key_id=key_id,
            now=now,
            message=latest,
            by=change.by,
            note=note,
        )


def _noted_already(session: Session, note_id: Any, to: str) -> bool:
    agent = nq.agent(session, to)
    email = agent.email if agent is not None else to.lower()
    return oq.key_queued(session, f"agent-notify:{NOTE}:{note_id}:{email.lower()}")


def _noted(session: Session, mailer: Mailer, ticket: Ticket, change: TicketChange, now: datetime) -> None:
    note = session.get(Message, int(change.new))
    if note is None:
        return
    author = change.by or note.sender
    others = _unique(
        [ticket.assignee, *nq.ticket_agents(session, ticket.number), *nq.note_authors(session, ticket.number)]
    )
    known = {a.email.lower() for a in nq.agents(session)}
    # note authors who are not agents (the rules, cli:<login>) are no one to tell
    recipients = [a for a in _unique(others, without=author) if a.lower() in known or a == ticket.assignee]
    latest = oq.latest_inbound(session, ticket.number)
    for to in recipients:
        _send(
            session,
            mailer,
            ticket,
            to,
            event=NOTE,
            key_id=str(note.id),
            now=now,
            message=latest,
            by=author,
            note=note.visible_text or note.full_text,
        )


__all__ = [
    "ATTACH_LIMIT",
    "MAILER_KEY",
    "TEMPLATE",
    "agent_reply_to",
    "bound_mailer",
    "install",
    "on_low_rating",
    "queue_lead",
    "queue_lead_agents",
    "on_change",
    "on_customer_mail",
    "refusal",
    "thread_root",
]
