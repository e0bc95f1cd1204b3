"""The SLA sweep in the real `maildesk run` daemon, across a restart: warnings, breaches and
escalations (one tier up with a hand-off note, priority raised, the lead told) each happen once.
Tickets are written in the past by an in-process desk on the same database (the daemon's clock is
the real one); what went out is read from the outgoing Maildir. One daemon per module; SQLite."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from maildesk.app import App
from maildesk.cli import app as cli
from maildesk.config import load_settings
from maildesk.store.db import Store
from maildesk.store.models import Event, Message, Ticket
from tests.conftest import free_port
from tests.support.daemon import Daemon, write_config
from tests.support.mailgen import eml
from tests.support.wait import wait_for

EXTRA = """
[[agent]]
email = "lia@example.com"
name = "Lia"
tiers = ["L1"]

[[agent]]
email = "max@example.com"
name = "Max"
tiers = ["L2"]

[[agent]]
email = "lead@example.com"
name = "Lead"
tiers = ["L3"]

[[sla.policy]]
name = "standard"
time = "calendar"
first_response = "1h"
warn_at = 0.5
on_breach = ["escalate", "raise_priority", "notify_lead"]
"""


class SlaDesk:
    def __init__(self, tmp: Path, config: Path, daemon: Daemon, store: Store) -> None:
        self.tmp, self.config, self.daemon, self.store = tmp, config, daemon, store

    def ticket_in_the_past(self, subject: str, ago: timedelta) -> int:
        """A customer's mail processed by an in-process desk whose clock is `ago` behind."""
        at = datetime.now(UTC) - ago
        desk = App(load_settings(self.config), clock=lambda: at)
        try:
            desk.migrate()
            desk.spool.put(eml(subject=subject, message_id=f"<{subject.replace(' ', '-')}@customer.example>"), "test")
            assert desk.process()["failed"] == 0
        finally:
            desk.store.dispose()
        with self.store.reader() as s:
            number = s.scalars(select(Ticket.number).where(Ticket.subject == subject)).one()
        return int(number)

    def types(self, number: int, *types: str) -> list[str]:
        with self.store.reader() as s:
            rows = s.scalars(select(Event.type).where(Event.ticket_number == number).order_by(Event.id))
            return [t for t in rows if t in types]

    def wait_event(self, number: int, type_: str) -> None:
        wait_for(lambda: type_ in self.types(number, type_), timeout=60, message=f"{type_} on #{number}")

    def mails(self, subject_part: str) -> list[tuple[str, str]]:
        """(To, Subject) of the outgoing mail whose subject holds `subject_part`."""
        found = []
        folder = self.tmp / "data" / "outgoing" / "new"
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            if subject_part in str(msg["Subject"]):
                found.append((str(msg["To"]), str(msg["Subject"])))
        return found

    def ticket(self, number: int) -> Ticket:
        with self.store.reader() as s:
            t = s.get(Ticket, number)
            assert t is not None
            return t

    def notes(self, number: int) -> list[str]:
        with self.store.reader() as s:
            rows = s.scalars(
                select(Message.visible_text).where(Message.ticket_number == number, Message.kind == "agent-note")
            )
            return list(rows)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlaDesk]:
    tmp = tmp_path_factory.mktemp("sladaemon")
    port = free_port()
    url = f"sqlite:///{tmp / 'data' / 'maildesk.db'}"
    cfg = write_config(tmp / "maildesk.toml", data_dir=tmp / "data", database_url=url, smtp_port=port, extra=EXTRA)
    (tmp / "data").mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAILDESK_TEST_SECRET", "crash-secret")  # what the daemon gets (tests.support.daemon)
        store = Store(url)
        store.migrate()
        daemon = Daemon(cfg, port, tmp / "daemon.log")
        try:
            yield SlaDesk(tmp, cfg, daemon, store)
        finally:
            if daemon.alive():
                daemon.terminate()
            store.dispose()


def test_warning_breach_and_escalation_once_across_a_daemon_restart(desk: SlaDesk) -> None:
    warned = desk.ticket_in_the_past("Warn me", timedelta(minutes=45))  # warned 15 min ago, due in 15 min
    late = desk.ticket_in_the_past("Breach me", timedelta(hours=2))  # warning and breach both past
    desk.daemon.start()
    desk.daemon.wait_ready()
    desk.wait_event(warned, "sla-warning")
    desk.wait_event(late, "escalated")
    wait_for(lambda: desk.mails("SLA missed") and desk.mails("Due "), timeout=60, message="the SLA mails sent")
    assert desk.daemon.terminate() == 0

    after = desk.ticket_in_the_past("After the restart", timedelta(hours=2))  # due while the daemon was down
    desk.daemon.start()
    desk.daemon.wait_ready()
    desk.wait_event(after, "escalated")  # the restarted daemon has swept: the others were due in the same claim
    result = CliRunner().invoke(cli, ["sla", "sweep", "--json", "--config", str(desk.config)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["actions"] == []  # one more sweep from another process: nothing left to do
    wait_for(lambda: len(desk.mails("SLA missed")) >= 2, timeout=60, message="the second breach mail")

    kinds = ("sla-warning", "sla-breached", "escalated", "priority-changed")
    assert desk.types(warned, *kinds) == ["sla-warning"]
    for number in (late, after):
        got = desk.types(number, *kinds)
        assert sorted(got) == sorted(kinds), got  # each exactly once
        t = desk.ticket(number)
        assert (t.tier, t.priority) == ("L2", "high")  # one tier up, one step up, once
        assert sum("target was missed" in n for n in desk.notes(number)) == 1  # the hand-off note
    breach_mails: list[Any] = desk.mails("SLA missed")
    assert sorted(subject.split("missed: first response – ")[1] for _, subject in breach_mails) == [
        "After the restart",
        "Breach me",
    ]
    assert {to for to, _ in breach_mails} == {"lead@example.com"}
    warnings = desk.mails("Due ")
    assert [(to, "Warn me" in subject) for to, subject in warnings] == [("lia@example.com", True)]
