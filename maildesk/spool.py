"""The durable spool: the only place intake hands mail to the worker.

Owns the folders `tmp/ incoming/ active/ failed/ quarantine/ discarded/` under the data
folder. `put()` returns only after the bytes are on disk (write, rename, then fsync — which on
journaling file systems also commits the rename; `fsync_dir=True` adds a folder fsync for
others); sources acknowledge mail only after it returns. It knows nothing of the database,
rules or parsing.

An entry is one file: a first line `MDSPOOL1 {json}` (source, envelope, time) followed by the
raw message bytes, unchanged. Its name is `<time_ns>-<random>.<attempt>.msg`; the attempt
number grows each time a crash interrupts its processing, so recovery after a crash is a
rename, and an entry that crashed the worker `max_attempts` times goes to failed/.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maildesk.errors import SpoolError

MAGIC = b"MDSPOOL1 "
STATES = ("incoming", "active", "failed", "quarantine", "discarded")


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
        self._id_prefix = secrets.token_hex(3)
        self._counter = itertools.count(secrets.randbelow(1 << 24))

    def ensure(self) -> Spool:
        for name in ("tmp", *STATES):
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
        meta = {"source": source, "received_at": time.time(), "envelope": envelope or {}}
        header = MAGIC + json.dumps(meta, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
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

    def _new_id(self) -> str:
        # time, then a per-process random prefix and a counter: unique without a syscall
        # per message (O_EXCL on the tmp file catches the impossible collision).
        return f"{time.time_ns():020d}-{self._id_prefix}{next(self._counter) & 0xFFFFFF:06x}"

    # Worker --------------------------------------------------------------------------
    def claim(self) -> SpoolEntry | None:
        """Move the oldest incoming entry to active/ and return it (None when empty)."""
        with self._lock:
            for _ in range(2):
                if not self._pending:
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
            raise SpoolError(f"entry {entry.id} is {entry.state}; only failed, quarantined or discarded entries can be retried")
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
        return {
            state: sum(1 for n in os.listdir(self.root / state) if n.endswith(".msg"))
            for state in ("incoming", "active", "failed", "quarantine", "discarded")
        }
