"""The work on a message that needs no database: parse, screening verdict, reply split,
HTML sanitising and the content hash. It is a pure function of the spool entry and the
settings, so it can run in child processes (`PreparePool`).

Why child processes: mail-parser and the splitters are pure Python and CPU-bound, and one
process runs Python on one core. With a pool, the next batch is prepared while the worker
writes the current one to the database; and a message that crashes or wedges the parser
takes down a child, which is replaced, never the daemon.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maildesk.config import Settings
from maildesk.errors import UnparseableMessage
from maildesk.message import ParsedMessage, parse_bytes
from maildesk.spool import Spool, SpoolEntry

log = logging.getLogger("maildesk.prepare")


@dataclass(frozen=True)
class Needs:
    """Which optional results the configured stages use."""

    screen: bool = False
    reply: bool = False


@dataclass
class Prepared:
    meta: dict[str, Any]
    msg: ParsedMessage
    content_hash: str
    html: str  # sanitised
    screen: Any = None  # rules.screen.ScreenVerdict
    reply: Any = None  # threading.quotes.Reply


@dataclass
class Unparseable:
    meta: dict[str, Any]
    reason: str


Outcome = Prepared | Unparseable


def prepare_raw(meta: dict[str, Any], raw: bytes, settings: Settings, needs: Needs) -> Outcome:
    from maildesk.pipeline.stages import content_hash
    from maildesk.sanitize import clean_html

    try:
        msg = parse_bytes(raw)
    except UnparseableMessage as exc:
        return Unparseable(meta, str(exc))
    prepared = Prepared(meta=meta, msg=msg, content_hash=content_hash(msg), html=clean_html(msg.html) if msg.html else "")
    if needs.screen:
        from maildesk.pipeline.screen_stage import verdict_for

        prepared.screen = verdict_for(msg, settings)
    if needs.reply:
        from maildesk.threading.quotes import split_reply

        prepared.reply = split_reply(msg.text, msg.html)
    return prepared


def prepare_entry(path: Path, settings: Settings, needs: Needs) -> Outcome:
    meta, raw = Spool.read(SpoolEntry("", "active", path, 0))
    return prepare_raw(meta, raw, settings, needs)


# Child-process side -------------------------------------------------------------------
_child_settings: Settings | None = None


def _child_init(settings: Settings) -> None:
    global _child_settings
    _child_settings = settings


def _child_prepare(paths: list[str], needs: Needs) -> list[Outcome]:
    assert _child_settings is not None
    return [prepare_entry(Path(p), _child_settings, needs) for p in paths]


def _child_ready() -> bool:
    return _child_settings is not None


class PreparePool:
    """Prepares batches of spool entries, in `processes` child processes (0: inline).

    `submit()` returns a Future of one Outcome per entry. If a child dies (the pool is
    broken), `results()` prepares the batch again one entry at a time in a fresh pool; an
    entry that breaks the pool on its own is reported Unparseable ("the parser crashed"),
    so it goes to quarantine and nothing else is lost.
    """

    MIN_BATCH = 4  # smaller batches are prepared inline: a child is not worth waking

    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.processes = max(0, processes)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def parallel(self) -> bool:
        return self.processes > 0

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: the daemon has threads, and forking a threaded process is unsafe
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_init,
                initargs=(self.settings,),
            )
        return self._pool

    def submit(self, entries: list[SpoolEntry], needs: Needs) -> Future[list[Outcome]]:
        if self.parallel and len(entries) >= self.MIN_BATCH:
            try:
                return self._executor().submit(_child_prepare, [str(e.path) for e in entries], needs)
            except (BrokenProcessPool, RuntimeError):
                self._reset()
        done: Future[list[Outcome]] = Future()
        try:
            done.set_result([prepare_entry(e.path, self.settings, needs) for e in entries])
        except Exception as exc:  # noqa: BLE001 - reported by results()
            done.set_exception(exc)
        return done

    def results(self, entries: list[SpoolEntry], future: Future[list[Outcome]], needs: Needs) -> list[Outcome]:
        try:
            return future.result()
        except BrokenProcessPool:
            log.error("a parser process died while preparing %d message(s); preparing them one by one", len(entries))
        self._reset()
        outcomes: list[Outcome] = []
        for entry in entries:
            try:
                outcomes.append(self._executor().submit(_child_prepare, [str(entry.path)], needs).result()[0])
            except BrokenProcessPool:
                self._reset()
                log.error("the parser crashed on %s; quarantined", entry.id)
                meta, _ = Spool.read(entry)
                outcomes.append(Unparseable(meta, "the parser crashed on this message (its process died)"))
        return outcomes

    def warm(self) -> None:
        """Start the child processes now (start-up), not on the first busy batch."""
        if self.parallel:
            self._executor().submit(_child_ready).result()

    def _reset(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def default_processes(setting: int) -> int:
    """`worker.parse_processes`: -1 means one child when the machine has two or more cores."""
    if setting >= 0:
        return setting
    return 1 if (os.cpu_count() or 1) >= 2 else 0
