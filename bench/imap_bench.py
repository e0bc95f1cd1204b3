"""IMAP intake against a private Dovecot on loopback, in three rounds.

Usage: python -m bench.imap_bench [--messages 1000] [--size 3000] [--rounds 3]
(Dovecot must be installed and this must run as root, as for the IMAP tests; `./dev test`
installs it.)

1. Fetch rate: N messages of about --size bytes in INBOX, one `MailboxPoller.run_once`
   (fetch, spool, mark) per round on a fresh server. Goal: above 50 messages/s (this was a
   timing assert in tests/ingest/test_imap.py; the test keeps the counts).
2. IDLE latency: the poller waits in IDLE (poll interval two minutes); a message is
   appended and the time until it is in the spool is measured, once per round. For
   information: the test only requires it well before the next poll (5 s deadline).
Prints min / median / max over the rounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

from bench.rounds import summary
from maildesk.config import ImapSettings
from maildesk.ingest.imap import MailboxPoller
from maildesk.spool.files import Spool
from tests.support.dovecot import DovecotServer
from tests.support.wait import wait_for


def make_mail(n: int, size: int) -> bytes:
    text = f"Hello, this is customer mail number {n}.\r\n".encode() + (b"x" * 76 + b"\r\n") * (size // 78)
    return (
        f"From: Customer {n} <c{n}@example.org>\r\nTo: support@example.com\r\nSubject: Question {n}\r\n"
        f"Message-ID: <m{n}-{random.getrandbits(40)}@example.org>\r\nDate: Sat, 22 Nov 2025 10:00:00 +0000\r\n\r\n"
    ).encode() + text


def settings_for(server: DovecotServer, **changes: Any) -> ImapSettings:
    base = ImapSettings(
        name="support", host=server.host, port=server.port, security="none", username=server.user, timeout=10.0
    )
    return dataclasses.replace(base, password=server.password, **changes)


def fetch_rate(messages: int, size: int) -> float:
    """Messages per second for one run_once over `messages` new messages on a fresh server."""
    server = DovecotServer().start()
    work = Path(tempfile.mkdtemp(prefix="imap-bench-"))
    try:
        server.append_many("INBOX", [make_mail(i, size) for i in range(messages)])
        spool = Spool(work / "spool").ensure()
        poller = MailboxPoller(settings_for(server, batch_size=100), spool, work / "state")
        start = time.perf_counter()
        report = poller.run_once()
        elapsed = time.perf_counter() - start
        poller.disconnect()
        assert (report.spooled, report.marked) == (messages, messages), report
        return messages / elapsed
    finally:
        server.cleanup()


def idle_latencies(rounds: int) -> list[float]:
    """Seconds from APPEND to the spool while the poller waits in IDLE, one value per round."""
    start_idle = IMAPClient.idle
    idling = threading.Event()

    def idle_and_tell(client: IMAPClient) -> Any:
        result = start_idle(client)
        idling.set()
        return result

    IMAPClient.idle = idle_and_tell  # type: ignore[method-assign]
    server = DovecotServer().start()
    work = Path(tempfile.mkdtemp(prefix="imap-bench-"))
    stop = threading.Event()
    try:
        spool = Spool(work / "spool").ensure()
        poller = MailboxPoller(settings_for(server, poll_interval=120.0, idle=True), spool, work / "state")
        thread = threading.Thread(target=poller.run_forever, args=(stop,), daemon=True)
        thread.start()
        values = []
        for n in range(rounds):
            wait_for(idling.is_set, timeout=15, message="IDLE started")
            idling.clear()
            server.append("INBOX", make_mail(n, 1000))
            appended = time.perf_counter()
            wait_for(lambda want=n + 1: len(list(spool.entries("incoming"))) == want, timeout=30, interval=0.005)
            values.append(time.perf_counter() - appended)
        stop.set()
        thread.join(10)
        return values
    finally:
        stop.set()
        IMAPClient.idle = start_idle  # type: ignore[method-assign]
        server.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates = [fetch_rate(args.messages, args.size) for _ in range(args.rounds)]
    print(
        f"IMAP fetch+spool+mark, {args.messages} messages of ~{args.size // 1000} KB: "
        f"{summary(rates, 1.0, 'messages/s', 0)} (goal > 50)"
    )
    print(f"IMAP IDLE, APPEND to spool: {summary(idle_latencies(args.rounds), 1000, 'ms', 0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
