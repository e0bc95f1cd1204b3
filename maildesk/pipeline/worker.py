"""The worker: claims spool entries and runs the stages, one transaction per message.

Owns the failure policy of invariant 3: unparseable mail goes to quarantine/ with a reason;
a stage that raises sends the entry to failed/ with the stage and traceback; the database
being unreachable puts the entry back in incoming/ (not an attempt) and waits with backoff.
The worker itself never stops for one message.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from maildesk.errors import UnparseableMessage
from maildesk.message import parse_bytes
from maildesk.pipeline.context import MessageContext
from maildesk.pipeline.stages import DEFAULT_STAGES, PipelineDeps, Stage
from maildesk.spool import Spool, SpoolEntry
from maildesk.store.db import Store, is_unavailable

log = logging.getLogger("maildesk.worker")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class WorkerStats:
    processed: int = 0
    tickets_created: int = 0
    appended: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failed: int = 0
    db_unavailable_since: float | None = None
    last_error: str = ""
    outcomes: dict[str, int] = field(default_factory=dict)


class Worker:
    """Runs the pipeline over spooled mail."""

    def __init__(
        self,
        spool: Spool,
        store: Store,
        deps: PipelineDeps,
        *,
        stages: Sequence[Stage] = DEFAULT_STAGES,
        clock: Clock = utcnow,
        after_commit: Callable[[MessageContext], None] | None = None,
    ) -> None:
        self.spool = spool
        self.store = store
        self.deps = deps
        self.stages = tuple(stages)
        self.clock = clock
        self.after_commit = after_commit
        self.stats = WorkerStats()
        self._backoff = 0.5

    def recover(self) -> dict[str, int]:
        counts = self.spool.recover(self.deps.settings.worker.max_attempts)
        if counts["retried"] or counts["failed"]:
            log.warning("recovered after a crash: %(retried)d retried, %(failed)d failed for good", counts)
        return counts

    def process_one(self) -> bool:
        """Process one entry. False when the spool is empty or the database is down."""
        entry = self.spool.claim()
        if entry is None:
            return False
        return self._process(entry)

    def _process(self, entry: SpoolEntry) -> bool:
        meta, raw = self.spool.read(entry)
        try:
            msg = parse_bytes(raw)
        except UnparseableMessage as exc:
            self.spool.quarantine(entry, str(exc))
            self.stats.quarantined += 1
            log.warning("quarantined %s: %s", entry.id, exc)
            return True
        ctx = MessageContext(entry_id=entry.id, meta=meta, msg=msg, now=self.clock())
        try:
            with self.store.session() as session:
                for stage in self.stages:
                    ctx.stage = stage.__name__
                    stage(ctx, session, self.deps)
        except Exception as exc:  # noqa: BLE001 - the daemon never stops for one message
            if is_unavailable(exc):
                self.spool.release(entry)
                self.stats.db_unavailable_since = self.stats.db_unavailable_since or time.time()
                self.stats.last_error = f"database unavailable: {str(exc).splitlines()[0][:300]}"
                log.error("database unavailable, message kept in spool: %s", self.stats.last_error)
                return False
            tb = traceback.format_exc()
            self.spool.fail(entry, ctx.stage, f"{type(exc).__name__}: {exc}", tb)
            self.stats.failed += 1
            self.stats.last_error = f"{ctx.stage}: {type(exc).__name__}: {exc}"
            log.error("stage %s failed for %s: %s", ctx.stage, entry.id, exc)
            return True
        self.spool.finish(entry)
        self.stats.db_unavailable_since = None
        self.stats.processed += 1
        self.stats.outcomes[ctx.outcome or "done"] = self.stats.outcomes.get(ctx.outcome or "done", 0) + 1
        if ctx.duplicate:
            self.stats.duplicates += 1
        elif ctx.new_ticket:
            self.stats.tickets_created += 1
        else:
            self.stats.appended += 1
        if self.after_commit is not None:
            try:
                self.after_commit(ctx)
            except Exception:  # noqa: BLE001
                log.exception("after-commit hook failed for %s", entry.id)
        return True

    def drain(self) -> WorkerStats:
        """Process everything spooled now; return when the spool is empty or the DB is down."""
        while self.process_one():
            pass
        return self.stats

    def run_forever(self, stop: threading.Event) -> None:
        """Process until `stop` is set; finishes the current message before returning."""
        poll = self.deps.settings.worker.poll_interval
        while not stop.is_set():
            worked = self.process_one()
            if worked:
                self._backoff = 0.5
                continue
            if self.stats.db_unavailable_since is not None:
                stop.wait(self._backoff)
                self._backoff = min(self._backoff * 2, 30.0)
                try:
                    self.store.check()
                except Exception:  # noqa: BLE001
                    continue
            else:
                stop.wait(poll)
