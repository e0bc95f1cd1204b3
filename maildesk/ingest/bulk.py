"""Bulk import of history from an mbox file or a Maildir folder into the spool.

Owns reading those formats (stdlib `mailbox`); only spools, never processes.
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


def import_mailbox(source: Path, spool: Spool, *, progress: bool = False) -> int:
    """Spool every message of SOURCE (bytes unchanged). Returns how many were spooled."""
    box = _open(source)
    try:
        return _spool_all(box, source, spool, progress)
    finally:
        box.close()


def _spool_all(box: mailbox.Mailbox, source: Path, spool: Spool, progress: bool) -> int:
    keys = list(box.keys())
    count = 0
    tag = f"import:{source.name}"
    if progress:
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task(f"importing {source.name}", total=len(keys))
            for key in keys:
                spool.put(box.get_bytes(key), tag, {"key": str(key)})
                count += 1
                bar.advance(task)
    else:
        for key in keys:
            spool.put(box.get_bytes(key), tag, {"key": str(key)})
            count += 1
    return count
