"""Search timing on N generated messages (not a test; run by hand):

    .venv/bin/python -m bench.search_bench --backend sqlite --messages 10000
    .venv/bin/python -m bench.search_bench --backend postgresql --messages 10000

Rows are inserted directly (the pipeline is not what is measured); the FTS triggers (SQLite)
and the GIN index (PostgreSQL) keep up during the insert, as in production.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from maildesk.services import views
from maildesk.store.db import Store
from maildesk.store.desk_queries import TicketFilter
from maildesk.store.models import Customer, Message, Ticket

WORDS = (
    "printer fire paper jam toner invoice refund password reset login account email server outage slow "
    "network vpn laptop screen battery update install license billing address shipping delivery broken "
    "error crash backup restore sync calendar meeting phone headset camera keyboard mouse cable router"
).split()


def fake_words(rng: random.Random, n: int) -> str:
    vocab = WORDS + [f"w{rng.randrange(20000)}" for _ in range(20)]
    return " ".join(rng.choice(vocab) for _ in range(n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="desk-bench-"))
    admin = None
    if args.backend == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        name = f"desk_bench_{int(time.time())}"
        admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = args.pg.rsplit("/", 1)[0] + "/" + name
    store = Store(url)
    store.migrate()
    rng = random.Random(7)
    now = datetime(2026, 11, 22, tzinfo=UTC)
    t0 = time.perf_counter()
    with store.session() as s:
        customer = Customer(email="bench@example.org", name="Bench", created_at=now)
        s.add(customer)
        s.flush()
        tickets = []
        for i in range(args.messages // 4):
            t = Ticket(
                subject=fake_words(rng, 5),
                customer_id=customer.id,
                created_at=now - timedelta(hours=i),
                updated_at=now,
                tags=[],
                fields={},
            )
            tickets.append(t)
        s.add_all(tickets)
        s.flush()
        for i in range(args.messages):
            body = fake_words(rng, 80)
            s.add(
                Message(
                    ticket_number=tickets[i % len(tickets)].number,
                    direction="in",
                    kind="customer",
                    message_id=f"m{i}@bench",
                    mid_hash=f"{i:064d}",
                    content_hash="x",
                    raw=None,
                    subject=fake_words(rng, 5),
                    sender="bench@example.org",
                    created_at=now,
                    full_text=body,
                    visible_text=body,
                )
            )
    load = time.perf_counter() - t0
    queries = ["printer fire", "password reset -vpn", '"paper jam"', "toner or invoice", "w123", "laptop battery crash"]
    timings = []
    with store.reader() as s:
        for _ in range(3):
            for q in queries:
                t1 = time.perf_counter()
                hits = views.search(s, q, 20)
                timings.append((time.perf_counter() - t1) * 1000)
                assert hits or q == "w123"
        t1 = time.perf_counter()
        listed = views.list_tickets(s, TicketFilter(text="printer fire", limit=None), now)
        list_ms = (time.perf_counter() - t1) * 1000
    print(
        f"{args.backend}: {args.messages} messages loaded in {load:.1f}s (with index upkeep); "
        f"search median {statistics.median(timings):.1f} ms, max {max(timings):.1f} ms over {len(timings)} queries; "
        f"tickets list --text: {len(listed)} tickets in {list_ms:.1f} ms"
    )
    store.dispose()
    if admin is not None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
