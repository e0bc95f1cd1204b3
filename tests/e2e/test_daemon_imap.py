"""The daemon drains a real Dovecot folder while being SIGKILLed at random moments:
every message that was in the folder is stored exactly once, and all end up marked."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from maildesk.store.db import Store
from maildesk.store.models import Message
from tests.conftest import free_port
from tests.support.daemon import Daemon, write_config
from tests.support.dovecot import DovecotServer, dovecot_server
from tests.support.mailgen import eml
from tests.support.wait import wait_for


@pytest.fixture
def imap_server() -> Iterator[DovecotServer]:
    yield from dovecot_server()


def stored_incoming(url: str) -> list[str]:
    store = Store(url)
    try:
        with store.reader() as s:
            return list(s.scalars(select(Message.message_id).where(Message.direction == "in")))
    except DBAPIError:
        return []
    finally:
        store.dispose()


@pytest.mark.slow
def test_sigkill_while_draining_imap_loses_nothing(
    tmp_path: Path, database_url: str, imap_server: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"imap-crash-{i}@customer.example" for i in range(300)]
    imap_server.append_many("INBOX", [eml(message_id=f"<{mid}>", subject=f"imap {i}") for i, mid in enumerate(ids)])
    # some were already read in another client: they must be taken all the same
    imap_server.set_flags("INBOX", imap_server.uids("INBOX")[:50], [r"\Seen"])
    monkeypatch.setenv("MAILDESK_TEST_IMAP_PW", imap_server.password)
    port = free_port()
    extra = f"""
[[imap]]
name = "crash"
host = "127.0.0.1"
port = {imap_server.port}
security = "none"
username = "{imap_server.user}"
password_env = "MAILDESK_TEST_IMAP_PW"
folders = ["INBOX"]
batch_size = 20
poll_interval = 0.2
"""
    cfg = write_config(
        tmp_path / "maildesk.toml", data_dir=tmp_path / "data", database_url=database_url, smtp_port=port, extra=extra
    )
    daemon = Daemon(cfg, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        rng = random.Random(99)
        for _ in range(6):
            daemon.wait_ready()  # kill while it works, not while it starts
            time.sleep(rng.uniform(0.2, 1.0))
            daemon.kill()
            daemon.start()
        wait_for(
            lambda: set(ids) <= set(stored_incoming(database_url)),
            timeout=120,
            interval=0.3,
            message=lambda: (
                f"missing: {len(set(ids) - set(stored_incoming(database_url)))}; "
                f"log:\n{(tmp_path / 'daemon.log').read_text()[-3000:]}"
            ),
        )
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    stored = stored_incoming(database_url)
    assert set(ids) <= set(stored), (
        f"missing: {len(set(ids) - set(stored))}; log:\n{(tmp_path / 'daemon.log').read_text()[-3000:]}"
    )
    assert len(stored) == len(set(stored)) == len(ids)  # exactly once
    flags = imap_server.flags("INBOX")
    assert len(flags) == len(ids)
    assert all("$MaildeskSpooled" in f for f in flags.values())
