"""Notice edited files within a second: the watcher thread behind the daemon's live reload.

Owns one thread that looks at the modification stamp (mtime, size, inode) of a few files and
folder trees about once a second and calls the owner's callback with the names of the watched
things that changed. Polling is cheap here (a handful of `stat` calls a second) and sees
edits made by any editor, including the write-new-then-rename ones that inotify watches on
the file would lose.
Must not: reload anything itself (the callback does; `maildesk.app`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("maildesk.watch")

Stamp = tuple[tuple[str, int, int, int], ...]


def stamp(path: Path) -> Stamp:
    """The (name, mtime_ns, size, inode) of a file, or of every file under a folder."""
    found: list[tuple[str, int, int, int]] = []
    try:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    try:
                        st = os.stat(os.path.join(root, name))
                    except OSError:
                        continue
                    found.append((os.path.join(root, name), st.st_mtime_ns, st.st_size, st.st_ino))
        else:
            st = path.stat()
            found.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    except OSError:
        pass  # missing: an empty stamp, so its creation counts as a change
    return tuple(found)


class FileWatcher:
    """Calls `on_change(names)` when watched paths change (checked every `interval` seconds)."""

    def __init__(
        self, paths: dict[str, Path], on_change: Callable[[set[str]], object], *, interval: float = 1.0
    ) -> None:
        self.paths = dict(paths)
        self.on_change = on_change
        self.interval = interval
        self._stamps = {name: stamp(path) for name, path in self.paths.items()}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def check(self) -> set[str]:
        """Look once; call back (and return) what changed since the last look."""
        changed = set()
        for name, path in self.paths.items():
            now = stamp(path)
            if now != self._stamps.get(name):
                self._stamps[name] = now
                changed.add(name)
        if changed:
            try:
                self.on_change(changed)
            except Exception:  # noqa: BLE001 - the watcher must keep watching
                log.exception("reloading %s failed", ", ".join(sorted(changed)))
        return changed

    def start(self) -> None:
        if not self.paths:
            return
        self._thread = threading.Thread(target=self._run, name="file-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
