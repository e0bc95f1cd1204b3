"""DKIM: sign with a generated key and verify with dkimpy against a stubbed DNS."""

from __future__ import annotations

import base64
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest

from maildesk.outbound.compose import OutgoingMail, build_message
from maildesk.outbound.dkim import DkimError, sign


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    if shutil.which("openssl") is None:  # never a silent skip: ./dev test installs it
        pytest.fail("openssl is needed to generate a test key; run the tests with ./dev test", pytrace=False)
    folder: Path = tmp_path_factory.mktemp("dkim")
    private = folder / "private.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    public_der = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return private.read_bytes(), public_der


def message() -> bytes:
    return build_message(
        OutgoingMail(
            from_addr="support@example.com",
            from_name="Jürgen Support",
            to=("anna@example.org",),
            subject="Re: [#42] Drucker brennt",
            text="Hallo Anna,\n\nbitte Stecker ziehen.\n",
            html="<p>Hallo Anna</p>",
            message_id="42.abc@example.com",
            in_reply_to="c1@example.org",
            automatic=True,
        ),
        now=datetime(2025, 3, 5, 9, 30, tzinfo=UTC),
    )


def dns_for(public_der: bytes):  # type: ignore[no-untyped-def]
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"md1._domainkey.example.com." else None

    return dnsfunc


def test_round_trip(keypair: tuple[bytes, bytes]) -> None:
    private, public_der = keypair
    raw = message()
    signed = sign(raw, selector="md1", domain="example.com", key_pem=private)
    assert signed.startswith(b"DKIM-Signature:") and signed.endswith(raw)
    header = signed[: len(signed) - len(raw)].decode()
    assert "d=example.com" in header and "s=md1" in header and "c=relaxed/relaxed" in header
    assert "auto-submitted" in header.lower() and "in-reply-to" in header.lower()
    assert dkim.verify(signed, dnsfunc=dns_for(public_der))


def test_tampering_breaks_the_signature(keypair: tuple[bytes, bytes]) -> None:
    private, public_der = keypair
    signed = sign(message(), selector="md1", domain="example.com", key_pem=private.decode())
    assert not dkim.verify(signed.replace(b"Stecker", b"Kabel"), dnsfunc=dns_for(public_der))
    assert not dkim.verify(signed.replace(b"Subject: Re: [#42]", b"Subject: Re: [#43]"), dnsfunc=dns_for(public_der))


def test_bad_key_raises() -> None:
    with pytest.raises(DkimError):
        sign(message(), selector="md1", domain="example.com", key_pem=b"not a key")
