"""relay.deliver against real aiosmtpd servers on loopback: plain, STARTTLS with AUTH,
implicit TLS, certificate checking, and which answers are temporary or permanent."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from maildesk.config import OutboundSettings
from maildesk.outbound.relay import deliver
from tests.conftest import free_port
from tests.support.outbox_kit import SinkHandler

RAW = (
    b"From: support@example.com\r\nTo: anna@customer.example\r\nSubject: hi\r\n"
    b"Message-ID: <r1@example.com>\r\n\r\nhello\r\n"
)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
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
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def client_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


class Auth:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.seen.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.login == b"desk" and data.password == b"s3cret")


@pytest.fixture
def plain() -> Iterator[tuple[SinkHandler, int]]:
    handler, port = SinkHandler(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def settings(port: int, **kw: Any) -> OutboundSettings:
    return replace(OutboundSettings(), relay_host="127.0.0.1", relay_port=port, security="none", **kw)


def test_plain_delivery(plain: tuple[SinkHandler, int]) -> None:
    handler, port = plain
    result = deliver(RAW, "support@example.com", ["anna@customer.example"], settings(port), timeout=5)
    assert result.ok and result.code == 250
    assert handler.received == [("support@example.com", ["anna@customer.example"], RAW)]


@pytest.mark.parametrize(
    ("script", "where", "permanent", "code"),
    [
        (["451 4.7.1 greylisted"], "rcpt", False, 451),
        (["550 5.1.1 user unknown"], "rcpt", True, 550),
        (["452 4.3.1 insufficient storage"], "data", False, 452),
        (["554 5.7.1 rejected as spam"], "data", True, 554),
    ],
)
def test_answers_map_to_temporary_or_permanent(
    plain: tuple[SinkHandler, int], script: list[str], where: str, permanent: bool, code: int
) -> None:
    handler, port = plain
    setattr(handler, f"{where}_script", list(script))
    result = deliver(RAW, "support@example.com", ["anna@customer.example"], settings(port), timeout=5)
    assert not result.ok and result.permanent is permanent and result.code == code
    assert script[0].split(" ", 2)[2] in result.message
    if where == "rcpt" and permanent:
        assert result.permanent_recipients == ("anna@customer.example",)
    assert handler.received == []


def test_one_recipient_refused_of_two_is_delivered_and_reported(plain: tuple[SinkHandler, int]) -> None:
    handler, port = plain
    handler.rcpt_script = ["250 ok", "550 5.1.1 bob unknown"]
    result = deliver(
        RAW, "support@example.com", ["anna@customer.example", "bob@customer.example"], settings(port), timeout=5
    )
    assert result.ok and result.permanent_recipients == ("bob@customer.example",)
    assert result.refused["bob@customer.example"][0] == 550
    assert handler.received[0][1] == ["anna@customer.example"]


def test_connection_refused_is_temporary() -> None:
    result = deliver(RAW, "support@example.com", ["anna@customer.example"], settings(free_port()), timeout=2)
    assert not result.ok and not result.permanent and "cannot reach relay" in result.message


def test_starttls_with_auth(cert: tuple[Path, Path]) -> None:
    handler, port, auth = SinkHandler(), free_port(), Auth()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context(cert),
        require_starttls=True,
        authenticator=auth,
        auth_required=True,
    )
    controller.start()
    try:
        out = settings(port, username="desk", password="s3cret")
        out = replace(out, security="starttls")
        result = deliver(
            RAW, "support@example.com", ["anna@customer.example"], out, timeout=5, context=client_context(cert)
        )
        assert result.ok, result.message
        assert auth.seen == [("desk", "s3cret")] and len(handler.received) == 1
        # wrong password: a set-up problem, so temporary (retries work once it is fixed)
        bad = deliver(
            RAW,
            "support@example.com",
            ["anna@customer.example"],
            replace(out, password="nope"),
            timeout=2,
            context=client_context(cert),
        )
        assert not bad.ok and not bad.permanent
        # a certificate we do not trust is refused, temporarily
        untrusted = deliver(RAW, "support@example.com", ["anna@customer.example"], out, timeout=5)
        assert not untrusted.ok and not untrusted.permanent and "CERTIFICATE" in untrusted.message.upper()
        assert len(handler.received) == 1
    finally:
        controller.stop()


def test_implicit_tls(cert: tuple[Path, Path]) -> None:
    handler, port = SinkHandler(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=server_context(cert))
    controller.start()
    try:
        out = replace(settings(port), security="ssl")
        result = deliver(
            RAW, "support@example.com", ["anna@customer.example"], out, timeout=5, context=client_context(cert)
        )
        assert result.ok, result.message
        assert len(handler.received) == 1
    finally:
        controller.stop()


def test_no_relay_and_no_maildir_is_a_clear_temporary_error() -> None:
    result = deliver(RAW, "support@example.com", ["a@b.example"], OutboundSettings())
    assert not result.ok and not result.permanent and "no relay_host" in result.message
