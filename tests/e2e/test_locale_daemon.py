"""Customers in their own language, end to end: the real `maildesk run` subprocess, mail in
over SMTP, what goes out read from the outgoing Maildir (one daemon for the module).

A German customer (Content-Language: de) and a French customer (no header, French text)
get their language on the acknowledgement, on an agent's reply (`maildesk ticket reply`)
and on the resolution notice; a Spanish one by Accept-Language; an operator's `customer
set --locale` wins over the mail's header; a two-word mail falls back to the default.

The resolution notice: `ticket resolve` queues it through the change path (with the survey
inline, signed mailto links per rating), and the running daemon delivers it.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from maildesk.store.db import Store
from maildesk.store.models import Customer, Ticket
from tests.conftest import free_port
from tests.support.daemon import Daemon, outgoing_mails, write_config
from tests.support.mailgen import eml
from tests.support.wait import WaitTimeout, wait_for

SECRET = "crash-secret"  # what tests.support.daemon gives the daemon
AGENT = '\n[[agent]]\nemail = "ann@example.com"\nname = "Ann Agent"\n'
FRENCH = "Bonjour,\n\nmon imprimante ne fonctionne plus depuis ce matin. Que dois-je faire ?\n\nClaire\n"
GERMAN = "Hallo,\n\nmein Drucker funktioniert seit heute Morgen nicht mehr. Was soll ich tun?\n\nJonas\n"


class Desk:
    def __init__(self, daemon: Daemon, store: Store, config: Path, outgoing: Path) -> None:
        self.daemon, self.store, self.config, self.outgoing = daemon, store, config, outgoing
        self.runner = CliRunner()

    def send(self, sender: str, subject: str, body: str, extra: str = "") -> Ticket:
        raw = eml(sender=sender, subject=subject, body=body, extra=extra)
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=10) as smtp:
            smtp.sendmail(sender.split("<")[-1].rstrip(">"), ["support@example.com"], raw)

        def find() -> Ticket | None:
            with self.store.reader() as s:
                return s.scalars(select(Ticket).where(Ticket.subject == subject)).first()

        return wait_for(find, timeout=30, message=f"ticket {subject!r}")

    def cli(self, *args: str) -> str:
        from maildesk.cli import app

        env = {"MAILDESK_TEST_SECRET": SECRET, "MAILDESK_AGENT": "", "MAILDESK_CONFIG": "", "COLUMNS": "200"}
        result = self.runner.invoke(app, [*args, "--config", str(self.config)], env=env)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output

    def texts(self, to: str) -> list[tuple[str, str]]:
        """(subject, plain text) of every mail to `to` in the outgoing Maildir."""
        found = []
        for _raw, msg in outgoing_mails(self.outgoing):
            if to in str(msg["To"]):
                body = msg.get_body(("plain",))
                found.append((str(msg["Subject"]), body.get_content() if body is not None else ""))  # type: ignore[attr-defined]
        return found

    def wait_text(self, to: str, containing: str) -> str:
        def find() -> str | None:
            return next((text for _, text in self.texts(to) if containing in text), None)

        try:
            return wait_for(find, timeout=30, message=f"a mail to {to} saying {containing!r}")
        except WaitTimeout:
            raise AssertionError(f"mails to {to}: {self.texts(to)}") from None

    def locale(self, address: str) -> tuple[str, str]:
        with self.store.reader() as s:
            c = s.scalars(select(Customer).where(Customer.email == address)).one()
            return c.locale, c.locale_source

    def resolve(self, number: int) -> None:
        self.cli("ticket", "resolve", str(number), "--by", "ann@example.com")


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    tmp = tmp_path_factory.mktemp("locale")
    port = free_port()
    url = f"sqlite:///{tmp / 'data' / 'maildesk.db'}"
    cfg = write_config(tmp / "maildesk.toml", data_dir=tmp / "data", database_url=url, smtp_port=port, extra=AGENT)
    daemon = Daemon(cfg, port, tmp / "daemon.log")
    (tmp / "data").mkdir(exist_ok=True)
    store = Store(url)
    store.migrate()
    daemon.start()
    daemon.wait_ready()
    try:
        yield Desk(daemon, store, cfg, tmp / "data" / "outgoing")
    finally:
        daemon.terminate()
        store.dispose()


def test_german_by_header_and_french_by_text_on_ack_reply_and_resolution(desk: Desk) -> None:
    german = desk.send("Jonas Weber <jonas@kunde.example>", "Drucker kaputt", GERMAN, "Content-Language: de-DE")
    french = desk.send("Claire Dubois <claire@client.example>", "Imprimante en panne", FRENCH)
    assert desk.locale("jonas@kunde.example") == ("de", "header")
    assert desk.locale("claire@client.example") == ("fr", "text")

    ack = desk.wait_text("jonas@kunde.example", "vielen Dank für Ihre Nachricht")
    assert ack.startswith("Hallo Jonas,") and "Viele Grüße" in ack
    ack = desk.wait_text("claire@client.example", "votre message nous est bien parvenu")
    assert ack.startswith("Bonjour Claire,") and "Bien cordialement" in ack

    desk.cli("ticket", "reply", str(german.number), "--by", "ann@example.com", "--text", "Bitte neu starten.")
    desk.cli("ticket", "reply", str(french.number), "--by", "ann@example.com", "--text", "Merci de redémarrer.")
    reply = desk.wait_text("jonas@kunde.example", "Bitte neu starten.")
    assert "Viele Grüße" in reply and "Ann Agent" in reply
    reply = desk.wait_text("claire@client.example", "Merci de redémarrer.")
    assert "Bien cordialement" in reply and "Pour ajouter quoi que ce soit, répondez simplement" in reply

    desk.resolve(german.number)
    desk.resolve(french.number)
    done = desk.wait_text("jonas@kunde.example", "als gelöst markiert")
    assert "14 Tage" in done and "Wie zufrieden waren Sie?" in done and "2 – nicht so gut: <mailto:" in done
    done = desk.wait_text("claire@client.example", "comme résolue")
    assert "dans les 14 prochains jours" in done and "Votre réponse ne rouvre pas la demande" in done
    assert "2 – pas terrible : <mailto:" in done and "How did we do" not in done


def test_spanish_by_accept_language_operator_override_and_short_text(desk: Desk) -> None:
    desk.send("Lucía <lucia@cliente.example>", "Impresora", "Hi,\n\nprinter.\n", "Accept-Language: es-ES,es;q=0.9")
    assert "Gracias por escribirnos" in desk.wait_text("lucia@cliente.example", "su mensaje nos ha llegado")

    out = desk.cli("customer", "set", "marie@client.example", "--locale", "fr", "--vip")
    assert "created marie@client.example" in out and "locale fr (set by an operator)" in out
    desk.send("Marie <marie@client.example>", "Drucker", GERMAN, "Content-Language: de")
    assert desk.locale("marie@client.example") == ("fr", "operator")
    assert "Bonjour Marie," in desk.wait_text("marie@client.example", "votre message nous est bien parvenu")

    desk.send("Pierre <pierre@client.example>", "Merci", "Merci !\n")
    assert desk.locale("pierre@client.example") == ("", "")
    assert "Hi Pierre," in desk.wait_text("pierre@client.example", "thank you for writing to us")
