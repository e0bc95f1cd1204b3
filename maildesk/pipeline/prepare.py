"""The work on a message that needs no database: parse, screening verdict, reply split,
HTML sanitising and the content hash. It is a pure function of the spool entry and the
settings, so it can run in child processes (`PreparePool`).

Why child processes: mail-parser and the splitters are pure Python and CPU-bound, and one
process runs Python on one core. With a pool, the next batch is prepared while the worker
writes the current one to the database; and a message that crashes or wedges the parser
takes down a child, which is replaced, never the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maildesk import language
from maildesk.agentmail.classify import may_be_forward_or_commands, real_sender
from maildesk.agentmail.strip import AgentText, agent_words
from maildesk.config import Settings
from maildesk.errors import UnparseableMessage
from maildesk.language import LanguageGuess
from maildesk.message import ParsedMessage, parse_bytes
from maildesk.pipeline.context import Needs
from maildesk.pipeline.stages.dedupe import content_hash
from maildesk.pipeline.stages.persist import mail_language
from maildesk.pipeline.stages.screen import verdict_for
from maildesk.rules.screen import ScreenVerdict
from maildesk.sanitize import clean_html
from maildesk.spool.files import Spool, SpoolEntry
from maildesk.threading.quotes import Reply, split_reply

log = logging.getLogger("maildesk.prepare")


@dataclass
class Prepared:
    meta: dict[str, Any]
    msg: ParsedMessage
    content_hash: str
    html: str  # sanitised
    screen: ScreenVerdict | None = None  # when a stage needs it (`Needs.screen`) and it did not raise
    reply: Reply | None = None  # likewise (`Needs.reply`)
    language: LanguageGuess | None = None  # likewise (`Needs.language`); None also means "no guess"
    language_done: bool = False  # `language` was computed (a None guess is an answer too)
    sender: tuple[str, str] | None = None  # agentmail.real_sender: (display name, addr-spec) of From
    words: AgentText | None = None  # agentmail.agent_words without a signature (a sender who is no agent)


@dataclass
class Unparseable:
    """Not a mail message: the entry goes to quarantine/ with the reason."""

    meta: dict[str, Any]
    reason: str


@dataclass
class PrepareFailed:
    """Preparation raised (a bug, or the entry could not be read): failed/ with the traceback."""

    meta: dict[str, Any]
    error: str
    traceback: str


Outcome = Prepared | Unparseable | PrepareFailed


def prepare_raw(meta: dict[str, Any], raw: bytes, settings: Settings, needs: Needs) -> Outcome:
    try:
        msg = parse_bytes(raw)
    except UnparseableMessage as exc:
        return Unparseable(meta, str(exc))
    prepared = Prepared(
        meta=meta, msg=msg, content_hash=content_hash(msg), html=clean_html(msg.html) if msg.html else ""
    )
    # Optional results: if one raises, it is left out and its stage computes it again,
    # so the failure is reported under that stage's name as it always was.
    if needs.screen:
        with contextlib.suppress(Exception):
            prepared.screen = verdict_for(msg, settings)
    if needs.reply:
        with contextlib.suppress(Exception):
            prepared.reply = split_reply(msg.text, msg.html)
    if needs.language:
        with contextlib.suppress(Exception):
            visible = prepared.reply.visible if prepared.reply is not None else msg.text
            prepared.language = mail_language(msg, visible, settings)
            prepared.language_done = True
    if needs.agent:  # the agent stage's pure part: who really sent it, the words without quotes
        with contextlib.suppress(Exception):
            prepared.sender = real_sender(raw)
            forwarded = any(a.content_type.lower() == "message/rfc822" for a in msg.attachments)
            if may_be_forward_or_commands(msg.text, msg.subject, forwarded):  # else nobody reads them
                prepared.words = agent_words(msg.text, msg.html, "")
    return prepared


def prepare_entry(path: Path, settings: Settings, needs: Needs) -> Outcome:
    try:
        meta, raw = Spool.read(SpoolEntry("", "active", path, 0))
    except OSError as exc:
        return PrepareFailed({}, f"cannot read the spool entry: {exc.strerror or exc}", "")
    try:
        return prepare_raw(meta, raw, settings, needs)
    except Exception as exc:  # noqa: BLE001 - one message never stops the worker
        return PrepareFailed(meta, f"{type(exc).__name__}: {exc}", traceback.format_exc())


# Child-process side -------------------------------------------------------------------
_child_settings: Settings | None = None


def _child_init(settings: Settings) -> None:
    global _child_settings
    _child_settings = settings
    language.warm(settings.desk.locales)  # in the background: the child is ready at once
    # Ctrl-C in a terminal reaches the whole process group: the daemon stops its children
    # itself, after finishing its batch, so they must not die of it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A child must not outlive a daemon that was killed (SIGKILL, OOM): nothing would
    # ever read its results, and each restart would leave another one behind.
    parent = os.getppid()
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _child_prepare(paths: list[str], needs: Needs) -> list[Outcome]:
    assert _child_settings is not None
    return [prepare_entry(Path(p), _child_settings, needs) for p in paths]


def _gather(futures: list[Future[list[Outcome]]]) -> Future[list[Outcome]]:
    """One future for the chunks of a batch, in order; it fails as the first chunk fails."""
    if len(futures) == 1:
        return futures[0]
    combined: Future[list[Outcome]] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def settle(_done: Future[list[Outcome]]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        if combined.done():
            return
        errors = [f.exception() for f in futures if f.cancelled() or f.exception() is not None]
        if errors:
            combined.set_exception(errors[0] or RuntimeError("cancelled"))
        else:
            combined.set_result([outcome for f in futures for outcome in f.result()])

    for future in futures:
        future.add_done_callback(settle)
    return combined


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
            paths = [str(e.path) for e in entries]
            size = -(-len(paths) // self.processes)  # one chunk per child: all children work on a batch
            try:
                executor = self._executor()
                return _gather(
                    [executor.submit(_child_prepare, paths[i : i + size], needs) for i in range(0, len(paths), size)]
                )
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
        except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be sent back
            log.error("preparing %d message(s) failed (%s); preparing them one by one", len(entries), exc)
        self._reset()
        outcomes: list[Outcome] = []
        for entry in entries:
            try:
                if self.parallel:
                    outcomes.append(self._executor().submit(_child_prepare, [str(entry.path)], needs).result()[0])
                else:
                    outcomes.append(prepare_entry(entry.path, self.settings, needs))
            except BrokenProcessPool:
                self._reset()
                if not self._can_start():  # the pool itself is unusable: not this message's fault
                    outcomes.append(prepare_entry(entry.path, self.settings, needs))
                    continue
                log.error("the parser crashed on %s; quarantined", entry.id)
                try:
                    meta, _ = Spool.read(entry)
                except OSError:
                    meta = {}
                outcomes.append(Unparseable(meta, "the parser crashed on this message (its process died)"))
            except Exception as exc:  # noqa: BLE001
                outcomes.append(PrepareFailed({}, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return outcomes

    def warm(self) -> None:
        """Start the child processes now (start-up), not on the first busy batch, and load
        the language detector here too (small batches are prepared in this process)."""
        language.warm(self.settings.desk.locales)  # in the background: start-up does not wait for it
        if self.parallel:
            self._can_start()

    def _can_start(self) -> bool:
        """True when a child starts and answers. Otherwise (no way to spawn, no importable
        main module, limits) preparation runs in the worker from now on, said once."""
        try:
            if self._executor().submit(_child_ready).result(timeout=120):
                return True
        except Exception as exc:  # noqa: BLE001 - BrokenProcessPool, OSError, timeout
            reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = "the child did not initialise"
        self._reset()
        log.error("parser processes cannot start (%s); messages are prepared in the worker itself", reason)
        self.processes = 0
        return False

    def _reset(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def default_processes(setting: int) -> int:
    """`worker.parse_processes`: -1 (automatic) means one child per core beyond the worker's
    own, at most four, and none on a single core. On two cores one child is fastest: a second
    one only takes turns with the worker (measured: 1,640 against 2,080 messages/s)."""
    if setting >= 0:
        return setting
    return max(0, min(4, (os.cpu_count() or 1) - 1))
