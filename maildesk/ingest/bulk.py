"""Bulk import of history from an mbox file or a Maildir folder into the spool.

Owns reading those formats (stdlib `mailbox`); only spools, never processes. A message over
`max_size` (the SMTP limit) is skipped and named in `skipped`, as SMTP would refuse it.
"""

from __future__ import annotations

import mailbox
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
