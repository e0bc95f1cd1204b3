"""`maildesk status` shows automatic mail held by the limits (issue 16), per limit, in the
last hour and the last day: a flood through the real pipeline (App.process on SQLite and
PostgreSQL), then the real CLI command."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from maildesk.config import Settings
from maildesk.rules.limits import LimitPolicy, SentCounts, check_limits, hold_kind
from maildesk.store.models import OutboxItem
from tests.commands.admin.conftest import make_runner, write_config
from tests.conftest import make_settings
from tests.support.mailgen import eml


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url, limits={"global_hour": 100, "per_domain_hour": 3})


def test_status_counts_held_automatic_mail_by_limit(desk: Any, tmp_path: Path) -> None:
    for i in range(8):  # rotating senders at one domain: 3 acknowledged, 5 held by per_domain_hour
        desk.spool.put(eml(sender=f"bot{i}@flood.example", message_id=f"<flood{i}@flood.example>"), "smtp")
    result = desk.process()
    assert result["failed"] == 0 and result["quarantined"] == 0, result
    with desk.store.session() as s:  # one of them was held three hours ago
        held = [row for row in s.query(OutboxItem).filter(OutboxItem.state == "held").order_by(OutboxItem.id)]
        assert len(held) == 5
        s.execute(
            update(OutboxItem)
            .where(OutboxItem.id == held[0].id)
            .values(created_at=held[0].created_at - timedelta(hours=3))
        )
    run = make_runner(write_config(desk, tmp_path))
    data = json.loads(run("status", "--json").output)
    assert data["held"] == {"last_hour": {"per_domain_hour": 4}, "last_day": {"per_domain_hour": 5}}
    text = run("status").output
    assert "held automatic mail, last hour" in text and "per_domain_hour 4" in text


def test_an_idle_desk_shows_nothing_held(desk: Any, tmp_path: Path) -> None:
    data = json.loads(make_runner(write_config(desk, tmp_path))("status", "--json").output)
    assert data["held"] == {"last_hour": {}, "last_day": {}}


def test_every_refusal_of_check_limits_maps_to_its_limit() -> None:
    policy = LimitPolicy(per_recipient_hour=1, per_recipient_day=1, per_ticket_day=1, global_hour=1, per_domain_hour=1)
    windows = {
        "per_recipient_hour": SentCounts(1, 0, 0, 0, 0),
        "per_recipient_day": SentCounts(0, 1, 0, 0, 0),
        "per_ticket_day": SentCounts(0, 0, 1, 0, 0),
        "per_domain_hour": SentCounts(0, 0, 0, 0, 1),
        "global_hour": SentCounts(0, 0, 0, 1, 0),
    }
    for kind, counts in windows.items():
        decision = check_limits(policy, counts, recipient="a@x.example", suppressed=False)
        assert not decision.allowed and hold_kind(decision.reason) == kind, decision
    suppressed = check_limits(policy, SentCounts(0, 0, 0, 0, 0), recipient="a@x.example", suppressed=True)
    assert hold_kind(suppressed.reason) == "suppressed"
    assert hold_kind("something new") == "other"
