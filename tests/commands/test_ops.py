"""`maildesk --version`, `health`, `db upgrade`, `db backup`, `status` on a fresh folder, and the
clear error when PostgreSQL is configured without the `maildesk[postgresql]` extra.

Through the real console entry point (`python -m maildesk`) where exit codes and stderr matter,
Typer's runner elsewhere; the daemon is a real `maildesk run` subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from maildesk.cli import app
from maildesk.commands.ops import DEGRADED, DOWN, HEALTHY, judge
from tests.conftest import PgDatabases, free_port
from tests.support.daemon import Daemon
from tests.support.daemon import write_config as write_daemon_config
from tests.support.mailgen import eml


def write_config(tmp_path: Path, database_url: str, extra: str = "") -> Path:
    cfg = tmp_path / "maildesk.toml"
    cfg.write_text(
        f'[desk]\ndata_dir = "{tmp_path / "data"}"\nsupport_addresses = ["support@example.com"]\nsecret_env = ""\n'
        f'{extra}[database]\nurl = "{database_url}"\nurl_env = ""\n'
    )
    return cfg


def run(*args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maildesk", *args],
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout}s")


def empty_pg_database(pg_databases: PgDatabases, name: str) -> str:
    """A PostgreSQL database that was never migrated (the fixture's are cloned from a migrated one)."""
    full = f"{pg_databases.run_id}_{name}"
    pg_databases._exec(f'CREATE DATABASE "{full}"')
    pg_databases.created.append(full)
    return pg_databases.url(full)


# --version -------------------------------------------------------------------------------
def test_version_prints_the_package_version() -> None:
    for flag in ("--version", "-V"):
        result = run(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"maildesk {version('maildesk')}\n"
    assert "--version" in run("--help").stdout


# status on a fresh folder ------------------------------------------------------------------
def test_status_on_a_fresh_folder_says_not_initialised(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}")
    text = run("status", "--config", str(cfg))
    assert text.returncode == 0, text.stderr
    assert "not initialised yet" in text.stdout and "no such table" not in text.stdout + text.stderr
    data = json.loads(run("status", "--json", "--config", str(cfg)).stdout)
    assert data["database"]["reachable"] is True and data["database"]["initialised"] is False
    assert "not initialised yet" in data["database"]["note"] and "tickets" not in data["database"]


def test_status_on_a_fresh_postgresql_database_says_not_initialised(tmp_path: Path, pg_databases: PgDatabases) -> None:
    cfg = write_config(tmp_path, empty_pg_database(pg_databases, "fresh_status"))
    data = json.loads(run("status", "--json", "--config", str(cfg)).stdout)
    assert data["database"]["backend"] == "postgresql" and data["database"]["initialised"] is False


def test_status_after_processing_shows_revision_and_counts(tmp_path: Path, database_url: str) -> None:
    cfg = write_config(tmp_path, database_url)
    assert run("inject", "-", "--config", str(cfg), input=eml()).returncode == 0
    assert run("process", "--config", str(cfg)).returncode == 0
    data = json.loads(run("status", "--json", "--config", str(cfg)).stdout)["database"]
    assert data["initialised"] is True and data["revision"] == data["head"] and data["tickets"] == 1


# db upgrade -------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_upgrade_migrates_a_fresh_database_and_prints_the_revision(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}"
    else:
        url = empty_pg_database(request.getfixturevalue("pg_databases"), "fresh_upgrade")
    cfg = write_config(tmp_path, url)
    from maildesk.store.db import Store

    head = Store.head_revision()
    assert head
    for _ in range(2):  # a second upgrade is harmless
        result = run("db", "upgrade", "--config", str(cfg))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"database ({backend}) at revision {head}"
    data = json.loads(run("status", "--json", "--config", str(cfg)).stdout)["database"]
    assert data["initialised"] is True and data["revision"] == head and data["tickets"] == 0


def test_db_upgrade_on_an_unreachable_database_exits_tempfail(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing")
    result = run("db", "upgrade", "--config", str(cfg))
    assert result.returncode == 75 and "cannot upgrade" in result.stderr and "Traceback" not in result.stderr


# db backup --------------------------------------------------------------------------------
def test_db_backup_sqlite_is_a_consistent_copy(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}")
    runner = CliRunner()
    fresh = runner.invoke(app, ["db", "backup", str(tmp_path / "none.db"), "--config", str(cfg)])
    assert fresh.exit_code == 1 and "not initialised yet" in fresh.output
    for i in range(3):
        assert run("inject", "-", "--config", str(cfg), input=eml(message_id=f"<b{i}@x.example>")).returncode == 0
    assert run("process", "--config", str(cfg)).returncode == 0
    target = tmp_path / "backup" / "desk.db"
    target.parent.mkdir()
    # a reader holds the database open (as a running daemon would); the backup still works
    holder = sqlite3.connect(tmp_path / "data" / "maildesk.db")
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM tickets").fetchone()
    try:
        result = runner.invoke(app, ["db", "backup", str(target), "--config", str(cfg)])
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code == 0, result.output
    assert f"backed up the sqlite database to {target}" in " ".join(result.output.split())
    copy = sqlite3.connect(target)
    try:
        assert copy.execute("SELECT count(*) FROM tickets").fetchone() == (3,)
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        copy.close()
    assert sorted(p.name for p in target.parent.iterdir()) == ["desk.db"]  # no partial file left
    again = runner.invoke(app, ["db", "backup", str(target), "--config", str(cfg)])
    assert again.exit_code == 1 and "--force" in again.output
    forced = runner.invoke(app, ["db", "backup", str(target), "--force", "--config", str(cfg)])
    assert forced.exit_code == 0, forced.output
    # restore as the README says: with the daemon stopped, the copy replaces maildesk.db (and
    # SQLite's -wal/-shm files go); a mail processed after the backup is gone again
    assert run("inject", "-", "--config", str(cfg), input=eml(message_id="<after@x.example>")).returncode == 0
    assert run("process", "--config", str(cfg)).returncode == 0
    live = tmp_path / "data" / "maildesk.db"
    for extra in (live.with_name("maildesk.db-wal"), live.with_name("maildesk.db-shm")):
        extra.unlink(missing_ok=True)
    shutil.copy2(target, live)
    listed = run("tickets", "list", "--json", "--config", str(cfg))
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 3, listed


def test_db_backup_postgresql_runs_pg_dump(tmp_path: Path, pg_databases: PgDatabases) -> None:
    cfg = write_config(tmp_path, pg_databases.fresh())
    assert run("inject", "-", "--config", str(cfg), input=eml()).returncode == 0
    assert run("process", "--config", str(cfg)).returncode == 0
    target = tmp_path / "desk.dump"
    result = run("db", "backup", str(target), "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(["pg_restore", "--list", str(target)], capture_output=True, text=True, check=True)
    assert "TABLE DATA public tickets" in listing.stdout
    # restore as the README says: pg_restore into an empty database, then point maildesk at it
    restored = empty_pg_database(pg_databases, "restored")
    libpq = restored.replace("postgresql+psycopg://", "postgresql://")
    subprocess.run(["pg_restore", "--no-owner", "--dbname", libpq, str(target)], check=True, capture_output=True)
    other = tmp_path / "restored"
    other.mkdir()
    listed = run("tickets", "list", "--json", "--config", str(write_config(other, restored)))
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1, listed
    # without pg_dump on PATH: a clear error, no traceback, no file
    no_tools = tmp_path / "empty-bin"
    no_tools.mkdir()
    missing = run("db", "backup", str(tmp_path / "other.dump"), "--config", str(cfg), env={"PATH": str(no_tools)})
    assert missing.returncode == 1, missing.stderr
    assert "pg_dump is not installed" in " ".join(missing.stderr.split()) and "Traceback" not in missing.stderr
    assert not (tmp_path / "other.dump").exists()


# PostgreSQL without its driver ----------------------------------------------------------------
BLOCK_PSYCOPG = '''
import sys


class _NoPsycopg:
    """Behave as if maildesk were installed without the postgresql extra."""

    def find_spec(self, name, path=None, target=None):
        if name == "psycopg" or name.startswith(("psycopg.", "psycopg_")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoPsycopg())
'''


def test_postgresql_without_the_driver_names_the_extra(tmp_path: Path, pg_databases: PgDatabases) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_PSYCOPG)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    probe = subprocess.run(
        [sys.executable, "-c", "import psycopg"], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert probe.returncode == 1 and "No module named 'psycopg'" in probe.stderr  # the block works
    cfg = write_config(tmp_path, pg_databases.fresh())
    for command in (["process"], ["tickets", "list"], ["db", "upgrade"], ["db", "backup", str(tmp_path / "x")]):
        result = run(*command, "--config", str(cfg), env=env)
        assert result.returncode == 78, (command, result.stderr)
        assert "pip install 'maildesk[postgresql]'" in " ".join(result.stderr.split()), (command, result.stderr)
        assert "Traceback" not in result.stderr
    status = json.loads(run("status", "--json", "--config", str(cfg), env=env).stdout)
    assert status["database"]["reachable"] is False and "maildesk[postgresql]" in status["database"]["error"]
    health = run("health", "--config", str(cfg), env=env)
    assert health.returncode == 2 and "maildesk[postgresql]" in health.stdout
    # intake needs no database: the MTA's mail is still taken
    assert run("inject", "-", "--config", str(cfg), input=eml(), env=env).returncode == 0


# health -----------------------------------------------------------------------------------
def test_health_follows_a_real_daemon(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules: []\n")
    cfg = write_daemon_config(
        tmp_path / "maildesk.toml", data_dir=tmp_path / "data", database_url=database_url, smtp_port=port
    )
    cfg.write_text(cfg.read_text().replace("[desk]\n", f'[desk]\nrules_file = "{rules}"\n', 1))

    def health() -> tuple[int, str]:
        result = run("health", "--config", str(cfg))
        return result.returncode, result.stdout.strip()

    code, line = health()
    assert code == 2 and line.startswith("down: daemon not running"), line
    daemon = Daemon(cfg, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        daemon.wait_ready()
        code, line = wait_for(lambda: (h := health())[0] == 0 and h, "the desk never became healthy")
        assert line.startswith("healthy")
        assert run("inject", "-", "--config", str(cfg), input=b"garbage without headers\n").returncode == 0
        code, line = wait_for(lambda: (h := health())[0] == 1 and h, "a quarantined mail never made it degraded")
        assert line == "degraded: spool entries need a look (1 quarantine): `maildesk spool list`"
        report = json.loads(run("health", "--json", "--config", str(cfg)).stdout)
        assert report["status"] == "degraded" and report["code"] == 1 and len(report["reasons"]) == 1
        rules.write_text(
            "version: 1\nrules:\n  - name: broken\n    then: {queue: [not, a, name]}\n    if: {nonsense: 1}\n"
        )
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        code, line = wait_for(lambda: "rules file has errors" in (h := health())[1] and h, "no rules errors")
        assert code == 1 and "quarantine" in line
    finally:
        assert daemon.terminate() == 0
    code, line = health()
    assert code == 2 and line.startswith("down: daemon not running (status.json is stale or its process is gone)")


def test_health_when_the_database_is_unreachable(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing")
    result = run("health", "--config", str(cfg))
    assert result.returncode == 2
    assert result.stdout.startswith("down: database unreachable") and "daemon not running" in result.stdout


RUNNING: dict[str, Any] = {"running": True, "worker": {"database_unavailable_since": None}, "rules": {"errors": []}}
DATABASE: dict[str, Any] = {"reachable": True, "initialised": True, "revision": "r1", "head": "r1", "outbox": {}}
SPOOL: dict[str, Any] = {"depths": {"incoming": 3, "failed": 0, "quarantine": 0}, "disk_free": 50, "disk_total": 100}


def test_judge_names_each_degraded_reason() -> None:
    assert judge(RUNNING, DATABASE, SPOOL, 5.0).code == HEALTHY
    cases: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]] = [
        (
            {**RUNNING, "worker": {"database_unavailable_since": 1.0, "last_error": "boom"}},
            DATABASE,
            SPOOL,
            "the daemon cannot use the database (boom)",
        ),
        ({**RUNNING, "rules": {"errors": ["rule 1: bad"]}}, DATABASE, SPOOL, "rules file has errors"),
        (RUNNING, {**DATABASE, "outbox": {"failed": 2, "sent": 5}}, SPOOL, "2 outgoing mail failed in the outbox"),
        (RUNNING, DATABASE, {**SPOOL, "depths": {"failed": 1}}, "spool entries need a look (1 failed)"),
        (RUNNING, DATABASE, {**SPOOL, "disk_free": 4}, "spool file system nearly full (4.0% free)"),
        (RUNNING, {**DATABASE, "initialised": False, "revision": None}, SPOOL, "database not initialised yet"),
        (RUNNING, {**DATABASE, "revision": "r0"}, SPOOL, "schema at r0, expected r1: run `maildesk db upgrade`"),
    ]
    for daemon, database, spool, reason in cases:
        verdict = judge(daemon, database, spool, 5.0)
        assert verdict.code == DEGRADED and verdict.line().startswith(f"degraded: {reason}"), verdict.line()
    down = judge(None, {"reachable": False, "error": "refused"}, {**SPOOL, "depths": {"failed": 1}}, 5.0)
    assert down.code == DOWN
    assert down.reasons[:2] == [
        "down: database unreachable (refused)",
        "down: daemon not running (no status.json: it never ran in this data folder)",
    ]
    assert down.reasons[2].startswith("degraded: spool entries need a look")  # the worst first


def test_health_min_free_percent_option(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}")
    result = CliRunner().invoke(app, ["health", "--json", "--min-free-percent", "100", "--config", str(cfg)])
    report = json.loads(result.stdout)
    assert result.exit_code == 2 and report["status"] == "down"
    assert any(r.startswith("degraded: spool file system nearly full") for r in report["reasons"])


def test_intake_state_explains_each_reason_for_451_and_the_database() -> None:
    from maildesk.commands.ops import TEMPFAIL_RECENT, intake_state

    running = {"running": True, "intake": {"last_tempfail": None}}
    up = {"reachable": True, "initialised": True}
    assert intake_state(running, up, {"disk_free": 10**9}, 26_214_400) == (True, "accepting")
    accepting, why = intake_state(running, up, {"disk_free": 1_000_000}, 26_214_400)
    assert not accepting and why.startswith("answers 451: the spool file system has 976 KiB free")
    assert "smtp.max_message_size" in why
    old = {"running": True, "intake": {"last_tempfail": {"at": 1000.0, "reason": "x"}}}
    assert intake_state(old, up, {"disk_free": 10**9}, 1, now=1000.0 + TEMPFAIL_RECENT + 1)[0]  # old news
    accepting, why = intake_state(running, {"reachable": False, "error": "connection refused"}, {}, 1)
    assert accepting and why.startswith("accepting into the spool; the database is unreachable")
    assert why.endswith("(connection refused)")
    verdict = judge(running, up, {"disk_free": 1_000_000, "disk_total": 10**9, "depths": {}}, 0.0, 26_214_400)
    assert verdict.code == DOWN and verdict.line().startswith("down: intake answers 451: the spool file system")
