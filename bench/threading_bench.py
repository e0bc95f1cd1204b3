"""Threading stage cost as history grows: 1,000 versus 100,000 stored tickets.

Usage: python -m bench.threading_bench [--part all|decide|history] [--database URL] [--small 1000] [--large 100000]

1. decide: the pure decision (`maildesk.threading.decide_thread`) for a message with 5,000
   References and no match, 100 calls per round. Goal: under 5 ms per call (this was a
   timing assert in tests/threading/test_decide.py; the test keeps the decision itself).
2. history: seeds tickets, participants and messages in bulk, then times the threading stage
   (`maildesk.pipeline.stages.thread.thread`, real indexed queries) for the same 400 incoming
   messages: replies by In-Reply-To, by References, by subject tag, and new mail. Prints the
   per-message cost at each size and the ratio of the best rounds (goal: within 1.5x).
Every figure is printed as min / median / max over three rounds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from bench.rounds import measure_rounds, summary
from maildesk.config import parse_settings
from maildesk.message import parse_bytes
from maildesk.pipeline.context import MessageContext, PipelineDeps
from maildesk.pipeline.stages.thread import thread
from maildesk.store import queries as q
from maildesk.store.db import Store
from maildesk.store.models import Customer, Message, Participant, Ticket
from maildesk.threading import ThreadInput, TicketFacts, decide_thread


class NothingStored:
    """A lookup that knows no message, ticket or thread: every reference is looked up and missed."""

    def tickets_for_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
        return {}

    def ticket(self, number: int) -> TicketFacts | None:
        return None

    def ticket_for_thread_index(self, root: str) -> int | None:
        return None


def decide_part(rounds: int = 3, calls: int = 100) -> None:
    inp = ThreadInput(
        message_id="new@client",
        sender="alice@acme.com",
        recipients=("support@help.example",),
        subject="Re: hello",
        in_reply_to=(),
        references=tuple(f"r{i}@x" for i in range(5000)),
        now=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
    )
    store = NothingStored()

    def once() -> None:
        decision = decide_thread(inp, store, secret="k3y", tag_format="[#{number}]", reopen_days=14)
        assert decision.ticket is None

    values = measure_rounds(once, rounds=rounds, repeat=calls)
    print(f"decide_thread, 5,000 References: {summary(values, 1e6, 'µs', 0)} per call (goal < 5000 µs)")


def seed(store: Store, n: int) -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with store.session() as s:
        for start in range(0, n, 5000):
            rng = range(start + 1, min(n, start + 5000) + 1)
            s.execute(
                insert(Customer),
                [{"id": i, "email": f"c{i}@example{i % 97}.com", "name": f"C {i}", "created_at": now} for i in rng],
            )
            s.execute(
                insert(Ticket),
                [
                    {
                        "number": i,
                        "subject": f"Problem {i}",
                        "status": "open",
                        "customer_id": i,
                        "tags": [],
                        "fields": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in rng
                ],
            )
            s.execute(
                insert(Participant),
                [{"ticket_number": i, "address": f"c{i}@example{i % 97}.com", "role": "customer"} for i in rng],
            )
            s.execute(
                insert(Message),
                [
                    {
                        "ticket_number": i,
                        "direction": "in",
                        "kind": "customer",
                        "message_id": f"m{i}@example.com",
                        "mid_hash": q.mid_hash(f"m{i}@example.com"),
                        "content_hash": "x",
                        "raw": None,
                        "created_at": now,
                    }
                    for i in rng
                ],
            )


def incoming(n_tickets: int, count: int) -> list[bytes]:
    out = []
    for k in range(count):
        i = 1 + (k * 7919) % n_tickets
        kind = k % 4
        hdr = [
            f"From: C {i} <c{i}@example{i % 97}.com>",
            "To: support@example.com",
            f"Message-ID: <in-{k}@example.com>",
        ]
        if kind == 0:
            hdr += ["Subject: Re: Problem", f"In-Reply-To: <m{i}@example.com>"]
        elif kind == 1:
            hdr += ["Subject: Re: Problem", f"References: <unknown-{k}@x> <m{i}@example.com>"]
        elif kind == 2:
            hdr += [f"Subject: Re: [#{i}] Problem"]
        else:
            hdr += [f"Subject: brand new question {k}"]
        out.append(("\r\n".join(hdr) + "\r\n\r\nbody\r\n").encode())
    return out


def measure(url: str, n: int, messages: int) -> list[float]:
    store = Store(url)
    store.migrate()
    seed(store, n)
    settings = parse_settings({"desk": {"data_dir": tempfile.mkdtemp(), "secret_env": ""}})
    deps = PipelineDeps(settings)
    parsed = [parse_bytes(raw) for raw in incoming(n, messages)]
    now = datetime(2026, 11, 22, tzinfo=UTC)
    rounds = []
    for _ in range(3):
        with store.reader() as session:
            start = time.perf_counter()
            for msg in parsed:
                ctx = MessageContext(entry_id="", meta={}, msg=msg, now=now)
                thread(ctx, session, deps)
                assert (ctx.thread.method == "new") == (msg.subject.startswith("brand new"))
            rounds.append((time.perf_counter() - start) / len(parsed))
    store.dispose()
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--database", default="", help="PostgreSQL admin URL ending in a database name to create (default: SQLite)"
    )
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--part", choices=("all", "decide", "history"), default="all")
    args = parser.parse_args()
    if args.part in ("all", "decide"):
        decide_part()
    if args.part == "decide":
        return 0
    results = {}
    for n in (args.small, args.large):
        if args.database:
            import sqlalchemy as sa

            base, _, _ = args.database.rpartition("/")
            name = f"md_thread_bench_{n}"
            admin = sa.create_engine(args.database, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
            url = f"{base}/{name}"
        else:
            url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
        results[n] = measure(url, n, args.messages)
        if args.database:
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        print(f"{n:>7,} tickets: {summary(results[n], 1e6, 'µs', 0)} per message (threading decision with its queries)")
    ratio = min(results[args.large]) / min(results[args.small])
    print(f"ratio {args.large:,} / {args.small:,}: {ratio:.2f} (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
