"""The respond stage and the agent-reply / resolution senders, through the real pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.message import parse_bytes
from maildesk.outbound.context import AgentInput, MessageInput
from maildesk.outbound.mailer import Mailer, Recipient, SendRequest
from maildesk.outbound.outbox import loop_id
from maildesk.outbound.render import TemplateRenderer
from maildesk.pipeline.context import MessageContext, PipelineDeps, stage
from maildesk.pipeline.stages.respond import respond, send_agent_reply, send_resolution_notice
from maildesk.rules.model import AutoMail, Decision
from maildesk.rules.screen import screen_message
from maildesk.store.models import Agent, Message, Ticket
from tests.support.mailgen import eml
from tests.support.outbox_kit import (
    Clock,
    RelaySink,
    event_types,
    events,
    new_ticket,
    outbox_rows,
    relay_settings,
    sender_for,
)


@stage()
def screening(ctx: MessageContext, session: Any, deps: PipelineDeps) -> None:
    """The real screen, as the lead's screen stage will call it."""
    settings = deps.settings
    ctx.screen = screen_message(
        ctx.msg,
        own_addresses=frozenset(settings.desk.support_addresses),
        loop_value=loop_id(settings.secret),
    )


def with_stages(desk: Any, *middle: Any) -> None:
    """dedupe → the given stages (screen, route stand-ins) → persist → respond."""
    from maildesk.pipeline.stages.dedupe import dedupe
    from maildesk.pipeline.stages.persist import persist

    desk.worker.stages = (dedupe, *middle, persist, respond)


def deciding(decision: Decision) -> Any:
    @stage()
    def route(ctx: MessageContext, session: Any, deps: PipelineDeps) -> None:
        ctx.decision = decision

    return route


def test_auto_reply_gets_no_ack(wired: Any, clock: Clock) -> None:
    with_stages(wired, screening)
    number = new_ticket(wired, clock, subject="Out of office", extra="Auto-Submitted: auto-replied")
    assert outbox_rows(wired) == []
    assert "mail-queued" not in event_types(wired, number)


def test_our_own_ack_coming_back_is_a_loop_and_gets_no_ack(wired: Any, clock: Clock, sink: RelaySink) -> None:
    with_stages(wired, screening)
    new_ticket(wired, clock)
    sender = sender_for(wired, relay_settings(wired.settings, sink.port), clock)
    sender.send_due()
    (_, _, ack) = sink.received[0]
    # a customer's broken server bounces our ack back verbatim, from a foreign address
    reflected = ack.replace(b"From: Example Support <support@example.com>", b"From: robot@customer.example")
    wired.spool.put(reflected, "smtp")
    assert wired.process()["failed"] == 0
    assert len(outbox_rows(wired)) == 1  # still only the first ack
    with wired.store.reader() as s:
        back = s.scalars(select(Message).where(Message.direction == "in").order_by(Message.id.desc())).first()
        assert back is not None and back.screen == "loop" and back.sender == "robot@customer.example"


def test_human_mail_with_auto_submitted_no_gets_an_ack(wired: Any, clock: Clock) -> None:
    with_stages(wired, screening)
    new_ticket(wired, clock, extra="Auto-Submitted: no")
    assert [r.template for r in outbox_rows(wired)] == ["ack"]


def test_spam_or_discard_decision_gets_no_ack(wired: Any, clock: Clock) -> None:
    with_stages(wired, deciding(Decision(spam="viagra")))
    number = new_ticket(wired, clock)
    assert outbox_rows(wired) == []
    (ev,) = events(wired, number, "auto-reply-skipped")
    assert "spam" in ev.data["reason"]


def test_reply_on_existing_ticket_gets_no_second_ack(wired: Any, clock: Clock) -> None:
    number = new_ticket(wired, clock)

    @stage()
    def thread_to_ticket(ctx: MessageContext, session: Any, deps: PipelineDeps) -> None:
        ctx.ticket_number = number

    from maildesk.pipeline.stages.dedupe import dedupe
    from maildesk.pipeline.stages.persist import persist

    wired.worker.stages = (dedupe, thread_to_ticket, persist, respond)
    wired.spool.put(eml(subject=f"Re: [#{number}] Printer on fire", body="more details"), "smtp")
    wired.process()
    assert [r.template for r in outbox_rows(wired)] == ["ack"]


def test_rule_replies_are_sent_and_unknown_templates_are_recorded(wired: Any, clock: Clock, tmp_path: Path) -> None:
    site = tmp_path / "site" / "en"
    site.mkdir(parents=True)
    (site / "opening_hours.txt.j2").write_text(
        "Subject: {{ ticket.reply_subject }}\n\nDear {{ recipient.display_name }}, we open at 9.\n"
        "You wrote: {{ message.excerpt }}\n"
    )
    wired.deps.mailer = Mailer(wired.settings, TemplateRenderer(tmp_path / "site"))
    mails = (
        AutoMail("ack", "a new ticket is acknowledged", kind="ack"),
        AutoMail("opening_hours", "rule 'x': reply opening_hours (also)", kind="also"),
        AutoMail("no_such_template", "rule 'y': reply no_such_template (also)", kind="also"),
    )
    with_stages(wired, deciding(Decision(ack="ack", mails=mails, replies=("opening_hours", "no_such_template"))))
    number = new_ticket(wired, clock, body="Are you open on Sunday?")
    rows = outbox_rows(wired)
    assert [r.template for r in rows] == ["ack", "opening_hours"]  # the decision's mails, in order
    with wired.store.reader() as s:
        msg_pk = s.scalars(select(Message.id).where(Message.direction == "in")).one()
    assert rows[1].idempotency_key == f"rule:{msg_pk}:opening_hours"
    text = parse_bytes(rows[1].raw).text
    assert "we open at 9" in text and "Are you open on Sunday?" in text
    (ev,) = events(wired, number, "mail-not-composed")
    assert ev.data["template"] == "no_such_template"
    assert wired.worker.stats.failed == 0


def test_agent_reply_threads_on_the_customer_mail_and_sets_first_response(wired: Any, clock: Clock) -> None:
    number = new_ticket(
        wired,
        clock,
        message_id="<cust1@customer.example>",
        to="billing@example.com",
        extra="Cc: Bob <bob@customer.example>",
    )
    with wired.store.session() as s:
        s.add(Agent(email="jonas@example.com", name="Jonas Weber", signature="Jonas Weber\nExample Ltd."))
    clock.advance(600)
    with wired.store.session() as s:
        item = send_agent_reply(
            s, wired.deps, number, "Please unplug it.\nJonas", "Jonas@Example.com", clock(), key="cli:1"
        )
        assert item is not None and not item.automatic and item.state == "queued"
    with wired.store.session() as s:
        again = send_agent_reply(
            s, wired.deps, number, "Please unplug it.\nJonas", "jonas@example.com", clock(), key="cli:1"
        )
        assert again is None
    row = outbox_rows(wired)[-1]
    got = parse_bytes(row.raw)
    assert got.in_reply_to == ("cust1@customer.example",)
    assert got.from_ is not None and got.from_.email == "billing@example.com"  # the address the customer wrote to
    assert [a.email for a in got.to] == ["anna@customer.example"] and [a.email for a in got.cc] == [
        "bob@customer.example"
    ]
    assert got.header("Auto-Submitted") == "" and "Please unplug it." in got.text and "Example Ltd." in got.text
    assert sorted(row.recipients) == ["anna@customer.example", "bob@customer.example"]
    with wired.store.reader() as s:
        ticket = s.get(Ticket, number)
        assert ticket.first_response_at is not None
        out = s.scalars(select(Message).where(Message.message_id == row.message_id)).one()
        assert out.kind == "agent-reply" and out.direction == "out"
    (ev,) = events(wired, number, "agent-replied")
    assert ev.data["agent"] == "jonas@example.com"


def test_resolution_notice_once_per_resolution(wired: Any, clock: Clock) -> None:
    number = new_ticket(wired, clock)
    with wired.store.session() as s:
        ticket = s.get(Ticket, number)
        ticket.status, ticket.resolved_at = "resolved", clock()
    for _ in range(2):
        with wired.store.session() as s:
            send_resolution_notice(s, wired.deps, number, clock())
    rows = [r for r in outbox_rows(wired) if r.template == "resolved"]
    assert len(rows) == 1 and rows[0].automatic
    assert "resolved" in parse_bytes(rows[0].raw).text


def test_unknown_ticket_is_refused(wired: Any, clock: Clock) -> None:
    with wired.store.session() as s, pytest.raises(ValueError):
        send_agent_reply(s, wired.deps, 999, "hi", "jonas@example.com", clock())


def test_send_request_queues_once_per_key_with_cc_and_reader(wired: Any, clock: Clock) -> None:
    """Mailer.send takes one SendRequest: the key queues once, `to` is never copied to
    itself, an agent-facing template is read by an agent named after `to`."""
    number = new_ticket(wired, clock)
    request = SendRequest(
        key=f"test:{number}",
        ticket_number=number,
        template="agent_notification",
        to=Recipient("Jonas@Example.com", "Jonas Weber"),
        automatic=True,
        cc=("jonas@example.com", "Maria@Example.com", "maria@example.com"),
        internal=True,
        message=MessageInput(text="The printer is on fire.", sender_email="anna@customer.example"),
    )
    mailer = wired.deps.mailer
    with wired.store.session() as s:
        first = mailer.send(s, request, clock())
        assert first is not None
        assert mailer.send(s, request, clock()) is None
    rows = [r for r in outbox_rows(wired) if r.template == "agent_notification"]
    assert len(rows) == 1 and rows[0].recipients == ["jonas@example.com", "maria@example.com"]
    sent = parse_bytes(rows[0].raw)
    assert sent.header("Auto-Submitted") == "auto-generated" and f"[#{number}]" in sent.subject
    assert "The printer is on fire." in sent.text and "Jonas" in sent.text
    with wired.store.reader() as s:
        out = s.scalars(select(Message).where(Message.message_id == rows[0].message_id)).one()
        assert out.internal and out.kind == "auto"
    assert Mailer.agent_input(None, "jonas@example.com") == AgentInput(name="jonas", email="jonas@example.com")
