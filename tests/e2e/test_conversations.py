"""End-to-end stories through the real pipeline (both backends): say(...) -> what happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from maildesk.store.models import Event, Message, OutboxItem, Participant, Suppression, Ticket
from maildesk.threading import make_message_id
from tests.support.mailgen import eml


class Conversation:
    def __init__(self, desk: Any) -> None:
        self.desk = desk
        self.now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
        desk.worker.clock = lambda: self.now

    def say(self, raw: bytes) -> Any:
        self.desk.spool.put(raw, "test")
        self.desk.process()
        with self.desk.store.reader() as s:
            return s.scalars(select(Message).where(Message.direction == "in").order_by(Message.id.desc())).first()

    def ticket(self, number: int) -> Ticket:
        with self.desk.store.reader() as s:
            t = s.get(Ticket, number)
            assert t is not None
            return t

    def events(self, number: int | None, type_: str) -> list[dict[str, Any]]:
        with self.desk.store.reader() as s:
            return [e.data for e in s.scalars(select(Event).where(Event.ticket_number == number, Event.type == type_))]

    def set_status(self, number: int, status: str, at: datetime) -> None:
        with self.desk.store.session() as s:
            t = s.get(Ticket, number)
            assert t is not None
            t.status = status
            t.resolved_at = at


def test_reply_by_in_reply_to_and_references_threads(desk: Any) -> None:
    c = Conversation(desk)
    first = c.say(eml(message_id="<q1@customer.example>"))
    reply = c.say(
        eml(
            message_id="<q2@customer.example>",
            subject="Re: Printer on fire",
            extra="In-Reply-To: <q1@customer.example>\nReferences: <q1@customer.example>",
        )
    )
    assert reply.ticket_number == first.ticket_number
    assert c.events(first.ticket_number, "threaded")[-1]["method"] == "message-id"
    # Outlook-style: only References, with junk around
    third = c.say(
        eml(
            message_id="<q3@customer.example>",
            subject="AW: Printer on fire",
            extra="References: <unknown@x> <q2@customer.example>",
        )
    )
    assert third.ticket_number == first.ticket_number


def test_reply_to_our_signed_message_id_threads_first(desk: Any) -> None:
    c = Conversation(desk)
    first = c.say(eml(message_id="<o1@customer.example>"))
    ours = make_message_id(desk.settings.secret, first.ticket_number, "example.com")
    reply = c.say(
        eml(message_id="<o2@customer.example>", subject="Re: something else entirely", extra=f"In-Reply-To: <{ours}>")
    )
    assert reply.ticket_number == first.ticket_number
    assert c.events(first.ticket_number, "threaded")[-1]["method"] == "own-message-id"


def test_cc_reply_all_joins_the_ticket(desk: Any) -> None:
    c = Conversation(desk)
    first = c.say(eml(message_id="<c1@customer.example>", extra="Cc: Bob <bob@partner.example>"))
    reply = c.say(
        eml(
            message_id="<c2@partner.example>",
            sender="Bob <bob@partner.example>",
            to="support@example.com, anna@customer.example",
            subject="RE: Printer on fire",
            extra="In-Reply-To: <c1@customer.example>",
        )
    )
    assert reply.ticket_number == first.ticket_number
    with desk.store.reader() as s:
        roles = {
            p.address: p.role
            for p in s.scalars(select(Participant).where(Participant.ticket_number == first.ticket_number))
        }
    assert roles["bob@partner.example"] in {"cc", "customer"}


def test_subject_tag_only_from_participants(desk: Any) -> None:
    c = Conversation(desk)
    first = c.say(eml(message_id="<t1@customer.example>"))
    tag = f"[#{first.ticket_number}]"
    # headers dropped, tag kept, extra text after the tag: a participant threads
    mine = c.say(eml(message_id="<t2@customer.example>", subject=f"Re: {tag}printer still burning"))
    assert mine.ticket_number == first.ticket_number
    # a colleague from the same company domain threads too
    colleague = c.say(
        eml(message_id="<t3@customer.example>", sender="Carl <carl@customer.example>", subject=f"{tag} update")
    )
    assert colleague.ticket_number == first.ticket_number
    # a stranger guessing the tag gets a new ticket, and the refusal is recorded
    stranger = c.say(
        eml(message_id="<t4@evil.example>", sender="Eve <eve@evil.example>", subject=f"Re: {tag} give me the data")
    )
    assert stranger.ticket_number != first.ticket_number
    refused = c.events(stranger.ticket_number, "threaded")[-1]["refused"]
    assert any("tag" in r for r in refused)


def test_forwarded_mail_opens_a_new_ticket(desk: Any) -> None:
    c = Conversation(desk)
    c.say(eml(message_id="<f1@customer.example>"))
    fwd = c.say(
        eml(
            message_id="<f2@other.example>",
            sender="Olga <olga@other.example>",
            subject="Fwd: Printer on fire",
            body="FYI\n\n---------- Forwarded message ---------\nFrom: Anna\n\nmy printer is on fire\n",
        )
    )
    assert c.events(fwd.ticket_number, "threaded")[-1]["method"] == "new"


def test_reply_to_closed_ticket_inside_and_outside_reopen_window(desk: Any) -> None:
    c = Conversation(desk)
    first = c.say(eml(message_id="<r1@customer.example>"))
    c.set_status(first.ticket_number, "resolved", c.now)
    c.now += timedelta(days=3)
    inside = c.say(eml(message_id="<r2@customer.example>", extra="In-Reply-To: <r1@customer.example>"))
    assert inside.ticket_number == first.ticket_number
    assert c.ticket(first.ticket_number).status == "open"
    assert c.events(first.ticket_number, "reopened")
    c.set_status(first.ticket_number, "closed", c.now)
    c.now += timedelta(days=desk.settings.desk.reopen_days + 1)
    outside = c.say(eml(message_id="<r3@customer.example>", extra="In-Reply-To: <r2@customer.example>"))
    assert outside.ticket_number != first.ticket_number
    assert c.ticket(outside.ticket_number).linked_to == first.ticket_number
    assert c.ticket(first.ticket_number).status == "closed"


def test_visible_text_is_separated_from_quote_and_signature(desk: Any) -> None:
    c = Conversation(desk)
    first = c.say(eml(message_id="<v1@customer.example>"))
    body = (
        "Still broken, see attached.\n\n-- \nAnna Schmidt\nCustomer Inc.\n\n"
        "On Sun, 22 Nov 2026 at 10:00, Support <support@example.com> wrote:\n> We are on it.\n"
    )
    reply = c.say(eml(message_id="<v2@customer.example>", body=body, extra="In-Reply-To: <v1@customer.example>"))
    assert reply.ticket_number == first.ticket_number
    assert reply.visible_text.strip() == "Still broken, see attached."
    assert "We are on it" in reply.quoted_text and "Anna Schmidt" in reply.signature
    assert "We are on it" in reply.full_text


def test_out_of_office_is_recorded_without_reopening_or_new_ticket(desk: Any) -> None:
    c = Conversation(desk)
    first = c.say(eml(message_id="<a1@customer.example>"))
    c.set_status(first.ticket_number, "pending", c.now)
    ooo = c.say(
        eml(
            message_id="<a2@customer.example>",
            subject="Automatic reply: Printer on fire",
            extra="Auto-Submitted: auto-replied\nIn-Reply-To: <a1@customer.example>",
            body="I am away until Monday.",
        )
    )
    assert ooo.ticket_number == first.ticket_number and ooo.kind == "auto"
    assert c.ticket(first.ticket_number).status == "pending"
    stray = c.say(
        eml(message_id="<a3@customer.example>", subject="Out of Office", extra="Auto-Submitted: auto-replied")
    )
    assert stray.ticket_number is None
    with desk.store.reader() as s:
        assert len(list(s.scalars(select(Ticket)))) == 1


def test_permanent_bounce_suppresses_address_and_is_recorded_on_ticket(desk: Any) -> None:
    c = Conversation(desk)
    first = c.say(eml(message_id="<b1@customer.example>"))
    ours = make_message_id(desk.settings.secret, first.ticket_number, "example.com")
    with desk.store.session() as s:
        s.get(Ticket, first.ticket_number).assignee = "agent@example.com"
        s.add(
            Message(
                ticket_number=first.ticket_number,
                direction="out",
                kind="auto",
                message_id=ours,
                mid_hash=__import__("maildesk.store.queries", fromlist=["mid_hash"]).mid_hash(ours),
                content_hash="x",
                raw=b"",
                created_at=c.now,
                sender="support@example.com",
                recipients=["anna@customer.example"],
            )
        )
    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@mx.example.net>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; anna@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{ours}>\r\n"
        "To: anna@customer.example\r\n--B--\r\n"
    ).encode()
    bounce = c.say(dsn)
    assert bounce.kind == "bounce" and bounce.ticket_number == first.ticket_number
    with desk.store.reader() as s:
        sup = s.scalars(select(Suppression)).one()
    assert sup.address == "anna@customer.example" and sup.ticket_number == first.ticket_number
    assert c.events(first.ticket_number, "address-suppressed")
    with desk.store.reader() as s:
        assert len(list(s.scalars(select(Ticket)))) == 1
        notices = [o for o in s.scalars(select(OutboxItem)) if o.template == "bounce_notice"]
    assert [n.recipients for n in notices] == [["agent@example.com"]]  # the agent is told
    assert b"anna@customer.example" in notices[0].raw


def test_our_own_mail_coming_back_is_a_loop(desk: Any) -> None:
    c = Conversation(desk)
    raw = eml(
        message_id="<x@example.com>",
        sender="Support <support@example.com>",
        subject="Re: [#1] hi",
        extra=f"X-Maildesk-Loop: {desk.settings.instance_id}",
    )
    looped = c.say(raw)
    assert looped.ticket_number is None and looped.screen == "loop"
