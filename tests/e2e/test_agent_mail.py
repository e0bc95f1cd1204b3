"""Agents work from their mail client: the real `maildesk run` subprocess, mail over SMTP,
what goes out read from the outgoing Maildir. Replies (Gmail, Outlook, Apple Mail quote
styles, and a second device answering the same ticket), notes (shared with the assignee),
every command, commands plus text, commands only (nothing to the customer), an unknown
command, forged and stolen tokens, the display-name spoof, a deactivated agent, the
collision hold and its release, a macro, a forward that opens a ticket (authenticated by a
trusted Authentication-Results header; a forged one is refused), and Debian's mutt
answering a delivered notification. One daemon for the whole module."""

from __future__ import annotations

import email
import smtplib
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.store.db import Store
from maildesk.store.models import Event, Message, OutboxItem, Ticket
from maildesk.threading.tokens import make_agent_address
from tests.conftest import free_port
from tests.support.daemon import Daemon, outgoing_mails, write_config
from tests.support.mailgen import eml
from tests.support.mutt import reply_with_mutt
from tests.support.wait import wait_for

SECRET = "crash-secret"  # what tests.support.daemon gives the daemon
AGENTS = """
[[agent]]
email = "ann@example.com"
name = "Ann Agent"
tiers = ["L1", "L2"]
signature = "Ann Agent\\nExample Support"

[[agent]]
email = "bob@example.com"
name = "Bob"

[[agent]]
email = "old@example.com"
name = "Old"
active = false
"""


class Desk:
    def __init__(self, daemon: Daemon, store: Store, outgoing: Path) -> None:
        self.daemon, self.store, self.outgoing = daemon, store, outgoing

    def send(self, raw: bytes, rcpt: str = "support@example.com", mail_from: str = "x@example.org") -> None:
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=10) as smtp:
            smtp.sendmail(mail_from, [rcpt], raw)

    def ticket(self, subject: str) -> Ticket:
        def find() -> Ticket | None:
            with self.store.reader() as s:
                return s.scalars(select(Ticket).where(Ticket.subject == subject)).first()

        return wait_for(find, timeout=30, message=f"ticket {subject!r}")

    def now(self, number: int) -> Ticket:
        with self.store.reader() as s:
            t = s.get(Ticket, number)
            assert t is not None
            return t

    def token(self, number: int, agent: str = "ann@example.com") -> str:
        with self.store.reader() as s:
            seq = max(s.scalars(select(Message.id).where(Message.ticket_number == number)).all())
        return make_agent_address(SECRET, "support@example.com", number, agent, seq)

    def mails(self, to: str, containing: str = "") -> list[EmailMessage]:
        return [
            msg for raw, msg in outgoing_mails(self.outgoing) if to in str(msg["To"]) and containing.encode() in raw
        ]

    def raw_mail(self, to: str, containing: str) -> bytes:
        def find() -> bytes | None:
            found = [
                raw for raw, msg in outgoing_mails(self.outgoing) if to in str(msg["To"]) and containing.encode() in raw
            ]
            return found[0] if found else None

        return wait_for(find, timeout=30, message=f"mail to {to} with {containing!r}")

    def outbox(self, number: int, template: str) -> list[OutboxItem]:
        with self.store.reader() as s:
            return list(
                s.scalars(select(OutboxItem).where(OutboxItem.ticket_number == number, OutboxItem.template == template))
            )

    def wait_mail(self, to: str, containing: str) -> EmailMessage:
        return wait_for(lambda: (self.mails(to, containing) or [None])[-1], timeout=30, message=f"mail to {to}")

    def events(self, number: int | None, type_: str, count: int = 1) -> list[dict[str, Any]]:
        def find() -> list[dict[str, Any]] | None:
            with self.store.reader() as s:
                rows = s.scalars(select(Event).where(Event.type == type_).order_by(Event.id)).all()
                found = [e.data for e in rows if number is None or e.ticket_number == number]
                return found if len(found) >= count else None

        return wait_for(find, timeout=30, message=f"{count} {type_} events")

    def customer(self, subject: str, body: str = "Hello,\n\nmy printer is on fire.\n") -> tuple[Ticket, str]:
        mid = f"<{subject.replace(' ', '-').lower()}@customer.example>"
        self.send(eml(subject=subject, body=body, message_id=mid))
        return self.ticket(subject), mid.strip("<>")


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    tmp = tmp_path_factory.mktemp("agentmail")
    port = free_port()
    url = f"sqlite:///{tmp / 'data' / 'maildesk.db'}"
    extra = f"\n[outbound]\nmax_attempts = 2\n{AGENTS}"
    cfg = write_config(tmp / "maildesk.toml", data_dir=tmp / "data", database_url=url, smtp_port=port, extra=extra)
    text = cfg.read_text().replace(
        'secret_env = "MAILDESK_TEST_SECRET"',
        'secret_env = "MAILDESK_TEST_SECRET"\ntrusted_authserv_ids = ["mx.example.com"]',
    )
    cfg.write_text(text)
    daemon = Daemon(cfg, port, tmp / "daemon.log")
    (tmp / "data").mkdir(exist_ok=True)
    store = Store(url)
    store.migrate()
    daemon.start()
    daemon.wait_ready()
    try:
        yield Desk(daemon, store, tmp / "data" / "outgoing")
    finally:
        daemon.terminate()
        store.dispose()


def agent_mail(to: str, body: str, subject: str, sender: str = "Ann Agent <ann@example.com>") -> bytes:
    return eml(sender=sender, to=to, subject=f"Re: {subject}", body=body)


GMAIL = (
    "\n\nOn Mon, 23 Nov 2026 at 10:01, Support <support@example.com> wrote:\n\n"
    "> -- reply above this line --\n> Anna wrote:\n> my printer is on fire\n"
)
OUTLOOK = (
    "\n\n________________________________\nFrom: Support <support@example.com>\nSent: Monday, November 23, 2026 10:01\n"
    "To: Ann Agent <ann@example.com>\nSubject: [#1] New request\n\n"
    "-- reply above this line --\nAnna wrote:\nmy printer is on fire\n"
)
APPLE = (
    "\n\n> On 23. Nov 2026, at 10:01, Support <support@example.com> wrote:\n> \n"
    "> -- reply above this line --\n> my printer is on fire\n"
)


@pytest.mark.parametrize("style,quote", [("gmail", GMAIL), ("outlook", OUTLOOK), ("apple", APPLE)])
def test_a_reply_reaches_the_customer_with_only_the_new_words(desk: Desk, style: str, quote: str) -> None:
    ticket, mid = desk.customer(f"Printer {style}")
    desk.send(
        agent_mail(
            desk.token(ticket.number), f"Unplug it ({style}).\n\n-- \nAnn Agent\nExample Support{quote}", ticket.subject
        )
    )
    got = desk.wait_mail("anna@customer.example", f"Unplug it ({style}).")
    body = got.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "my printer is on fire" not in body and "reply above this line" not in body
    assert "support@example.com" in str(got["From"]) and "Ann Agent" in str(got["From"])
    assert got["In-Reply-To"].strip("<>") == mid and mid in str(got["References"])
    assert wait_for(lambda: desk.now(ticket.number).status == "pending" or None, timeout=10)


def test_note_commands_and_text(desk: Desk) -> None:
    ticket, _ = desk.customer("Note and commands")
    n = ticket.number
    desk.send(agent_mail(desk.token(n), "#note\n10% discount, don't tell her." + GMAIL, ticket.subject))
    desk.events(n, "note-added")
    desk.send(agent_mail(desk.token(n), "#priority high\n#tier L2\n#tag vip\n#assign bob", ticket.subject))
    desk.events(n, "agent-commands-done")
    t = desk.now(n)
    assert (t.priority, t.tier, t.tags, t.assignee) == ("high", "L2", ["vip"], "bob@example.com")
    desk.send(agent_mail(desk.token(n), "#untag vip\n#assign me\n#escalate printer team\n#pending", ticket.subject))
    desk.events(n, "agent-commands-done", 2)
    t = desk.now(n)
    assert (t.tags, t.assignee, t.tier, t.status) == ([], "ann@example.com", "L3", "pending")
    for command, status in (("#open", "open"), ("#close", "closed")):
        desk.send(agent_mail(desk.token(n), command, ticket.subject))
        wait_for(lambda status=status: desk.now(n).status == status or None, timeout=30)
    desk.send(agent_mail(desk.token(n), "#resolve\n\nAll done, thanks!", ticket.subject))
    desk.wait_mail("anna@customer.example", "All done, thanks!")
    wait_for(lambda: desk.now(n).status == "resolved" or None, timeout=30)
    assert desk.mails("anna@customer.example", "discount") == []
    other, _ = desk.customer("Duplicate printer")
    desk.send(agent_mail(desk.token(other.number), f"#merge {n}", other.subject))
    wait_for(lambda: desk.now(other.number).merged_into == n or None, timeout=30)


def test_unknown_command_and_refusals(desk: Desk) -> None:
    ticket, _ = desk.customer("Refusals")
    n = ticket.number
    desk.send(agent_mail(desk.token(n), "#resolve\n#frobnicate\nDone.", ticket.subject))
    answer = desk.wait_mail("ann@example.com", "frobnicate")
    assert "#assign" in answer.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    good = desk.token(n)
    sig = good.rpartition("-")[2].partition("@")[0]
    desk.send(agent_mail(good.replace(sig, "a" * len(sig)), "#resolve\nForged.", ticket.subject))
    desk.send(agent_mail(good, "#resolve\nStolen.", ticket.subject, sender="Mallory <mallory@evil.example>"))
    spoof = "=?utf-8?q?Ann_=3Cann=40example=2Ecom=3E?= <mallory@evil.example>"
    desk.send(agent_mail(good, "#resolve\nSpoofed.", ticket.subject, sender=spoof))
    desk.send(agent_mail(desk.token(n, "old@example.com"), "#resolve\nGone.", ticket.subject, sender="old@example.com"))
    reasons = [e["reason"] for e in desk.events(None, "agent-mail-refused", 4)]
    assert {"bad-token", "sender-not-an-agent", "display-name-spoof", "inactive-agent"} <= set(reasons)
    assert desk.now(n).status == "new"
    assert desk.mails("mallory@evil.example") == [] and desk.mails("anna@customer.example", "Forged") == []
    with desk.store.reader() as s:
        words = s.scalars(
            select(Message.visible_text).where(Message.kind == "customer", Message.ticket_number == n)
        ).all()
        assert words == ["Hello,\n\nmy printer is on fire."]


def test_collision_hold_and_release(desk: Desk) -> None:
    ticket, _ = desk.customer("Collision")
    n = ticket.number
    old = desk.token(n)
    desk.send(
        eml(
            subject=f"Re: [#{n}] Collision",
            body="Now the scanner smokes too.",
            message_id="<collision-2@customer.example>",
            extra="In-Reply-To: <collision@customer.example>",
        )
    )
    desk.events(n, "message-received")
    desk.send(agent_mail(old, "Unplug the printer.", ticket.subject))
    notice = desk.wait_mail("ann@example.com", "scanner smokes")
    assert desk.mails("anna@customer.example", "Unplug the printer.") == []
    desk.send(agent_mail(str(notice["Reply-To"]), "#send" + GMAIL, ticket.subject))
    desk.wait_mail("anna@customer.example", "Unplug the printer.")


def test_macro_and_forward_to_open(desk: Desk) -> None:
    ticket, _ = desk.customer("Macro")
    desk.send(agent_mail(desk.token(ticket.number), "#macro thanks", ticket.subject))
    desk.wait_mail("anna@customer.example", 'message about "Macro"')
    body = (
        "#customer zoe@customer.example\n\n---------- Forwarded message ---------\n"
        "From: Zoe <zoe@customer.example>\n\nMy order never came.\n"
    )
    forged = "Authentication-Results: mx.evil.example; dkim=pass header.d=example.com"
    desk.send(eml(sender="ann@example.com", subject="Fwd: Forged order", body=body, extra=forged))
    trusted = "Authentication-Results: mx.example.com; dkim=pass header.d=example.com header.s=sel"
    desk.send(eml(sender="ann@example.com", subject="Fwd: Order missing", body=body, extra=trusted))
    opened = desk.ticket("Order missing")
    assert opened.customer.email == "zoe@customer.example"
    desk.events(opened.number, "ticket-opened-by-agent")
    assert any(e["reason"] == "sender-not-authenticated" for e in desk.events(None, "agent-mail-refused"))
    with desk.store.reader() as s:
        assert s.scalars(select(Ticket).where(Ticket.subject == "Forged order")).first() is None
    desk.send(eml(sender="ann@example.com", subject="lunch?", body="Anyone for lunch?"))
    desk.wait_mail("ann@example.com", "never opens a ticket")
    with desk.store.reader() as s:
        assert s.scalars(select(Ticket).where(Ticket.subject == "lunch?")).first() is None
    assert [
        m
        for m in desk.mails("ann@example.com")
        if "lunch" in str(m["Subject"]).lower() and "Not sent" not in str(m["Subject"])
    ] == []


def test_a_second_device_commands_only_and_a_note_for_the_assignee(desk: Desk) -> None:
    ticket, mid = desk.customer("Two devices")
    n = ticket.number
    desk.send(agent_mail(desk.token(n), "First answer from the laptop." + GMAIL, ticket.subject))
    desk.wait_mail("anna@customer.example", "First answer from the laptop.")
    # the same agent on the phone: another display name, Apple Mail's quote, its own signature
    phone = "Ann L. (iPhone) <ann@example.com>"
    desk.send(
        agent_mail(desk.token(n), "Second answer from the phone.\n\nSent from my iPhone" + APPLE, ticket.subject, phone)
    )
    got = desk.wait_mail("anna@customer.example", "Second answer from the phone.")
    body = got.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "First answer" not in body and "reply above this line" not in body and "wrote:" not in body
    assert got["In-Reply-To"].strip("<>") == mid
    # commands only: they change the ticket and send nothing to the customer
    desk.send(agent_mail(desk.token(n), "#assign bob@example.com\n#priority urgent", ticket.subject))
    desk.events(n, "agent-commands-done")
    t = desk.now(n)
    assert (t.assignee, t.priority) == ("bob@example.com", "urgent")
    assert len(desk.outbox(n, "agent_reply")) == 2
    # a note by ann reaches the assignee (bob), never the customer
    desk.send(agent_mail(desk.token(n), "#note\nCall her back tomorrow." + OUTLOOK, ticket.subject))
    desk.wait_mail("bob@example.com", "Call her back tomorrow.")
    assert desk.mails("anna@customer.example", "Call her back") == []
    assert len(desk.outbox(n, "agent_reply")) == 2


def test_mutt_answers_a_delivered_notification(desk: Desk, tmp_path: Path) -> None:
    ticket, mid = desk.customer("Mutt printer", body="Hello,\n\nmy mutt printer is on fire.\n")
    raw = desk.raw_mail("ann@example.com", "my mutt printer is on fire")
    notification = email.message_from_bytes(raw, policy=policy.default)
    words = "Please unplug it and wait ten minutes."
    sent_raw = reply_with_mutt(
        raw, tmp_path, text=words, smtp_port=desk.daemon.port, sender="ann@example.com", name="Ann Agent"
    )
    sent = email.message_from_bytes(sent_raw, policy=policy.default)
    # mutt built the reply: to the notification's Reply-To token, threaded under it, quoted
    assert sent["To"].addresses[0].addr_spec == notification["Reply-To"].addresses[0].addr_spec
    assert sent["In-Reply-To"].strip() == notification["Message-ID"].strip()
    assert notification["Message-ID"].strip() in str(sent["References"])
    sent_body = sent.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "wrote:" in sent_body and "\n> " in sent_body
    got = desk.wait_mail("anna@customer.example", words)
    body = got.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "wrote:" not in body and "on fire" not in body and "reply above this line" not in body
    assert not [line for line in body.splitlines() if line.startswith(">")]
    assert got["From"].addresses[0].addr_spec == "support@example.com" and "Ann Agent" in str(got["From"])
    assert got["In-Reply-To"].strip("<>") == mid and f"<{mid}>" in str(got["References"])
    assert "+a" not in str(got["Reply-To"] or "") and "ann@example.com" not in str(got["To"])
