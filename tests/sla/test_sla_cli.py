"""`maildesk sla status|sweep|replay` through the real CLI on a desk whose config has [sla]. Both backends."""

from __future__ import annotations

import csv
import io
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


def test_each_clock_in_status_tickets_list_and_ticket_show(tmp_path: Path, database_url: str) -> None:
    """Near the real clock: one ticket due soon, one overdue. `sla status --breaching --due-within`,
    `tickets list` (JSON, table, CSV) and `ticket show` give each clock's kind, target, due, state,
    paused time and warned/breached times."""
    config = _config(tmp_path, database_url, SLA, "maildesk.toml")
    now = datetime.now(UTC)
    for subject, ago in (("Due soon", timedelta(minutes=30)), ("Overdue", timedelta(hours=3))):
        desk = App(load_settings(config), clock=lambda ago=ago: now - ago)  # type: ignore[misc]
        desk.migrate()
        desk.spool.put(eml(subject=subject), "test")
        assert desk.process()["failed"] == 0
        desk.store.dispose()
    soon, late = 1, 2
    c = ("--json", "--config", str(config))

    def clocks(*args: str) -> set[tuple[int, str, str]]:
        return {(r["ticket"], r["kind"], r["state"]) for r in json.loads(_run("sla", "status", *args, *c).stdout)}

    # due within 2 h: the first response of "Due soon" (in 30 min) and the overdue one; not the 8 h resolutions
    assert clocks("--due-within", "2h") == {(soon, "first_response", "running"), (late, "first_response", "overdue")}
    assert clocks("--breaching") == {(late, "first_response", "overdue")}
    assert clocks("--breaching", "--due-within", "2h") == {(late, "first_response", "overdue")}
    row = json.loads(_run("sla", "status", "--breaching", "--due-within", "2h", *c).stdout)[0]
    assert (row["target"], row["paused_seconds"], row["warned_at"], row["breached_at"]) == (
        "1h calendar",
        0,
        None,
        None,
    )
    bad = CliRunner().invoke(cli, ["sla", "status", "--due-within", "soon", *c])
    assert bad.exit_code == 2 and "cannot read age" in bad.output

    _run("sla", "sweep", "--config", str(config))  # the overdue clock breaches; the other is at its warning
    listed = json.loads(_run("tickets", "list", "--breaching", *c).stdout)
    assert [t["number"] for t in listed] == [late]
    first = next(k for k in listed[0]["clocks"] if k["kind"] == "first_response")
    assert (first["target"], first["state"]) == ("1h calendar", "breached")
    assert first["breached_at"] == first["due_at"] and first["warned_at"] is not None
    assert {k["kind"]: k["target"] for k in listed[0]["clocks"]} == {
        "first_response": "1h calendar",
        "resolution": "8h calendar",
    }
    table = _run("tickets", "list", "--config", str(config)).stdout
    assert "first_response 1h calendar: breached" in table and "resolution 8h calendar: running" in table
    rows = list(csv.DictReader(io.StringIO(_run("tickets", "list", "--csv", "--config", str(config)).stdout)))
    assert rows[0]["clocks"].startswith("first_response 1h calendar: warned, due ")  # warned by the sweep, at half
    assert ", warned " in rows[0]["clocks"] and "; resolution 8h calendar: running" in rows[0]["clocks"]
    assert ", breached " in rows[1]["clocks"]
    shown = json.loads(_run("ticket", "show", str(late), *c).stdout)["sla"]
    assert {k["kind"]: (k["target"], k["state"]) for k in shown} == {
        "first_response": ("1h calendar", "breached"),
        "resolution": ("8h calendar", "running"),
    }
    text = _run("ticket", "show", str(late), "--config", str(config)).stdout
    assert "target" in text and "1h calendar" in text and "breached" in text
    status = _run("sla", "status", "--config", str(config)).stdout
    assert "1h calendar" in status and "breached" in status
