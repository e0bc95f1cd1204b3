"""Forwards that open tickets need the agent's sender authenticated (the default): through
the real pipeline, a forward with a trusted Authentication-Results pass or a DKIM signature
that verifies (DNS stubbed, generated key) opens the ticket; an unsigned one, a forged
header and a tampered signature are refused and recorded, and open nothing."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dkim
import pytest
from sqlalchemy import select

from maildesk.store.models import Event, Ticket
from tests.services.test_agent_mail_service import AGENTS, AgentDesk
from tests.support.mailgen import eml
from tests.support.routing_kit import team_settings


@pytest.fixture
def desk(tmp_path: Path, database_url: str) -> Iterator[AgentDesk]:
    if shutil.which("openssl") is None:  # never a silent skip: ./dev test installs it
        pytest.fail("openssl is needed to generate a test key", pytrace=False)
    settings = team_settings(tmp_path, database_url, None, agents=AGENTS, queues=[])
    assert settings.desk.agent_forward_needs_dkim  # the default
    settings = replace(settings, desk=replace(settings.desk, trusted_authserv_ids=("mx.example.com",)))
    private = tmp_path / "k.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    d = AgentDesk(settings)
    d.app.sync_agents()
    d.app.deps.dkim_dns = lambda name, timeout=5: record if name == b"sel._domainkey.example.com." else None
    d.key = private.read_bytes()  # type: ignore[attr-defined]
    yield d
    d.close()


def forward(customer: str, extra: str = "") -> bytes:
    body = f"#customer {customer}\n\n---------- Forwarded message ---------\nFrom: {customer}\n\nWhere is my order?\n"
    return eml(sender="Ann Agent <ann@example.com>", subject=f"Fwd: Order of {customer}", body=body, extra=extra)


def opened(desk: AgentDesk, customer: str) -> Ticket | None:
    with desk.app.store.reader() as s:
        return s.scalars(select(Ticket).where(Ticket.subject == f"Order of {customer}")).first()


def events(desk: AgentDesk, type_: str) -> list[dict[str, object]]:
    with desk.app.store.reader() as s:
        return [e.data for e in s.scalars(select(Event).where(Event.type == type_).order_by(Event.id))]


def test_authenticated_forwards_open_tickets_the_rest_are_refused(desk: AgentDesk) -> None:
    trusted = "Authentication-Results: mx.example.com; dkim=pass header.d=example.com"
    desk.agent(forward("zoe@customer.example", trusted))
    assert opened(desk, "zoe@customer.example") is not None
    raw = forward("yan@customer.example")
    desk.agent(dkim.sign(raw, b"sel", b"example.com", desk.key, include_headers=[b"From", b"Subject"]) + raw)  # type: ignore[attr-defined]
    assert opened(desk, "yan@customer.example") is not None
    assert [e["by"] for e in events(desk, "agent-sender-authenticated")] == ["authentication-results", "dkim"]

    desk.agent(forward("xia@customer.example"))  # nothing at all
    desk.agent(
        forward("wes@customer.example", "Authentication-Results: mx.evil.example; dkim=pass header.d=example.com")
    )
    raw = forward("vic@customer.example")
    signed = dkim.sign(raw, b"sel", b"example.com", desk.key, include_headers=[b"From", b"Subject"]) + raw  # type: ignore[attr-defined]
    desk.agent(signed.replace(b"Where is my order?", b"Send the refund to me."))
    for customer in ("xia", "wes", "vic"):
        assert opened(desk, f"{customer}@customer.example") is None
    refused = events(desk, "agent-mail-refused")
    assert [e["reason"] for e in refused] == ["sender-not-authenticated"] * 3
    details = [str(e["detail"]) for e in events(desk, "agent-sender-not-authenticated")]
    assert len(details) == 3 and "body hash mismatch" in details[2], details
    assert desk.sent("ack") == []
    told = desk.sent("refused_reply")  # the configured agent address hears why (rate limited)
    assert told and all(r.recipients == ["ann@example.com"] for r in told)
