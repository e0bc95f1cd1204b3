"""The worker: claims spool entries and runs the stages, one transaction per message.

Owns the failure policy of invariant 3: unparseable mail goes to quarantine/ with a reason;
a stage that raises sends the entry to failed/ with the stage and traceback; the database
being unreachable puts the entry back in incoming/ (not an attempt) and waits with backoff.
The worker itself never stops for one message.

When the spool is empty it waits on its wake-up `Signal` (rung by intake after each durable
spool write, see `maildesk.wakeup`), at most `worker.safety_net_interval` seconds: a lost
wake-up delays mail by that much, never loses it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from maildesk.clock import utcnow
from maildesk.logctx import about, about_values
from maildesk.pipeline.context import MessageContext, Needs, PipelineDeps, Stage, needs_of
from maildesk.pipeline.prepare import (
    Outcome,
    Prepared,
    PrepareFailed,
    PreparePool,
    Unparseable,
    default_processes,
)
from maildesk.spool.files import Spool, SpoolEntry
from maildesk.store import Session
from maildesk.store import queries as q
from maildesk.store.db import Store, is_conflict, is_unavailable
from maildesk.wakeup import Signal

log = logging.getLogger("maildesk.worker")

Clock = Callable[[], datetime]


class _Finisher:
    """Removes the spool copies of committed messages on a thread of its own: on some
    file systems (ext4 mounted with `discard`) an unlink costs more than writing the
    message's rows. A crash before the removal leaves the entry in active/; it is then run
    again and deduplicated, the same as a crash between commit and removal always was."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._queue: queue.SimpleQueue[list[SpoolEntry] | None] = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def finish(self, entries: list[SpoolEntry]) -> None:
        if not entries:
            return
        with self._lock:
            self._pending += 1
            self._idle.clear()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="spool-finisher", daemon=True)
                self._thread.start()
        self._queue.put(entries)

    def _run(self) -> None:
        while True:
            entries = self._queue.get()
            if entries is None:
                return
            for entry in entries:
                try:
                    self.spool.finish(entry)
                except OSError as exc:  # the entry runs again after a restart and is deduplicated
                    log.error("could not remove finished spool entry %s: %s", entry.id, exc)
            with self._lock:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every finished entry is removed (end of a drain, shutdown)."""
        self._idle.wait(timeout)


class _StageFailed(Exception):
    """A stage raised in a batch run without savepoints: run the batch again with them."""


class _Conflict(Exception):
    """A stage lost a race for a unique row to another process: run the batch again."""


MAX_CONFLICT_RETRIES = 3  # then the entry fails like any other stage error (a bug, not a race)


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
    # For the metrics endpoint (`maildesk.observe.metrics`); counted in this process.
    received: dict[str, int] = field(default_factory=dict)  # per source: smtp | imap | inject | import
    errors: dict[str, int] = field(default_factory=dict)  # per stage (prepare, a stage name, commit, database)
    latency_observer: Callable[[float], None] | None = None  # seconds from spooled to committed

    def count_received(self, meta: dict[str, Any]) -> None:
        """One spool entry taken to its end (committed, failed or quarantined), by the source
        that spooled it (`smtp`, `imap`, `inject`, `import`; `imap:box/INBOX` counts as imap)."""
        source = str((meta or {}).get("source") or "unknown").split(":", 1)[0]
        self.received[source] = self.received.get(source, 0) + 1

    def count_error(self, stage: str) -> None:
        self.errors[stage] = self.errors.get(stage, 0) + 1

    def observe_latency(self, entry: SpoolEntry, committed: float) -> None:
        if self.latency_observer is None:
            return
        if entry.received_ns:
            self.latency_observer(max(0.0, committed - entry.received_ns / 1e9))

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


def log_about(ctx: MessageContext) -> Callable[[], dict[str, Any]]:
    """The log context of a message: read when a line is logged, so the ticket number
    appears as soon as a stage has found or made the ticket."""
    return lambda: {"entry": ctx.entry_id, "message_id": ctx.msg.message_id, "ticket": ctx.ticket_number}


class Worker:
    """Runs the pipeline over spooled mail."""

    def __init__(
        self,
        spool: Spool,
        store: Store,
        deps: PipelineDeps,
        *,
        stages: Sequence[Stage],
        clock: Clock = utcnow,
        after_commit: Callable[[MessageContext], None] | None = None,
        batch_size: int = 50,
        parse_processes: int | None = None,
        wakeup: Signal | None = None,
    ) -> None:
        self.spool = spool
        self.wakeup = wakeup or Signal()  # rung when mail is spooled; without it, only the safety net
        self.store = store
        self.deps = deps
        self.stages = tuple(stages)
        self.clock = clock
        self.after_commit = after_commit
        self.stats = WorkerStats()
        self._backoff = 0.5
        self.max_batch = batch_size
        self.batch_size = batch_size
        self.preparer = PreparePool(
            deps.settings,
            default_processes(deps.settings.worker.parse_processes) if parse_processes is None else parse_processes,
        )
        self._next: tuple[list[SpoolEntry], Future[list[Outcome]]] | None = None
        self._finisher = _Finisher(spool)
        self._conflicts: dict[str, int] = {}  # entry id -> unique-row races lost (several nodes)

    def recover(self) -> dict[str, int]:
        if self._next is not None:  # what was claimed ahead is back in incoming/ after this
            self._next[1].cancel()
            self._next = None
        counts = self.spool.recover(self.deps.settings.worker.max_attempts)
        if any(counts.values()):
            log.warning(
                "recovered after a crash: %(suspect)d were in flight together (each will run alone), "
                "%(retried)d retried, %(failed)d failed for good",
                counts,
            )
        return counts

    def _claim_batch(self, *, normal_only: bool = False) -> list[SpoolEntry]:
        entries: list[SpoolEntry] = []
        for _ in range(self.batch_size):
            entry = self.spool.claim()
            if entry is None:
                break
            if entry.attempt > 0 or entry.suspect:
                # Interrupted before: process it alone, so a crash is blamed on it only
                # when it happens while it is the only message in flight.
                if entries or normal_only:
                    self.spool.release(entry)
                    break
                log.info(
                    "processing %s alone: its processing was interrupted %d time(s) before", entry.id, entry.attempt
                )
                entries.append(entry)
                break
            entries.append(entry)
        return entries

    def process_one(self) -> bool:
        """Process up to one batch. False when the spool is empty or the database is down.

        With a prepare pool, the next batch is claimed and handed to the pool before this
        one is written, so parsing overlaps the database work. Never while an entry must
        run alone (see `Spool.recover`): then nothing else is in flight."""
        pending, self._next = self._next, None
        if pending is None:
            entries = self._claim_batch()
            if not entries:
                return False
            pending = (entries, self.preparer.submit(entries, self._needs()))
        entries, future = pending
        alone = len(entries) == 1 and (entries[0].attempt > 0 or entries[0].suspect)
        if self.preparer.parallel and not alone:
            following = self._claim_batch(normal_only=True)
            if following:
                self._next = (following, self.preparer.submit(following, self._needs()))
        outcomes = self.preparer.results(entries, future, self._needs())
        worked = self._process_batch(list(zip(entries, outcomes, strict=True)))
        if not worked:
            self.release_prefetched()
        return worked

    def _needs(self) -> Needs:
        """What the configured stages declared they use from preparation (`@stage(needs=…)`;
        `self.stages` may be swapped, so this is asked each batch)."""
        return needs_of(self.stages)

    def release_prefetched(self) -> None:
        """Give a claimed-ahead batch back to incoming/ (on stop, or when the DB is down)."""
        pending, self._next = self._next, None
        if pending is not None:
            entries, future = pending
            future.cancel()
            for entry in entries:
                self.spool.release(entry)

    def close(self) -> None:
        self.release_prefetched()
        self._finisher.flush()
        self.preparer.close()

    def _process_batch(self, batch: list[tuple[SpoolEntry, Outcome]]) -> bool:
        """Group commit: one database transaction for the batch. Each message still
        commits or rolls back as a whole and one bad message never affects another: the
        batch first runs without savepoints (the common case, and the cheap one); if a
        stage raises, the whole transaction is rolled back and the batch runs again with
        a SAVEPOINT per message, so only the failing message is left out. Spool entries
        are finished only after the commit; a crash before it leaves them in active/ to be
        retried, and deduplication makes that harmless."""
        parsed: list[tuple[SpoolEntry, Prepared]] = []
        for entry, outcome in batch:
            if isinstance(outcome, PrepareFailed):
                self.stats.failed += 1
                self.stats.count_error("prepare")
                self.stats.count_received(outcome.meta)
                self.stats.last_error = f"prepare: {outcome.error}"
                with about(about_values(entry=entry.id)):
                    log.error("could not prepare %s: %s", entry.id, outcome.error)
                if entry.path.exists():
                    self.spool.fail(entry, "prepare", outcome.error, outcome.traceback)
                continue
            if isinstance(outcome, Unparseable):
                self.spool.quarantine(entry, outcome.reason)
                self.stats.quarantined += 1
                self.stats.count_received(outcome.meta)
                with about(about_values(entry=entry.id)):
                    log.warning("quarantined %s: %s", entry.id, outcome.reason)
                continue
            parsed.append((entry, outcome))
        if not parsed:
            return True
        done: list[tuple[SpoolEntry, MessageContext]] = []
        failed: list[tuple[SpoolEntry, MessageContext, str, str]] = []
        try:
            try:
                done, failed = self._run(parsed, savepoints=False)
            except _StageFailed:
                done, failed = self._run(parsed, savepoints=True)
        except Exception as exc:  # noqa: BLE001
            for entry, _pre in parsed:
                self.spool.release(entry)
            if is_unavailable(exc):
                if self.stats.db_unavailable_since is None:
                    self.stats.count_error("database")
                self.stats.db_unavailable_since = self.stats.db_unavailable_since or time.time()
                self.stats.last_error = f"database unavailable: {str(exc).splitlines()[0][:300]}"
                log.error("database unavailable, messages kept in spool: %s", self.stats.last_error)
                return False
            if isinstance(exc, _Conflict):
                log.warning(
                    "another process stored a row of this batch meanwhile (%s); running it again", exc.__cause__
                )
            else:
                self.stats.count_error("commit")
                log.exception("batch commit failed; entries released for another try")
            self.stats.last_error = f"commit: {type(exc).__name__}: {exc}"
            self.batch_size = 1  # isolate the culprit on the next round
            self.release_prefetched()
            return True
        for entry, ctx, error, tb in failed:
            self.spool.fail(entry, ctx.stage, error, tb)
            self.stats.failed += 1
            self.stats.count_error(ctx.stage)
            self.stats.count_received(ctx.meta)
            self.stats.last_error = f"{ctx.stage}: {error}"
            with about(log_about(ctx)):
                log.error("stage %s failed for %s: %s", ctx.stage, entry.id, error)
        self._finisher.finish([entry for entry, _ctx in done])
        committed = time.time()
        for entry, ctx in done:
            self._conflicts.pop(entry.id, None)
            self.stats.count_received(ctx.meta)
            self.stats.observe_latency(entry, committed)
            self._count(ctx)
        self.stats.db_unavailable_since = None
        self.batch_size = self.max_batch
        return True

    def _run(
        self, parsed: list[tuple[SpoolEntry, Prepared]], *, savepoints: bool
    ) -> tuple[list[tuple[SpoolEntry, MessageContext]], list[tuple[SpoolEntry, MessageContext, str, str]]]:
        """Run the stages over the batch in one transaction and commit it. Without
        savepoints, a failing stage raises _StageFailed (the transaction is rolled back);
        with them, the failing message's savepoint is rolled back and it is reported."""
        done: list[tuple[SpoolEntry, MessageContext]] = []
        failed: list[tuple[SpoolEntry, MessageContext, str, str]] = []
        with self.store.session() as session:
            for entry, pre in parsed:
                ctx = MessageContext(entry_id=entry.id, meta=pre.meta, msg=pre.msg, now=self.clock(), pre=pre)
                try:
                    with about(log_about(ctx)):
                        if savepoints:
                            with session.begin_nested():
                                self._stages_for(ctx, session)
                                q.flush_events(session)  # its events inside its savepoint
                        else:
                            # The batch's events are written together before it commits
                            # (or before anything reads events): one INSERT per batch.
                            self._stages_for(ctx, session)
                except Exception as exc:  # noqa: BLE001 - the daemon never stops for one message
                    q.discard_events(session)
                    if is_unavailable(exc):
                        raise
                    if is_conflict(exc) and self._conflicts.get(entry.id, 0) < MAX_CONFLICT_RETRIES:
                        # Another node stored the same mail or customer meanwhile: run the batch
                        # again (one at a time); the row is then found (a duplicate, a known customer).
                        self._conflicts[entry.id] = self._conflicts.get(entry.id, 0) + 1
                        raise _Conflict from exc
                    if not savepoints:
                        raise _StageFailed from exc
                    failed.append((entry, ctx, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
                    continue
                done.append((entry, ctx))
        return done, failed

    def _stages_for(self, ctx: MessageContext, session: Session) -> None:
        for stage in self.stages:
            ctx.stage = stage.name
            stage(ctx, session, self.deps)

    def _count(self, ctx: MessageContext) -> None:
        with about(log_about(ctx)):
            log.info("message %s", ctx.outcome or "stored")
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
                with about(log_about(ctx)):
                    log.exception("after-commit hook failed for %s", ctx.entry_id)

    def drain(self) -> WorkerStats:
        """Process everything spooled now; return when the spool is empty or the DB is down."""
        try:
            while self.process_one():
                pass
        finally:
            self.release_prefetched()
            self._finisher.flush()
        return self.stats

    def run_forever(self, stop: threading.Event) -> None:
        """Process until `stop` is set; finishes the current message before returning."""
        try:
            self._run_until(stop)
        finally:
            self.close()

    def _run_until(self, stop: threading.Event) -> None:
        safety_net = self.deps.settings.worker.safety_net_interval
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
                # Woken the moment intake has made mail durable; the timeout is only the
                # safety net. A wake-up rung while we worked is kept, so none is missed.
                self.wakeup.wait(safety_net, stop)
