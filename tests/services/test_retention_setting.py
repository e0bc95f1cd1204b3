"""The retention setting: the daemon's daily job and `retention apply` without --days."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from typer.testing import CliRunner

from maildesk.store.models import Message, Ticket
from tests.commands.desk.conftest import cli_app, write_config
from tests.support.mailgen import eml


def close_long_ago(desk: Any, days: int) -> None:
    with desk.store.session() as s:
        for t in s.scalars(select(Ticket)):
            t.status = "closed"
            t.closed_at = desk.clock() - timedelta(days=days)


def test_app_applies_the_retention_setting(desk: Any) -> None:
    desk.spool.put(eml(message_id="<old@customer.example>"), "test")
    desk.process()
    close_long_ago(desk, 400)
    desk.settings = replace(desk.settings, desk=replace(desk.settings.desk, retention_days=365))
    report = desk.apply_retention()
    assert report is not None and report["tickets"] == 1
    with desk.store.reader() as s:
        assert all(m.raw is None for m in s.scalars(select(Message)))
        assert s.scalars(select(Message.full_text).where(Message.direction == "in")).one()  # texts stay
    desk.settings = replace(desk.settings, desk=replace(desk.settings.desk, retention_days=0))
    assert desk.apply_retention() is None  # 0 keeps forever


def test_daemon_schedules_retention_only_when_set(desk: Any) -> None:
    scheduler = desk._scheduler()
    try:
        assert scheduler.get_job("retention") is None
    finally:
        scheduler.shutdown(wait=False)
    desk.settings = replace(desk.settings, desk=replace(desk.settings.desk, retention_days=30))
    scheduler = desk._scheduler()
    try:
        job = scheduler.get_job("retention")
        assert job is not None and job.trigger.interval == timedelta(hours=24)
    finally:
        scheduler.shutdown(wait=False)


def test_cli_retention_uses_the_setting(desk: Any, tmp_path: Path) -> None:
    desk.spool.put(eml(message_id="<old2@customer.example>"), "test")
    desk.process()
    close_long_ago(desk, 40)
    config = write_config(desk, tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli_app(), ["retention", "apply", "--yes", "--config", str(config)])
    assert result.exit_code == 2 and "retention_days is 0" in " ".join(result.output.split())
    config.write_text(config.read_text().replace("[desk]\n", "[desk]\nretention_days = 30\n"))
    result = runner.invoke(cli_app(), ["retention", "apply", "--yes", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert '"tickets": 1' in result.output
