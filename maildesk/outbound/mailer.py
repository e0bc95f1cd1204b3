"""Ticket mail: from store rows to a rendered, threaded, signed mail in the outbox.

Owns the recipe every outgoing ticket mail follows: the curated template context built from
the ticket, customer, agent and message rows (plain inputs, never ORM objects), the From
address (the support address the customer wrote to, with the desk's name), the signed
Reply-To and Message-ID, the threading headers (In-Reply-To, References, Thread-Index) and
a subject that always carries the ticket tag, DKIM signing, and finally `outbox.enqueue`.
A caller states what it wants in one `SendRequest` (idempotency key, ticket, template,
recipients, parent, flags, the message and agent the mail is about) and calls
`Mailer.send(session, request, now)`.

It must not: decide whether a mail is wanted (callers: `pipeline/respond.py`, the sender's
failure notices, the CLI), commit, talk SMTP, or read the clock (`now` is passed in).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maildesk.config import Settings
from maildesk.message import ParsedMessage, parse_bytes
from maildesk.outbound import outbox
from maildesk.outbound.compose import HeaderInjection, OutgoingMail, check_address
from maildesk.outbound.context import (
    AGENT_FACING,
    AgentInput,
    BounceInput,
    CompanyInput,
    CustomerInput,
    FollowupInput,
    HoursInput,
    MessageInput,
    NoticeInput,
    SlaInput,
    SurveyInput,
    TicketInput,
    TicketRef,
    build_context,
)
from maildesk.outbound.render import Rendered, RenderError, TemplateRenderer, UnknownTemplate
from maildesk.store import Session
from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store.models import Agent, Message, OutboxItem, Ticket
from maildesk.threading import (
    child_thread_index,
    find_tag,
    format_tag,
    make_message_id,
    make_reply_address,
    new_thread_index,
    reply_subject,
)

log = logging.getLogger("maildesk.outbound")

COMPOSE_ERRORS = (HeaderInjection, RenderError, UnknownTemplate, ValueError)


@dataclass(frozen=True)
class Parent:
    """The mail ours answers: its id and the threading headers to continue."""

    message_id: str
    references: tuple[str, ...] = ()
    thread_index: str = ""

    @classmethod
    def of(cls, msg: ParsedMessage) -> Parent | None:
        if msg.message_id_synthetic or not msg.message_id:
            return None
        return cls(msg.message_id, tuple(msg.references), msg.header("Thread-Index"))

    @classmethod
    def of_row(cls, row: Message | None) -> Parent | None:
        if row is None:
            return None
        if row.raw:
            try:
                return cls.of(parse_bytes(row.raw))
            except Exception:  # noqa: BLE001 - stored mail parsed once; fall back to the id
                pass
        return cls(row.message_id) if row.message_id else None


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str = ""


@dataclass(frozen=True)
class SendRequest:
    """One ticket mail to queue: everything `Mailer.send` needs besides the session and `now`.

    `key` is the idempotency key: a key queued before queues nothing, and the Message-ID is
    derived from it. `to` gets the mail, `cc` are copied (never `to` twice). `parent` is the
    mail ours answers (threading headers, `Re:` subject). `from_addr` names the support
    address to send from when it is one of ours (default: the one the ticket's first mail
    went to). `automatic` marks the mail Auto-Submitted and subject to the automatic-mail
    limits; `kind` and `internal` describe the outgoing Message row. `agent` is the agent a
    reply speaks for; `reader_agent` makes an agent the reader (agent-facing templates
    default to an agent named after `to`); `message` and `bounce` fill those template
    sections. `message_pk` is the incoming message that caused the mail (its events point there).
    `reply_to` replaces the ticket's signed reply address (an agent notification's agent
    token); `notice` fills the agent notification's section; `attachments` go along as files
    (filename, content type, payload).
    """

    key: str
    ticket_number: int
    template: str
    to: Recipient
    automatic: bool
    kind: str = "auto"
    internal: bool = False
    parent: Parent | None = None
    cc: tuple[str, ...] = ()
    from_addr: str = ""
    agent: AgentInput | None = None
    reader_agent: AgentInput | None = None
    message: MessageInput | None = None
    bounce: BounceInput | None = None
    message_pk: int | None = None
    attachments: tuple[tuple[str, str, bytes], ...] = ()  # (filename, content type, payload) sent along
    reply_to: str = ""
    notice: NoticeInput | None = None
    from_name: str = ""  # the From display name; default: outbound.from_name or the desk's name
    sla: SlaInput | None = None  # sla_warning / sla_breach
    followup: FollowupInput | None = None  # followup
    survey: SurveyInput | None = None  # resolved (inline survey), survey, survey_low


def to_customer(session: Session, ticket: Ticket, *, key: str, template: str, **more: Any) -> SendRequest:
    """An automatic mail to the ticket's customer, threaded under their latest mail (the
    resolution notice, survey, follow-up, merge notice): the one way these are addressed."""
    return SendRequest(
        key=key,
        ticket_number=ticket.number,
        template=template,
        to=Recipient(ticket.customer.email, ticket.customer.name),
        automatic=True,
        parent=Parent.of_row(oq.latest_inbound(session, ticket.number)),
        kind="auto",
        **more,
    )


def _asked(ticket: Ticket) -> tuple[str, ...]:
    """The fields a rule's `ask:` asked for and did not get (tickets.ask, migration 0007):
    while waiting, and after the hand-off to an agent."""
    ask = ticket.ask or {}
    if ask.get("state") not in ("waiting", "handed-off"):
        return ()
    return tuple(str(n) for n in ask.get("missing") or ())


def _merged_into(session: Session, ticket: Ticket, now: datetime) -> TicketRef | None:
    if ticket.merged_into is None:
        return None
    target = session.get(Ticket, ticket.merged_into)
    if target is None:
        return None
    return TicketRef(target.number, target.subject, target.status, _utc(target.created_at, now))


def _utc(value: datetime | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=now.tzinfo)


def _base_address(address: str) -> str:
    local, _, domain = address.lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def _thread_index(parent: Parent | None, now: datetime) -> str:
    """Outlook's Thread-Index: none without a parent, else a child of the parent's (a new one when it had none)."""
    if parent is None:
        return ""
    return child_thread_index(parent.thread_index, now) if parent.thread_index else new_thread_index(now)


class Mailer:
    """Composes ticket mail for one desk (its settings, templates and DKIM key)."""

    def __init__(self, settings: Settings, renderer: TemplateRenderer | None = None) -> None:
        self.settings = settings
        desk = settings.desk
        site = settings.resolve(desk.templates_dir) if desk.templates_dir else None
        self.renderer = renderer or TemplateRenderer(site, default_locale=desk.locale)
        self.policy = outbox.policy_from(settings.limits)
        self.loop_value = settings.instance_id  # what the screen recognises as our own mail
        self.signer = self._dkim_signer()
        self._hours: tuple[Settings, HoursInput | None] | None = None  # (for these settings, business_hours())
        self._support: tuple[Settings, dict[tuple[str, ...], str]] = (settings, {})  # support_address's answers

    def _dkim_signer(self) -> outbox.Signer | None:
        out = self.settings.outbound
        if not (out.dkim_selector and out.dkim_domain and out.dkim_key_file):
            return None
        from maildesk.outbound.dkim import sign

        key = self.settings.resolve(out.dkim_key_file).read_bytes()

        def signer(raw: bytes) -> bytes:
            return sign(raw, selector=out.dkim_selector, domain=out.dkim_domain, key_pem=key)

        return signer

    # -- addresses ---------------------------------------------------------------------

    def support_address(self, candidates: Sequence[str] = ()) -> str:
        """The first of `candidates` that is one of our addresses (without +tag), else the first configured.
        Remembered per candidates for the (frozen) settings it was read from."""
        key = tuple(candidates)
        memo = self._support
        if memo[0] is not self.settings or len(memo[1]) >= 1024:
            memo = self._support = (self.settings, {})
        found = memo[1].get(key)
        if found is None:
            found = memo[1][key] = self._support_address(key)
        return found

    def _support_address(self, candidates: Sequence[str]) -> str:
        for addr in candidates:
            if addr and "@" in addr and self.settings.is_support_address(addr):
                base = _base_address(addr)
                try:
                    return check_address(base)
                except HeaderInjection:
                    continue
        if self.settings.desk.support_addresses:
            return self.settings.desk.support_addresses[0]
        return f"support@{self.settings.desk.support_domains[0]}"

    def ticket_support_address(self, session: Session, ticket_number: int) -> str:
        first = oq.first_inbound(session, ticket_number)
        return self.support_address(list(first.recipients or []) if first is not None else [])

    # -- context -----------------------------------------------------------------------

    def _inputs(self, session: Session, ticket: Ticket, now: datetime) -> tuple[CustomerInput, TicketInput]:
        return self._customer_input(session, ticket, now), self._ticket_input(session, ticket, now)

    @staticmethod
    def _customer_input(session: Session, ticket: Ticket, now: datetime) -> CustomerInput:
        cust = ticket.customer
        others = oq.customer_tickets(session, cust.id, ticket.number)
        return CustomerInput(
            email=cust.email,
            name=cust.name,
            locale=cust.locale,
            timezone=cust.tz,
            vip=cust.vip,
            open_tickets=tuple(
                TicketRef(n, subject, status, _utc(at, now)) for n, subject, status, at in others.newest_open
            ),
            past_ticket_count=others.past,
        )

    @staticmethod
    def _ticket_input(session: Session, ticket: Ticket, now: datetime) -> TicketInput:
        due = oq.sla_due(session, ticket.number)
        assignee = oq.agent_by_email(session, ticket.assignee) if ticket.assignee else None
        return TicketInput(
            number=ticket.number,
            subject=ticket.subject,
            status=ticket.status,
            queue=ticket.queue,
            tier=ticket.tier,
            priority=ticket.priority,
            created_at=_utc(ticket.created_at, now),
            first_response_due=_utc(due.get("first_response"), now),
            next_update_due=_utc(due.get("update") or due.get("next_update"), now),
            resolution_due=_utc(due.get("resolution"), now),
            assignee_name=(assignee.name or assignee.email) if assignee else (ticket.assignee or ""),
            fields=tuple((str(k), str(v)) for k, v in (ticket.fields or {}).items()),
            asked=_asked(ticket),
            merged_into=_merged_into(session, ticket, now),
        )

    def context(self, *, now: datetime, sender: str, **inputs: Any) -> dict[str, Any]:
        """The template context on this desk: its company (name and the support address
        among `sender`), locale, time zone, tag format and reopen window, plus `inputs`
        (the other keyword arguments of `build_context`)."""
        desk = self.settings.desk
        return build_context(
            now=now,
            company=CompanyInput(desk.name, self.support_address([sender]), hours=self.business_hours()),
            default_locale=desk.locale,
            default_timezone=desk.timezone,
            tag_format=desk.subject_tag,
            reopen_days=desk.reopen_days,
            **inputs,
        )

    def business_hours(self) -> HoursInput | None:
        """The desk's business hours for templates: its default SLA calendar (None in calendar time).
        Remembered for the (frozen) settings it was read from."""
        if self._hours is None or self._hours[0] is not self.settings:
            self._hours = (self.settings, self._business_hours())
        return self._hours[1]

    def _business_hours(self) -> HoursInput | None:
        try:
            calendar = self.settings.sla.calendar("default")
        except KeyError:
            return None
        if calendar.calendar_time:
            return None
        week = tuple(tuple((span.start, span.end) for span in spans) for spans in calendar.week)
        return HoursInput(calendar.timezone, week)

    @staticmethod
    def agent_input(agent: Agent | None, email: str = "") -> AgentInput | None:
        if agent is None:
            return AgentInput(name=email.partition("@")[0], email=email) if email else None
        return AgentInput(name=agent.name or agent.email, email=agent.email, signature=agent.signature or "")

    # -- the recipe --------------------------------------------------------------------

    def send(
        self,
        session: Session,
        request: SendRequest,
        now: datetime,
        *,
        new_key: bool = False,
        memo: dict[Any, Any] | None = None,
    ) -> OutboxItem | None:
        """Render the request's template for its ticket and queue it under its key (None: key used before).

        `new_key`: the key names rows made in this transaction (a new ticket's acknowledgement),
        so no look-up before rendering (the unique key still refuses a repeat). `memo`: shared by
        the mails of one cause whose ticket does not change in between (the respond stage), so
        the ticket's and customer's template inputs are read once.
        Raises one of COMPOSE_ERRORS when the mail cannot be composed (bad address, broken built-in template).
        """
        if not new_key and oq.key_queued(session, request.key):
            return None
        ticket = session.get(Ticket, request.ticket_number)
        if ticket is None:
            raise ValueError(f"no ticket {request.ticket_number}")
        rendered = self._render(session, ticket, request, now, memo)
        mail = self._compose(request, rendered, self._sender(session, request), now)
        facts = outbox.MessageFacts(
            kind=request.kind, text=rendered.text, html=rendered.html or "", internal=request.internal
        )
        return outbox.enqueue(
            session,
            key=request.key,
            ticket_number=request.ticket_number,
            mail=mail,
            template=request.template,
            automatic=request.automatic,
            now=now,
            policy=self.policy,
            signer=self.signer,
            facts=facts,
            message_pk=request.message_pk,
        )

    def _render(
        self, session: Session, ticket: Ticket, request: SendRequest, now: datetime, memo: dict[Any, Any] | None = None
    ) -> Rendered:
        """The template rendered with the ticket's context; falling back to the built-in one is an event."""
        inputs = memo.get(("inputs", ticket.number)) if memo is not None else None
        if inputs is None:
            inputs = self._inputs(session, ticket, now)
            if memo is not None:
                memo[("inputs", ticket.number)] = inputs
        customer, tinput = inputs
        reader = request.reader_agent
        if request.template in AGENT_FACING and reader is None:
            reader = AgentInput(name=request.to.name or request.to.email, email=request.to.email)
        ctx = self.context(
            now=now,
            sender=request.from_addr,
            customer=customer,
            ticket=tinput,
            agent=request.agent,
            message=request.message,
            bounce=request.bounce,
            notice=request.notice,
            recipient=reader,
            sla=request.sla,
            followup=request.followup,
            survey=request.survey,
        )
        rendered = self.renderer.render(request.template, ctx, locale=str(ctx["locale"]), queue=ticket.queue or None)
        if rendered.errors:
            data = {"template": request.template, "errors": list(rendered.errors), "used": rendered.template_path}
            q.add_event(session, ticket.number, "template-fell-back", data, now, request.message_pk)
        return rendered

    def _sender(self, session: Session, request: SendRequest) -> str:
        if request.from_addr:
            return self.support_address([request.from_addr])
        return self.ticket_support_address(session, request.ticket_number)

    def _subject(self, subject: str, ticket_number: int, *, reply: bool) -> str:
        """`subject` carrying the ticket tag: as it is when tagged, else `Re: [#N] …` for a reply,
        `[#N] …` otherwise."""
        tag_format = self.settings.desk.subject_tag
        if find_tag(tag_format, subject) == ticket_number:
            return subject
        if reply:
            return reply_subject(subject, tag_format, ticket_number)
        return f"{format_tag(tag_format, ticket_number)} {subject}"

    def _compose(self, request: SendRequest, rendered: Rendered, sender: str, now: datetime) -> OutgoingMail:
        """The mail's headers and bodies: from `sender`, signed Reply-To and Message-ID, threaded under the parent."""
        number, parent = request.ticket_number, request.parent
        to = request.to.email.lower()
        secret = self.settings.secret
        return OutgoingMail(
            from_addr=sender,
            from_name=request.from_name or self.settings.outbound.from_name or self.settings.desk.name,
            to=(check_address(to, "to"),),
            cc=tuple(c for c in dict.fromkeys(a.lower() for a in request.cc) if c != to),
            reply_to=request.reply_to or make_reply_address(secret, sender, number),
            subject=self._subject(rendered.subject, number, reply=parent is not None),
            text=rendered.text,
            html=rendered.html,
            message_id=make_message_id(secret, number, sender.rpartition("@")[2], outbox.nonce_for(request.key)),
            in_reply_to=parent.message_id if parent else "",
            references=parent.references if parent else (),
            thread_index=_thread_index(parent, now),
            automatic=request.automatic,
            loop_value=self.loop_value,
            attachments=request.attachments,
        )


def compose_failed(
    session: Session,
    ticket_number: int | None,
    template: str,
    exc: Exception,
    now: datetime,
    message_pk: int | None = None,
) -> None:
    """Record that a mail could not be composed (the cause is kept; nothing is sent)."""
    log.error("could not compose %s for ticket %s: %s", template, ticket_number, exc)
    data: dict[str, Any] = {"template": template, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    q.add_event(session, ticket_number, "mail-not-composed", data, now, message_pk)
