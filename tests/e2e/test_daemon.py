"""The daemon as a subprocess: clean SIGTERM, SIGKILL at random moments while clients send
mail (every acknowledged message stored exactly once), and the database going away."""

from __future__ import annotations

import random
import smtplib
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from maildesk.store.db import Store
from maildesk.store.models import Message, OutboxItem, Ticket
from tests.conftest import free_port
from tests.support.daemon import Daemon, TcpProxy, write_config
from tests.support.mailgen import eml
from tests.support.wait import wait_for

DB_DOWN = "database unavailable, messages kept in spool"


def send(port: int, raw: bytes) -> bool:
    """True when the server acknowledged the message with 250."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
            smtp.sendmail("c@customer.example", ["support@example.com"], raw)
        return True
    except (OSError, smtplib.SMTPException):
        return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and b"multiprocessing" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_parser_processes_do_not_outlive_a_killed_daemon(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path / "maildesk.toml",
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}",
        smtp_port=port,
    )
    daemon = Daemon(cfg, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        daemon.wait_ready()
        assert daemon.proc is not None
        children = _children(daemon.proc.pid)
        assert children, "the daemon runs its parser process(es)"
        daemon.kill()  # SIGKILL: no chance to stop them itself
        wait_for(
            lambda: not any(_alive(c) for c in children), timeout=15, message="a parser process outlived the daemon"
        )
    finally:
        daemon.kill()


def stored_ids(url: str) -> list[str]:
    store = Store(url)
    try:
        with store.reader() as s:
            return list(s.scalars(select(Message.message_id).where(Message.direction == "in")))
    except DBAPIError:
        return []  # not migrated yet, or unreachable
    finally:
        store.dispose()


def test_sigterm_stops_cleanly(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path / "maildesk.toml", data_dir=tmp_path / "data", database_url=database_url, smtp_port=port
    )
    daemon = Daemon(cfg, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        assert send(port, eml(message_id="<t1@customer.example>"))
        wait_for(
            lambda: "t1@customer.example" in stored_ids(database_url), timeout=30, interval=0.1, message="t1 stored"
        )
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    assert "stopped" in (tmp_path / "daemon.log").read_text()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path / "maildesk.toml", data_dir=tmp_path / "data", database_url=database_url, smtp_port=port
    )
    daemon = Daemon(cfg, port, tmp_path / "daemon.log")
    daemon.start()
    acked: set[str] = set()
    lock = threading.Lock()
    per_client = 100
    # The second third of the mail comes after the first restart and the last third after the
    # second, so at least two kills fall while mail arrives, however slowly a loaded machine
    # restarts and however fast the desk takes the mail.
    restarted = [threading.Event(), threading.Event()]

    def client(n: int) -> None:
        for i in range(per_client):
            if i in (per_client // 3, 2 * per_client // 3):
                restarted[0 if i == per_client // 3 else 1].wait(timeout=300)
            mid = f"crash-{n}-{i}@customer.example"
            raw = eml(message_id=f"<{mid}>", subject=f"crash {n} {i}")
            give_up = time.monotonic() + 180  # like an MTA: retry until acknowledged (a restart
            while time.monotonic() < give_up:  # of the daemon takes seconds on a loaded machine)
                if send(port, raw):
                    with lock:
                        acked.add(mid)
                    break
                time.sleep(0.05)
            time.sleep(0.05)  # paced (5 s or more per client), so that kills fall while mail is arriving

    clients = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for t in clients:
        t.start()
    kills = kills_while_sending = 0
    rng = random.Random(1234)
    try:
        while any(t.is_alive() for t in clients) or kills < 3:  # the last kills may fall while it drains
            daemon.wait_ready()  # kill while it works, not while it starts
            time.sleep(rng.uniform(0.1, 0.6))
            sending = any(t.is_alive() for t in clients)
            daemon.kill()
            kills += 1
            kills_while_sending += sending
            daemon.start()
            restarted[min(kills, 2) - 1].set()
    finally:
        for t in clients:
            t.join()
        if any(t.is_alive() for t in clients):  # pragma: no cover
            daemon.kill()
    try:
        assert len(acked) == 3 * per_client and kills >= 3 and kills_while_sending >= 2
        wait_for(
            lambda: len(set(stored_ids(database_url)) & acked) == len(acked),
            timeout=120,
            interval=0.1,
            message=lambda: (
                f"every acknowledged message stored; failed/: "
                f"{sorted(p.name for p in (tmp_path / 'data' / 'spool' / 'failed').glob('*.json'))}"
            ),
        )
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    ids = stored_ids(database_url)
    assert acked <= set(ids)
    assert len(ids) == len(set(ids))  # exactly once
    store = Store(database_url)
    with store.reader() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == len(ids)
        # and exactly one acknowledgement per ticket: no second outgoing mail after a crash
        acks = list(s.scalars(select(OutboxItem.ticket_number).where(OutboxItem.template == "ack")))
        assert len(acks) == len(set(acks)) == len(ids)
    store.dispose()


def test_database_going_away_keeps_accepting_and_resumes(tmp_path: Path, pg_databases) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL only: an unreachable server is its situation (SQLite is a local file)."""
    real_url = pg_databases.fresh()
    host_port = real_url.split("@", 1)[1].split("/", 1)[0]
    host, _, pg_port = host_port.partition(":")
    proxy = TcpProxy(host, int(pg_port or 5432))
    proxy_port = proxy.start()
    url = real_url.replace(host_port, f"127.0.0.1:{proxy_port}")
    port = free_port()
    cfg = write_config(tmp_path / "maildesk.toml", data_dir=tmp_path / "data", database_url=url, smtp_port=port)
    daemon = Daemon(cfg, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        first = [f"up-{i}@customer.example" for i in range(10)]
        for mid in first:
            assert send(port, eml(message_id=f"<{mid}>"))
        wait_for(
            lambda: set(first) <= set(stored_ids(real_url)), timeout=30, interval=0.1, message="the first ten stored"
        )
        log = tmp_path / "daemon.log"
        refusals = log.read_text(errors="replace").count(DB_DOWN)
        proxy.cut()
        second = [f"down-{i}@customer.example" for i in range(20)]
        for mid in second:
            assert send(port, eml(message_id=f"<{mid}>")), "SMTP must answer 250 from the spool while the DB is down"
        wait_for(  # the worker tried to store them and could not
            lambda: log.read_text(errors="replace").count(DB_DOWN) > refusals,
            timeout=30,
            message="the worker reporting the database unavailable",
        )
        assert not set(second) & set(stored_ids(real_url))
        proxy.start(proxy_port)
        wait_for(
            lambda: set(first + second) <= set(stored_ids(real_url)),
            timeout=90,
            interval=0.1,
            message="all thirty stored",
        )
        ids = stored_ids(real_url)
        assert len(ids) == len(set(ids)) == 30
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        proxy.cut()
    assert list((tmp_path / "data" / "spool" / "failed").glob("*.msg")) == []
