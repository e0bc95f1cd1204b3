"""The real `maildesk run` subprocess: SIGHUP reloads the rules; a broken rules file is
reported (log and status.json) while the daemon keeps running on the last good rules."""

from __future__ import annotations

import json
import os
import signal
import smtplib
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maildesk.store.db import Store
from maildesk.store.models import Ticket
from tests.conftest import free_port
from tests.support.daemon import Daemon
from tests.support.mailgen import eml
from tests.support.wait import wait_for

RULES = "version: 1\nrules:\n  - name: route\n    then: [{{queue: {queue}}}]\n"


def test_sighup_reloads_rules_and_a_broken_file_keeps_the_daemon_on_the_old_rules(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(queue="billing"))
    stamp = rules.stat().st_mtime_ns
    data = tmp_path / "data"
    cfg = tmp_path / "maildesk.toml"
    cfg.write_text(f"""
[desk]
data_dir = "{data}"
support_addresses = ["support@example.com"]
secret_env = "MAILDESK_TEST_SECRET"
rules_file = "{rules}"

[database]
url = "{database_url}"
url_env = ""

[smtp]
port = {port}

[worker]
poll_interval = 0.05

[[queue]]
name = "billing"

[[queue]]
name = "general"
""")
    log = tmp_path / "daemon.log"
    daemon = Daemon(cfg, port, log)
    store = Store(database_url)
    store.migrate()  # so this test can read while the daemon starts
    daemon.start()
    try:

        def send(subject: str) -> str:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.sendmail("anna@customer.example", ["support@example.com"], eml(subject=subject))

            def queue() -> str | None:
                with store.reader() as s:
                    return s.scalars(select(Ticket.queue).where(Ticket.subject == subject)).first()

            return str(wait_for(queue, timeout=30, interval=0.1, message=f"ticket {subject!r}"))

        def status() -> dict[str, Any]:
            try:
                rules_status: dict[str, Any] = json.loads((data / "status.json").read_text())["rules"]
                return rules_status
            except (OSError, ValueError, KeyError):
                return {}

        assert send("one") == "billing"
        # an edit the change check cannot see (same inode, size and mtime): only SIGHUP loads it
        rules.write_text(RULES.format(queue="general"))
        os.utime(rules, ns=(stamp, stamp))
        assert send("two") == "billing"
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: status().get("reloaded_at"), timeout=30, interval=0.1, message="the reload")
        assert send("three") == "general"
        # a broken edit, announced by SIGHUP: reported, old rules stay, the daemon keeps running
        rules.write_text("version: 1\nrules:\n  - name: route\n    then: [{queue: general}, {prioritty: high}]\n")
        daemon.proc.send_signal(signal.SIGHUP)
        errors = wait_for(lambda: status().get("errors"), timeout=30, interval=0.1, message="the error in status.json")
        assert errors[0].startswith(f"{rules}:4: rule 'route': unknown action 'prioritty'")
        assert send("four") == "general" and daemon.alive()
        assert status()["rules"] == 1
        assert "rules reload failed, previous rules stay in force" in log.read_text()
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        store.dispose()
