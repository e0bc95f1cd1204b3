"""A flood of new senders cannot silence acknowledgements to known customers (issue 16):
the desk-wide and per-domain breakers apply to first-contact recipients only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from maildesk.config import Settings
from tests.conftest import make_settings
from tests.support.mailgen import eml
from tests.support.outbox_kit import Clock, outbox_rows


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url, limits={"global_hour": 6, "per_domain_hour": 3})


def _mail(desk: Any, sender: str, subject: str) -> None:
    mid = "<" + subject.replace(" ", ".") + "@x.example>"
    desk.spool.put(eml(sender=sender, subject=subject, message_id=mid), "smtp", None)
    assert desk.process()["failed"] == 0


def _states(desk: Any) -> dict[str, str]:
    return {row.recipients[0]: row.state for row in outbox_rows(desk) if row.template == "ack"}


def test_rotating_senders_use_up_the_breakers_but_known_customers_still_get_answers(wired: Any, clock: Clock) -> None:
    _mail(wired, "Anna <anna@customer.example>", "first")
    clock.advance(2 * 3600)  # Anna is a customer from before the last hour
    for i in range(10):  # an autoresponder rotating its address at one domain ...
        _mail(wired, f"bot{i}@flood.example", f"flood {i}")
    for i in range(10):  # ... and at many domains
        _mail(wired, f"x@flood{i}.example", f"wide {i}")
    states = _states(wired)
    assert [states[f"bot{i}@flood.example"] for i in range(10)] == ["queued"] * 3 + ["held"] * 7
    assert sum(states[f"x@flood{i}.example"] == "queued" for i in range(10)) == 3  # 6 in the hour in all
    _mail(wired, "Anna <anna@customer.example>", "second problem")
    assert [row.state for row in outbox_rows(wired) if row.recipients == ["anna@customer.example"]] == [
        "queued",
        "queued",
    ]
    held = [row for row in outbox_rows(wired) if row.state == "held"]
    assert held and all(row.recipients[0] != "anna@customer.example" for row in held)
