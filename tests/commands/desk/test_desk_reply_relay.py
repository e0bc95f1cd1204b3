"""`maildesk ticket reply` reaches the customer through a real loopback relay, threaded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from maildesk.message import parse_bytes
from maildesk.outbound.sender import OutboxSender
from tests.commands.desk.conftest import cli_app, write_config
from tests.support.mailgen import eml
from tests.support.outbox_kit import RelaySink, relay_settings


def test_cli_reply_is_delivered_with_threading_headers(desk: Any, tmp_path: Path) -> None:
    first = "<first@customer.example>"
    second = "<second@customer.example>"
    desk.spool.put(eml(message_id=first, subject="Printer on fire"), "test")
    desk.process()
    desk.spool.put(
        eml(message_id=second, subject="Re: Printer on fire", extra=f"In-Reply-To: {first}\nReferences: {first}"),
        "test",
    )
    desk.process()
    config = write_config(desk, tmp_path)
    result = CliRunner().invoke(
        cli_app(),
        [
            "ticket",
            "reply",
            "1",
            "--by",
            "eva@example.com",
            "--text",
            "A technician is on the way.",
            "--config",
            str(config),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    sink = RelaySink().start()
    try:
        sender = OutboxSender(
            desk.store, relay_settings(desk.settings, sink.port), timeout=5.0, clock=lambda: datetime.now(UTC)
        )
        sender.send_due(limit=10)
        replies = [parse_bytes(raw) for _, rcpts, raw in sink.received if b"A technician is on the way." in raw]
    finally:
        sink.stop()
    assert len(replies) == 1
    reply = replies[0]
    assert [a.email for a in reply.to] == ["anna@customer.example"]
    assert reply.in_reply_to == ("second@customer.example",)  # answers the latest customer mail
    assert "first@customer.example" in reply.references and "second@customer.example" in reply.references
    assert "[#1]" in reply.subject and "Printer on fire" in reply.subject
    assert reply.header("Auto-Submitted") == ""  # a person's reply, not automatic mail
    assert reply.header("Thread-Index")
