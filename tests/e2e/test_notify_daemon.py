"""The real `maildesk run` subprocess: a customer's mail over SMTP becomes a notification to
each agent of the queue, written to the outgoing Maildir (no relay configured), with a
Reply-To token bound to that agent and ticket and the marker line above the quoted text."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

from maildesk.agentmail.strip import marker_line
from maildesk.threading.tokens import parse_agent_address
from tests.conftest import free_port
from tests.support.daemon import Daemon, outgoing_mails, write_config
from tests.support.mailgen import eml
from tests.support.wait import wait_for

SECRET = "crash-secret"  # what tests.support.daemon.Daemon puts into MAILDESK_TEST_SECRET
TEAM = """
[[queue]]
name = "billing"
address = "billing@example.com"

[[agent]]
email = "ann@example.com"
name = "Ann Lee"
tiers = ["L1"]
queues = ["billing"]

[[agent]]
email = "bob@example.com"
name = "Bob Roe"
tiers = ["L1"]
queues = ["billing"]

[[agent]]
email = "dora@example.com"
name = "Dora Kim"
tiers = ["L2"]
queues = ["billing"]
"""


def _delivered(outgoing: Path) -> list[EmailMessage]:
    return [msg for _raw, msg in outgoing_mails(outgoing)]


def test_customer_mail_over_smtp_reaches_the_queue_agents_in_the_outgoing_maildir(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "maildesk.toml", data_dir=data, database_url=database_url, smtp_port=port, extra="")
    one, both = '["support@example.com"]', '["support@example.com", "billing@example.com"]'
    text = cfg.read_text().replace(f"support_addresses = {one}", f"support_addresses = {both}")
    cfg.write_text(text + TEAM)
    daemon = Daemon(cfg, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        daemon.wait_ready()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail(
                "anna@customer.example",
                ["billing@example.com"],
                eml(to="billing@example.com", subject="Invoice wrong", body="Hello,\n\ninvoice 4711 is wrong.\n"),
            )

        def notifications() -> list[EmailMessage]:
            got = [m for m in _delivered(data / "outgoing") if m["To"].addresses[0].addr_spec.endswith("@example.com")]
            return got if len(got) >= 2 else []

        mails: list[EmailMessage] = wait_for(
            notifications, timeout=60, interval=0.1, message="two agent notifications delivered"
        )
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    assert sorted(m["To"].addresses[0].addr_spec for m in mails) == ["ann@example.com", "bob@example.com"]
    for msg in mails:
        agent = msg["To"].addresses[0].addr_spec
        got = parse_agent_address(SECRET, msg["Reply-To"].addresses[0].addr_spec, agent)
        assert got is not None
        assert msg["Subject"] == f"[#{got[0]}] Invoice wrong"
        plain = msg.get_body(("plain",))
        assert plain is not None
        body = str(plain.get_content()).replace("\r\n", "\n")
        assert body.lstrip().splitlines()[0] == marker_line("en")
        assert "> invoice 4711 is wrong." in body
    # the customer got the acknowledgement, and nothing meant for the agents
    to_customer = [
        m for m in _delivered(data / "outgoing") if m["To"].addresses[0].addr_spec == "anna@customer.example"
    ]
    assert len(to_customer) == 1 and to_customer[0]["Reply-To"] != mails[0]["Reply-To"]
    assert marker_line("en") not in to_customer[0].as_string()
