"""Two IMAP pollers (two nodes) on one mailbox and one PostgreSQL: one polls under the lease,
the other takes over when the holder dies, going on from the shared progress."""

from __future__ import annotations

import threading
from pathlib import Path

from maildesk.ingest.imap import MailboxPoller
from maildesk.spool.files import Spool
from maildesk.store.db import Store
from maildesk.store.nodes import StoreMailboxLease
from tests.conftest import PgDatabases
from tests.ingest.test_imap import make_mail, run_in_thread, settings_for, spooled
from tests.support.dovecot import DovecotServer
from tests.support.wait import wait_for


class DyingLease(StoreMailboxLease):
    """A holder that dies: after `die()` it neither renews nor releases (like SIGKILL)."""

    dead = False

    def acquire(self, mailbox: str) -> bool:
        if self.dead:
            raise ConnectionError("node is dead")
        return super().acquire(mailbox)

    def release(self, mailbox: str) -> None:
        if not self.dead:
            super().release(mailbox)


def test_one_node_polls_and_the_other_takes_over_from_the_shared_progress(
    dovecot: DovecotServer, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    store = Store(pg_databases.fresh())
    conf = settings_for(dovecot, idle=True, poll_interval=2.0)
    spool_a = Spool(tmp_path / "a").ensure()
    spool_b = Spool(tmp_path / "b").ensure()
    lease_a = DyingLease(store, "node-a", seconds=1.5)
    lease_b = StoreMailboxLease(store, "node-b", seconds=1.5)
    a = MailboxPoller(conf, spool_a, tmp_path / "state-a", lease=lease_a)
    thread_a, stop_a = run_in_thread(a)
    wait_for(lambda: a.status()["lease"]["held"], timeout=10, message="node a never took the free lease")
    b = MailboxPoller(conf, spool_b, tmp_path / "state-b", lease=lease_b)
    thread_b, stop_b = run_in_thread(b)
    stops: list[tuple[threading.Thread, threading.Event]] = [(thread_a, stop_a), (thread_b, stop_b)]
    try:
        dovecot.append_many("INBOX", [make_mail(n) for n in range(5)])
        wait_for(lambda: len(spooled(spool_a)) == 5, timeout=15, message="node a did not take the first 5")
        assert spooled(spool_b) == []  # b waits: it does not hold the lease
        assert b.status()["lease"]["held"] is False
        lease_a.dead = True  # node a dies holding the lease
        stop_a.set()
        thread_a.join(10)
        dovecot.append_many("INBOX", [make_mail(n) for n in range(5, 12)])
        wait_for(lambda: len(spooled(spool_b)) == 7, timeout=15, message="node b did not take over")
        assert len(spooled(spool_a)) == 5
        # b went on from a's progress, kept in the database (its status follows the spooling)
        wait_for(
            lambda: b.status()["folders"]["INBOX"]["fetched"] == 12,
            timeout=10,
            message=lambda: f"b's progress: {b.status()['folders']['INBOX']}",
        )
        folder = b.status()["folders"]["INBOX"]
        assert folder["last_uid"] == max(dovecot.uids("INBOX"))
        subjects = sorted(raw.split(b"Subject: ")[1].split(b"\r\n")[0] for _, raw in spooled(spool_b))
        assert subjects == sorted(f"Question {n}".encode() for n in range(5, 12))
    finally:
        for thread, stop in stops:
            stop.set()
            thread.join(10)
        a.disconnect()
        b.disconnect()
        store.dispose()
