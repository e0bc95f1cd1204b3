"""`maildesk sla status|sweep|replay` through the real CLI on a desk whose config has [sla]. Both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from maildesk.app import App
from maildesk.cli import app as cli
from maildesk.config import load_settings
from tests.support.mailgen import eml

T0 = datetime(2024, 1, 8, 10, 0, tzinfo=UTC)  # a Monday, long past: the CLI's clock is the real one
SLA = """
[[sla.policy]]
name = "standard"
time = "calendar"
first_response = "1h"
resolution = "8h"
warn_at = 0.5
"""


def _config(tmp_path: Path, database_url: str, sla: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(
        f'[desk]\ndata_dir = {str(tmp_path / "data")!r}\nsupport_addresses = ["support@example.com"]\nsecret_env = ""\n'
        f'[database]\nurl = {database_url!r}\nurl_env = ""\n' + sla
    )
    return path


def _run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_status_sweep_and_replay(tmp_path: Path, database_url: str) -> None:
    config = _config(tmp_path, database_url, SLA, "maildesk.toml")
    desk = App(load_settings(config), clock=lambda: T0)
    desk.migrate()
    desk.spool.put(eml(subject="Printer on fire"), "test")
    assert desk.process()["failed"] == 0
    desk.store.dispose()
    rows = json.loads(_run("sla", "status", "--json", "--config", str(config)).stdout)
    assert {r["kind"] for r in rows} == {"first_response", "resolution"} and rows[0]["policy"] == "standard"
    at = (T0 + timedelta(hours=2)).isoformat()
    dry = json.loads(_run("sla", "sweep", "--now", at, "--dry-run", "--json", "--config", str(config)).stdout)
    assert [a["action"] for a in dry["actions"]] == ["warning", "breach"] and dry["dry_run"] is True
    done = json.loads(_run("sla", "sweep", "--now", at, "--json", "--config", str(config)).stdout)
    assert [a["action"] for a in done["actions"]] == ["warning", "breach"]
    again = json.loads(_run("sla", "sweep", "--now", at, "--json", "--config", str(config)).stdout)
    assert again["actions"] == []
    breaching = json.loads(_run("sla", "status", "--breaching", "--json", "--config", str(config)).stdout)
    # breached by the sweep at T0+2h; the resolution target has passed since (real clock), not swept yet
    assert {r["kind"]: r["state"] for r in breaching} == {"first_response": "breached", "resolution": "overdue"}
    other = _config(tmp_path, database_url, SLA.replace('"1h"', '"3h"').replace('"8h"', '"1d"'), "other.toml")
    until = datetime.now(UTC) - T0 + timedelta(days=1)
    report = json.loads(
        _run(
            "sla", "replay", "--config", str(other), "--desk", str(config), "--since", f"{until.days}d", "--json"
        ).stdout
    )
    assert report["tickets"] == 1
    assert report["before"]["compliance"]["first_response"]["breached"] == 1
    assert set(report["after"]["compliance"]) == {"first_response", "next_response", "resolution"}
