"""Hostile header fields (issue 16, issue 12): an encoded word never supplies an address,
and one bad encoded word never spoils the rest of its header.

Parse-level checks, then the real pipeline (App.process on SQLite and PostgreSQL) for the
customer and the agent a spoofer pretends to be.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.app import App
from maildesk.config import AgentSettings, Settings
from maildesk.message import decode_mime_words, parse_bytes
from maildesk.store.models import Message, OutboxItem, Participant, Ticket
from tests.support.mailgen import eml

SPOOF = "=?utf-8?q?Bob_=3Cceo=40bigcorp.com=3E?= <attacker@example.com>"


@pytest.mark.parametrize("header", ["From", "Sender", "Reply-To", "To", "Cc"])
def test_an_encoded_display_name_never_becomes_the_address(header: str) -> None:
    fields = {"From": "Anna <anna@customer.example>", "To": "support@example.com"}
    fields[header] = SPOOF
    raw = "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "Subject: hi\r\n\r\nbody\r\n"
    msg = parse_bytes(raw.encode())
    found = {
        "From": [msg.from_] if msg.from_ else [],
        "Sender": [msg.sender] if msg.sender else [],
        "Reply-To": list(msg.reply_to),
        "To": list(msg.to),
        "Cc": list(msg.cc),
    }[header]
    assert [(a.name, a.email) for a in found] == [("Bob <ceo@bigcorp.com>", "attacker@example.com")]
    every = [a.email for a in (msg.from_, msg.sender, *msg.reply_to, *msg.to, *msg.cc) if a is not None]
    assert "ceo@bigcorp.com" not in every


def test_spoofs_in_lists_quotes_and_b_encoding_keep_the_real_addresses() -> None:
    raw = (
        b'From: "=?utf-8?b?Y2VvQGJpZ2NvcnAuY29t?=" <attacker@example.com>\r\n'
        b"To: support@example.com, =?utf-8?q?x=40y.example?= <evil@example.com>,"
        b" =?utf-8?q?Schmidt,_Berta?= <berta@example.com>\r\n"
        b"Cc: =?utf-8?q?ceo=40bigcorp.com?=\r\n"
        b"Subject: hi\r\n\r\nbody\r\n"
    )
    msg = parse_bytes(raw)
    assert msg.from_ is not None and (msg.from_.name, msg.from_.email) == ("ceo@bigcorp.com", "attacker@example.com")
    assert [(a.name, a.email) for a in msg.to] == [
        ("", "support@example.com"),
        ("x@y.example", "evil@example.com"),
        ("Schmidt, Berta", "berta@example.com"),
    ]
    # An encoded word where the address belongs is not decoded into one: no address at all.
    assert [a.email for a in msg.cc] == []


def test_ordinary_encoded_names_still_decode() -> None:
    raw = (
        b"From: =?iso-8859-1?Q?B=FCrling,=20Andreas?= <smith@example.com>\r\n"
        b'To: "=?utf-8?q?J=C3=BCrgen?=" <j@example.com>, =?utf-8?b?w4lsaXNl?= <e@example.com>\r\n'
        b"Subject: hi\r\n\r\nbody\r\n"
    )
    msg = parse_bytes(raw)
    assert msg.from_ is not None and (msg.from_.name, msg.from_.email) == ("Bürling, Andreas", "smith@example.com")
    assert [(a.name, a.email) for a in msg.to] == [("Jürgen", "j@example.com"), ("Élise", "e@example.com")]


def test_one_bad_encoded_word_does_not_spoil_the_good_ones() -> None:
    subject = "Re: =?utf-8?q?caf=C3=A9?= und =?utf-8?q?kaputt=FF=FE?= =?utf-8?b?w7xiZXI=?= =?x-nonsense?q?raw?="
    msg = parse_bytes(f"From: a@example.com\r\nTo: support@example.com\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())
    # the two invalid octets become U+FFFD, the unknown charset's word stays as it came
    assert msg.subject == "Re: café und kaputt\ufffd\ufffdüber =?x-nonsense?q?raw?="
    assert "Ã" not in msg.subject  # no header-wide cp1252 fallback
    # a character split across two words of one charset is joined again
    assert decode_mime_words("=?utf-8?q?=C3?= =?utf-8?q?=A9t=C3=A9?=") == "été"
    # broken base64 text is kept as it came, the rest decodes
    assert decode_mime_words("=?utf-8?q?ok?= =?utf-8?b?****?=") == "ok"
    assert decode_mime_words("=?gb2312?b?1tDOxA==?=") == "中文"


def _desk(settings: Settings, **changes: Any) -> App:
    app = App(replace(settings, **changes))
    app.migrate()
    return app


def _deliver(app: App, raw: bytes) -> None:
    app.spool.put(raw, "test")
    result = app.process()
    assert result["failed"] == 0 and result["quarantined"] == 0, result


def _ticket_of(app: App, message_id: str) -> dict[str, Any]:
    """The ticket a stored message is on: number, customer, assignee, participants, sender."""
    with app.store.reader() as s:
        msg = s.scalars(select(Message).where(Message.message_id == message_id)).one()
        ticket = s.get(Ticket, msg.ticket_number)
        assert ticket is not None
        rows = s.scalars(select(Participant).where(Participant.ticket_number == ticket.number))
        return {
            "number": ticket.number,
            "customer": (ticket.customer.name, ticket.customer.email),
            "assignee": ticket.assignee,
            "participants": {(p.address, p.role) for p in rows},
            "sender": msg.sender,
        }


def _recipients(app: App) -> set[str]:
    with app.store.reader() as s:
        return {r for item in s.scalars(select(OutboxItem)) for r in item.recipients}


def test_spoofing_a_known_customer_opens_the_attackers_ticket(settings: Settings) -> None:
    app = _desk(settings)
    try:
        _deliver(app, eml(sender="CEO <ceo@bigcorp.com>", message_id="<real@bigcorp.com>", subject="Contract"))
        real = _ticket_of(app, "real@bigcorp.com")
        spoof = eml(
            sender=SPOOF,
            message_id="<spoof@example.com>",
            subject="Contract, urgent",
            extra="Reply-To: =?utf-8?q?ceo=40bigcorp.com?= <attacker@example.com>",
        )
        _deliver(app, spoof)
        got = _ticket_of(app, "spoof@example.com")
        assert got["number"] != real["number"]
        assert got["customer"] == ("Bob <ceo@bigcorp.com>", "attacker@example.com")
        assert got["sender"] == "attacker@example.com"
        assert ("ceo@bigcorp.com", "customer") not in got["participants"]
        assert real["customer"] == ("CEO", "ceo@bigcorp.com")
        # the acknowledgement of the spoofed mail goes to the attacker, never the CEO
        assert "attacker@example.com" in _recipients(app)
    finally:
        app.worker.close()
        app.store.dispose()


def test_spoofing_an_agent_is_still_customer_mail(settings: Settings) -> None:
    agent = AgentSettings(email="agent@example.com", name="Agnes Agent")
    app = _desk(settings, agents=(agent,))
    try:
        raw = eml(
            sender="=?utf-8?q?Agnes_Agent_=3Cagent=40example.com=3E?= <attacker@example.com>",
            message_id="<agent-spoof@example.com>",
            subject="Please refund order 7",
        )
        _deliver(app, raw)
        got = _ticket_of(app, "agent-spoof@example.com")
        assert got["customer"] == ("Agnes Agent <agent@example.com>", "attacker@example.com")
        assert all(address != "agent@example.com" for address, _ in got["participants"])
        assert got["assignee"] is None
    finally:
        app.worker.close()
        app.store.dispose()
