"""The durable spool: the only place intake hands mail to the worker.

Owns the folders `tmp/ incoming/ active/ failed/ quarantine/ discarded/` under the data
folder, and the drain that turns the intake journal's records (`maildesk.spool.journal`,
which owns `journal/`) into entries. It knows nothing of the database, rules or parsing.

An entry is one file: a first line `MDSPOOL1 {json}` (source, envelope, time) followed by the
raw message bytes, unchanged. Its name is `<time_ns>-<random>.<attempt>.msg`; the attempt
number grows each time a crash interrupts its processing, so recovery after a crash is a
rename, and an entry that crashed the worker `max_attempts` times goes to failed/.

Two ways in, both durable before the source is acknowledged:

- `put()` / `put_many()` (IMAP, `inject`, bulk import): write each file in tmp/, rename it
  into incoming/, then one sync for the group (syncfs(2), else an fsync per file, which on
  journaling file systems also commits the rename; `fsync_dir=True` adds a folder fsync).
- The intake journal (SMTP, `JournalWriter`): a group of messages is appended to one
  preallocated segment file `journal/<seq:020d>.jnl` with one pwritev and one fdatasync: no
  file created per message. A record is a header (`MDJ1`, payload length, CRC-32 of the
  payload) and a payload: the entry id, a newline, then exactly the bytes of a spool file. A
  zero, short or bad-CRC header ends the segment (a torn tail, never acknowledged). The
  writer never appends after a failed write (it starts a new segment; the group gets an
  error, so SMTP answers 451), starts a new segment after each restart, and holds an
  flock on the segment it writes.

  `drain_journal()` turns records into normal `incoming/<id>.0.msg` files, so the worker,
  the operator commands and recovery see only files: records past the segment's watermark
  (`<seq>.pos`) are written and renamed without an fsync each, one syncfs makes them
  durable, and only then the watermark moves (tmp -> rename). A crash in between
  materialises those records again; `journal/.draining` tells the next drain to skip ids
  that already have a file in any state folder, and the worker deduplicates anything else.
  A sealed segment (a newer one exists and no writer holds it) that is fully drained is
  removed with its watermark. Drainers in several processes are serialised by an flock on
  `journal/.lock`. `claim()` drains when it refills its listing of incoming/ (a listdir and
  one pread when there is nothing new); `entries("incoming")` and `depths()` drain first.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maildesk.errors import SpoolError
from maildesk.spool.fsio import fsync_dir, syncfs, write_all
from maildesk.spool.journal import SEGMENT_SIZE, Journal, JournalWriter, not_in_use, read_records

log = logging.getLogger("maildesk.spool.files")

MAGIC = b"MDSPOOL1 "
STATES = ("incoming", "active", "failed", "quarantine", "discarded")

CLAIM_DRAIN_LIMIT = 2048  # claim() materialises at most about this many records per refill


@dataclass(frozen=True)
class SpoolEntry:
    """A spooled message in one state folder."""

    id: str  # stable across states and attempts
    state: str
    path: Path
    attempt: int
    suspect: bool = False  # was in flight with others when the worker died: to be run alone

    @property
    def received_ns(self) -> int:
        try:
            return int(self.id.split("-", 1)[0])
        except ValueError:
            return 0


@dataclass(frozen=True)
class PendingEntry:
    """An entry written to incoming/ but not yet synced (see `Spool.write`)."""

    id: str
    fd: int
    path: str


@dataclass
class _Drain:
    """State of one drain_journal() call."""

    check: bool  # a drain was interrupted: skip ids that already have a file
    known: set[str] | None = None
    marked: bool = False
    count: int = 0


def _split_name(name: str) -> tuple[str, int]:
    stem = name[: -len(".msg")] if name.endswith(".msg") else name
    base, _, attempt = stem.rpartition(".")
    attempt = attempt.removesuffix("s")
    if not base or not attempt.isdigit():
        return stem, 0
    return base, int(attempt)


def _is_suspect(name: str) -> bool:
    return name.endswith("s.msg")


class Spool:
    """Folder-backed queue with atomic state changes by rename."""

    def __init__(self, root: Path | str, *, fsync_dir: bool = False) -> None:
        self.root = Path(root)
        self.fsync_dir = fsync_dir  # also fsync the folder (for file systems without ordered metadata)
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._tmp_dir = str(self.root / "tmp")
        self._incoming_dir = str(self.root / "incoming")
        self.journal = Journal(self.root / "journal")
        self._id_prefix = secrets.token_hex(3)
        self._counter = itertools.count(secrets.randbelow(1 << 24))
        self._drain_lock = threading.Lock()  # one drainer per Spool object; .lock serialises processes
        self._drained: dict[int, int] = {}  # segment -> watermark this object last saw
        self._drain_error_at = 0.0

    def ensure(self) -> Spool:
        for name in ("tmp", *STATES, "journal"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        return self

    def dir(self, state: str) -> Path:
        return self.root / state

    # Intake --------------------------------------------------------------------------
    def put(self, raw: bytes, source: str, envelope: dict[str, Any] | None = None) -> str:
        """Store raw bytes durably in incoming/ and return the entry id."""
        (result,) = self.put_many([(raw, source, envelope)])
        if isinstance(result, SpoolError):
            raise result
        return result

    def put_many(self, items: list[tuple[bytes, str, dict[str, Any] | None]]) -> list[str | SpoolError]:
        """Store several messages durably (group commit): every file is written and renamed
        first, then one sync covers the group. Returns, per item, the entry id or the
        SpoolError that kept it from being stored."""
        written = [self.write(raw, source, envelope) for raw, source, envelope in items]
        pending = [w for w in written if isinstance(w, PendingEntry)]
        failures = dict(zip((p.id for p in pending), self.sync(pending), strict=True))
        return [w if isinstance(w, SpoolError) else (failures[w.id] or w.id) for w in written]

    def write(self, raw: bytes, source: str, envelope: dict[str, Any] | None = None) -> PendingEntry | SpoolError:
        """Write and rename one entry into incoming/ without syncing it. It must not be
        acknowledged before `sync()` returns no error for it. The worker may see it
        earlier, which is harmless: if the sync fails and the sender retries, deduplication
        by Message-ID makes the second copy a no-op."""
        entry_id = self._new_id()
        header = self._header(source, envelope)
        name = f"{entry_id}.0.msg"
        tmp = f"{self._tmp_dir}/{name}"
        final = f"{self._incoming_dir}/{name}"
        fd = -1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            done = os.writev(fd, [header, raw])
            if done < len(header) + len(raw):  # a short write: finish it
                rest = memoryview(header + raw)[done:]
                while rest:
                    rest = rest[os.write(fd, rest) :]
            os.rename(tmp, final)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return SpoolError(f"cannot write spool entry: {exc.strerror or exc}")
        return PendingEntry(entry_id, fd, final)

    def sync(self, pending: list[PendingEntry]) -> list[SpoolError | None]:
        """Make written entries durable and close them: one syncfs(2) for a group (a
        single journal commit and cache flush), else an fsync per file, which on ext4/XFS
        also commits the rename. Returns None per durable entry, else its SpoolError; an
        entry that could not be synced is removed (it was never acknowledged)."""
        errors: list[SpoolError | None] = [None] * len(pending)
        synced = len(pending) > 1 and syncfs(pending[0].fd)
        for i, entry in enumerate(pending):
            try:
                if not synced:
                    os.fsync(entry.fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                errors[i] = SpoolError(f"cannot sync spool entry: {exc.strerror or exc}")
            finally:
                os.close(entry.fd)
        if self.fsync_dir and pending:
            try:
                fsync_dir(self.root / "incoming")
            except OSError as exc:
                return [SpoolError(f"cannot sync spool folder: {exc.strerror or exc}") for _ in pending]
        return errors

    @staticmethod
    def _header(source: str, envelope: dict[str, Any] | None) -> bytes:
        meta = {"source": source, "received_at": time.time(), "envelope": envelope or {}}
        return MAGIC + json.dumps(meta, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"

    def _new_id(self) -> str:
        # time, then a per-process random prefix and a counter: unique without a syscall
        # per message (O_EXCL on the tmp file catches the impossible collision).
        return f"{time.time_ns():020d}-{self._id_prefix}{next(self._counter) & 0xFFFFFF:06x}"

    # Intake journal ------------------------------------------------------------------
    def journal_writer(self, segment_size: int = SEGMENT_SIZE) -> JournalWriter:
        """The append side of the journal (the SMTP intake's writer thread): one writer per
        spool folder."""
        return self.journal.writer(self.journal_payload, segment_size)

    def journal_payload(self, raw: bytes, source: str, envelope: dict[str, Any] | None) -> tuple[str, bytes]:
        """A new entry id and the start of its journal payload; the payload is that start
        followed by `raw` (id, newline, then exactly the bytes of a spool file)."""
        entry_id = self._new_id()
        return entry_id, entry_id.encode() + b"\n" + self._header(source, envelope)

    def drain_journal(self, limit: int | None = None) -> int:
        """Materialise journal records past each segment's watermark as incoming/ files and
        return how many files were written (at most about `limit` when given). Cheap when
        there is nothing new: a listdir of journal/ and one pread, without any lock.

        Raises SpoolError when it cannot; what it could not do stays in the journal (the
        watermark moves only after the files are durable) and the next drain retries it."""
        with self._drain_lock:
            segments = self.journal.segments()
            if not segments or not self._journal_news(segments):
                return 0
            try:
                return self._drain_locked(limit)
            except OSError as exc:
                raise SpoolError(f"cannot drain the intake journal: {exc.strerror or exc}") from exc

    def _drain_quietly(self, limit: int | None = None) -> None:
        try:
            self.drain_journal(limit)
        except SpoolError as exc:
            now = time.monotonic()
            if now - self._drain_error_at > 60:  # claim() runs often: not a line each time
                self._drain_error_at = now
                log.error("%s; the records stay in the journal for the next try", exc)

    def _journal_news(self, segments: list[int]) -> bool:
        """Anything to do? A sealed segment to finish, or a record at the watermark."""
        if len(segments) > 1:
            return True
        pos = self._drained.get(segments[0])
        if pos is None:
            return True  # not seen yet: read its watermark under the lock
        return self.journal.record_at(segments[0], pos)

    def _drain_locked(self, limit: int | None) -> int:
        with self.journal.drain_lock():
            drain = _Drain(check=self.journal.drain_interrupted())
            segments = self.journal.segments()  # again, under the lock
            for i, seq in enumerate(segments):
                if limit is not None and drain.count >= limit:
                    break
                self._drain_segment(seq, i < len(segments) - 1, drain, limit)
            if drain.marked or drain.check:
                self.journal.clear_draining()
            return drain.count

    def _drain_segment(self, seq: int, newer: bool, drain: _Drain, limit: int | None) -> None:
        try:
            fd = os.open(self.journal.path(seq), os.O_RDONLY)
        except FileNotFoundError:
            self._drained.pop(seq, None)
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            pos = self.journal.watermark(seq)
            if pos is None:
                drain.check, pos = True, 0  # e.g. empty after a power loss: drained records may come again
            while True:
                records, end, ended = read_records(fd, pos, st.st_size)
                if records:
                    self._materialise(records, drain)
                    self.journal.set_watermark(seq, end)  # only now: the files are durable
                    pos = end
                self._drained[seq] = pos
                if ended or (limit is not None and drain.count >= limit):
                    break
            if ended and newer and not_in_use(fd):
                # sealed (a newer segment exists, no writer holds it) and fully drained
                self.journal.remove(seq)
                self._drained.pop(seq, None)
        finally:
            os.close(fd)

    def _materialise(self, records: list[tuple[str, memoryview]], drain: _Drain) -> None:
        """Write records as incoming/ files (tmp -> rename), then one sync for them all."""
        if drain.check and drain.known is None:
            drain.known = self._existing_ids()
        if not drain.marked:
            self.journal.mark_draining()
            drain.marked = True
        fds: list[int] = []
        try:
            for entry_id, body in records:
                if drain.known is not None and entry_id in drain.known:
                    continue  # materialised before a crash of the drainer
                name = f"{entry_id}.0.msg"
                tmp = f"{self._tmp_dir}/{name}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
                fds.append(fd)
                write_all(fd, body)
                # Fails if recover() of another process removed the tmp file: the drain
                # stops before its watermark, so the record is drained again later.
                os.rename(tmp, f"{self._incoming_dir}/{name}")
            if drain.known is not None:
                os.sync()  # rare: files skipped above may not be durable yet
            elif fds and not (len(fds) > 1 and syncfs(fds[0])):
                for fd in fds:
                    os.fsync(fd)
            if self.fsync_dir and fds:
                fsync_dir(self.root / "incoming")
        finally:
            for fd in fds:
                os.close(fd)
        drain.count += len(fds)

    def _existing_ids(self) -> set[str]:
        ids = set()
        for state in STATES:
            for name in os.listdir(self.root / state):
                if name.endswith(".msg"):
                    ids.add(_split_name(name)[0])
        return ids

    def journal_backlog(self) -> int:
        """Records in the journal past their segment's watermark (a read-only scan)."""
        return self.journal.backlog()

    # Worker --------------------------------------------------------------------------
    def claim(self) -> SpoolEntry | None:
        """Move the oldest incoming entry to active/ and return it (None when empty)."""
        with self._lock:
            for _ in range(2):
                if not self._pending:
                    self._drain_quietly(limit=CLAIM_DRAIN_LIMIT)
                    self._pending = sorted(os.listdir(self.root / "incoming"), reverse=True)
                while self._pending:
                    name = self._pending.pop()
                    if not name.endswith(".msg"):
                        continue
                    src = self.root / "incoming" / name
                    dst = self.root / "active" / name
                    try:
                        os.rename(src, dst)
                    except FileNotFoundError:
                        continue  # claimed by another worker
                    base, attempt = _split_name(name)
                    return SpoolEntry(base, "active", dst, attempt, _is_suspect(name))
            return None

    @staticmethod
    def read(entry: SpoolEntry) -> tuple[dict[str, Any], bytes]:
        data = entry.path.read_bytes()
        if data.startswith(MAGIC):
            line, _, raw = data.partition(b"\n")
            try:
                meta = json.loads(line[len(MAGIC) :])
            except ValueError:
                meta = {"source": "unknown", "meta_error": "unreadable spool header"}
            return meta, raw
        return {"source": "unknown"}, data

    def finish(self, entry: SpoolEntry) -> None:
        """The message is committed to the database: drop the spool copy."""
        entry.path.unlink(missing_ok=True)

    def _park(self, entry: SpoolEntry, state: str, info: dict[str, Any]) -> SpoolEntry:
        dst = self.root / state / entry.path.name
        side = dst.with_suffix(".json")
        side.write_text(json.dumps({**info, "at": time.time(), "attempt": entry.attempt}, indent=2))
        os.rename(entry.path, dst)
        fsync_dir(self.root / state)
        return SpoolEntry(entry.id, state, dst, entry.attempt)

    def fail(self, entry: SpoolEntry, stage: str, error: str, traceback: str = "") -> SpoolEntry:
        return self._park(entry, "failed", {"stage": stage, "error": error, "traceback": traceback})

    def quarantine(self, entry: SpoolEntry, reason: str) -> SpoolEntry:
        return self._park(entry, "quarantine", {"reason": reason})

    def release(self, entry: SpoolEntry) -> None:
        """Give an active entry back to incoming/ without counting an attempt (e.g. DB down)."""
        os.rename(entry.path, self.root / "incoming" / entry.path.name)

    def recover(self, max_attempts: int) -> dict[str, int]:
        """After a crash, put active/ entries back in incoming/.

        Only an entry that was alone in flight can be blamed: it gets one more attempt, and
        goes to failed/ once it has crashed the worker `max_attempts` times. Entries that
        were in flight together are marked suspect, without an attempt, and the worker then
        runs each of them alone, so a poison message is found without blaming the others.
        """
        counts = {"retried": 0, "failed": 0, "suspect": 0}
        names = sorted(n for n in os.listdir(self.root / "active") if n.endswith(".msg"))
        for name in names:
            base, attempt = _split_name(name)
            entry = SpoolEntry(base, "active", self.root / "active" / name, attempt)
            if len(names) > 1:
                os.rename(entry.path, self.root / "incoming" / f"{base}.{attempt}s.msg")
                counts["suspect"] += 1
            elif attempt + 1 >= max_attempts:
                self.fail(entry, "crash", f"processing was interrupted {attempt + 1} times; not retried again")
                counts["failed"] += 1
            else:
                os.rename(entry.path, self.root / "incoming" / f"{base}.{attempt + 1}.msg")
                counts["retried"] += 1
        for name in os.listdir(self.root / "tmp"):
            (self.root / "tmp" / name).unlink(missing_ok=True)  # never acknowledged
        if names:
            fsync_dir(self.root / "incoming")
        return counts

    # Operators -----------------------------------------------------------------------
    def entries(self, state: str) -> Iterator[SpoolEntry]:
        if state not in STATES:
            raise SpoolError(f"unknown spool state {state!r} (one of {', '.join(STATES)})")
        if state == "incoming":
            self._drain_quietly()
        for name in sorted(os.listdir(self.root / state)):
            if name.endswith(".msg"):
                base, attempt = _split_name(name)
                yield SpoolEntry(base, state, self.root / state / name, attempt)

    def find(self, entry_id: str) -> SpoolEntry:
        matches = [e for state in STATES for e in self.entries(state) if e.id.startswith(entry_id)]
        if not matches:
            raise SpoolError(f"no spool entry {entry_id!r}")
        if len({m.id for m in matches}) > 1:
            raise SpoolError(f"spool entry id {entry_id!r} is ambiguous; give more characters")
        return matches[0]

    @staticmethod
    def info(entry: SpoolEntry) -> dict[str, Any]:
        side = entry.path.with_suffix(".json")
        if side.exists():
            try:
                return dict(json.loads(side.read_text()))
            except ValueError:
                return {"error": "unreadable sidecar"}
        return {}

    def retry(self, entry_id: str) -> SpoolEntry:
        entry = self.find(entry_id)
        if entry.state not in {"failed", "quarantine", "discarded"}:
            raise SpoolError(
                f"entry {entry.id} is {entry.state}; only failed, quarantined or discarded entries can be retried"
            )
        dst = self.root / "incoming" / f"{entry.id}.0.msg"
        os.rename(entry.path, dst)
        entry.path.with_suffix(".json").unlink(missing_ok=True)
        fsync_dir(self.root / "incoming")
        return SpoolEntry(entry.id, "incoming", dst, 0)

    def discard(self, entry_id: str, reason: str = "discarded by operator") -> SpoolEntry:
        entry = self.find(entry_id)
        if entry.state not in {"failed", "quarantine"}:
            raise SpoolError(f"entry {entry.id} is {entry.state}; only failed or quarantined entries can be discarded")
        info = self.info(entry)
        entry.path.with_suffix(".json").unlink(missing_ok=True)
        return self._park(entry, "discarded", {**info, "discarded": reason})

    def depths(self, *, drain: bool = True) -> dict[str, int]:
        """Entries per state folder, after draining the journal (unless `drain` is false: the
        metrics endpoint only looks); "journal" counts records still waiting there (0 unless
        the drain failed or mail arrived meanwhile)."""
        if drain:
            self._drain_quietly()
        counts = {
            state: sum(1 for n in os.listdir(self.root / state) if n.endswith(".msg"))
            for state in ("incoming", "active", "failed", "quarantine", "discarded")
        }
        counts["journal"] = self.journal_backlog()
        return counts
