"""SMTP intake: a real aiosmtpd listener driven by smtplib on loopback."""

from __future__ import annotations

import errno
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from maildesk.config import Settings
from maildesk.ingest.smtp import SmtpIntake
from maildesk.spool.files import Spool
from tests.conftest import free_port, make_settings
from tests.support.mailgen import eml


@pytest.fixture
def smtp_settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    return replace(settings, smtp=replace(settings.smtp, max_message_size=100_000))


@pytest.fixture
def intake(smtp_settings: Settings) -> Iterator[SmtpIntake]:
    spool = Spool(smtp_settings.spool_path).ensure()
    server = SmtpIntake(smtp_settings, spool, port=free_port())
    server.start()
    yield server
    server.stop()


def client(server: SmtpIntake) -> smtplib.SMTP:
    return smtplib.SMTP(server.hostname, server.port, timeout=10)


def test_accepts_mail_for_support_address_and_spools_it(intake: SmtpIntake) -> None:
    raw = eml(message_id="<s1@customer.example>")
    with client(intake) as smtp:
        code, reply = smtp.ehlo()
        assert b"8BITMIME" in reply and b"SMTPUTF8" in reply
        refused = smtp.sendmail("anna@customer.example", ["support@example.com"], raw)
        assert refused == {}
    spool = intake.handler.spool
    (entry,) = spool.entries("incoming")
    meta, got = spool.read(entry)
    assert got == raw
    assert meta["envelope"]["rcpt_tos"] == ["support@example.com"]
    assert meta["envelope"]["mail_from"] == "anna@customer.example"


def test_refuses_other_recipients_no_open_relay(intake: SmtpIntake) -> None:
    with client(intake) as smtp:
        smtp.ehlo()
        smtp.mail("spammer@evil.example")
        code, msg = smtp.rcpt("victim@elsewhere.example")
        assert code == 550 and msg.startswith(b"5.1.1")
        code, _ = smtp.rcpt("support+t42-abc@example.com")
        assert code == 250


def test_size_limit_answers_552(intake: SmtpIntake) -> None:
    big = eml(body="x" * 200_000)
    with client(intake) as smtp, pytest.raises(smtplib.SMTPException) as info:
        smtp.sendmail("a@customer.example", ["support@example.com"], big)
    assert "552" in str(info.value)
    assert list(intake.handler.spool.entries("incoming")) == []


def send_data(server: SmtpIntake, raw: bytes) -> tuple[int, bytes]:
    with client(server) as smtp:
        smtp.ehlo()
        smtp.mail("a@customer.example")
        smtp.rcpt("support@example.com")
        return smtp.data(raw)


def journal_segments(spool: Spool) -> list[Path]:
    return sorted(p for p in (spool.root / "journal").glob("*.jnl") if p.is_file())


def test_internal_failure_answers_451_never_5xx_then_recovers(intake: SmtpIntake) -> None:
    spool = intake.handler.spool
    assert send_data(intake, eml(message_id="<before@customer.example>"))[0] == 250
    (segment,) = journal_segments(spool)
    segment.unlink()
    segment.mkdir()  # the journal segment replaced under the writer: what it writes there is lost
    code, msg = send_data(intake, eml(message_id="<lost@customer.example>"))
    assert code == 451 and msg.startswith(b"4.3.0")
    assert b"segment" not in msg and b"journal" not in msg  # no internals leak
    code, _ = send_data(intake, eml(message_id="<after@customer.example>"))
    assert code == 250  # on a new segment: the writer never appends after a failure
    (fresh,) = journal_segments(spool)
    assert fresh.name > segment.name
    (entry,) = spool.entries("incoming")
    assert b"<after@customer.example>" in spool.read(entry)[1]
    assert intake.handler.tempfailed == 1


def test_journal_folder_gone_answers_451_until_it_is_back(smtp_settings: Settings, tmp_path: Path) -> None:
    spool = Spool(smtp_settings.spool_path).ensure()
    server = SmtpIntake(smtp_settings, spool, port=free_port(), segment_size=16 * 1024)
    server.start()
    try:
        journal = spool.root / "journal"
        assert send_data(server, eml(body=("a" * 70 + "\n") * 160))[0] == 250
        journal.rename(tmp_path / "away")
        journal.write_text("not a folder")
        assert send_data(server, eml(body=("b" * 70 + "\n") * 160))[0] == 451  # needs a new segment: cannot
        journal.unlink()
        (tmp_path / "away").rename(journal)
        big = eml(body=("c" * 70 + "\n") * 800)  # bigger than a segment: gets one of its own size
        assert send_data(server, big)[0] == 250
        bodies = sorted(len(spool.read(e)[1]) for e in spool.entries("incoming"))
        assert len(bodies) == 2 and bodies[-1] >= len(big)
    finally:
        server.stop()


def test_smtputf8_and_8bit_content(intake: SmtpIntake) -> None:
    raw = eml(sender="Jörg <jörg@bücher.example>", subject="Grüße", body="Schöne Grüße ✓")
    with client(intake) as smtp:
        smtp.ehlo()
        smtp.sendmail("jörg@bücher.example", ["support@example.com"], raw, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    (entry,) = intake.handler.spool.entries("incoming")
    assert intake.handler.spool.read(entry)[1].rstrip(b"\r\n") == raw.rstrip(b"\r\n")  # smtplib ends DATA with CRLF


def test_starttls_with_configured_certificate(tmp_path: Path, smtp_settings: Settings) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    settings = replace(
        smtp_settings, smtp=replace(smtp_settings.smtp, tls_cert=str(cert), tls_key=str(key), require_starttls=True)
    )
    spool = Spool(settings.spool_path).ensure()
    server = SmtpIntake(settings, spool, port=free_port())
    server.start()
    try:
        with smtplib.SMTP(server.hostname, server.port, timeout=10) as smtp:
            smtp.ehlo()
            assert smtp.has_extn("starttls")
            code, _ = smtp.mail("a@customer.example")
            assert code == 530  # TLS required first
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            smtp.starttls(context=ctx)
            smtp.ehlo()
            assert smtp.sendmail("a@customer.example", ["support@example.com"], eml()) == {}
        assert spool.depths()["incoming"] == 1
    finally:
        server.stop()


def test_a_full_spool_disk_answers_451_and_says_why(intake: SmtpIntake, monkeypatch: pytest.MonkeyPatch) -> None:
    from maildesk.commands.ops import intake_state

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(intake.handler.writer.journal, "_write", full)
    code, msg = send_data(intake, eml())
    assert code == 451 and b"space" not in msg  # the client learns nothing of ours
    last = intake.handler.last_tempfail
    assert last is not None and last["reason"] == "the spool file system is full (no space left to store mail)"
    daemon = {"running": True, "intake": {"last_tempfail": last}}
    accepting, why = intake_state(daemon, {"reachable": True}, {"disk_free": 10**9}, 100_000)
    assert not accepting and why.startswith("answered 451 ") and why.endswith(last["reason"])
