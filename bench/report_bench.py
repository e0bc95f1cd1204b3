"""`maildesk report` over 1,000,000 stored tickets (30 days, by queue) on SQLite and PostgreSQL.

Fills a fresh database with 1,000,000 tickets spread over two years (about 41,000 in the
last 30 days), 5,000 customers and 2,000,000 events (an `agent-replied` and a resolving
`status` event per ticket, a few escalations, SLA and survey events), bulk-inserted with Core
executemany (timed separately), then times `build_report` in three rounds (min/median/max).
Goal: under 5 s each. Run: `.venv/bin/python -m bench.report_bench [--tickets N] [--backend sqlite|postgresql]`
(PostgreSQL: $MAILDESK_TEST_PG, default the local server; a throw-away database is made and dropped).
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from bench.rounds import measure_rounds, summary
from maildesk.services import kpis
from maildesk.sla.calendar import BusinessCalendar
from maildesk.store.db import Store
from maildesk.store.models import Customer, Event, Ticket

UNTIL = datetime(2026, 11, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
GOAL = 5.0
BATCH = 20_000
QUEUES = [f"queue{i}" for i in range(10)]
AGENTS = [f"agent{i}@desk.test" for i in range(40)]


def fill(store: Store, tickets: int, seed: int = 1) -> float:
    rng = random.Random(seed)
    started = time.perf_counter()
    with store.engine.begin() as conn:
        conn.execute(
            insert(Customer),
            [
                {
                    "id": i,
                    "email": f"c{i}@d{i % 300}.example",
                    "name": "",
                    "locale": "",
                    "tz": "",
                    "vip": False,
                    "created_at": UTC_EPOCH,
                }
                for i in range(1, 5001)
            ],
        )
    span = int(SPAN.total_seconds())
    number = 0
    while number < tickets:
        rows, events = [], []
        for _ in range(min(BATCH, tickets - number)):
            number += 1
            created = UNTIL - timedelta(seconds=rng.randrange(span))
            replied = created + timedelta(seconds=rng.randrange(60, 3 * 86400))
            resolved = replied + timedelta(seconds=rng.randrange(60, 5 * 86400))
            open_ = resolved >= UNTIL or rng.random() < 0.002
            agent = rng.choice(AGENTS)
            rows.append(
                {
                    "number": number,
                    "subject": f"problem {rng.randrange(500)}",
                    "status": "open" if open_ else "resolved",
                    "queue": rng.choice(QUEUES),
                    "tier": "L1",
                    "priority": "normal",
                    "assignee": agent,
                    "customer_id": rng.randrange(1, 5001),
                    "tags": [f"t{rng.randrange(30)}"],
                    "fields": {},
                    "spam": False,
                    "created_at": created,
                    "updated_at": created,
                    "first_response_at": replied if replied < UNTIL else None,
                    "resolved_at": None if open_ else resolved,
                }
            )
            if replied < UNTIL:
                events.append(
                    {"ticket_number": number, "type": "agent-replied", "data": {"agent": agent}, "at": replied}
                )
            if not open_:
                events.append(
                    {
                        "ticket_number": number,
                        "type": "status",
                        "at": resolved,
                        "data": {"from": "pending", "to": "resolved"},
                    }
                )
                if rng.random() < 0.2:
                    events.append(
                        {
                            "ticket_number": number,
                            "type": "survey-answered",
                            "at": resolved,
                            "data": {"rating": rng.randrange(1, 6)},
                        }
                    )
            if rng.random() < 0.05:
                events.append(
                    {"ticket_number": number, "type": "escalated", "at": created, "data": {"from": "L1", "to": "L2"}}
                )
            if rng.random() < 0.3:
                events.append(
                    {"ticket_number": number, "type": "sla-started", "at": created, "data": {"kind": "first_response"}}
                )
        with store.engine.begin() as conn:
            conn.execute(insert(Ticket), rows)
            if events:
                conn.execute(insert(Event), events)
    with store.engine.begin() as conn:
        if not store.is_sqlite:
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


UTC_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def run(url: str, tickets: int, backend: str) -> None:
    store = Store(url)
    store.migrate()
    print(f"{backend}: inserting {tickets:,} tickets …", flush=True)
    print(f"{backend}: bulk insert took {fill(store, tickets):.1f} s", flush=True)
    since = UNTIL - timedelta(days=30)
    result: list[kpis.Report] = []

    def report() -> None:
        with store.reader() as session:
            result.append(kpis.build_report(session, since=since, until=UNTIL, by="queue", calendar=BusinessCalendar()))

    values = measure_rounds(report)
    r = result[-1]
    verdict = "OK" if statistics_median(values) < GOAL else "OVER GOAL"
    print(
        f"{backend}: report, 30 days by queue ({r.total.created:,} created, {r.total.resolved:,} resolved):"
        f" {summary(values)} — goal < {GOAL:.0f} s: {verdict}",
        flush=True,
    )
    store.dispose()


def statistics_median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.tickets, "sqlite")
    if args.backend in ("postgresql", "both"):
        admin_url = os.environ.get("MAILDESK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
        name = f"mdbench_{secrets.token_hex(4)}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            run(admin_url.rsplit("/", 1)[0] + "/" + name, args.tickets, "postgresql")
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
