"""Small durable-write helpers shared by the spool's files and its intake journal.

Owns only system calls: folder fsync, syncfs(2) through libc, a full write of a buffer.
Must not: know about entries, records or states.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_libc: Any = None


def syncfs(fd: int) -> bool:
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


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
