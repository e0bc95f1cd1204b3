"""The resolution notice and the survey end to end: one real `maildesk run` subprocess for
the module, mail over SMTP, the CLI as a separate process, what goes out read from the
outgoing Maildir. Resolved on the CLI and answered by link; resolved by an agent's
`#resolve` mail and answered by a reply with a low rating."""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import select

from maildesk.store.db import Store
from maildesk.store.models import Event, Message, Ticket
from maildesk.threading.tokens import make_agent_address, parse_survey_address
from tests.conftest import free_port
from tests.support.daemon import Daemon, outgoing_mails, write_config
from tests.support.mailgen import eml
from tests.support.wait import wait_for

SECRET = "crash-secret"  # what tests.support.daemon gives the daemon
CUSTOMER = "anna@customer.example"
AGENTS = """
[[agent]]
email = "ann@example.com"
name = "Ann Agent"
tiers = ["L1"]

[[agent]]
email = "lea@example.com"
name = "Lea Lead"
tiers = ["L3"]
"""


class Desk:
    def __init__(self, daemon: Daemon, store: Store, outgoing: Path, config: Path) -> None:
        self.daemon, self.store, self.outgoing, self.config = daemon, store, outgoing, config

    def send(self, raw: bytes, rcpt: str = "support@example.com", mail_from: str = CUSTOMER) -> None:
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=10) as smtp:
            smtp.sendmail(mail_from, [rcpt], raw)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MAILDESK_TEST_SECRET": SECRET}
        cmd = [sys.executable, "-m", "maildesk", *args, "--config", str(self.config)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done

    def customer(self, subject: str) -> tuple[int, str]:
        mid = f"<{subject.replace(' ', '-').lower()}@customer.example>"
        self.send(eml(subject=subject, message_id=mid))

        def find() -> Ticket | None:
            with self.store.reader() as s:
                return s.scalars(select(Ticket).where(Ticket.subject == subject)).first()

        ticket = wait_for(find, timeout=30, message=f"ticket {subject!r}")
        return ticket.number, mid.strip("<>")

    def status(self, number: int) -> str:
        with self.store.reader() as s:
            t = s.get(Ticket, number)
            assert t is not None
            return t.status

    def mails(self, to: str, containing: str) -> list[EmailMessage]:
        return [
            msg for raw, msg in outgoing_mails(self.outgoing) if to in str(msg["To"]) and containing.encode() in raw
        ]

    def wait_mail(self, to: str, containing: str) -> EmailMessage:
        return wait_for(lambda: (self.mails(to, containing) or [None])[-1], timeout=30, message=f"mail to {to}")

    def events(self, number: int, type_: str) -> list[dict[str, Any]]:
        def find() -> list[dict[str, Any]] | None:
            with self.store.reader() as s:
                rows = s.scalars(select(Event).where(Event.ticket_number == number, Event.type == type_)).all()
                return [e.data for e in rows] or None

        return wait_for(find, timeout=30, message=f"{type_} on #{number}")

    def token(self, number: int, agent: str = "ann@example.com") -> str:
        with self.store.reader() as s:
            seq = max(s.scalars(select(Message.id).where(Message.ticket_number == number)).all())
        return make_agent_address(SECRET, "support@example.com", number, agent, seq)


def _text(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    tmp = tmp_path_factory.mktemp("survey")
    port = free_port()
    url = f"sqlite:///{tmp / 'data' / 'maildesk.db'}"
    extra = f"\n[outbound]\nmax_attempts = 2\n{AGENTS}"
    cfg = write_config(tmp / "maildesk.toml", data_dir=tmp / "data", database_url=url, smtp_port=port, extra=extra)
    daemon = Daemon(cfg, port, tmp / "daemon.log")
    (tmp / "data").mkdir(exist_ok=True)
    store = Store(url)
    store.migrate()
    daemon.start()
    daemon.wait_ready()
    try:
        yield Desk(daemon, store, tmp / "data" / "outgoing", cfg)
    finally:
        daemon.terminate()
        store.dispose()


def test_cli_resolve_sends_the_notice_and_a_clicked_link_counts_without_reopening(desk: Desk) -> None:
    number, mid = desk.customer("Printer on fire")
    desk.wait_mail(CUSTOMER, "has arrived safely")  # the acknowledgement
    desk.cli("ticket", "resolve", str(number))
    notice = desk.wait_mail(CUSTOMER, "as resolved")
    assert notice["In-Reply-To"].strip("<>") == mid and f"[#{number}]" in notice["Subject"]
    urls = dict(
        (int(m.group(1)), m.group(0)) for m in re.finditer(r"mailto:support\+s\d+\.(\d)-[^>\s]+", _text(notice))
    )
    assert sorted(urls) == [1, 2, 3, 4, 5]
    parts = urlsplit(urls[4])
    address, query = unquote(parts.path), parse_qs(parts.query)
    assert parse_survey_address(SECRET, address, CUSTOMER) == (number, 4)
    # what a mail client sends for the link: To, Subject and body from the URL
    desk.send(eml(to=address, subject=query["subject"][0], body=query["body"][0] + "Fast and friendly."), rcpt=address)
    (got,) = desk.events(number, "survey-answered")
    assert (got["rating"], got["via"], got["comment"]) == (4, "link", "Fast and friendly.")
    assert desk.status(number) == "resolved"


def test_agent_resolve_by_mail_sends_the_notice_and_a_low_reply_reaches_customer_and_lead(desk: Desk) -> None:
    number, mid = desk.customer("Invoice wrong")
    token = desk.token(number)
    desk.send(
        eml(
            sender="Ann Agent <ann@example.com>", to=token, subject=f"Re: [#{number}] Invoice wrong", body="#resolve\n"
        ),
        rcpt=token,
        mail_from="ann@example.com",
    )
    notice = wait_for(
        lambda: next((m for m in desk.mails(CUSTOMER, "as resolved") if "Invoice" in str(m["Subject"])), None),
        timeout=30,
        message="the resolution notice",
    )
    assert notice["In-Reply-To"].strip("<>") == mid
    reply_to = notice["Reply-To"].addresses[0].addr_spec
    desk.send(
        eml(
            to=reply_to,
            subject=f"Re: {notice['Subject']}",
            body="2 - took a week\n",
            extra=f"In-Reply-To: {notice['Message-ID']}",
        ),
        rcpt=reply_to,
    )
    (got,) = desk.events(number, "survey-answered")
    assert (got["rating"], got["via"], got["comment"]) == (2, "reply", "took a week")
    thanks = desk.wait_mail(CUSTOMER, "what went wrong")
    assert f"[#{number}]" in thanks["Subject"]
    told = desk.wait_mail("lea@example.com", "took a week")
    assert "rated" in _text(told)
    assert desk.status(number) == "resolved"
