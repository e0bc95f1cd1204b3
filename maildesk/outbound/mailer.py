"""Ticket mail: from store rows to a rendered, threaded, signed mail in the outbox.

Owns the recipe every outgoing ticket mail follows: the curated template context built from
the ticket, customer, agent and message rows (plain inputs, never ORM objects), the From
address (the support address the customer wrote to, with the desk's name), the signed
Reply-To and Message-ID, the threading headers (In-Reply-To, References, Thread-Index) and
a subject that always carries the ticket tag, DKIM signing, and finally `outbox.enqueue`.

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
    MessageInput,
    TicketInput,
    TicketRef,
    build_context,
)
from maildesk.outbound.render import RenderError, TemplateRenderer, UnknownTemplate
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


def _utc(value: datetime | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=now.tzinfo)


def _base_address(address: str) -> str:
    local, _, domain = address.lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


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
        """The first of `candidates` that is one of our addresses (without +tag), else the first configured."""
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
        cust = ticket.customer
        others = oq.other_open_tickets(session, cust.id, ticket.number)
        customer = CustomerInput(
            email=cust.email,
            name=cust.name,
            locale=cust.locale,
            timezone=cust.tz,
            vip=cust.vip,
            open_tickets=tuple(TicketRef(t.number, t.subject, t.status, _utc(t.created_at, now)) for t in others),
            past_ticket_count=oq.past_ticket_count(session, cust.id, ticket.number),
        )
        due = oq.sla_due(session, ticket.number)
        assignee = oq.agent_by_email(session, ticket.assignee) if ticket.assignee else None
        fields = tuple((str(k), str(v)) for k, v in (ticket.fields or {}).items())
        tinput = TicketInput(
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
            fields=fields,
        )
        return customer, tinput

    def context(self, *, now: datetime, sender: str, **inputs: Any) -> dict[str, Any]:
        """The template context on this desk: its company (name and the support address
        among `sender`), locale, time zone, tag format and reopen window, plus `inputs`
        (the other keyword arguments of `build_context`)."""
        desk = self.settings.desk
        return build_context(
            now=now,
            company=CompanyInput(desk.name, self.support_address([sender])),
            default_locale=desk.locale,
            default_timezone=desk.timezone,
            tag_format=desk.subject_tag,
            reopen_days=desk.reopen_days,
            **inputs,
        )

    @staticmethod
    def agent_input(agent: Agent | None, email: str = "") -> AgentInput | None:
        if agent is None:
            return AgentInput(name=email.partition("@")[0], email=email) if email else None
        return AgentInput(name=agent.name or agent.email, email=agent.email, signature=agent.signature or "")

    # -- the recipe --------------------------------------------------------------------

    def send(
        self,
        session: Session,
        *,
        key: str,
        ticket_number: int,
        template: str,
        to: Recipient,
        now: datetime,
        automatic: bool,
        parent: Parent | None = None,
        cc: Sequence[str] = (),
        from_addr: str | None = None,
        agent: AgentInput | None = None,
        reader_agent: AgentInput | None = None,
        message: MessageInput | None = None,
        bounce: BounceInput | None = None,
        kind: str = "auto",
        internal: bool = False,
        message_pk: int | None = None,
    ) -> OutboxItem | None:
        """Render `template` for the ticket and queue it under `key` (None: key used before).

        `reader_agent` makes an agent the reader (for agent-facing templates). Raises one of
        COMPOSE_ERRORS when the mail cannot be composed (bad address, broken built-in template).
        """
        if oq.item_by_key(session, key) is not None:
            return None
        ticket = session.get(Ticket, ticket_number)
        if ticket is None:
            raise ValueError(f"no ticket {ticket_number}")
        desk = self.settings.desk
        customer, tinput = self._inputs(session, ticket, now)
        if template in AGENT_FACING and reader_agent is None:
            reader_agent = AgentInput(name=to.name or to.email, email=to.email)
        ctx = self.context(
            now=now,
            sender=from_addr or "",
            customer=customer,
            ticket=tinput,
            agent=agent,
            message=message,
            bounce=bounce,
            recipient=reader_agent,
        )
        rendered = self.renderer.render(template, ctx, locale=str(ctx["locale"]), queue=ticket.queue or None)
        if rendered.errors:
            q.add_event(
                session,
                ticket_number,
                "template-fell-back",
                {"template": template, "errors": list(rendered.errors), "used": rendered.template_path},
                now,
                message_pk,
            )
        sender = (
            self.support_address([from_addr or ""])
            if from_addr
            else self.ticket_support_address(session, ticket_number)
        )
        domain = sender.rpartition("@")[2]
        subject = rendered.subject
        if find_tag(desk.subject_tag, subject) != ticket_number:
            subject = (
                reply_subject(subject, desk.subject_tag, ticket_number)
                if parent
                else f"{format_tag(desk.subject_tag, ticket_number)} {subject}"
            )
        if parent is not None:
            thread_index = (
                child_thread_index(parent.thread_index, now) if parent.thread_index else new_thread_index(now)
            )
        else:
            thread_index = ""
        mail = OutgoingMail(
            from_addr=sender,
            from_name=self.settings.outbound.from_name or desk.name,
            to=(check_address(to.email.lower(), "to"),),
            cc=tuple(c for c in dict.fromkeys(a.lower() for a in cc) if c != to.email.lower()),
            reply_to=make_reply_address(self.settings.secret, sender, ticket_number),
            subject=subject,
            text=rendered.text,
            html=rendered.html,
            message_id=make_message_id(self.settings.secret, ticket_number, domain, outbox.nonce_for(key)),
            in_reply_to=parent.message_id if parent else "",
            references=parent.references if parent else (),
            thread_index=thread_index,
            automatic=automatic,
            loop_value=self.loop_value,
        )
        return outbox.enqueue(
            session,
            key=key,
            ticket_number=ticket_number,
            mail=mail,
            template=template,
            automatic=automatic,
            now=now,
            policy=self.policy,
            signer=self.signer,
            facts=outbox.MessageFacts(kind=kind, text=rendered.text, html=rendered.html or "", internal=internal),
            message_pk=message_pk,
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
