"""The spool: durable put, FIFO claim, crash recovery with an attempt limit, operator actions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maildesk.errors import SpoolError
from maildesk.spool.files import Spool


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool").ensure()


def test_put_then_claim_returns_bytes_and_envelope_unchanged(spool: Spool) -> None:
    raw = b"From: a@b.c\r\n\r\n\xff\xfe raw bytes kept\r\n"
    entry_id = spool.put(raw, "smtp", {"rcpt_tos": ["support@example.com"]})
    entry = spool.claim()
    assert entry is not None and entry.id == entry_id and entry.state == "active"
    meta, got = spool.read(entry)
    assert got == raw
    assert meta["source"] == "smtp" and meta["envelope"]["rcpt_tos"] == ["support@example.com"]
    assert os.listdir(spool.dir("tmp")) == []


def test_claim_is_fifo_and_empty_gives_none(spool: Spool) -> None:
    ids = [spool.put(f"Subject: {i}\r\n\r\nx".encode(), "t") for i in range(5)]
    claimed = [spool.claim() for _ in range(5)]
    assert [e.id for e in claimed if e] == ids
    assert spool.claim() is None


def test_recover_retries_then_fails_after_max_attempts(spool: Spool) -> None:
    spool.put(b"Subject: x\r\n\r\nbody", "t")
    for attempt in range(2):
        entry = spool.claim()
        assert entry is not None and entry.attempt == attempt
        assert spool.recover(max_attempts=3) == {"retried": 1, "failed": 0, "suspect": 0}
    entry = spool.claim()
    assert entry is not None and entry.attempt == 2
    assert spool.recover(max_attempts=3) == {"retried": 0, "failed": 1, "suspect": 0}
    failed = list(spool.entries("failed"))
    assert len(failed) == 1 and spool.info(failed[0])["stage"] == "crash"


def test_entries_in_flight_together_become_suspects_without_an_attempt(spool: Spool) -> None:
    for i in range(3):
        spool.put(f"Subject: {i}\r\n\r\nx".encode(), "t")
    claimed = [spool.claim() for _ in range(3)]
    assert all(e is not None for e in claimed)
    assert spool.recover(max_attempts=3) == {"retried": 0, "failed": 0, "suspect": 3}
    again = [spool.claim() for _ in range(3)]
    assert all(e is not None and e.suspect and e.attempt == 0 for e in again)
    # one of them crashes the worker while alone: now it is blamed
    assert spool.recover(max_attempts=3)["suspect"] == 3
    solo = spool.claim()
    assert solo is not None
    assert spool.recover(max_attempts=3) == {"retried": 1, "failed": 0, "suspect": 0}
    assert any(e.attempt == 1 and not e.suspect for e in spool.entries("incoming"))


def test_quarantine_retry_and_discard(spool: Spool) -> None:
    spool.put(b"garbage", "t")
    entry = spool.claim()
    assert entry is not None
    spool.quarantine(entry, "no header block")
    (q,) = spool.entries("quarantine")
    assert spool.info(q)["reason"] == "no header block"
    again = spool.retry(q.id[:12])
    assert again.state == "incoming" and spool.depths()["incoming"] == 1
    entry = spool.claim()
    assert entry is not None
    spool.fail(entry, "persist", "boom", "Traceback ...")
    kept = spool.discard(entry.id)
    assert kept.state == "discarded" and kept.path.exists()
    assert spool.info(kept)["stage"] == "persist"
    with pytest.raises(SpoolError, match="only failed or quarantined"):
        spool.discard(entry.id)
    with pytest.raises(SpoolError, match="no spool entry"):
        spool.retry("nope")


def test_put_fails_cleanly_when_folder_is_gone(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool").ensure()
    (spool.root / "incoming").rename(tmp_path / "moved")
    with pytest.raises(SpoolError, match="cannot write spool entry"):
        spool.put(b"Subject: x\r\n\r\nx", "t")
    assert os.listdir(spool.dir("tmp")) == []
