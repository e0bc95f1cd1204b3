"""Keep the last good `RuleSet` and reload it safely when the file changes.

Owns `RulesHolder`: `reload()` swaps in a new ruleset only when the whole file loads; a broken
edit leaves the previous rules running and returns the errors for the daemon to report.
`reload_if_changed()` is one `stat()` when nothing changed, so the worker can call it before
every message.

Must not: log, print, or decide what to do with the errors (the caller reports them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from maildesk.rules.loader import load_rules
from maildesk.rules.model import RulesError
from maildesk.rules.ruleset import RuleSet

Loader = Callable[[Path], RuleSet]


class RulesHolder:
    """The rules in force. `ruleset` is always a fully valid RuleSet (empty before a load)."""

    def __init__(self, path: str | Path | None = None, *, loader: Loader | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._load: Loader = loader or (lambda p: load_rules(p))
        self.ruleset = RuleSet()
        self.errors: list[str] = []  # from the last attempt; empty when it succeeded
        self._stamp: tuple[int, int, int] | None = None  # (mtime_ns, size, inode) of the loaded file
        self._lock = threading.RLock()  # the worker and the daemon's file watcher may both reload

    def _stat(self, path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self, path: str | Path | None = None) -> list[str]:
        """Load `path` (or the known path); keep the old rules on failure and return the errors."""
        with self._lock:
            if path is not None:
                self.path = Path(path)
            if self.path is None:
                return ["no rules file configured"]
            stamp = self._stat(self.path)
            try:
                ruleset = self._load(self.path)
            except RulesError as exc:
                self.errors = exc.messages
                self._stamp = stamp  # do not retry the same broken file on every message
                return list(self.errors)
            self.ruleset, self.errors, self._stamp = ruleset, [], stamp
            return []

    def changed(self) -> bool:
        return self.path is not None and self._stat(self.path) != self._stamp

    def reload_if_changed(self) -> list[str] | None:
        """None when the file is unchanged since the last attempt; else the reload's errors."""
        with self._lock:
            if not self.changed():
                return None
            return self.reload()
