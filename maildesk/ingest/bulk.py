"""Bulk import of history from an mbox file or a Maildir folder into the spool.

Owns reading those formats (stdlib `mailbox`); only spools, never processes (`history_mail`
hands the messages, oldest first, to `import --history`, which stores them itself). A message over
`max_size` (the SMTP limit) is skipped and named in `skipped`, as SMTP would refuse it.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from maildesk.errors import MaildeskError
from maildesk.spool.files import Spool


def _open(source: Path) -> mailbox.Mailbox:
    if source.is_dir():
        if not (source / "cur").is_dir() and not (source / "new").is_dir():
            raise MaildeskError(f"{source} is a folder but not a Maildir (no cur/ or new/)")
        return mailbox.Maildir(source, factory=None, create=False)
    if source.is_file():
        return mailbox.mbox(source, factory=None, create=False)
    raise MaildeskError(f"{source}: no such file or folder")


def import_mailbox(
    source: Path, spool: Spool, *, progress: bool = False, max_size: int = 0, skipped: list[str] | None = None
) -> int:
    """Spool every message of SOURCE (bytes unchanged) up to `max_size` bytes (0: any size).
    Returns how many were spooled; a line per skipped message goes to `skipped`."""
    box = _open(source)
    try:
        return _spool_all(box, source, spool, progress, max_size, skipped if skipped is not None else [])
    finally:
        box.close()


def _spool_all(
    box: mailbox.Mailbox, source: Path, spool: Spool, progress: bool, max_size: int, skipped: list[str]
) -> int:
    keys = list(box.keys())
    count = 0
    tag = f"import:{source.name}"

    def take(key: str) -> None:
        nonlocal count
        raw = box.get_bytes(key)
        if max_size and len(raw) > max_size:
            skipped.append(f"{source.name} message {key}: {len(raw)} bytes, over the limit of {max_size}")
            return
        spool.put(raw, tag, {"key": str(key)})
        count += 1

    if progress:
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task(f"importing {source.name}", total=len(keys))
            for key in keys:
                take(key)
                bar.advance(task)
    else:
        for key in keys:
            take(key)
    return count


_DATE = re.compile(rb"^Date:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_EPOCH = datetime.min.replace(tzinfo=UTC)


def _header_date(raw: bytes) -> datetime:
    """The Date header of the header block, for ordering only (undated or unreadable: first)."""
    end = raw.find(b"\n\n")
    end2 = raw.find(b"\r\n\r\n")
    head = raw[: min(e for e in (end, end2, len(raw)) if e >= 0)]
    found = _DATE.search(head)
    if found is None:
        return _EPOCH
    try:
        value = parsedate_to_datetime(found.group(1).decode("latin-1").replace("\r", "").replace("\n", " "))
    except (TypeError, ValueError, IndexError, OverflowError):
        return _EPOCH
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class HistoryMail:
    """The messages of an mbox or Maildir for `import --history`, oldest first (by their
    Date header; a reply then finds the mail it answers stored before it, whatever order
    the mailbox keeps). Two passes over the box: the dates, then the bytes in that order;
    never all messages in memory. Use as a context manager; `len()` is the message count."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.box = _open(source)
        dated = [(_header_date(self.box.get_bytes(key)), i, key) for i, key in enumerate(self.box.keys())]
        dated.sort()
        self.keys = [key for _date, _i, key in dated]

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        """(name, raw bytes): the name says where the message is (`box message KEY`)."""
        for key in self.keys:
            yield f"{self.source.name} message {key}", self.box.get_bytes(key)

    def __enter__(self) -> HistoryMail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.box.close()
