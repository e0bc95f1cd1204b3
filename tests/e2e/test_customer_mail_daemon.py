"""Issue 18 against the real `maildesk run` subprocess (one daemon for the module, SQLite):
mail over SMTP, what goes out read from the outgoing Maildir. A rule replaces the
acknowledgement (one mail, not two); guided collection asks for an order number, asks once
more when the reply lacks it, then hands the ticket to an agent; `maildesk ticket merge`
while the daemon runs shows the merged conversation and tells the merged ticket's customer;
an Outlook winmail.dat arrives as the files inside it."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.store.db import Store
from maildesk.store.models import Event, OutboxItem, Ticket
from tests.conftest import free_port
from tests.support.daemon import Daemon, outgoing_mails, write_config
from tests.support.mailgen import eml
from tests.support.wait import wait_for

ORDER = r"order[ \t]{0,3}(?:no\.?|number|#)?[ \t]{0,3}[:#]?[ \t]{0,3}(\d{5,10})"
RULES = f"""version: 1
rules:
  - name: weekend
    when: new
    if: {{subject: {{contains: weekend}}}}
    then: [{{reply: after_hours}}, {{tags: [after-hours]}}]
  - name: orders
    when: new
    if: {{subject: {{contains: order}}}}
    then:
      - ask:
          fields: {{order_number: '{ORDER}'}}
          template: ask_order_number
          handoff: {{tags: [needs-agent], assign: {{agent: ann@example.com}}}}
"""
TEAM = """
[[agent]]
email = "ann@example.com"
name = "Ann Agent"
tiers = ["L1"]
"""


class Desk:
    def __init__(self, daemon: Daemon, store: Store, outgoing: Path, config: Path) -> None:
        self.daemon, self.store, self.outgoing, self.config = daemon, store, outgoing, config

    def send(self, raw: bytes) -> None:
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=10) as smtp:
            smtp.sendmail("x@customer.example", ["support@example.com"], raw)

    def ticket(self, subject: str) -> Ticket:
        def find() -> Ticket | None:
            with self.store.reader() as s:
                return s.scalars(select(Ticket).where(Ticket.subject == subject)).first()

        return wait_for(find, timeout=30, interval=0.05, message=f"ticket {subject!r}")

    def row(self, number: int) -> Ticket:
        with self.store.reader() as s:
            t = s.get(Ticket, number)
            assert t is not None
            return t

    def event(self, number: int, type_: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            with self.store.reader() as s:
                e = s.scalars(select(Event).where(Event.ticket_number == number, Event.type == type_)).first()
                return None if e is None else dict(e.data)

        return wait_for(find, timeout=30, interval=0.05, message=f"{type_} event on #{number}")

    def outbox(self, number: int, to: str) -> list[OutboxItem]:
        with self.store.reader() as s:
            rows = s.scalars(select(OutboxItem).where(OutboxItem.ticket_number == number).order_by(OutboxItem.id))
            return [r for r in rows if r.recipients == [to]]

    def delivered(self, to: str) -> list[EmailMessage]:
        found = [msg for _raw, msg in outgoing_mails(self.outgoing) if msg["To"].addresses[0].addr_spec == to]
        return sorted(found, key=lambda m: str(m["Date"]))

    def wait_delivered(self, to: str, count: int) -> list[EmailMessage]:
        return wait_for(
            lambda: (lambda got: got if len(got) >= count else None)(self.delivered(to)),
            timeout=30,
            interval=0.05,
            message=f"{count} mails delivered to {to}",
        )

    def wait_containing(self, to: str, text: str) -> EmailMessage:
        def find() -> EmailMessage | None:
            for msg in self.delivered(to):
                if text in str(msg.get_body(("plain",)).get_content()):  # type: ignore[union-attr]
                    return msg
            return None

        return wait_for(find, timeout=30, interval=0.05, message=f"a mail to {to} saying {text!r}")

    def settled(self, number: int, to: str, count: int) -> list[OutboxItem]:
        """The ticket's mail to `to`, once `count` rows exist and every one of them is sent."""

        def done() -> list[OutboxItem] | None:
            rows = self.outbox(number, to)
            return rows if len(rows) >= count and all(r.state == "sent" for r in rows) else None

        return wait_for(done, timeout=30, interval=0.05, message=f"{count} sent mails of #{number} to {to}")

    def cli(self, *args: str) -> str:
        env = {**os.environ, "MAILDESK_TEST_SECRET": "crash-secret", "COLUMNS": "200"}
        out = subprocess.run(
            [sys.executable, "-m", "maildesk", *args, "--config", str(self.config)],
            capture_output=True,
            env=env,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr.decode() + out.stdout.decode()
        return out.stdout.decode()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    tmp = tmp_path_factory.mktemp("customer-mail")
    port = free_port()
    url = f"sqlite:///{tmp / 'data' / 'maildesk.db'}"
    (tmp / "rules.yaml").write_text(RULES)
    (tmp / "templates" / "en").mkdir(parents=True)
    (tmp / "templates" / "en" / "after_hours.txt.j2").write_text(
        "Subject: {{ ticket.reply_subject }}\n\nWe are closed for the weekend; we answer on Monday.\n"
    )
    cfg = write_config(tmp / "maildesk.toml", data_dir=tmp / "data", database_url=url, smtp_port=port, extra=TEAM)
    text = cfg.read_text().replace(
        'secret_env = "MAILDESK_TEST_SECRET"',
        f'secret_env = "MAILDESK_TEST_SECRET"\nrules_file = "{tmp / "rules.yaml"}"\n'
        f'templates_dir = "{tmp / "templates"}"',
    )
    cfg.write_text(text)
    (tmp / "data").mkdir(exist_ok=True)
    store = Store(url)
    store.migrate()
    daemon = Daemon(cfg, port, tmp / "daemon.log")
    daemon.start()
    daemon.wait_ready()
    try:
        yield Desk(daemon, store, tmp / "data" / "outgoing", cfg)
    finally:
        daemon.terminate()
        store.dispose()


def test_a_rule_replaces_the_acknowledgement(desk: Desk) -> None:
    desk.send(eml(subject="Broken over the weekend", sender="Carl <carl@customer.example>"))
    t = desk.ticket("Broken over the weekend")
    rows = desk.settled(t.number, "carl@customer.example", 1)
    assert [r.template for r in rows] == ["after_hours"]  # one mail, not ack + after_hours
    (mail,) = desk.wait_delivered("carl@customer.example", 1)
    assert "closed for the weekend" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert mail["Auto-Submitted"] == "auto-replied" and f"[#{t.number}]" in mail["Subject"]
    assert desk.event(t.number, "ack-replaced")["mails"][0]["template"] == "after_hours"


def test_guided_collection_asks_once_more_then_hands_the_ticket_to_an_agent(desk: Desk) -> None:
    who = "Dana <dana@customer.example>"
    desk.send(eml(subject="Where is my order?", sender=who, body="The parcel never came.\n"))
    t = desk.ticket("Where is my order?")
    (ask,) = desk.wait_delivered("dana@customer.example", 1)
    assert "order number" in ask.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "awaiting-info" in desk.row(t.number).tags
    # the reply lacks the number: asked once more, in the same thread
    desk.send(
        eml(
            subject=f"Re: {ask['Subject']}",
            sender=who,
            body="I cannot find it.\n",
            extra=f"In-Reply-To: {ask['Message-ID']}",
        )
    )
    again = desk.wait_containing("dana@customer.example", "we still need")
    assert again["In-Reply-To"] and "order number" in again.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert desk.event(t.number, "ask-again")["missing"] == ["order_number"]
    # still without it: no third question; the ticket goes to an agent
    desk.send(
        eml(
            subject=f"Re: {again['Subject']}",
            sender=who,
            body="Sorry, no idea.\n",
            extra=f"In-Reply-To: {again['Message-ID']}",
        )
    )
    handoff = desk.event(t.number, "ask-handoff")
    assert handoff["missing"] == ["order_number"] and handoff["assign"] == "ann@example.com"
    row = desk.row(t.number)
    assert row.assignee == "ann@example.com" and "needs-agent" in row.tags and "awaiting-info" not in row.tags
    assert row.ask is not None and row.ask["state"] == "handed-off"
    assert [r.template for r in desk.settled(t.number, "dana@customer.example", 2)] == [
        "ask_order_number",
        "ask_again",
    ]
    assert desk.wait_delivered("ann@example.com", 1)  # the agent hears of it by mail
    shown = desk.cli("ticket", "show", str(t.number))
    assert "asked" in shown and "handed-off (missing: order_number)" in shown


def test_merge_shows_the_conversation_and_tells_the_customer(desk: Desk) -> None:
    desk.send(eml(subject="Printer on fire", sender="Eva <eva@customer.example>", body="It burns.\n"))
    target = desk.ticket("Printer on fire")
    mid = "<smoke-1@other.example>"
    desk.send(eml(subject="Smoke in room 4", sender="Finn <finn@other.example>", body="Smoke!\n", message_id=mid))
    source = desk.ticket("Smoke in room 4")
    desk.settled(source.number, "finn@other.example", 1)  # the acknowledgement
    desk.cli("ticket", "merge", str(target.number), str(source.number))
    notice = desk.wait_containing("finn@other.example", "brought the two together")
    assert notice["In-Reply-To"] == mid  # threaded to Finn's own conversation
    body = notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"[#{target.number}]" in body and "Printer on fire" in body
    assert [r.template for r in desk.settled(source.number, "finn@other.example", 2)] == ["ack", "merged"]
    view = json.loads(desk.cli("ticket", "show", str(target.number), "--json"))
    froms = [(m["from_ticket"], m["text"].strip()) for m in view["messages"] if m["direction"] == "in"]
    assert froms == [(None, "It burns."), (source.number, "Smoke!")]
    assert f"from #{source.number}" in desk.cli("ticket", "show", str(target.number))


def test_an_outlook_winmail_dat_arrives_as_its_real_files(desk: Desk) -> None:
    """Over SMTP to the running daemon: the TNEF container (tnefparse's public sample, see
    tests/fixtures/tnef/README.md) is stored as the two files inside it, and `ticket show`
    lists them by their real names."""
    from maildesk.store.models import Attachment, Message

    tnef = (Path(__file__).parents[1] / "fixtures" / "tnef" / "two-files.tnef").read_bytes()
    m = EmailMessage()
    m["From"] = "Olga Outlook <olga@customer.example>"
    m["To"] = "support@example.com"
    m["Subject"] = "Printer logs from Outlook"
    m["Message-ID"] = "<tnef-e2e@customer.example>"
    m.set_content("The logs are attached.")
    m.add_attachment(tnef, maintype="application", subtype="ms-tnef", filename="winmail.dat")
    desk.send(m.as_bytes())
    t = desk.ticket("Printer logs from Outlook")
    report = desk.event(t.number, "tnef-unpacked")
    assert report["files"] == ["AUTHORS", "README"] and report["kept"] is False
    with desk.store.reader() as s:
        rows = s.execute(
            select(Attachment.filename, Attachment.size)
            .join(Message, Message.id == Attachment.message_pk)
            .where(Message.ticket_number == t.number)
            .order_by(Attachment.filename)
        ).all()
    assert [(r.filename, r.size) for r in rows] == [("AUTHORS", 244), ("README", 893)]  # no opaque winmail.dat
    shown = json.loads(desk.cli("ticket", "show", str(t.number), "--json"))
    shown_files = [(a["filename"], a["size"], a["data_kept"]) for msg in shown["messages"] for a in msg["attachments"]]
    assert shown_files == [("AUTHORS", 244, True), ("README", 893, True)]
