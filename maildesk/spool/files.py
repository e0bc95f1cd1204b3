"""The durable spool: the only place intake hands mail to the worker.

Owns the folders `tmp/ incoming/ active/ failed/ quarantine/ discarded/ journal/` under the
data folder. It knows nothing of the database, rules or parsing.

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
import errno
import fcntl
import itertools
import json
import logging
import os
import re
import secrets
import stat
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maildesk.errors import SpoolError

log = logging.getLogger("maildesk.spool.files")

MAGIC = b"MDSPOOL1 "
STATES = ("incoming", "active", "failed", "quarantine", "discarded")

JOURNAL_MAGIC = b"MDJ1"
RECORD_HEADER = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload
SEGMENT_SIZE = 64 << 20
DRAIN_BATCH = 512  # records made durable by one sync (each holds an open file until then)
DRAIN_BATCH_BYTES = 16 << 20
CLAIM_DRAIN_LIMIT = 2048  # claim() materialises at most about this many records per refill
_READ_CHUNK = 256 << 10
_ID_OK = re.compile(r"[0-9A-Za-z_-]{1,64}")
_IOV_MAX = 1024


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_libc: Any = None


def _syncfs(fd: int) -> bool:
    """One syncfs(2) for a whole group: a single journal commit and cache flush for every
    file written, where one fsync per file commits the journal once per file. False when
    the call is missing or fails (the caller then fsyncs each file)."""
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.syncfs.argtypes = [ctypes.c_int]
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    return bool(_libc.syncfs(fd) == 0)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _not_in_use(fd: int) -> bool:
    """True when no journal writer holds the segment open (it keeps an flock on it)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass
class _Drain:
    """State of one drain_journal() call."""

    check: bool  # a drain was interrupted: skip ids that already have a file
    known: set[str] | None = None
    marked: bool = False
    count: int = 0


def _read_records(fd: int, pos: int, size: int) -> tuple[list[tuple[str, memoryview]], int, bool]:
    """Complete records from `pos`: (records, offset after the last one, ended). `ended` is
    True at a zero, short or bad-CRC header, i.e. the end of what was written (for the
    segment being written, only so far), False when the batch is full."""
    records: list[tuple[str, memoryview]] = []
    buf = memoryview(b"")
    base = pos  # file offset of buf[0]
    taken = 0
    hsize = RECORD_HEADER.size
    while len(records) < DRAIN_BATCH and taken < DRAIN_BATCH_BYTES:
        off = pos - base
        if len(buf) - off < hsize:
            if pos + hsize > size:
                return records, pos, True
            buf, base, off = memoryview(os.pread(fd, _READ_CHUNK, pos)), pos, 0
            if len(buf) < hsize:
                return records, pos, True
        magic, length, crc = RECORD_HEADER.unpack_from(buf, off)
        if magic != JOURNAL_MAGIC or pos + hsize + length > size:
            return records, pos, True
        if off + hsize + length > len(buf):
            buf, base, off = memoryview(os.pread(fd, max(_READ_CHUNK, hsize + length), pos)), pos, 0
            if len(buf) < hsize + length:
                return records, pos, True
        payload = buf[off + hsize : off + hsize + length]
        if zlib.crc32(payload) != crc:
            return records, pos, True
        cut = bytes(payload[:80]).find(b"\n")
        entry_id = bytes(payload[:cut]).decode("ascii", "replace") if cut > 0 else ""
        if not _ID_OK.fullmatch(entry_id):
            raise SpoolError(f"journal record at offset {pos} has no valid entry id")
        records.append((entry_id, payload[cut + 1 :]))
        pos += hsize + length
        taken += length
    return records, pos, False


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
        self._journal_dir = str(self.root / "journal")
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
        synced = len(pending) > 1 and _syncfs(pending[0].fd)
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
                _fsync_dir(self.root / "incoming")
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
        return JournalWriter(self, segment_size)

    def journal_payload(self, raw: bytes, source: str, envelope: dict[str, Any] | None) -> tuple[str, bytes]:
        """A new entry id and the start of its journal payload; the payload is that start
        followed by `raw` (id, newline, then exactly the bytes of a spool file)."""
        entry_id = self._new_id()
        return entry_id, entry_id.encode() + b"\n" + self._header(source, envelope)

    def _segments(self) -> list[int]:
        try:
            names = os.listdir(self._journal_dir)
        except FileNotFoundError:
            return []
        return sorted(int(n[:-4]) for n in names if n.endswith(".jnl") and n[:-4].isdigit())

    def _journal_path(self, seq: int, suffix: str = ".jnl") -> str:
        return f"{self._journal_dir}/{seq:020d}{suffix}"

    def drain_journal(self, limit: int | None = None) -> int:
        """Materialise journal records past each segment's watermark as incoming/ files and
        return how many files were written (at most about `limit` when given). Cheap when
        there is nothing new: a listdir of journal/ and one pread, without any lock.

        Raises SpoolError when it cannot; what it could not do stays in the journal (the
        watermark moves only after the files are durable) and the next drain retries it."""
        with self._drain_lock:
            segments = self._segments()
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
        seq = segments[0]
        pos = self._drained.get(seq)
        if pos is None:
            return True  # not seen yet: read its watermark under the lock
        try:
            fd = os.open(self._journal_path(seq), os.O_RDONLY)
        except OSError:
            return False
        try:
            head = os.pread(fd, RECORD_HEADER.size, pos)
        except OSError:
            return False
        finally:
            os.close(fd)
        return head[:4] == JOURNAL_MAGIC

    def _drain_locked(self, limit: int | None) -> int:
        lock_fd = os.open(f"{self._journal_dir}/.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # drainers of other processes and Spool objects
            drain = _Drain(check=os.path.exists(f"{self._journal_dir}/.draining"))
            segments = self._segments()  # again, under the lock
            for i, seq in enumerate(segments):
                if limit is not None and drain.count >= limit:
                    break
                self._drain_segment(seq, i < len(segments) - 1, drain, limit)
            if drain.marked or drain.check:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self._journal_dir}/.draining")  # every watermark is written
            return drain.count
        finally:
            os.close(lock_fd)  # releases the flock

    def _drain_segment(self, seq: int, newer: bool, drain: _Drain, limit: int | None) -> None:
        path = self._journal_path(seq)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            self._drained.pop(seq, None)
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            pos = self._read_pos(seq, drain)
            while True:
                records, end, ended = _read_records(fd, pos, st.st_size)
                if records:
                    self._materialise(records, drain)
                    self._write_pos(seq, end)  # only now: the files are durable
                    pos = end
                self._drained[seq] = pos
                if ended or (limit is not None and drain.count >= limit):
                    break
            if ended and newer and _not_in_use(fd):
                # sealed (a newer segment exists, no writer holds it) and fully drained
                os.unlink(path)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._journal_path(seq, ".pos"))
                self._drained.pop(seq, None)
        finally:
            os.close(fd)

    def _read_pos(self, seq: int, drain: _Drain) -> int:
        try:
            with open(self._journal_path(seq, ".pos"), "rb") as f:
                text = f.read()
        except FileNotFoundError:
            return 0
        try:
            return int(text)
        except ValueError:
            drain.check = True  # e.g. empty after a power loss: drained records may come again
            return 0

    def _write_pos(self, seq: int, pos: int) -> None:
        tmp = self._journal_path(seq, ".pos.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, b"%d\n" % pos)
        finally:
            os.close(fd)
        os.replace(tmp, self._journal_path(seq, ".pos"))

    def _materialise(self, records: list[tuple[str, memoryview]], drain: _Drain) -> None:
        """Write records as incoming/ files (tmp -> rename), then one sync for them all."""
        if drain.check and drain.known is None:
            drain.known = self._existing_ids()
        if not drain.marked:
            os.close(os.open(f"{self._journal_dir}/.draining", os.O_WRONLY | os.O_CREAT, 0o640))
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
                _write_all(fd, body)
                # Fails if recover() of another process removed the tmp file: the drain
                # stops before its watermark, so the record is drained again later.
                os.rename(tmp, f"{self._incoming_dir}/{name}")
            if drain.known is not None:
                os.sync()  # rare: files skipped above may not be durable yet
            elif fds and not (len(fds) > 1 and _syncfs(fds[0])):
                for fd in fds:
                    os.fsync(fd)
            if self.fsync_dir and fds:
                _fsync_dir(self.root / "incoming")
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
        count = 0
        for seq in self._segments():
            try:
                fd = os.open(self._journal_path(seq), os.O_RDONLY)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                pos, ended = self._read_pos(seq, _Drain(check=False)), False
                while not ended:
                    records, pos, ended = _read_records(fd, pos, st.st_size)
                    count += len(records)
            except (OSError, SpoolError):
                pass
            finally:
                os.close(fd)
        return count

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
        _fsync_dir(self.root / state)
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
            _fsync_dir(self.root / "incoming")
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
        _fsync_dir(self.root / "incoming")
        return SpoolEntry(entry.id, "incoming", dst, 0)

    def discard(self, entry_id: str, reason: str = "discarded by operator") -> SpoolEntry:
        entry = self.find(entry_id)
        if entry.state not in {"failed", "quarantine"}:
            raise SpoolError(f"entry {entry.id} is {entry.state}; only failed or quarantined entries can be discarded")
        info = self.info(entry)
        entry.path.with_suffix(".json").unlink(missing_ok=True)
        return self._park(entry, "discarded", {**info, "discarded": reason})

    def depths(self) -> dict[str, int]:
        """Entries per state folder, after draining the journal; "journal" counts records
        still waiting there (0 unless the drain failed or mail arrived meanwhile)."""
        self._drain_quietly()
        counts = {
            state: sum(1 for n in os.listdir(self.root / state) if n.endswith(".msg"))
            for state in ("incoming", "active", "failed", "quarantine", "discarded")
        }
        counts["journal"] = self.journal_backlog()
        return counts


class JournalWriter:
    """Appends groups of records to the intake journal: one writer per spool folder (the
    SMTP intake's writer thread), not thread-safe.

    A group costs one pwritev and one fdatasync into a segment preallocated at creation (then fsynced with its folder), so acknowledging it needs no
    new file and no folder update. The writer holds an flock on its segment so that no
    drainer removes it. After any failed write or sync, or when its segment was removed
    under it, it abandons the segment (the rest of the group fails) and starts a new one
    for the next group; a new writer (after a restart) also starts a new segment."""

    def __init__(self, spool: Spool, segment_size: int = SEGMENT_SIZE) -> None:
        self.spool = spool
        self.segment_size = segment_size
        self._fd = -1
        self._seq = 0
        self._offset = 0
        self._capacity = 0

    @property
    def segment(self) -> Path | None:
        """The segment being written, if any."""
        return Path(self.spool._journal_path(self._seq)) if self._fd >= 0 else None

    def open(self) -> None:
        """Start a segment now rather than on the first append."""
        try:
            self._start_segment(self.segment_size)
        except OSError as exc:
            raise SpoolError(f"cannot start an intake journal segment: {exc.strerror or exc}") from exc

    def append(self, items: list[tuple[bytes, str, dict[str, Any] | None]]) -> list[str | SpoolError]:
        """Append messages durably. Returns, per item, the entry id or the SpoolError that
        kept it from being stored (it must not be acknowledged)."""
        ids: list[str] = []
        payloads: list[tuple[bytes, ...]] = []
        for raw, source, envelope in items:
            entry_id, prefix = self.spool.journal_payload(raw, source, envelope)
            ids.append(entry_id)
            payloads.append((prefix, raw))
        done, error = self.append_payloads(payloads)
        failure = SpoolError(f"cannot write to the intake journal: {error.strerror or error}") if error else None
        return [entry_id if i < done or failure is None else failure for i, entry_id in enumerate(ids)]

    def append_payloads(self, payloads: Sequence[Sequence[bytes | memoryview]]) -> tuple[int, OSError | None]:
        """Append records, each payload given in parts (see `Spool.journal_payload`), and
        make them durable. Returns how many (from the first) are durable and, when that is
        not all of them, the error that stopped the others."""
        records: list[tuple[bytes, Sequence[bytes | memoryview], int]] = []
        for parts in payloads:
            crc = 0
            for part in parts:
                crc = zlib.crc32(part, crc)
            length = sum(map(len, parts))
            records.append((RECORD_HEADER.pack(JOURNAL_MAGIC, length, crc), parts, RECORD_HEADER.size + length))
        i = 0
        while i < len(records):
            try:
                if self._fd < 0 or self._offset + records[i][2] > self._capacity:
                    self._start_segment(max(self.segment_size, records[i][2]))  # a big message gets its own size
                j, total, bufs = i, 0, list[bytes | memoryview]()
                while j < len(records) and self._offset + total + records[j][2] <= self._capacity:
                    head, parts, size = records[j]
                    bufs.append(head)
                    bufs.extend(parts)
                    total += size
                    j += 1
                self._write(bufs, total)
            except OSError as exc:
                self._abandon()  # never append after a failure: the next group starts a new segment
                return i, exc
            i = j
        return i, None

    def close(self) -> None:
        self._abandon()

    def _write(self, bufs: list[bytes | memoryview], total: int) -> None:
        """Write at the end of the segment (one pwritev), then one fdatasync."""
        offset = self._offset
        for k in range(0, len(bufs), _IOV_MAX):
            chunk = bufs[k : k + _IOV_MAX]
            size = sum(map(len, chunk))
            done = os.pwritev(self._fd, chunk, offset)
            if done < size:  # a short write: finish it
                rest = memoryview(b"".join(chunk))[done:]
                while rest:
                    rest = rest[os.pwrite(self._fd, rest, offset + size - len(rest)) :]
            offset += size
        os.fdatasync(self._fd)
        if os.fstat(self._fd).st_nlink == 0:
            # removed under us (by hand): what was written there is lost with it
            raise OSError(errno.ENOENT, "the journal segment was removed while in use")
        self._offset = offset

    def _start_segment(self, size: int) -> None:
        self._abandon()  # the old segment is sealed: never appended to again
        for attempt in range(3):
            self._seq = max([self._seq, *self.spool._segments()]) + 1
            path = self.spool._journal_path(self._seq)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
                break
            except FileExistsError:  # another writer (a previous run still ending) took it
                if attempt == 2:
                    raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
            _fsync_dir(Path(self.spool._journal_dir))
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self._fd, self._offset, self._capacity = fd, 0, size

    def _abandon(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the flock
            self._fd = -1
