"""Mail loops, simulated for real: the maildesk daemon against an always-answering autoresponder.

Both run as subprocesses on loopback. maildesk's relay is the autoresponder's SMTP port, and
the autoresponder answers every mail it gets by mailing support@example.com back on
maildesk's SMTP port. One customer mail starts it; once the exchange is over (nothing in
flight on either side) both are stopped and the exchange is counted from the autoresponder's
record file and from the outbox. An exchange that never ends fails at EXCHANGE_DEADLINE.

What must hold, on SQLite and PostgreSQL, in every mode: the number of mails maildesk sent
stays within the configured automatic-mail limits, and every mail it did not send is in the
outbox as `held` with an event saying why — never dropped silently.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from maildesk.config import load_settings
from maildesk.store.db import Store
from maildesk.store.models import Event, Message, OutboxItem, Ticket
from tests.conftest import free_port
from tests.support.daemon import Daemon, wait_port, write_config
from tests.support.mailgen import eml
from tests.support.wait import wait_for

# The limits under test. Small numbers keep the exchange short; the bound is derived from them.
PER_RECIPIENT_HOUR = 3
PER_RECIPIENT_DAY = 20
PER_TICKET_DAY = 10
GLOBAL_HOUR = 50
EXCHANGE_DEADLINE = 60.0
RESPONDER = "auto@responder.example"

LIMITS = f"""
[limits]
per_recipient_hour = {PER_RECIPIENT_HOUR}
per_recipient_day = {PER_RECIPIENT_DAY}
per_ticket_day = {PER_TICKET_DAY}
global_hour = {GLOBAL_HOUR}
"""

# Everything maildesk may mail automatically to one address within the window (< 1 hour).
MAX_AUTOMATIC_TO_RESPONDER = min(PER_RECIPIENT_HOUR, PER_RECIPIENT_DAY, GLOBAL_HOUR)


class Responder:
    """The autoresponder subprocess (`python -m tests.support.autoresponder`)."""

    def __init__(self, port: int, reply_port: int, mode: str, record: Path, log: Path) -> None:
        self.record = record
        root = Path(__file__).resolve().parents[2]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.autoresponder",
                    "--listen",
                    str(port),
                    "--reply-to-port",
                    str(reply_port),
                    "--mode",
                    mode,
                    "--record",
                    str(record),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
                env={**os.environ, "PYTHONPATH": str(root)},
            )
        wait_port("127.0.0.1", port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def events(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]


def _send_customer_mail(port: int) -> None:
    import smtplib

    raw = eml(
        subject="Where is my order?",
        sender=f"Robin Auto <{RESPONDER}>",
        body="Hello,\n\nmy order 1234 has not arrived.\n\nRobin\n",
        message_id="<kickoff-1@responder.example>",
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail(RESPONDER, ["support@example.com"], raw)


def _exchange_is_over(database_url: str, responder: Responder) -> bool:
    """Nothing in flight: the responder answered (or failed to answer) every mail it got,
    maildesk stored every answer, the relay got every mail the outbox says went out, and
    no outgoing mail waits to be sent."""
    got = responder.events()
    received = sum(e["event"] == "received" for e in got)
    sent = sum(e["event"] == "sent" for e in got)
    if sum(e["event"] in ("sent", "send-error") for e in got) < received:
        return False
    store = Store(database_url)
    try:
        with store.reader() as s:
            inbound = s.scalar(select(func.count()).select_from(Message).where(Message.direction == "in"))
            states = Counter(s.scalars(select(OutboxItem.state)))
    except DBAPIError:
        return False  # not migrated yet
    finally:
        store.dispose()
    return inbound == 1 + sent and states["sent"] == received and not (states["queued"] or states["sending"])


@pytest.fixture
def loop_run(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Runs one simulation: `run(mode)` returns (responder events, outbox rows, events, tickets, messages)."""
    started: list[Any] = []

    def run(mode: str) -> dict[str, Any]:
        smtp_port, relay_port = free_port(), free_port()
        data_dir = tmp_path / "data"
        extra = (
            LIMITS
            + f"""
[outbound]
relay_host = "127.0.0.1"
relay_port = {relay_port}
security = "none"
max_attempts = 2
retry_base_seconds = 1.0
"""
        )
        cfg = write_config(
            tmp_path / "maildesk.toml", data_dir=data_dir, database_url=database_url, smtp_port=smtp_port, extra=extra
        )
        monkeypatch.setenv("MAILDESK_TEST_SECRET", "crash-secret")  # what Daemon gives the subprocess
        instance_id = load_settings(cfg).instance_id
        responder = Responder(relay_port, smtp_port, mode, tmp_path / "responder.jsonl", tmp_path / "responder.log")
        started.append(responder)
        daemon = Daemon(cfg, smtp_port, tmp_path / "daemon.log")
        started.append(daemon)
        daemon.start()
        _send_customer_mail(smtp_port)
        wait_for(
            lambda: _exchange_is_over(database_url, responder),
            timeout=EXCHANGE_DEADLINE,
            interval=0.2,
            message=lambda: f"the {mode} exchange to end; responder: {Counter(e['event'] for e in responder.events())}",
        )
        assert daemon.alive(), (tmp_path / "daemon.log").read_text()[-3000:]
        assert daemon.terminate() == 0, (tmp_path / "daemon.log").read_text()[-3000:]
        responder.stop()
        store = Store(database_url)
        try:
            with store.session() as s:
                outbox = [
                    (o.id, o.state, list(o.recipients or []), o.template, o.ticket_number, o.last_error)
                    for o in s.scalars(select(OutboxItem).order_by(OutboxItem.id))
                ]
                events = [
                    (e.type, e.ticket_number, dict(e.data or {})) for e in s.scalars(select(Event).order_by(Event.id))
                ]
                tickets = list(s.scalars(select(Ticket.number).order_by(Ticket.number)))
                inbound = [
                    (m.ticket_number, m.screen)
                    for m in s.scalars(select(Message).where(Message.direction == "in").order_by(Message.id))
                ]
        finally:
            store.dispose()
        got = responder.events()
        return {
            "received": [e for e in got if e["event"] == "received"],
            "sent": [e for e in got if e["event"] == "sent"],
            "send_errors": [e for e in got if e["event"] == "send-error"],
            "outbox": outbox,
            "events": events,
            "tickets": tickets,
            "inbound": inbound,
            "instance_id": instance_id,
            "log": (tmp_path / "daemon.log").read_text(errors="replace"),
        }

    yield run
    for proc in reversed(started):
        if isinstance(proc, Daemon):
            proc.kill()
        else:
            proc.stop()


def _report(mode: str, r: dict[str, Any]) -> str:
    states = Counter(row[1] for row in r["outbox"])
    return (
        f"{mode}: maildesk->responder {len(r['received'])}, responder->maildesk {len(r['sent'])}, "
        f"tickets {len(r['tickets'])}, outbox {dict(states)}, inbound screens {Counter(s for _, s in r['inbound'])}"
    )


def _assert_bounded(mode: str, r: dict[str, Any]) -> None:
    """The invariant for every mode: bounded by the limits, nothing dropped silently."""
    print(_report(mode, r))
    assert not r["send_errors"], r["send_errors"]
    to_responder = [row for row in r["outbox"] if RESPONDER in row[2]]
    sent_rows = [row for row in to_responder if row[1] == "sent"]
    # What the responder got is exactly what the outbox says went out: no mail outside the outbox.
    assert len(r["received"]) == len(sent_rows), _report(mode, r)
    assert len(r["received"]) <= MAX_AUTOMATIC_TO_RESPONDER, _report(mode, r)
    # The responder answers each mail once, plus our one kick-off mail: the whole exchange.
    assert len(r["sent"]) <= len(r["received"])
    assert len(r["received"]) + len(r["sent"]) + 1 <= 2 * MAX_AUTOMATIC_TO_RESPONDER + 1
    # Nothing stuck half-way: each row is sent, or held with its reason.
    assert {row[1] for row in to_responder} <= {"sent", "held"}, r["outbox"]
    held = [row for row in to_responder if row[1] == "held"]
    held_events = [e for e in r["events"] if e[0] == "automatic-mail-held"]
    assert len(held_events) == len(held)
    for row in held:
        assert "limit" in row[5] or "suppressed" in row[5], row
    # Every mail we sent says it is automatic and carries the marker our screen looks for,
    # so an autoresponder that keeps our headers is caught as a loop.
    for mail in r["received"]:
        assert mail["auto_submitted"] in ("auto-replied", "auto-generated") and mail["loop"] == r["instance_id"], mail
    assert "Traceback" not in r["log"], r["log"][-3000:]


def test_naive_autoresponder_gets_one_acknowledgement(loop_run: Any) -> None:
    """No automatic-mail headers, but it answers in the thread: the answer joins the ticket, and
    maildesk acknowledges only new tickets — so the exchange ends after one round."""
    r = loop_run("naive")
    _assert_bounded("naive", r)
    assert len(r["received"]) == 1 and len(r["sent"]) == 1, _report("naive", r)
    assert r["tickets"] == [1]
    assert [t for t, _ in r["inbound"]] == [1, 1]  # the kick-off and the answer, both on ticket 1


def test_out_of_office_reply_is_screened_and_never_answered(loop_run: Any) -> None:
    r = loop_run("ooo")
    _assert_bounded("ooo", r)
    assert len(r["received"]) == 1 and len(r["sent"]) == 1, _report("ooo", r)
    assert r["tickets"] == [1]
    assert [s for _, s in r["inbound"]] == ["human", "auto-reply"]


def test_hostile_autoresponder_is_stopped_by_the_limits(loop_run: Any) -> None:
    """Strips our loop header, threading headers and ticket tag; a new Message-ID every time:
    each answer looks like a new customer mail. The per-recipient limit must end the loop and
    every acknowledgement it stops must be held, with the reason, in the outbox."""
    r = loop_run("hostile")
    _assert_bounded("hostile", r)
    assert len(r["received"]) == MAX_AUTOMATIC_TO_RESPONDER, _report("hostile", r)
    held = [row for row in r["outbox"] if row[1] == "held"]
    assert held, _report("hostile", r)
    assert all(f"limit {PER_RECIPIENT_HOUR}" in row[5] for row in held), held
    # The mail after the last acknowledgement was still taken in (a ticket), only not answered.
    assert len(r["tickets"]) == len(r["sent"]) + 1


def test_echo_of_our_loop_header_is_recognised_as_our_own_mail(loop_run: Any) -> None:
    """Like the hostile one, but our X-Maildesk-Loop header comes back: the screen must see its
    own marker (the value the outbox writes is the value the screen compares) and stop at once."""
    r = loop_run("echo")
    _assert_bounded("echo", r)
    assert len(r["received"]) == 1 and len(r["sent"]) == 1, _report("echo", r)
    assert r["tickets"] == [1]
    assert [s for _, s in r["inbound"]] == ["human", "loop"]
