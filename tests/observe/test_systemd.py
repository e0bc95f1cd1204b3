"""The systemd unit (checked by `systemd-analyze verify`, Debian's systemd package, which
`./dev test` installs), the sd_notify client against sockets the test binds, and the example
production config. The daemon's notifications are checked in tests/observe/test_service.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from maildesk.config import load_settings
from maildesk.errors import ConfigError
from maildesk.observe.systemd import Notifier


def test_the_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install Debian's systemd package (`./dev test` does)"
    result = subprocess.run(
        [sys.executable, "-m", "maildesk", "systemd-unit", "--config", "/etc/maildesk/maildesk.toml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    unit = result.stdout
    executable = unit.split("ExecStart=", 1)[1].split(" ", 1)[0]
    assert Path(executable).is_file() and os.access(executable, os.X_OK), executable  # this installation's
    assert "ExecStart=" + executable + " run --config /etc/maildesk/maildesk.toml\n" in unit
    for line in ("Type=notify", "WatchdogSec=60", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM"):
        assert line + "\n" in unit
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
        assert hardening + "\n" in unit
    path = tmp_path / "maildesk.service"
    path.write_text(unit)
    check = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys or values: any output at all is a finding
    assert check.returncode == 0 and check.stdout == "" and check.stderr == "", check.stdout + check.stderr


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a wrong value and a missing binary are reported."""
    from maildesk.commands.ops import render_unit

    path = tmp_path / "maildesk.service"
    path.write_text(render_unit("/nonexistent/maildesk", "/etc/maildesk/maildesk.toml").replace("=notify", "=notfy"))
    check = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
    assert "notfy" in check.stderr and "/nonexistent/maildesk" in check.stderr


def _bound(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_notifier_writes_datagrams_to_a_path_and_an_abstract_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with _bound(path) as sock:
        notifier = Notifier({"NOTIFY_SOCKET": path})
        assert notifier.ready("SMTP on 127.0.0.1:2525")
        assert sock.recv(4096).decode().split("\n") == [
            "READY=1",
            "STATUS=SMTP on 127.0.0.1:2525",
            f"MAINPID={os.getpid()}",
        ]
        assert notifier.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
        assert notifier.stopping() and sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    name = f"maildesk-test-{os.getpid()}"
    with _bound("\0" + name) as sock:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("busy")
        assert sock.recv(4096) == b"STATUS=busy"


def test_notifier_outside_systemd_does_nothing_and_a_gone_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier({}).enabled and not Notifier({}).ready("x")
    assert Notifier({}).watchdog_interval is None
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert gone.enabled and not gone.watchdog()  # logged once, never raised


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_this_process() -> None:
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "60000000"}).watchdog_interval == 30.0
    mine = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdog_interval == 1.0
    assert Notifier({**mine, "WATCHDOG_PID": "1"}).watchdog_interval is None  # meant for another process


PRODUCTION_ENV = {
    "MAILDESK_DATABASE_URL": "postgresql+psycopg://maildesk:pw@db.internal:5432/maildesk",
    "MAILDESK_SECRET": "ab" * 32,
    "MAILDESK_RELAY_PASSWORD": "relay-pw",
    "MAILDESK_IMAP_PASSWORD": "imap-pw",
}


def test_the_example_production_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "maildesk.toml"
    path.write_text(resources.files("maildesk").joinpath("defaults", "production.toml").read_text())
    settings = load_settings(path)
    assert settings.database_url == PRODUCTION_ENV["MAILDESK_DATABASE_URL"]
    assert settings.secret == PRODUCTION_ENV["MAILDESK_SECRET"]
    assert settings.metrics.address == ("127.0.0.1", 9108)
    assert (settings.log.format, settings.log.level) == ("json", "info")
    assert settings.imap[0].password == "imap-pw" and settings.outbound.password == "relay-pw"
    assert str(settings.data_path) == "/var/lib/maildesk"
    monkeypatch.delenv("MAILDESK_IMAP_PASSWORD")
    with pytest.raises(ConfigError, match="MAILDESK_IMAP_PASSWORD is empty"):
        load_settings(path)
