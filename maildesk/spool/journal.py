"""The SMTP intake journal: segment files `journal/<seq:020d>.jnl` of CRC-checked records.

Owns the journal folder's state — the record format, segment naming and listing, the
per-segment watermarks (`<seq>.pos`), the drain lock (`.lock`, an flock serialising
drainers of every process) and the interrupted-drain marker (`.draining`) — and its append
side, `JournalWriter`. A record is a header (`MDJ1`, payload length, CRC-32 of the payload)
and a payload: the entry id, a newline, then exactly the bytes of a spool file. A zero,
short or bad-CRC header ends the segment (a torn tail, never acknowledged).

Must not: create spool entries (turning records into `incoming/` files is `Spool`'s drain,
`maildesk.spool.files`), or know about SMTP.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from maildesk.errors import SpoolError
from maildesk.spool.fsio import fsync_dir

JOURNAL_MAGIC = b"MDJ1"
RECORD_HEADER = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload
SEGMENT_SIZE = 64 << 20
DRAIN_BATCH = 512  # records made durable by one sync (each holds an open file until then)
DRAIN_BATCH_BYTES = 16 << 20
_READ_CHUNK = 256 << 10
_ID_OK = re.compile(r"[0-9A-Za-z_-]{1,64}")
_IOV_MAX = 1024

# (raw, source, envelope) -> (entry id, payload start); the payload is that start + raw
PayloadMaker = Callable[[bytes, str, "dict[str, Any] | None"], tuple[str, bytes]]


def not_in_use(fd: int) -> bool:
    """True when no journal writer holds the segment open (it keeps an flock on it)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def read_records(fd: int, pos: int, size: int) -> tuple[list[tuple[str, memoryview]], int, bool]:
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


class Journal:
    """The journal folder: segments, records, watermarks, the drain lock and marker."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = str(directory)

    def segments(self) -> list[int]:
        """Sequence numbers of the segments present, oldest first."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(int(n[:-4]) for n in names if n.endswith(".jnl") and n[:-4].isdigit())

    def path(self, seq: int, suffix: str = ".jnl") -> str:
        return f"{self.dir}/{seq:020d}{suffix}"

    def record_at(self, seq: int, pos: int) -> bool:
        """True when a record header starts at `pos` of segment `seq` (one pread, no lock)."""
        try:
            fd = os.open(self.path(seq), os.O_RDONLY)
        except OSError:
            return False
        try:
            head = os.pread(fd, RECORD_HEADER.size, pos)
        except OSError:
            return False
        finally:
            os.close(fd)
        return head[:4] == JOURNAL_MAGIC

    def watermark(self, seq: int) -> int | None:
        """How far segment `seq` is drained: 0 when never, None when the watermark file is
        unreadable (e.g. empty after a power loss: drained records may come again)."""
        try:
            with open(self.path(seq, ".pos"), "rb") as f:
                text = f.read()
        except FileNotFoundError:
            return 0
        try:
            return int(text)
        except ValueError:
            return None

    def set_watermark(self, seq: int, pos: int) -> None:
        tmp = self.path(seq, ".pos.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, b"%d\n" % pos)
        finally:
            os.close(fd)
        os.replace(tmp, self.path(seq, ".pos"))

    def remove(self, seq: int) -> None:
        """Remove a drained, sealed segment and its watermark."""
        os.unlink(self.path(seq))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(seq, ".pos"))

    @contextlib.contextmanager
    def drain_lock(self) -> Iterator[None]:
        """Exclusive against drainers of every process and Spool object (flock on `.lock`)."""
        lock_fd = os.open(f"{self.dir}/.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock_fd)  # releases the flock

    def drain_interrupted(self) -> bool:
        """A drain stopped between its files and its watermark: skip ids already on disk."""
        return os.path.exists(f"{self.dir}/.draining")

    def mark_draining(self) -> None:
        os.close(os.open(f"{self.dir}/.draining", os.O_WRONLY | os.O_CREAT, 0o640))

    def clear_draining(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.dir}/.draining")  # every watermark is written

    def backlog(self) -> int:
        """Records in the journal past their segment's watermark (a read-only scan)."""
        count = 0
        for seq in self.segments():
            try:
                fd = os.open(self.path(seq), os.O_RDONLY)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                pos, ended = self.watermark(seq) or 0, False
                while not ended:
                    records, pos, ended = read_records(fd, pos, st.st_size)
                    count += len(records)
            except (OSError, SpoolError):
                pass
            finally:
                os.close(fd)
        return count

    def writer(self, payload: PayloadMaker, segment_size: int = SEGMENT_SIZE) -> JournalWriter:
        return JournalWriter(self, payload, segment_size)


class JournalWriter:
    """Appends groups of records to the intake journal: one writer per spool folder (the
    SMTP intake's writer thread), not thread-safe.

    A group costs one pwritev and one fdatasync into a segment preallocated at creation
    (then fsynced with its folder), so acknowledging it needs no new file and no folder
    update. The writer holds an flock on its segment so that no
    drainer removes it. After any failed write or sync, or when its segment was removed
    under it, it abandons the segment (the rest of the group fails) and starts a new one
    for the next group; a new writer (after a restart) also starts a new segment."""

    def __init__(self, journal: Journal, payload: PayloadMaker, segment_size: int = SEGMENT_SIZE) -> None:
        self.journal = journal
        self._payload = payload
        self.segment_size = segment_size
        self._fd = -1
        self._seq = 0
        self._offset = 0
        self._capacity = 0

    @property
    def segment(self) -> Path | None:
        """The segment being written, if any."""
        return Path(self.journal.path(self._seq)) if self._fd >= 0 else None

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
            entry_id, prefix = self._payload(raw, source, envelope)
            ids.append(entry_id)
            payloads.append((prefix, raw))
        done, error = self.append_payloads(payloads)
        failure = SpoolError(f"cannot write to the intake journal: {error.strerror or error}") if error else None
        if failure is not None:
            failure.__cause__ = error  # `status` tells a full disk from other failures by its errno
        return [entry_id if i < done or failure is None else failure for i, entry_id in enumerate(ids)]

    def append_payloads(self, payloads: Sequence[Sequence[bytes | memoryview]]) -> tuple[int, OSError | None]:
        """Append records, each payload given in parts (see `Spool.journal_payload`: id, newline, spool file bytes), and
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
            self._seq = max([self._seq, *self.journal.segments()]) + 1
            path = self.journal.path(self._seq)
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
            fsync_dir(self.journal.dir)
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
