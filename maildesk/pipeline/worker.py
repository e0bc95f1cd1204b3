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
from datetime import datetime
from typing import Any

from maildesk.clock import utcnow
from maildesk.errors import UnparseableMessage
from maildesk.message import parse_bytes
from maildesk.pipeline.context import MessageContext
from maildesk.pipeline.stages import DEFAULT_STAGES, PipelineDeps, Stage
from maildesk.spool import Spool, SpoolEntry
from maildesk.store.db import Store, is_unavailable

log = logging.getLogger("maildesk.worker")

Clock = Callable[[], datetime]



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

    def figures(self) -> dict[str, Any]:
        """The counts operators see (`maildesk process`, `maildesk status`)."""
        return {
            "processed": self.processed,
            "tickets_created": self.tickets_created,
            "appended": self.appended,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "failed": self.failed,
            "database_unavailable_since": self.db_unavailable_since,
            "last_error": self.last_error,
        }


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
        batch_size: int = 50,
    ) -> None:
        self.spool = spool
        self.store = store
        self.deps = deps
        self.stages = tuple(stages)
        self.clock = clock
        self.after_commit = after_commit
        self.stats = WorkerStats()
        self._backoff = 0.5
        self.max_batch = batch_size
        self.batch_size = batch_size

    def recover(self) -> dict[str, int]:
        counts = self.spool.recover(self.deps.settings.worker.max_attempts)
        if any(counts.values()):
            log.warning("recovered after a crash: %(suspect)d were in flight together (each will run alone), "
                        "%(retried)d retried, %(failed)d failed for good", counts)
        return counts

    def process_one(self) -> bool:
        """Process up to one batch. False when the spool is empty or the database is down."""
        entries: list[SpoolEntry] = []
        for _ in range(self.batch_size):
            entry = self.spool.claim()
            if entry is None:
                break
            if entry.attempt > 0 or entry.suspect:
                # Interrupted before: process it alone, so a crash is blamed on it only
                # when it happens while it is the only message in flight.
                if entries:
                    self.spool.release(entry)
                    break
                log.info("processing %s alone: its processing was interrupted %d time(s) before", entry.id, entry.attempt)
                entries.append(entry)
                break
            entries.append(entry)
        if not entries:
            return False
        return self._process_batch(entries)

    def _process_batch(self, entries: list[SpoolEntry]) -> bool:
        """Group commit: one database transaction for the batch, one SAVEPOINT per message,
        so each message still commits or rolls back as a whole and one bad message never
        affects another. Spool entries are finished only after the commit; a crash before
        it leaves them in active/ to be retried, and deduplication makes that harmless."""
        parsed: list[tuple[SpoolEntry, MessageContext]] = []
        for entry in entries:
            meta, raw = self.spool.read(entry)
            try:
                msg = parse_bytes(raw)
            except UnparseableMessage as exc:
                self.spool.quarantine(entry, str(exc))
                self.stats.quarantined += 1
                log.warning("quarantined %s: %s", entry.id, exc)
                continue
            parsed.append((entry, MessageContext(entry_id=entry.id, meta=meta, msg=msg, now=self.clock())))
        if not parsed:
            return True
        done: list[tuple[SpoolEntry, MessageContext]] = []
        failed: list[tuple[SpoolEntry, MessageContext, str, str]] = []
        try:
            with self.store.session() as session:
                for entry, ctx in parsed:
                    try:
                        with session.begin_nested():
                            for stage in self.stages:
                                ctx.stage = stage.__name__
                                stage(ctx, session, self.deps)
                    except Exception as exc:  # noqa: BLE001 - the daemon never stops for one message
                        if is_unavailable(exc):
                            raise
                        failed.append((entry, ctx, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
                        continue
                    done.append((entry, ctx))
        except Exception as exc:  # noqa: BLE001
            for entry, _ctx in parsed:
                self.spool.release(entry)
            if is_unavailable(exc):
                self.stats.db_unavailable_since = self.stats.db_unavailable_since or time.time()
                self.stats.last_error = f"database unavailable: {str(exc).splitlines()[0][:300]}"
                log.error("database unavailable, messages kept in spool: %s", self.stats.last_error)
                return False
            log.exception("batch commit failed; entries released for another try")
            self.stats.last_error = f"commit: {type(exc).__name__}: {exc}"
            self.batch_size = 1  # isolate the culprit on the next round
            return True
        for entry, ctx, error, tb in failed:
            self.spool.fail(entry, ctx.stage, error, tb)
            self.stats.failed += 1
            self.stats.last_error = f"{ctx.stage}: {error}"
            log.error("stage %s failed for %s: %s", ctx.stage, entry.id, error)
        for entry, ctx in done:
            self.spool.finish(entry)
            self._count(ctx)
        self.stats.db_unavailable_since = None
        self.batch_size = self.max_batch
        return True

    def _count(self, ctx: MessageContext) -> None:
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
                log.exception("after-commit hook failed for %s", ctx.entry_id)

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
