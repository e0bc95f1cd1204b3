"""Hand-offs wake, they do not poll (issue 19): the daemon as a subprocess, on both backends.

- The normal path is event-driven: with both safety nets at 30 s, a mail's acknowledgement
  is written long before 30 s, whether the mail came over SMTP, through `maildesk inject`
  (another process: the wake-up socket) or, on PostgreSQL, was queued by another node
  (NOTIFY).
- A lost wake-up costs at most the safety net: mail put into the spool by a program that
  sends no wake-up, `inject` with the daemon's wake-up socket gone, an outbox row queued
  by another node on SQLite (no notifications there) or while the daemon's LISTEN
  connection was killed: each still gets through, within the (short) safety net.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from maildesk.app import App
from maildesk.spool.files import Spool
from maildesk.store.db import Store
from maildesk.store.notify import APPLICATION_NAME
from tests.conftest import free_port, make_settings
from tests.support.daemon import Daemon, write_config
from tests.support.mailgen import eml
from tests.support.wait import wait_for

LONG = 30.0  # a safety net no test may wait for
SHORT = 1.0
WITHIN = 10.0  # an event-driven hand-off takes well under this, even on a busy test machine


def start_daemon(tmp_path: Path, database_url: str, *, worker_net: float, outbox_net: float) -> Daemon:
    port = free_port()
    cfg = write_config(
        tmp_path / "maildesk.toml",
        data_dir=tmp_path / "data",
        database_url=database_url,
        smtp_port=port,
        extra=f"safety_net_interval = {worker_net}\n\n[outbound]\nsafety_net_interval = {outbox_net}\n",
    )
    daemon = Daemon(cfg, port, tmp_path / "daemon.log")
    daemon.start()
    daemon.wait_ready()
    return daemon


def acknowledged(data_dir: Path, message_id: str) -> bool:
    """The acknowledgement answering `message_id` is in the daemon's outgoing Maildir."""
    new = data_dir / "outgoing" / "new"
    if not new.is_dir():
        return False
    needle = f"In-Reply-To: {message_id}".encode()
    return any(needle in path.read_bytes() for path in new.iterdir())


def smtp_send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("c@customer.example", ["support@example.com"], raw)


def inject(config: Path, raw: bytes) -> None:
    env = {**os.environ, "MAILDESK_TEST_SECRET": "crash-secret"}
    result = subprocess.run(
        [sys.executable, "-m", "maildesk", "inject", "--config", str(config)], input=raw, env=env, capture_output=True
    )
    assert result.returncode == 0, result.stderr


def other_node_queues_an_acknowledgement(tmp_path: Path, database_url: str, message_id: str) -> None:
    """Another node (its own data folder, the same database) takes a mail and commits its
    acknowledgement to the shared outbox. It runs no sender and its wake-ups reach no one
    here: only the database can tell the daemon."""
    # the same secret as the daemon's (nodes of one database must share it, see store/nodes.py)
    node = App(replace(make_settings(tmp_path / "node-b", database_url), secret="crash-secret", secret_from="env"))
    try:
        node.spool.put(eml(message_id=message_id, sender=f"Bo <{message_id[1:6]}@other.example>"), "smtp")
        result = node.process()
        assert result["tickets_created"] == 1, result
    finally:
        node.worker.close()
        node.store.dispose()


def wait_ack(data_dir: Path, message_id: str, timeout: float, why: str) -> None:
    wait_for(lambda: acknowledged(data_dir, message_id), timeout=timeout, interval=0.02, message=why)


def test_the_normal_path_is_event_driven(tmp_path: Path, database_url: str) -> None:
    daemon = start_daemon(tmp_path, database_url, worker_net=LONG, outbox_net=LONG)
    data = tmp_path / "data"
    try:
        assert (data / "wake.sock").is_socket()
        smtp_send(daemon.port, eml(message_id="<w-smtp@customer.example>", sender="Ann <ann@one.example>"))
        wait_ack(data, "<w-smtp@customer.example>", WITHIN, "SMTP mail acknowledged without waiting for a poll")

        inject(daemon.config, eml(message_id="<w-inject@customer.example>", sender="Bob <bob@two.example>"))
        wait_ack(data, "<w-inject@customer.example>", WITHIN, "injected mail acknowledged: the socket woke the daemon")
    finally:
        daemon.kill()


def test_a_lost_wakeup_costs_the_safety_net_not_the_mail(tmp_path: Path, database_url: str) -> None:
    daemon = start_daemon(tmp_path, database_url, worker_net=SHORT, outbox_net=SHORT)
    data = tmp_path / "data"
    try:
        # a program that spools without waking anyone
        Spool(data / "spool").put(eml(message_id="<l-silent@customer.example>", sender="C <c@three.example>"), "x")
        wait_ack(data, "<l-silent@customer.example>", SHORT + WITHIN, "silently spooled mail found by the safety net")

        # the notifier disabled: inject's wake-up finds no socket
        (data / "wake.sock").unlink()
        inject(daemon.config, eml(message_id="<l-inject@customer.example>", sender="D <d@four.example>"))
        wait_ack(data, "<l-inject@customer.example>", SHORT + WITHIN, "injected mail found without its wake-up")

        # an outbox row committed by another node, with no notification reaching the daemon
        if not database_url.startswith("sqlite"):
            kill_listener(database_url)
        other_node_queues_an_acknowledgement(tmp_path, database_url, "<l-node@customer.example>")
        wait_ack(data, "<l-node@customer.example>", SHORT + WITHIN, "another node's outbox row sent by the safety net")
    finally:
        daemon.kill()


def listener_pids(database_url: str) -> list[int]:
    store = Store(database_url)
    try:
        with store.reader() as session:
            sql = text("SELECT pid FROM pg_stat_activity WHERE application_name = :a AND datname = current_database()")
            return [int(pid) for pid in session.scalars(sql, {"a": APPLICATION_NAME})]
    finally:
        store.dispose()


def kill_listener(database_url: str) -> None:
    pids = wait_for(lambda: listener_pids(database_url), timeout=WITHIN, message="the daemon LISTENs")
    store = Store(database_url)
    try:
        with store.session() as session:
            for pid in pids:
                session.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    finally:
        store.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_another_nodes_mail_is_sent_on_notify_also_after_the_listener_lost_its_connection(
    tmp_path: Path, database_url: str
) -> None:
    daemon = start_daemon(tmp_path, database_url, worker_net=LONG, outbox_net=LONG)
    data = tmp_path / "data"
    try:
        wait_for(lambda: listener_pids(database_url), timeout=WITHIN, message="the daemon LISTENs")
        other_node_queues_an_acknowledgement(tmp_path, database_url, "<n-first@customer.example>")
        wait_ack(data, "<n-first@customer.example>", WITHIN, "another node's mail sent on its NOTIFY")

        before = listener_pids(database_url)
        kill_listener(database_url)
        wait_for(
            lambda: (pids := listener_pids(database_url)) and pids != before,
            timeout=WITHIN,
            message="the listener reconnects",
        )
        other_node_queues_an_acknowledgement(tmp_path, database_url, "<n-second@customer.example>")
        wait_ack(data, "<n-second@customer.example>", WITHIN, "NOTIFY heard again after the reconnection")
    finally:
        daemon.kill()


def test_status_and_health_show_how_long_the_oldest_work_has_waited(tmp_path: Path, database_url: str) -> None:
    import json

    from typer.testing import CliRunner

    from maildesk.cli import app as cli

    cfg = write_config(tmp_path / "maildesk.toml", data_dir=tmp_path / "data", database_url=database_url, smtp_port=1)
    env = {"MAILDESK_TEST_SECRET": "crash-secret"}

    def waiting() -> tuple[dict[str, object], dict[str, object]]:
        status = CliRunner().invoke(cli, ["status", "--json", "--config", str(cfg)], env=env)
        health = CliRunner().invoke(cli, ["health", "--json", "--config", str(cfg)], env=env)
        return json.loads(status.stdout)["waiting"], json.loads(health.stdout)["waiting"]

    # no daemon: nothing moves on its own; the CLI's secret (the environment) is the desk's
    desk = App(replace(make_settings(tmp_path, database_url), secret="crash-secret", secret_from="env"))
    try:
        desk.migrate()
        assert waiting() == ({"spool_oldest_seconds": None, "outbox_oldest_due_seconds": None},) * 2
        desk.spool.put(eml(message_id="<age@customer.example>"), "smtp")
        spool_age = waiting()[0]["spool_oldest_seconds"]
        assert isinstance(spool_age, float) and 0 <= spool_age < 60
        desk.process()  # the ticket and its acknowledgement, queued and not sent
        status, health = waiting()
        assert status["spool_oldest_seconds"] is None
        assert isinstance(status["outbox_oldest_due_seconds"], float) and 0 <= status["outbox_oldest_due_seconds"] < 60
        assert health["outbox_oldest_due_seconds"] is not None
    finally:
        desk.worker.close()
        desk.store.dispose()
