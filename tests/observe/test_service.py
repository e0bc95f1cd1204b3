"""`maildesk run` as a service, one real daemon for the whole module (SQLite, SMTP on
loopback, JSON logs, the metrics endpoint, a unix datagram socket standing in for systemd's
NOTIFY_SOCKET with a 1 s watchdog). The tests run in order on that daemon: readiness and
watchdog, mail in and the scrape checked against it, the log lines about that mail, live
reload of broken and repaired edits, SIGHUP, and SIGTERM last."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from tests.support.daemon import Daemon, write_config
from tests.support.mailgen import eml
from tests.support.net import free_port
from tests.support.wait import wait_for

GOOD_RULES = """version: 1
rules:
  - name: printers
    if: {subject: {contains: printer}}
    then: {tags: [printer]}
"""
BROKEN_RULES = "version: 1\nrules:\n  - name: broken\n    if: {nonsense: 1}\n    then: {queue: [not, a, name]}\n"


@dataclass
class NotifySocket:
    """What systemd would receive: every datagram, with the time it arrived."""

    path: Path
    received: list[tuple[float, str]] = field(default_factory=list)
    sock: socket.socket | None = None

    def start(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            self.received.append((time.time(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, data in list(self.received) for line in data.split("\n")]

    def count(self, line: str) -> int:
        return self.lines().count(line)


@dataclass
class Service:
    daemon: Daemon
    config: Path
    config_text: str
    data: Path
    rules: Path
    templates: Path
    notify: NotifySocket
    metrics_port: int
    smtp_port: int
    message_ids: list[str] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.data / "status.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def cli(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """A command as another process (what an MTA or an operator runs)."""
        return subprocess.run(
            [sys.executable, "-m", "maildesk", *args, "--config", str(self.config)],
            input=input,
            capture_output=True,
            timeout=120,
            env={**os.environ, "MAILDESK_TEST_SECRET": "crash-secret"},
        )

    def command(self, *args: str) -> Result:
        """A read-only command in this process (cheaper than a new interpreter on a busy machine)."""
        from maildesk.cli import app

        return CliRunner().invoke(
            app, [*args, "--config", str(self.config)], env={"MAILDESK_TEST_SECRET": "crash-secret", "COLUMNS": "200"}
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("svc")
    rules, templates = root / "rules.yaml", root / "templates"
    rules.write_text(GOOD_RULES)
    (templates / "en").mkdir(parents=True)
    smtp_port, metrics_port = free_port(), free_port()
    data = root / "data"
    config = write_config(
        root / "maildesk.toml",
        data_dir=data,
        database_url=f"sqlite:///{data / 'maildesk.db'}",
        smtp_port=smtp_port,
        extra=f'parse_processes = 0\n\n[log]\nformat = "json"\n\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n',
    )
    text = config.read_text().replace("[desk]\n", f'[desk]\nrules_file = "{rules}"\ntemplates_dir = "{templates}"\n', 1)
    config.write_text(text)
    notify = NotifySocket(root / "notify.sock")
    notify.start()
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    daemon = Daemon(config, smtp_port, root / "daemon.log", env=env)
    daemon.start()
    svc = Service(daemon, config, text, data, rules, templates, notify, metrics_port, smtp_port)
    try:
        yield svc
    finally:
        daemon.kill()
        if notify.sock is not None:
            notify.sock.close()


def test_ready_is_sent_once_intake_accepts_and_the_worker_runs_then_the_watchdog_repeats(service: Service) -> None:
    wait_for(lambda: service.notify.count("READY=1") >= 1, timeout=60, message="READY=1 never arrived")
    log = service.daemon.log.read_text()
    ready_at = next(t for t, data in service.notify.received if "READY=1" in data.split("\n"))
    ready_line = next(line for line in log.splitlines() if '"ready: ' in line)
    order = [line for line in log.splitlines() if "SMTP intake listening" in line or "worker ready" in line]
    assert (
        len(order) == 2 and log.index(order[0]) < log.index(ready_line) and log.index(order[1]) < log.index(ready_line)
    )
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=10) as smtp:  # accepting, as READY said
        assert smtp.noop()[0] == 250
    statuses = [line for line in service.notify.lines() if line.startswith("STATUS=")]
    assert f"SMTP on 127.0.0.1:{service.smtp_port}" in statuses[0]
    assert any(line.startswith("MAINPID=") for line in service.notify.lines())

    # WATCHDOG_USEC=1000000: a ping every half second while the worker is alive
    def pings() -> list[float]:
        return [t for t, data in list(service.notify.received) if data == "WATCHDOG=1" and t > ready_at]

    wait_for(lambda: len(pings()) >= 4, timeout=20, message="WATCHDOG=1 did not repeat after READY=1")
    gaps = [b - a for a, b in zip(pings(), pings()[1:], strict=False)]
    assert min(gaps) >= 0.4 and max(gaps) < 1.5, gaps  # about half the watchdog interval


def test_the_scrape_matches_the_mail_that_was_sent(service: Service) -> None:
    sent = []
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30) as smtp:
        for n in range(3):
            raw = eml(subject=f"Printer {n} on fire", sender=f"c{n}@customer.example")
            smtp.sendmail(f"c{n}@customer.example", ["support@example.com"], raw)
            sent.append(raw)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("x@customer.example", ["someone@elsewhere.example"], eml())
    raw = eml(subject="Scanner jammed", sender="c9@customer.example")
    assert service.cli("inject", "-", input=raw).returncode == 0
    sent.append(raw)
    for raw in sent:
        line = next(line for line in raw.decode().split("\r\n") if line.startswith("Message-ID:"))
        service.message_ids.append(line.split(":", 1)[1].strip().strip("<>"))

    def settled() -> Any:
        got = service.scrape()
        done = (
            got.get(("maildesk_messages_received_total", (("source", "smtp"),))) == 3
            and got.get(("maildesk_messages_received_total", (("source", "inject"),))) == 1
            and got.get(("maildesk_outbox_sent_total", ())) == 4
            # counted by the worker after its commit: the sender may have sent the last
            # acknowledgement before the worker got that far
            and got.get(("maildesk_pipeline_latency_seconds_count", ())) == 4
        )
        return done and got

    got = wait_for(settled, timeout=60, message=lambda: f"the figures never settled: {service.scrape()}")
    assert got[("maildesk_messages_received_total", (("source", "imap"),))] == 0
    assert got[("maildesk_messages_received_total", (("source", "import"),))] == 0
    assert got[("maildesk_smtp_replies_total", (("reply", "accepted"),))] == 3
    assert got[("maildesk_smtp_replies_total", (("reply", "refused"),))] == 1
    assert got[("maildesk_smtp_replies_total", (("reply", "tempfailed"),))] == 0
    assert got[("maildesk_pipeline_latency_seconds_count", ())] == 4
    assert 0 < got[("maildesk_pipeline_latency_seconds_sum", ())] < 60
    for state in ("incoming", "active", "failed", "quarantine", "journal"):
        assert got[("maildesk_spool_entries", (("state", state),))] == 0, state
    for state in ("queued", "sending", "failed", "held"):
        assert got[("maildesk_outbox_rows", (("state", state),))] == 0, state
    assert got[("maildesk_outbox_failed_total", ())] == 0
    assert [k for k in got if k[0] == "maildesk_errors_total"] == []
    assert got[("maildesk_database_up", ())] == 1 and got[("maildesk_up", ())] == 1
    assert got[("maildesk_sla_breaches_total", (("kind", "first_response"),))] == 0
    acks = list((service.data / "outgoing" / "new").iterdir())  # what the figures say went out
    assert len(acks) == 4


def test_json_log_lines_parse_and_carry_ticket_and_message_id(service: Service) -> None:
    lines = [line for line in service.daemon.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    for mid in service.message_ids:
        about = [r for r in records if r.get("message_id") == mid]
        stored = [r for r in about if r["message"] == "message ticket-created"]
        assert len(stored) == 1, (mid, about)
        assert isinstance(stored[0]["ticket"], int) and stored[0]["entry"]
        assert all("ticket" in r for r in about if r["logger"] == "maildesk.worker")


def _wait_status(service: Service, check: Any, what: str) -> dict[str, Any]:
    return wait_for(lambda: (s := service.status()) and check(s) and s, timeout=10, message=what)


def test_a_broken_rules_edit_shows_within_seconds_and_the_last_good_rules_keep_running(service: Service) -> None:
    edited = time.monotonic()
    service.rules.write_text(BROKEN_RULES)
    status = _wait_status(service, lambda s: s["rules"]["errors"], "the broken rules never showed in status.json")
    assert time.monotonic() - edited < 10 and status["rules"]["rules"] == 1  # the good rule still loaded
    health = service.command("health")
    assert health.exit_code == 1 and "rules file has errors, the previous rules stay in force" in health.stdout
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30) as smtp:
        smtp.sendmail(
            "c5@customer.example", ["support@example.com"], eml(subject="printer again", sender="c5@x.example")
        )

    def stored_tags() -> Any:
        with closing(sqlite3.connect(service.data / "maildesk.db")) as db:
            row = db.execute("SELECT tags FROM tickets WHERE subject = 'printer again'").fetchone()
        return row and json.loads(row[0])

    tags = wait_for(stored_tags, timeout=30, message="the mail sent during the broken edit was not stored")
    assert tags == ["printer"]  # routed by the last good rules
    service.rules.write_text(GOOD_RULES + "\n")
    _wait_status(service, lambda s: not s["rules"]["errors"], "the repaired rules never cleared the errors")


def test_broken_template_and_config_edits_show_and_clear(service: Service) -> None:
    broken = service.templates / "en" / "ack.txt.j2"
    broken.write_text("Subject: {% if %}\n")
    status = _wait_status(service, lambda s: s["reload"]["template_problems"], "no template problem in status")
    assert "ack.txt.j2" in status["reload"]["template_problems"][0]
    shown = service.command("status")
    assert "template problem (built-in used)" in shown.stdout, shown.stdout
    health = service.command("health")
    assert health.exit_code == 1 and "template problem(s), mail falls back to the built-in" in health.stdout
    broken.unlink()
    _wait_status(service, lambda s: not s["reload"]["template_problems"], "the template problem never cleared")
    service.config.write_text(service.config_text + "\n[smtp\n")  # not TOML
    status = _wait_status(service, lambda s: s["reload"]["config_errors"], "no config error in status")
    assert "not valid TOML" in status["reload"]["config_errors"][0]
    refused = service.command("status")  # the CLI reads the same file: it names the problem itself
    assert refused.exit_code == 78 and "not valid TOML" in refused.stderr
    service.config.write_text(service.config_text.replace('format = "json"', 'format = "json"\nlevel = "info"'))
    status = _wait_status(service, lambda s: not s["reload"]["config_errors"], "the config error never cleared")
    assert status["reload"]["restart_needed"] == []  # only [log] changed, and that applies at once
    assert "new_tickets_per_sender_hour = 0" in service.config_text
    service.config.write_text(
        service.config_text.replace("new_tickets_per_sender_hour = 0", "new_tickets_per_sender_hour = 5")
    )
    status = _wait_status(service, lambda s: s["reload"]["restart_needed"], "an edited [limits] was not named")
    assert status["reload"]["restart_needed"] == ["limits"]
    service.config.write_text(service.config_text)
    _wait_status(service, lambda s: not s["reload"]["restart_needed"], "the restored config still needs a restart")


def test_sighup_reloads_and_tells_systemd(service: Service) -> None:
    # Run alone (or first on its worker) the daemon may not be ready or have written its
    # status yet: a SIGHUP before its handler is set would end it.
    wait_for(lambda: service.notify.count("READY=1") >= 1, timeout=60, message="READY=1 never arrived")
    reload = wait_for(lambda: service.status().get("reload"), timeout=10, message="no status.json written")
    before = reload["config_reloaded_at"] or 0
    readies = service.notify.count("READY=1")
    assert service.daemon.proc is not None
    service.daemon.proc.send_signal(signal.SIGHUP)
    _wait_status(service, lambda s: (s["reload"]["config_reloaded_at"] or 0) > before, "SIGHUP did not reload")
    wait_for(lambda: service.notify.count("READY=1") > readies, timeout=10, message="no READY=1 after the reload")
    assert service.notify.count("RELOADING=1") == 1


def test_sigterm_stops_cleanly_and_says_stopping(service: Service) -> None:
    assert service.daemon.terminate() == 0
    assert service.notify.count("STOPPING=1") == 1
    assert service.status()["pid"] and '"stopped"' in service.daemon.log.read_text()
