"""The SMTP intake journal: append, torn tails, draining into the spool, concurrent drainers.

Real files in a tmp folder; failures are made with real file-system situations (a folder
where a file should be), never with mocks of the disk."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from maildesk.errors import SpoolError
from maildesk.spool.files import Spool
from maildesk.spool.journal import RECORD_HEADER, JournalWriter
from tests.support.wait import wait_for

SMALL = 64 * 1024


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool").ensure()


def msg(i: int, size: int = 0) -> bytes:
    return f"Message-ID: <j{i}@customer.example>\r\nSubject: {i}\r\n\r\n".encode() + b"x" * size + b"\r\n"


def append(writer: JournalWriter, raws: list[bytes]) -> list[str]:
    results = writer.append([(raw, "smtp", {"rcpt_tos": ["support@example.com"]}) for raw in raws])
    assert all(isinstance(r, str) for r in results), results
    return [str(r) for r in results]


def segments(spool: Spool) -> list[str]:
    return sorted(n for n in os.listdir(spool.root / "journal") if n.endswith(".jnl"))


def stored(spool: Spool, *states: str) -> list[str]:
    """Entry ids with a file in the given state folders (repeats kept)."""
    return sorted(n.split(".", 1)[0] for s in states for n in os.listdir(spool.root / s) if n.endswith(".msg"))


def record_offsets(path: Path) -> list[int]:
    data, pos, out = path.read_bytes(), 0, []
    while data[pos : pos + 4] == b"MDJ1":
        out.append(pos)
        pos += RECORD_HEADER.size + RECORD_HEADER.unpack_from(data, pos)[1]
    return out


def test_drain_materialises_exactly_the_spool_file_bytes(spool: Spool) -> None:
    writer = spool.journal_writer(SMALL)
    raws = [msg(i) for i in range(3)] + [b"\xff\xfe raw bytes kept\r\n"]
    ids = append(writer, raws[:2]) + append(writer, raws[2:])
    assert spool.journal_backlog() == 4
    assert spool.drain_journal() == 4
    assert stored(spool, "incoming") == sorted(ids)
    for entry_id, raw in zip(ids, raws, strict=True):
        entry = next(e for e in spool.entries("incoming") if e.id == entry_id)
        meta, got = spool.read(entry)
        assert got == raw and meta["source"] == "smtp" and meta["envelope"]["rcpt_tos"] == ["support@example.com"]
    assert os.listdir(spool.root / "tmp") == []
    # the watermark is the end of the last record; a second drain does nothing
    seg = spool.root / "journal" / segments(spool)[0]
    end = record_offsets(seg)[-1]
    assert int(seg.with_suffix(".pos").read_text()) > end
    assert not (spool.root / "journal" / ".draining").exists()
    assert spool.drain_journal() == 0 and spool.journal_backlog() == 0
    assert stored(spool, "incoming") == sorted(ids)
    writer.close()


def test_claim_and_depths_see_journalled_mail_in_order(spool: Spool) -> None:
    writer = spool.journal_writer(SMALL)
    first = spool.put(msg(0), "inject")
    ids = append(writer, [msg(1), msg(2)])
    last = spool.put(msg(3), "inject")
    assert spool.depths() == {"incoming": 4, "active": 0, "failed": 0, "quarantine": 0, "discarded": 0, "journal": 0}
    claimed = [spool.claim() for _ in range(4)]
    assert [e.id for e in claimed if e] == [first, *ids, last]
    assert spool.claim() is None
    more = append(writer, [msg(4)])
    entry = spool.claim()  # a refill of the listing drains the journal
    assert entry is not None and entry.id == more[0]
    writer.close()


def test_bad_crc_ends_the_segment(spool: Spool) -> None:
    writer = spool.journal_writer(SMALL)
    ids = append(writer, [msg(i) for i in range(3)])
    writer.close()
    seg = spool.root / "journal" / segments(spool)[0]
    second = record_offsets(seg)[1]
    with open(seg, "r+b") as f:  # one flipped payload byte in the second record
        f.seek(second + RECORD_HEADER.size + 30)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    assert spool.drain_journal() == 1
    assert stored(spool, "incoming") == [ids[0]]


@pytest.mark.parametrize("cut", ["zero header", "short header", "short payload"])
def test_torn_tail_ends_the_segment_and_a_sealed_one_is_removed(spool: Spool, cut: str) -> None:
    writer = spool.journal_writer(SMALL)
    ids = append(writer, [msg(i) for i in range(3)])
    writer.close()
    seg = spool.root / "journal" / segments(spool)[0]
    third = record_offsets(seg)[2]
    with open(seg, "r+b") as f:  # what a crash in the middle of the last write can leave
        if cut == "zero header":
            f.seek(third)
            f.write(bytes(RECORD_HEADER.size))
        elif cut == "short header":
            f.truncate(third + 6)
        else:
            f.truncate(third + RECORD_HEADER.size + 10)
    assert spool.drain_journal() == 2
    assert stored(spool, "incoming") == sorted(ids[:2])
    assert segments(spool) == [seg.name]  # the newest segment is kept: a writer may come back
    restarted = spool.journal_writer(SMALL)
    later = append(restarted, [msg(9)])
    assert spool.drain_journal() == 1
    assert segments(spool) == [restarted.segment.name if restarted.segment else ""]
    assert not seg.with_suffix(".pos").exists()  # the sealed segment went with its watermark
    assert stored(spool, "incoming") == sorted(ids[:2] + later)
    restarted.close()


def test_restart_starts_a_new_segment_and_never_appends_to_an_old_one(spool: Spool) -> None:
    first = spool.journal_writer(SMALL)
    first.open()
    append(first, [msg(1)])
    first.close()
    old = spool.root / "journal" / segments(spool)[0]
    before = old.read_bytes()
    second = spool.journal_writer(SMALL)
    second.open()
    append(second, [msg(2), msg(3)])
    assert second.segment is not None and second.segment.name > old.name
    assert old.read_bytes() == before
    assert len(segments(spool)) == 2
    second.close()


def test_segment_held_by_a_live_writer_is_not_removed(spool: Spool) -> None:
    alive = spool.journal_writer(SMALL)
    append(alive, [msg(1)])
    other = spool.journal_writer(SMALL)  # e.g. a second daemon on the same folder
    append(other, [msg(2)])
    assert spool.drain_journal() == 2
    assert len(segments(spool)) == 2  # the older one is still held: its writer may append
    append(alive, [msg(3)])
    assert spool.drain_journal() == 1
    alive.close()
    assert spool.drain_journal() == 0
    assert len(segments(spool)) == 1
    other.close()


def test_a_message_bigger_than_a_segment_gets_a_segment_of_its_own(spool: Spool) -> None:
    writer = spool.journal_writer(SMALL)
    big = msg(1, 3 * SMALL)
    ids = append(writer, [msg(0), big, msg(2)])  # one group: split over three segments
    assert len(segments(spool)) == 3
    sizes = sorted((spool.root / "journal" / n).stat().st_size for n in segments(spool))
    assert sizes[-1] > 3 * SMALL and sizes[0] == SMALL
    assert spool.drain_journal() == 3
    by_id = {e.id: spool.read(e)[1] for e in spool.entries("incoming")}
    assert by_id == dict(zip(ids, [msg(0), big, msg(2)], strict=True))
    assert len(segments(spool)) == 1  # the sealed ones were drained and removed
    writer.close()


def test_a_failed_write_abandons_the_segment(spool: Spool) -> None:
    writer = spool.journal_writer(SMALL)
    ok = append(writer, [msg(1)])
    assert writer.segment is not None
    held = writer.segment
    os.unlink(held)
    held.mkdir()  # the segment path replaced by a folder: what is written there is lost
    results = writer.append([(msg(2), "smtp", None), (msg(3), "smtp", None)])
    assert all(isinstance(r, SpoolError) for r in results)
    assert writer.segment is None  # never appended to again
    again = append(writer, [msg(4)])
    assert writer.segment is not None and writer.segment.name > held.name
    assert spool.drain_journal() == 1  # msg(1) went with the removed file; the folder is skipped
    assert stored(spool, "incoming") == again and ok[0] not in stored(spool, "incoming")
    writer.close()


def test_rotation_failure_gives_errors_and_the_next_group_works(spool: Spool, tmp_path: Path) -> None:
    writer = spool.journal_writer(SMALL)
    append(writer, [msg(1, SMALL - 1000)])  # nearly full
    journal = spool.root / "journal"
    journal.rename(tmp_path / "away")
    journal.write_text("not a folder")
    results = writer.append([(msg(2, 2000), "smtp", None)])
    assert isinstance(results[0], SpoolError) and "journal" in str(results[0])
    journal.unlink()
    (tmp_path / "away").rename(journal)
    later = append(writer, [msg(3, 2000)])
    assert spool.drain_journal() == 2
    assert later[0] in stored(spool, "incoming")
    writer.close()


def test_interrupted_drain_resumes_without_duplicates_or_loss(spool: Spool) -> None:
    writer = spool.journal_writer(SMALL)
    ids = append(writer, [msg(i) for i in range(4)])
    blocker = spool.root / "tmp" / f"{ids[2]}.0.msg"
    blocker.mkdir()  # the drain fails at the third record (as when recover() of another
    with pytest.raises(SpoolError):  # process removes a drainer's tmp file under it)
        spool.drain_journal()
    assert stored(spool, "incoming") == sorted(ids[:2])  # written, not yet synced
    seg = spool.root / "journal" / segments(spool)[0]
    assert not seg.with_suffix(".pos").exists()  # the watermark did not move
    assert (spool.root / "journal" / ".draining").exists()
    taken = spool.claim()  # the worker takes one of them meanwhile
    assert taken is not None
    blocker.rmdir()
    fresh = Spool(spool.root)  # e.g. another process: it must skip what exists in any state
    assert fresh.drain_journal() == 2
    assert stored(spool, "incoming", "active") == sorted(ids)
    assert not (spool.root / "journal" / ".draining").exists()
    writer.close()


def test_an_unreadable_watermark_means_drain_again_skipping_existing_files(spool: Spool) -> None:
    writer = spool.journal_writer(SMALL)
    ids = append(writer, [msg(i) for i in range(3)])
    assert spool.drain_journal() == 3
    entry = spool.claim()
    assert entry is not None
    spool.finish(entry)  # processed and gone: a new copy would be a duplicate for the worker
    seg = spool.root / "journal" / segments(spool)[0]
    seg.with_suffix(".pos").write_text("")  # as a power loss can leave it
    assert Spool(spool.root).drain_journal() == 1  # only the finished one comes again
    assert stored(spool, "incoming") == sorted(ids)
    writer.close()


def test_concurrent_drainers_and_a_claimer_see_each_record_once(spool: Spool) -> None:
    writer = spool.journal_writer(SMALL)
    stop = threading.Event()
    errors: list[BaseException] = []

    def drain(s: Spool) -> None:
        try:
            while not stop.is_set():
                s.drain_journal()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def claim(s: Spool) -> None:
        try:
            while not stop.is_set():
                s.claim()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(Spool(spool.root),)) for _ in range(2)]
    threads.append(threading.Thread(target=claim, args=(Spool(spool.root),)))
    for t in threads:
        t.start()
    ids: list[str] = []
    try:
        for i in range(0, 600, 6):
            ids += append(writer, [msg(j, 500) for j in range(i, i + 6)])  # rotates every ~20 records
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    writer.close()
    spool.drain_journal()
    assert stored(spool, "incoming", "active") == sorted(ids)  # each exactly once
    assert len(segments(spool)) == 1


DRAINER = """
import os, sys, time
from maildesk.spool.files import Spool
s = Spool(sys.argv[1])
open(sys.argv[2] + f".ready-{os.getpid()}", "w").close()
deadline = time.monotonic() + 30
rounds = 0
while time.monotonic() < deadline and not os.path.exists(sys.argv[2]):
    if s.drain_journal() > 0:
        if not rounds:  # tell the test this drainer has taken part
            open(sys.argv[2] + f".drained-{os.getpid()}", "w").close()
        rounds += 1
    s.claim()
print(rounds)
"""


def test_two_drainer_processes_see_each_record_once(spool: Spool, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", DRAINER, str(spool.root), str(stop)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    writer = spool.journal_writer(SMALL)
    ids: list[str] = []
    try:
        wait_for(
            lambda: len(list(tmp_path.glob("stop.ready-*"))) >= 2,
            timeout=30,
            interval=0.01,
            message="both drainers ready",
        )
        for i in range(0, 600, 3):
            ids += append(writer, [msg(j, 500) for j in range(i, i + 3)])
        # Go on writing until both drainers have drained something (they then did compete):
        # on a busy machine one of them may not have been scheduled during the first 600.
        give_up, j = time.monotonic() + 30, 600
        while len(list(tmp_path.glob("stop.drained-*"))) < 2 and time.monotonic() < give_up:
            ids += append(writer, [msg(j, 500)])
            j += 1
    finally:
        stop.write_text("")
        rounds = [p.communicate(timeout=30)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(int(r) > 0 for r in rounds), rounds  # both drained something: they did compete
    writer.close()
    spool.drain_journal()
    assert stored(spool, "incoming", "active") == sorted(ids)
