"""`maildesk imap reconcile` against a real Dovecot: what the mailbox holds and maildesk did
not store is listed (missing vs waiting), `--fetch` spools it, and afterwards nothing is
missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from maildesk.app import App
from maildesk.cli import app
from maildesk.commands.imap import parse_since
from maildesk.config import load_settings
from maildesk.ingest.imap import MailboxPoller
from tests.ingest.test_imap import make_mail
from tests.support.dovecot import DovecotServer, dovecot_server

NO_ID = b"From: c@example.org\r\nTo: support@example.com\r\nSubject: no id\r\n\r\nhello\r\n"


def _config(tmp_path: Path, server: DovecotServer) -> Path:
    cfg = tmp_path / "maildesk.toml"
    cfg.write_text(
        f'[desk]\ndata_dir = "{tmp_path / "data"}"\nsupport_addresses = ["support@example.com"]\nsecret_env = ""\n'
        f'[database]\nurl = "sqlite:///{tmp_path / "data" / "maildesk.db"}"\nurl_env = ""\n'
        f'[[imap]]\nname = "support"\nhost = "{server.host}"\nport = {server.port}\nsecurity = "none"\n'
        f'username = "{server.user}"\npassword_env = "MDT_IMAP_PASSWORD"\n'
    )
    return cfg


def _reconcile(cfg: Path, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, ["imap", "reconcile", "--config", str(cfg), "--json", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def imap_server() -> Iterator[DovecotServer]:
    yield from dovecot_server()


def test_reconcile_lists_what_was_missed_and_fetch_brings_it_in(
    imap_server: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot = imap_server
    monkeypatch.setenv("MDT_IMAP_PASSWORD", dovecot.password)
    cfg = _config(tmp_path, dovecot)
    settings = load_settings(cfg)
    desk = App(settings)
    try:
        dovecot.append_many("INBOX", [make_mail(n) for n in range(4)] + [NO_ID])
        poller = MailboxPoller(settings.imap[0], desk.spool, settings.data_path / "imap-state")
        assert poller.run_once().spooled == 5
        desk.process()
        code, out = _reconcile(cfg)
        (report,) = out["mailboxes"]
        assert code == 0 and report["on_server"] == 5 and report["stored"] == 5 and report["findings"] == []

        # Two more are taken (marked on the server) but their spool is lost; one more arrives.
        dovecot.append_many("INBOX", [make_mail(n) for n in range(4, 6)])
        assert poller.run_once().spooled == 2
        for entry in desk.spool.entries("incoming"):
            entry.path.unlink()
        dovecot.append("INBOX", make_mail(6))
        poller.disconnect()
        code, out = _reconcile(cfg)
        (report,) = out["mailboxes"]
        states = sorted((f["uid"], f["state"], f["taken"]) for f in report["findings"])
        assert code == 1
        assert states == [(6, "missing", True), (7, "missing", True), (8, "waiting", False)]
        assert all(f["uidvalidity"] == dovecot.uidvalidity("INBOX") for f in report["findings"])

        code, out = _reconcile(cfg, "--fetch")
        assert all(f["spooled_as"] for f in out["mailboxes"][0]["findings"])
        desk.process()
        code, out = _reconcile(cfg)
        assert code == 0 and out["mailboxes"][0]["stored"] == 8 and out["mailboxes"][0]["findings"] == []
        assert "$MaildeskSpooled" not in dovecot.flags("INBOX")[8]  # read-only on the server: nothing marked
    finally:
        desk.worker.close()
        desk.store.dispose()


def test_reconcile_reports_an_unreachable_mailbox_and_a_bad_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDT_IMAP_PASSWORD", "x")
    cfg = tmp_path / "maildesk.toml"
    cfg.write_text(
        f'[desk]\ndata_dir = "{tmp_path / "data"}"\nsecret_env = ""\n'
        '[[imap]]\nname = "gone"\nhost = "127.0.0.1"\nport = 9\nsecurity = "none"\nusername = "u"\n'
        'password_env = "MDT_IMAP_PASSWORD"\ntimeout = 2\n'
    )
    code, out = _reconcile(cfg)
    assert code == 75 and "cannot connect" in out["mailboxes"][0]["error"]
    assert parse_since("30d", today=date(2026, 11, 30)) == date(2026, 10, 31)
    assert parse_since("2026-11-01") == date(2026, 11, 1)
    with pytest.raises(typer.BadParameter, match="30d"):
        parse_since("last week")
