"""SMTP intake accepts lines longer than 1,000 octets (issue 16): a real aiosmtpd listener,
a real smtplib client on loopback, and the message processed by App.process intact."""

from __future__ import annotations

import smtplib
import socket
from dataclasses import replace

from sqlalchemy import select

from maildesk.app import App
from maildesk.config import Settings
from maildesk.ingest.smtp import SmtpIntake, line_length_limit
from maildesk.store.models import Message
from tests.conftest import free_port
from tests.support.mailgen import eml


def _send(server: SmtpIntake, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP(server.hostname, server.port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("anna@customer.example")
        smtp.rcpt("support@example.com")
        return smtp.data(raw)


def test_long_lines_are_accepted_and_stored_intact(desk: App) -> None:
    line = ("0123456789" * 500).encode()  # 5,000 octets, no line break
    html_line = b"<p>" + b"x" * 60_000 + b"</p>"
    raw_5k = eml(message_id="<long5k@customer.example>", body="start\n" + line.decode() + "\nend\n")
    raw_60k = eml(message_id="<long60k@customer.example>", body=html_line.decode() + "\n")
    server = SmtpIntake(desk.settings, desk.spool, port=free_port())
    server.start()
    try:
        for raw in (raw_5k, raw_60k):
            code, reply = _send(server, raw)
            assert code == 250, reply
    finally:
        server.stop()
    result = desk.process()
    assert result["failed"] == 0 and result["quarantined"] == 0, result
    with desk.store.reader() as s:
        stored = {
            m.message_id: (m.raw, m.full_text) for m in s.scalars(select(Message).where(Message.direction == "in"))
        }
    assert stored["long5k@customer.example"][0] == raw_5k
    assert line.decode() in stored["long5k@customer.example"][1]
    assert stored["long60k@customer.example"][0] == raw_60k


def test_a_line_over_the_size_limit_is_refused_without_size_parameter(desk: App) -> None:
    """A client that does not announce SIZE and sends one endless line gets a permanent
    refusal once the line passes the message size limit, and the listener stays up."""
    settings: Settings = replace(desk.settings, smtp=replace(desk.settings.smtp, max_message_size=50_000))
    assert line_length_limit(50_000) == 50_002
    server = SmtpIntake(settings, desk.spool, port=free_port())
    server.start()
    try:
        with socket.create_connection((server.hostname, server.port), timeout=30) as sock:
            stream = sock.makefile("rwb")

            def command(text: bytes) -> bytes:
                stream.write(text + b"\r\n")
                stream.flush()
                reply = stream.readline()
                while reply[3:4] == b"-":
                    reply = stream.readline()
                return reply

            assert stream.readline().startswith(b"220")
            assert command(b"EHLO client.example").startswith(b"250")
            assert command(b"MAIL FROM:<a@customer.example>").startswith(b"250")
            assert command(b"RCPT TO:<support@example.com>").startswith(b"250")
            assert command(b"DATA").startswith(b"354")
            stream.write(b"Subject: x\r\n\r\n" + b"y" * 200_000 + b"\r\n")
            reply = command(b".")
            assert reply[:1] == b"5", reply
            assert command(b"QUIT").startswith(b"221")
        code, _ = _send(server, eml(message_id="<after@customer.example>", body="z" * 3_000))
        assert code == 250
    finally:
        server.stop()
    spooled = [desk.spool.read(e)[1] for e in desk.spool.entries("incoming")]
    assert len(spooled) == 1 and b"<after@customer.example>" in spooled[0]  # the refused one left nothing
