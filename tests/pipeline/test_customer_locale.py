"""The customer's locale through the real pipeline (both backends): set from their mail's
headers or text in the persist stage, used for the acknowledgement at once; an operator's
setting wins; the first detection sticks unless a header says otherwise."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from maildesk.services import customers
from maildesk.store.models import Customer, Event, OutboxItem
from tests.support.mailgen import eml

FRENCH = "Bonjour,\n\nmon imprimante ne fonctionne plus depuis ce matin. Que dois-je faire ?\n\nClaire\n"
GERMAN = "Hallo,\n\nmein Drucker funktioniert seit heute Morgen nicht mehr. Was soll ich tun?\n\nJonas\n"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def say(desk: Any, sender: str, body: str, extra: str = "", subject: str = "Imprimante") -> int:
    desk.spool.put(eml(sender=sender, body=body, extra=extra, subject=subject), "test")
    desk.process()
    with desk.store.reader() as s:
        item = s.scalars(select(OutboxItem).order_by(OutboxItem.id.desc())).first()
        assert item is not None
        return int(item.ticket_number)


def ack_text(desk: Any, number: int) -> str:
    with desk.store.reader() as s:
        item = s.scalars(
            select(OutboxItem).where(OutboxItem.ticket_number == number, OutboxItem.template == "ack")
        ).one()
        mail = email.message_from_bytes(item.raw, policy=email.policy.default)
    body = mail.get_body(("plain",))
    assert body is not None
    return str(body.get_content())  # type: ignore[attr-defined]


def locale_of(desk: Any, address: str) -> tuple[str, str]:
    with desk.store.reader() as s:
        c = s.scalars(select(Customer).where(Customer.email == address)).one()
        return c.locale, c.locale_source


def test_language_from_headers_and_text_reaches_the_acknowledgement(desk: Any) -> None:
    german = say(desk, "Jonas <jonas@kunde.example>", "Hi,\n\nprinter broken.\n", "Content-Language: de-DE")
    assert locale_of(desk, "jonas@kunde.example") == ("de", "header")
    assert "vielen Dank für Ihre Nachricht" in ack_text(desk, german)

    french = say(desk, "Claire Dubois <claire@client.example>", FRENCH)
    assert locale_of(desk, "claire@client.example") == ("fr", "text")
    text = ack_text(desk, french)
    assert text.startswith("Bonjour Claire,") and "votre message nous est bien parvenu" in text

    spanish = say(desk, "Lucía <lucia@cliente.example>", "Hi\n", "Accept-Language: es-ES,es;q=0.9,en;q=0.8")
    assert locale_of(desk, "lucia@cliente.example") == ("es", "header")
    assert "su mensaje nos ha llegado correctamente" in ack_text(desk, spanish)

    # Short text, no header: no guess, the desk default (en), nothing stored.
    short = say(desk, "Pierre <pierre@client.example>", "Merci !\n")
    assert locale_of(desk, "pierre@client.example") == ("", "")
    assert "thank you for writing to us" in ack_text(desk, short)

    with desk.store.reader() as s:
        events = [e.data for e in s.scalars(select(Event).where(Event.type == "customer-locale"))]
    by_customer = {e["customer"]: e for e in events}
    assert by_customer["claire@client.example"]["source"] == "text"
    assert by_customer["claire@client.example"]["confidence"] >= 0.95
    assert by_customer["jonas@kunde.example"] == {
        "customer": "jonas@kunde.example",
        "locale": "de",
        "source": "content-language",
    }


def test_operator_wins_and_first_detection_sticks_until_a_header_says_otherwise(desk: Any) -> None:
    with desk.store.session() as s:
        customers.set_customer(s, "marie@client.example", NOW, supported=desk.settings.desk.locales, locale="fr")
    german_header = say(desk, "Marie <marie@client.example>", GERMAN, "Content-Language: de")
    assert locale_of(desk, "marie@client.example") == ("fr", "operator")
    assert "votre message nous est bien parvenu" in ack_text(desk, german_header)

    first = say(desk, "Claire <claire@client.example>", FRENCH)
    assert locale_of(desk, "claire@client.example") == ("fr", "text")
    say(desk, "Claire <claire@client.example>", GERMAN, subject="Drucker")  # text alone never re-detects
    assert locale_of(desk, "claire@client.example") == ("fr", "text")
    later = say(desk, "Claire <claire@client.example>", "Hallo\n", "Content-Language: de", subject="Noch was")
    assert locale_of(desk, "claire@client.example") == ("de", "header")
    assert "vielen Dank" in ack_text(desk, later) and "votre message" in ack_text(desk, first)

    # `--locale default` gives the customer back to their mail.
    with desk.store.session() as s:
        customers.set_customer(s, "marie@client.example", NOW, supported=desk.settings.desk.locales, locale="default")
    assert locale_of(desk, "marie@client.example") == ("", "")
    say(desk, "Marie <marie@client.example>", GERMAN, subject="Neu")
    assert locale_of(desk, "marie@client.example") == ("de", "text")


def test_vip_set_by_an_operator_is_what_rules_read(tmp_path: Any, database_url: str) -> None:
    from maildesk.app import App
    from maildesk.store.models import Ticket
    from tests.conftest import make_settings

    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: vip\n    if: {customer.vip: true}\n    then: [{tags: [vip]}]\n")
    app = App(make_settings(tmp_path, database_url, desk={"rules_file": str(rules)}))
    app.migrate()
    try:
        with app.store.session() as s:
            customers.set_customer(s, "ceo@bigcorp.example", NOW, supported=app.settings.desk.locales, vip=True)
        vip = say(app, "CEO <ceo@bigcorp.example>", "Hello,\n\nthe printer again.\n")
        other = say(app, "Anna <anna@customer.example>", "Hello,\n\nthe printer again.\n")
        with app.store.reader() as s:
            assert s.get(Ticket, vip).tags == ["vip"]  # type: ignore[union-attr]
            assert s.get(Ticket, other).tags == []  # type: ignore[union-attr]
    finally:
        app.worker.close()
        app.store.dispose()
