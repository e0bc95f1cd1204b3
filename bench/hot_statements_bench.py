"""`store/fast.py` (statements compiled once, run on the driver's cursor) against SQLAlchemy
2's own Core execution of the same statements, per statement, in one run.

Usage: python -m bench.hot_statements_bench [--rows N] [--database URL]

Measures the hot path's statements the way the pipeline runs them, inside one transaction:
the dedupe look-up (SELECT by Message-ID hash), the message row (INSERT … RETURNING id) and a
message's events (one multi-row INSERT of six rows). Three rounds each, min/median/max µs per
statement, and the ratio Core / fast. Issue 17 asks to keep the simpler one unless the
other wins clearly.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from bench.intake_bench import scratch_database
from bench.rounds import ROUNDS, measure_rounds, summary
from maildesk.store.db import Store
from maildesk.store.fast import FastStatement
from maildesk.store.models import Event, Message
from maildesk.store.queries import _MESSAGE_KEYS

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
FACTS = select(Message.id, Message.content_hash, Message.ticket_number).where(Message.mid_hash == bindparam("h"))
NEW_MESSAGE = insert(Message).returning(Message.id)
NEW_EVENTS = insert(Event)


def message_values(i: int, tag: str) -> dict[str, Any]:
    mid = f"hot-{tag}-{i}@example.com"
    body = "printer on fire " * 60
    return {
        "ticket_number": None,
        "direction": "in",
        "kind": "customer",
        "message_id": mid,
        "mid_hash": hashlib.sha256(mid.encode()).hexdigest(),
        "content_hash": hashlib.sha256(body.encode()).hexdigest(),
        "raw": body.encode(),
        "raw_size": len(body),
        "subject": "Printer",
        "sender": "c@example.com",
        "sender_name": "C",
        "recipients": ["support@example.com"],
        "sent_at": NOW,
        "created_at": NOW,
        "source": "bench",
        "full_text": body,
        "visible_text": body,
        "quoted_text": "",
        "signature": "",
        "html": "",
        "thread_root": None,
        "screen": "human",
        "internal": False,
    }


def event_rows(pk: int) -> list[dict[str, Any]]:
    return [
        {"ticket_number": None, "type": t, "data": {"n": pk, "why": "bench"}, "at": NOW, "message_pk": pk}
        for t in ("received", "ticket-created", "screened", "routed", "tagged", "mail-queued")
    ]


def run(store: Store, rows: int, fast: bool, tag: str) -> dict[str, float]:
    """Seconds per statement, one round."""
    facts_fast = FastStatement(FACTS, Message.__table__)
    message_fast = FastStatement(NEW_MESSAGE, Message.__table__, _MESSAGE_KEYS)
    events_fast = FastStatement(NEW_EVENTS, Event.__table__, ["ticket_number", "type", "data", "at", "message_pk"])
    out: dict[str, float] = {}
    counter = iter(range(10**9))

    def timed(name: str, work: Callable[[Connection, int], object]) -> None:
        with store.session() as session:
            conn = session.connection()
            out[name] = measure_rounds(lambda: work(conn, next(counter)), rounds=1, repeat=rows)[0]

    if fast:
        timed("INSERT message RETURNING id", lambda c, i: message_fast.scalar(c, message_values(i, tag)))
        timed("SELECT by Message-ID hash", lambda c, i: facts_fast.first(c, {"h": message_values(i, tag)["mid_hash"]}))
        timed("INSERT 6 events (one statement)", lambda c, i: events_fast.execute_many(c, event_rows(i)))
    else:
        timed("INSERT message RETURNING id", lambda c, i: c.execute(NEW_MESSAGE, message_values(i, tag)).scalar())
        timed(
            "SELECT by Message-ID hash",
            lambda c, i: c.execute(FACTS, {"h": message_values(i, tag)["mid_hash"]}).first(),
        )
        timed("INSERT 6 events (one statement)", lambda c, i: c.execute(NEW_EVENTS, event_rows(i)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--database", default="", help="a PostgreSQL URL naming a database that does not exist yet")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maildesk-hot-"))
    url = args.database or f"sqlite:///{work / 'hot.db'}"
    with scratch_database(args.database) if args.database else contextlib.nullcontext():
        store = Store(url)
        store.migrate()
        fast: dict[str, list[float]] = {}
        core: dict[str, list[float]] = {}
        for k in range(ROUNDS):  # interleaved, so both see the same machine load
            for name, value in run(store, args.rows, True, f"fast{k}").items():
                fast.setdefault(name, []).append(value)
            for name, value in run(store, args.rows, False, f"core{k}").items():
                core.setdefault(name, []).append(value)
        store.dispose()
    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    for name in fast:
        ratio = [c / f for c, f in zip(core[name], fast[name], strict=True)]
        print(
            f"{backend} {name}: store/fast.py {summary(fast[name], 1e6, 'µs', 1)}; "
            f"Core conn.execute {summary(core[name], 1e6, 'µs', 1)}; Core / fast {summary(ratio, 1, 'x', 2)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
