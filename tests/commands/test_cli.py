"""The foundation commands through the real console script and Typer's runner."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from maildesk.cli import app
from tests.support.mailgen import eml


def write_config(tmp_path: Path, database_url: str) -> Path:
    cfg = tmp_path / "maildesk.toml"
    cfg.write_text(
        f'[desk]\ndata_dir = "{tmp_path / "data"}"\nsupport_addresses = ["support@example.com"]\nsecret_env = ""\n'
        f'[database]\nurl = "{database_url}"\nurl_env = ""\n'
    )
    return cfg


def run(
    *args: str, input: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "maildesk", *args],
        input=input,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_inject_exit_codes(tmp_path: Path, database_url: str) -> None:
    cfg = write_config(tmp_path, database_url)
    ok = run("inject", "-", "--config", str(cfg), input=eml())
    assert ok.returncode == 0 and ok.stdout.strip()
    empty = run("inject", "-", "--config", str(cfg), input=b"\n\n")
    assert empty.returncode == 65 and b"empty message" in empty.stderr
    bad_config = tmp_path / "broken.toml"
    bad_config.write_text("[smtp]\nport = 'x'\n")
    tempfail = run("inject", "-", "--config", str(bad_config), input=eml())
    assert tempfail.returncode == 75 and b"smtp.port" in tempfail.stderr
    (tmp_path / "data" / "spool").rename(tmp_path / "moved")
    (tmp_path / "data" / "spool").write_text("not a folder")  # the spool cannot be written
    spool_gone = run("inject", "-", "--config", str(cfg), input=eml())
    assert spool_gone.returncode == 75 and b"cannot spool" in spool_gone.stderr
    assert b"Traceback" not in spool_gone.stderr


def test_many_injects_at_once_on_a_fresh_folder_all_succeed(tmp_path: Path) -> None:
    # An MTA delivers several messages at once; the first ones also create the data folder
    # and its secret. None may fail (exit 1 would make the MTA bounce the mail).
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "maildesk", "inject", "-", "--config", str(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(10)
    ]
    results = [p.communicate(eml(), timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, [err for _, err in results]
    assert len({out.strip() for out, _ in results}) == 10  # ten entries
    assert len((tmp_path / "data" / "secret.key").read_text().strip()) == 64
    assert [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".secret")] == []


def test_inject_exits_tempfail_when_the_data_folder_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the data folder should be")
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'elsewhere.db'}")
    result = run("inject", "-", "--config", str(cfg), input=eml())
    assert result.returncode == 75 and b"maildesk inject:" in result.stderr and b"Traceback" not in result.stderr


def test_import_mbox_and_maildir_then_status(tmp_path: Path, database_url: str) -> None:
    cfg = write_config(tmp_path, database_url)
    box = mailbox.mbox(tmp_path / "history.mbox")
    for i in range(3):
        box.add(eml(message_id=f"<hist{i}@customer.example>", subject=f"old {i}"))
    box.close()
    md = mailbox.Maildir(tmp_path / "md", create=True)
    md.add(eml(message_id="<md1@customer.example>"))
    runner = CliRunner()
    result = runner.invoke(app, ["import", str(tmp_path / "history.mbox"), "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "spooled 3 messages" in result.output and "tickets_created: 3" in result.output
    result = runner.invoke(app, ["import", str(tmp_path / "md"), "--config", str(cfg)])
    assert result.exit_code == 0 and "tickets_created: 1" in result.output
    result = runner.invoke(app, ["import", str(tmp_path / "nothing-here"), "--config", str(cfg)])
    assert result.exit_code == 1 and "no such file or folder" in " ".join(result.output.split())
    status = json.loads(runner.invoke(app, ["status", "--json", "--config", str(cfg)]).stdout)
    assert status["database"]["tickets"] == 4 and status["spool"]["incoming"] == 0


def test_parse_json_gives_error_objects_never_tracebacks(tmp_path: Path) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes(eml(extra="Auto-Submitted: auto-replied"))
    bad = tmp_path / "bad.eml"
    bad.write_bytes(b"\x00\x01 not mail")
    result = CliRunner().invoke(app, ["parse", "--json", str(good), str(bad), str(tmp_path / "missing.eml")])
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["file"].endswith("good.eml") and lines[0]["screen"]["verdict"] == "auto-reply"
    assert lines[0]["visible_text"] and "threading" in lines[0]
    assert "error" in lines[1] and "error" in lines[2] and "cannot read" in lines[2]["error"]


def test_spool_commands(tmp_path: Path, database_url: str) -> None:
    cfg = write_config(tmp_path, database_url)
    runner = CliRunner()
    assert run("inject", "-", "--config", str(cfg), input=b"garbage without headers\n").returncode == 0
    assert runner.invoke(app, ["process", "--config", str(cfg)]).exit_code == 0
    listed: list[dict[str, Any]] = json.loads(
        runner.invoke(app, ["spool", "list", "--state", "quarantine", "--json", "--config", str(cfg)]).stdout
    )
    assert len(listed) == 1 and "header" in listed[0]["reason"]
    entry = listed[0]["id"]
    shown = json.loads(runner.invoke(app, ["spool", "show", entry, "--json", "--config", str(cfg)]).stdout)
    assert shown["state"] == "quarantine" and shown["meta"]["source"] == "inject"
    assert runner.invoke(app, ["spool", "retry", entry, "--config", str(cfg)]).exit_code == 0
    assert runner.invoke(app, ["process", "--config", str(cfg)]).exit_code == 0
    result = runner.invoke(app, ["spool", "discard", entry, "--yes", "--config", str(cfg)])
    assert result.exit_code == 0 and "discarded" in result.output
    result = runner.invoke(app, ["spool", "show", "nope", "--config", str(cfg)])
    assert result.exit_code == 1 and "no spool entry" in result.output


def test_parse_shows_the_subject_as_written_and_looks_the_tag_up(tmp_path: Path, database_url: str) -> None:
    """Issue 18: `parse` printed `Re:  Printer on fire` (Rich read `[#1]` as markup) and called
    ticket #1 missing although it existed (it never looked)."""
    reply = tmp_path / "reply.eml"
    reply.write_bytes(eml(subject="Re: [#1] Printer on fire", body="Still burning.\n"))
    runner = CliRunner()
    # no database yet: the tag is not looked up, and the output says so instead of "no such ticket"
    fresh = tmp_path / "fresh.toml"
    fresh.write_text(
        f'[desk]\ndata_dir = "{tmp_path / "fresh"}"\nsupport_addresses = ["support@example.com"]\nsecret_env = ""\n'
        f'[database]\nurl = "sqlite:///{tmp_path / "fresh" / "none.db"}"\nurl_env = ""\n'
    )
    out = runner.invoke(app, ["parse", str(reply), "--config", str(fresh)], env={"COLUMNS": "300"})
    assert out.exit_code == 0, out.output
    assert "subject: Re: [#1] Printer on fire\n" in out.output
    assert "no such ticket" not in out.output and "not looked up (no database yet)" in out.output
    assert not (tmp_path / "fresh" / "none.db").exists()  # parse never creates a database
    # with the desk's database: ticket #1 exists and the tag threads the reply to it
    cfg = write_config(tmp_path, database_url)
    assert runner.invoke(app, ["inject", "-", "--config", str(cfg)], input=eml()).exit_code == 0
    assert runner.invoke(app, ["process", "--config", str(cfg)]).exit_code == 0
    data = json.loads(runner.invoke(app, ["parse", "--json", str(reply), "--config", str(cfg)]).stdout)
    assert data["subject"] == "Re: [#1] Printer on fire"
    threading = data["threading"]
    assert threading["history"] == "database" and threading["decision"]["ticket"] == 1
    assert threading["decision"]["method"] == "subject-tag" and threading["decision"]["refused"] == []
    # a tag naming a ticket that really does not exist is still called missing
    (tmp_path / "other.eml").write_bytes(eml(subject="Re: [#99] Printer on fire"))
    data = json.loads(runner.invoke(app, ["parse", "--json", str(tmp_path / "other.eml"), "--config", str(cfg)]).stdout)
    assert data["threading"]["decision"]["refused"] == ["subject tag #99: no such ticket"]
