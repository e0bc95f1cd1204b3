"""History import (`maildesk import --history`): old mail stored and threaded as closed tickets.

Owns the history pipeline and its batches. Each mail runs `dedupe → screen → visible_text →
history_sender → thread → history_unthreaded → persist → history_close` in the importing
process (no spool, no daemon): the mail is stored as it came, threaded by its headers (a
closed ticket of the import is offered to threading as open, so old mail follows its thread
whatever the gap and nothing is reopened), and its ticket is closed as of its newest mail
through `services.tickets.close_from_history`. Dates are the mail's own `Date` (the import
time when it has none).

What never happens for history (Zammad #539): acknowledgements and rule replies (`respond`),
rules (`route`), agent notifications (`notify`), SLA clocks (`apply_thread_outcome`), bounce
suppressions (`apply_bounce`), agent commands or how-to mail (`agent_mail`), new-ticket flood
limits, and reopening. Mail whose sender is an agent of the desk is stored as an
`agent-reply` on the ticket its headers thread it to (without a ticket when none).

Idempotent: dedupe by Message-ID (content hash); a mail already stored adds nothing, not
even a `duplicate-delivery` event. Mail that is not a mail message (`UnparseableMessage`)
or over the size limit is reported and skipped; the source mailbox is never changed.
One transaction per batch; when a message fails in a batch, the batch runs again with a
SAVEPOINT per message, so only that message is left out (and reported).

Must not: send mail, spool, or change a ticket other than through `services.tickets`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from maildesk.errors import UnparseableMessage
from maildesk.message import parse_bytes
from maildesk.pipeline.context import MessageContext, Needs, PipelineDeps, Stage, stage
from maildesk.pipeline.stages.dedupe import dedupe
from maildesk.pipeline.stages.persist import persist
from maildesk.pipeline.stages.screen import screen
from maildesk.pipeline.stages.thread import thread, visible_text
from maildesk.services import tickets
from maildesk.store import Session
from maildesk.store import queries as q
from maildesk.store import routing_queries as rq
from maildesk.store.db import Store

AGENT_REPLY = "agent-reply"


@stage()
def history_unthreaded(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """An agent's old mail that threads to no ticket is stored without one (never a ticket
    with the agent as its customer)."""
    if ctx.duplicate or ctx.kind != AGENT_REPLY or ctx.ticket_number is not None:
        return
    ctx.no_new_ticket = True
    ctx.note("history-agent-mail-unthreaded", detail="an agent's mail that no stored mail threads to")


@stage()
def history_close(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Close the ticket as of this mail's date (no clocks, no notifications)."""
    if ctx.duplicate or ctx.ticket_number is None:
        return
    tickets.close_from_history(
        session,
        ctx.ticket_number,
        ctx.now,
        new=ctx.new_ticket,
        agent_reply=ctx.kind == AGENT_REPLY,
        message_pk=ctx.message_pk,
    )


def history_sender(agents: frozenset[str]) -> Stage:
    """A stage that marks mail from one of `agents` (lower-case addresses) an agent reply."""

    def run(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
        if ctx.duplicate or ctx.screen_verdict != "human":
            return
        sender = ctx.msg.from_
        if sender is not None and sender.email.lower() in agents:
            ctx.kind = AGENT_REPLY

    run.__name__ = "history_sender"
    return Stage(run, Needs())


def history_stages(agents: frozenset[str]) -> tuple[Stage, ...]:
    return (
        dedupe,
        screen,
        visible_text,
        history_sender(agents),
        thread,
        history_unthreaded,
        persist,
        history_close,
    )


@dataclass
class HistoryStats:
    seen: int = 0
    imported: int = 0  # stored now
    duplicates: int = 0  # stored before (re-import)
    tickets: int = 0  # new tickets, stored closed
    agent_replies: int = 0
    without_ticket: int = 0  # automatic mail, unthreaded agent mail
    skipped: list[str] = field(default_factory=list)  # one line each: what and why
    bytes: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Mails a second over the whole import."""
        return self.seen / self.seconds if self.seconds > 0 else 0.0

    def figures(self) -> dict[str, int | float]:
        return {
            "seen": self.seen,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "tickets": self.tickets,
            "agent_replies": self.agent_replies,
            "without_ticket": self.without_ticket,
            "skipped": len(self.skipped),
            "seconds": round(self.seconds, 3),
            "per_second": round(self.rate, 1),
        }


class HistoryImporter:
    """Feed it (name, raw bytes) in the order to import (oldest first threads best); it
    stores them in batches. `close()` stores the last batch; `stats` has the figures."""

    def __init__(
        self,
        store: Store,
        deps: PipelineDeps,
        *,
        source: str,
        batch_size: int = 200,
        max_size: int = 0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.deps = deps
        self.source = source
        self.batch_size = max(1, batch_size)
        self.max_size = max_size
        self.clock = clock or deps.clock
        self.stats = HistoryStats()
        self._batch: list[tuple[str, MessageContext]] = []
        self._started = time.perf_counter()
        with store.reader() as session:
            configured = {a.email.lower() for a in deps.settings.agents}
            stored = {a.email.lower() for a in rq.all_agents(session)}
        self.stages = history_stages(frozenset(configured | stored))

    def feed(self, name: str, raw: bytes) -> None:
        self.stats.seen += 1
        self.stats.bytes += len(raw)
        if self.max_size and len(raw) > self.max_size:
            self.stats.skipped.append(f"{name}: {len(raw)} bytes, over the limit of {self.max_size}")
            return
        try:
            msg = parse_bytes(raw)
        except UnparseableMessage as exc:
            self.stats.skipped.append(f"{name}: not a mail message: {exc}")
            return
        now = msg.date.astimezone(UTC) if msg.date is not None else self.clock()  # stored in UTC, compared as such
        meta = {"source": f"import:{self.source}"[:200], "history": True, "key": name}
        ctx = MessageContext(entry_id=name, meta=meta, msg=msg, now=now, history=True)
        self._batch.append((name, ctx))
        if len(self._batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            done = self._run(batch, savepoints=False)
        except _Failed:
            fresh = [(name, self._fresh(ctx)) for name, ctx in batch]
            done = self._run(fresh, savepoints=True)
        for ctx in done:
            self._count(ctx)
        self.stats.seconds = time.perf_counter() - self._started

    def close(self) -> HistoryStats:
        self.flush()
        self.stats.seconds = time.perf_counter() - self._started
        return self.stats

    @staticmethod
    def _fresh(ctx: MessageContext) -> MessageContext:
        return MessageContext(entry_id=ctx.entry_id, meta=ctx.meta, msg=ctx.msg, now=ctx.now, history=True)

    def _run(self, batch: list[tuple[str, MessageContext]], *, savepoints: bool) -> list[MessageContext]:
        done: list[MessageContext] = []
        with self.store.session() as session:
            for name, ctx in batch:
                try:
                    if savepoints:
                        with session.begin_nested():
                            self._stages_for(ctx, session)
                            q.flush_events(session)  # its events inside its savepoint
                    else:
                        self._stages_for(ctx, session)
                except Exception as exc:  # noqa: BLE001 - one bad mail never stops the import
                    if not savepoints:
                        raise _Failed from exc
                    last = traceback.format_exception_only(exc)[-1].strip()
                    self.stats.skipped.append(f"{name}: failed at {ctx.stage}: {last}")
                    continue
                done.append(ctx)
        return done

    def _stages_for(self, ctx: MessageContext, session: Session) -> None:
        for one in self.stages:
            ctx.stage = one.name
            one(ctx, session, self.deps)

    def _count(self, ctx: MessageContext) -> None:
        if ctx.duplicate:
            self.stats.duplicates += 1
            return
        self.stats.imported += 1
        if ctx.new_ticket:
            self.stats.tickets += 1
        if ctx.kind == AGENT_REPLY and ctx.ticket_number is not None:
            self.stats.agent_replies += 1
        if ctx.ticket_number is None:
            self.stats.without_ticket += 1


class _Failed(Exception):
    """A stage raised in a batch without savepoints: run it again with them."""
