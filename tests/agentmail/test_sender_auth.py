"""Sender authentication for agents' forwards: DKIM verified with a generated key (DNS
stubbed through dkimpy's dnsfunc) and trusted Authentication-Results headers — pass, fail,
wrong domain and forged headers."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest

from maildesk.agentmail.sender_auth import aligned, authentication_results, sender_authenticated
from tests.support.mailgen import eml

MX = ["mx.example.com"]


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    if shutil.which("openssl") is None:  # never a silent skip: ./dev test installs it
        pytest.fail("openssl is needed to generate a test key; run the tests with ./dev test", pytrace=False)
    folder: Path = tmp_path_factory.mktemp("dkim-in")
    private = folder / "private.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    public_der = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return private.read_bytes(), public_der


def dns(public_der: bytes, name: bytes = b"sel._domainkey.example.com."):  # type: ignore[no-untyped-def]
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)
    asked: list[bytes] = []

    def dnsfunc(qname: bytes, timeout: int = 5) -> bytes | None:
        asked.append(qname)
        return record if qname == name else None

    dnsfunc.asked = asked  # type: ignore[attr-defined]
    return dnsfunc


def forward(extra: str = "") -> bytes:
    body = "#customer zoe@customer.example\n\n---------- Forwarded message ---------\nFrom: zoe@customer.example\n"
    return eml(sender="Ann <ann@example.com>", subject="Fwd: Order", body=body, extra=extra)


def signed(raw: bytes, private: bytes, domain: bytes = b"example.com") -> bytes:
    return dkim.sign(raw, b"sel", domain, private, include_headers=[b"From", b"To", b"Subject"]) + raw


def test_alignment_is_relaxed_but_never_a_bare_tld() -> None:
    assert aligned("example.com", "example.com") and aligned("example.com", "mail.example.com")
    assert not aligned("com", "example.com") and not aligned("evil.example", "example.com")
    assert not aligned("mail.example.com", "example.com") and not aligned("xexample.com", "example.com")


def test_a_dkim_signature_of_the_agents_domain_passes(keypair: tuple[bytes, bytes]) -> None:
    private, public = keypair
    lookup = dns(public)
    verdict = sender_authenticated(signed(forward(), private), "ann@example.com", dnsfunc=lookup)
    assert verdict.passed and verdict.by == "dkim", verdict
    assert lookup.asked == [b"sel._domainkey.example.com."]  # type: ignore[attr-defined]


def test_a_tampered_body_a_foreign_domain_or_no_key_fails(keypair: tuple[bytes, bytes]) -> None:
    private, public = keypair
    tampered = signed(forward(), private).replace(b"zoe@customer.example", b"eve@evil.example")
    verdict = sender_authenticated(tampered, "ann@example.com", dnsfunc=dns(public))
    assert not verdict.passed and "body hash mismatch" in verdict.detail
    foreign = signed(forward(), private, b"evil.example")
    verdict = sender_authenticated(foreign, "ann@example.com", dnsfunc=dns(public, b"sel._domainkey.evil.example."))
    assert not verdict.passed and "verifies for evil.example, not example.com" in verdict.detail
    no_key = sender_authenticated(signed(forward(), private), "ann@example.com", dnsfunc=lambda q, timeout=5: None)
    assert not no_key.passed
    unsigned = sender_authenticated(forward(), "ann@example.com", dnsfunc=dns(public))
    assert not unsigned.passed and "no DKIM signature" in unsigned.detail


@pytest.mark.parametrize(
    "result",
    [
        "dkim=pass header.d=example.com header.s=sel",
        "dkim=pass (2048-bit key) header.i=@example.com",
        "spf=fail smtp.mailfrom=ann@example.com; dmarc=pass (p=reject) header.from=example.com",
        "spf=pass smtp.mailfrom=ann@example.com",
    ],
)
def test_a_trusted_authentication_results_pass_counts(result: str) -> None:
    raw = forward(f"Authentication-Results: mx.example.com;\n {result}")
    verdict = sender_authenticated(raw, "ann@example.com", trusted_authserv_ids=MX, dnsfunc=dns(b""))
    assert verdict.passed and verdict.by == "authentication-results", verdict


@pytest.mark.parametrize(
    "headers",
    [
        # someone else's authserv-id: anyone can write such a header
        "Authentication-Results: mx.evil.example; dkim=pass header.d=example.com",
        # a pass for another domain
        "Authentication-Results: mx.example.com; dkim=pass header.d=evil.example; dmarc=fail header.from=example.com",
        # the MX's own (topmost) header says fail; a forged one below with the same id does not count
        "Authentication-Results: mx.example.com; dkim=fail header.d=example.com\n"
        "Authentication-Results: mx.example.com; dkim=pass header.d=example.com",
        # a pass hidden in a comment
        "Authentication-Results: mx.example.com; dkim=none (dkim=pass header.d=example.com)",
    ],
)
def test_forged_or_failing_headers_do_not_count(headers: str) -> None:
    raw = forward(headers)
    assert not sender_authenticated(raw, "ann@example.com", trusted_authserv_ids=MX, dnsfunc=dns(b"")).passed


def test_without_trusted_ids_the_header_is_ignored() -> None:
    raw = forward("Authentication-Results: mx.example.com; dkim=pass header.d=example.com")
    assert authentication_results(raw, (), "example.com") is None
    assert not sender_authenticated(raw, "ann@example.com", dnsfunc=dns(b"")).passed
