"""Cost of one SLA sweep with 10,000 and 1,000,000 stored tickets: it follows the due clocks.

Run: .venv/bin/python -m bench.sla_sweep_bench [--sizes 10000,1000000] [--due 300] [--rounds 3]
[--pg URL] [--no-sqlite] [--fresh] [--explain] [--keep-pg]

The desk: N tickets, 10% of them open with a met first-response clock and a running resolution
clock, `--due` of those with a breach that has come (and a `sla_breach` mail to send), the rest
due in three days; the 90% closed tickets have stopped clocks of their own (as a desk that has
lived does), so the table of clocks is ~2.2 rows per ticket and the sweep must pick a few hundred
out of millions. Each round runs one dry-run sweep (everything is done — claim, clocks, events,
the breach mail — and rolled back, so every round sees the same due clocks). Prints min / median /
max seconds per sweep and per due clock, and the ratio of the largest to the smallest size
(goal: at most 2x). `--explain` prints the claim query's plan.

Loading: SQLite through the driver's `executemany` with `journal_mode=OFF`/`synchronous=OFF`
(bench only), indexes dropped and rebuilt after; the file is cached under
/tmp/maildesk-sla-bench/ keyed by size, due count and the migrations (`--fresh` rebuilds).
PostgreSQL (with `--pg ADMIN-URL`) through `COPY` into a fresh database `mdbench_sla_<N>`,
dropped at the end unless `--keep-pg`.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.rounds import measure_rounds, summary
from maildesk.app import App
from maildesk.config import parse_settings
from maildesk.sla.policy import parse_sla
from maildesk.store.db import MIGRATIONS, Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=2)
CHUNK = 50_000
GENERATOR = 3  # bump when the generated desk changes: invalidates the cached files
CACHE_DIR = Path("/tmp/maildesk-sla-bench")
SLA = {
    "policy": [
        {
            "name": "standard",
            "time": "calendar",
            "first_response": "8h",
            "resolution": "5d",
            "on_breach": ["notify_lead"],
        }
    ]
}
AGENTS = [{"email": "lead@desk.test", "name": "Lead", "tiers": ["L3"], "queues": []}]

TICKET_COLUMNS = (
    "number", "subject", "status", "queue", "tier", "priority", "customer_id", "tags", "fields", "spam",
    "created_at", "updated_at",
)  # fmt: skip
CLOCK_COLUMNS = (
    "ticket_number", "kind", "policy", "started_at", "due_at", "warn_at", "paused_at", "resumed_at", "paused_total",
    "counted", "warned_at", "breached_at", "stopped_at", "stop_reason", "next_at",
)  # fmt: skip


def generate(size: int, due: int, stamp: Any) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """(tickets, clocks) in chunks; `stamp(datetime)` gives the backend's text for a time."""
    start, met = stamp(START), stamp(START + timedelta(hours=1))
    first_due = stamp(START + timedelta(hours=8))
    late, later = stamp(NOW - timedelta(minutes=5)), stamp(NOW + timedelta(days=3))
    resolved = stamp(START + timedelta(days=1))
    due_left = due
    for first in range(1, size + 1, CHUNK):
        tickets, clocks = [], []
        for n in range(first, min(first + CHUNK, size + 1)):
            is_open = n % 10 == 0
            status = "open" if is_open else "closed"
            customer = n % customers_of(size) + 1
            tickets.append((n, f"t{n}", status, "default", "L1", "normal", customer, "[]", "{}", False, start, start))
            clocks.append((n, "first_response", "standard", start, first_due, None, None, None, 0.0, 3600.0,
                           None, None, met, "met", None))  # fmt: skip
            if is_open:
                res_due = late if due_left > 0 else later
                due_left -= 1
                clocks.append((n, "resolution", "standard", start, res_due, None, None, start, 0.0, 0.0,
                               None, None, None, "", res_due))  # fmt: skip
            else:
                clocks.append((n, "resolution", "standard", start, stamp(START + timedelta(days=5)), None, None,
                               start, 0.0, 86400.0, None, None, resolved, "resolved", None))  # fmt: skip
        yield tickets, clocks


def customers_of(size: int) -> int:
    """One customer per 20 tickets, as a desk that has lived has (the mail's context counts a
    customer's past tickets)."""
    return max(1, size // 20)


def _migrations_key(size: int, due: int) -> str:
    names = sorted(p.name for p in (MIGRATIONS / "versions").glob("*.py"))
    return hashlib.sha256(f"{GENERATOR} {size} {due} {names}".encode()).hexdigest()[:10]


# -- SQLite -----------------------------------------------------------------------------------------


def _sqlite_stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's DateTime text on SQLite


def sqlite_database(size: int, due: int, fresh: bool) -> tuple[str, float | None]:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"sla-{size}-{due}-{_migrations_key(size, due)}.db"
    if path.exists() and not fresh:
        return f"sqlite:///{path}", None
    for old in CACHE_DIR.glob(f"sla-{size}-{due}-*.db*"):
        old.unlink()
    building = path.with_suffix(".building")
    building.unlink(missing_ok=True)
    store = Store(f"sqlite:///{building}")
    store.migrate()
    store.dispose()
    started = time.perf_counter()
    conn = sqlite3.connect(building, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")  # bench only: a throw-away file
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-400000")
    indexes = list(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
            " AND tbl_name IN ('tickets', 'sla_clocks', 'customers')"
        )
    )
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO customers (id, email, name, locale, tz, vip, created_at) VALUES (?, ?, '', '', '', 0, ?)",
        ((i, f"c{i}@example.com", _sqlite_stamp(START)) for i in range(1, customers_of(size) + 1)),
    )
    for tickets, clocks in generate(size, due, _sqlite_stamp):
        conn.executemany(
            f"INSERT INTO tickets ({', '.join(TICKET_COLUMNS)}) VALUES ({', '.join('?' * len(TICKET_COLUMNS))})",
            tickets,
        )
        conn.executemany(
            f"INSERT INTO sla_clocks ({', '.join(CLOCK_COLUMNS)}) VALUES ({', '.join('?' * len(CLOCK_COLUMNS))})",
            clocks,
        )
    conn.execute("COMMIT")
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("ANALYZE")
    conn.close()
    elapsed = time.perf_counter() - started
    building.rename(path)
    return f"sqlite:///{path}", elapsed


# -- PostgreSQL -------------------------------------------------------------------------------------


def _pg_stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S+00")


def postgresql_database(admin_url: str, size: int, due: int) -> tuple[str, float]:
    import psycopg

    name = f"mdbench_sla_{size}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    store = Store(url)
    store.migrate()
    store.dispose()
    started = time.perf_counter()

    def line(values: tuple[Any, ...]) -> str:
        return "\t".join("\\N" if v is None else str(v) for v in values) + "\n"

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # bench only: no FK triggers while loading
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public'"
            " AND i.tablename IN ('tickets', 'sla_clocks', 'customers')"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        indexes = cur.fetchall()
        for index, _ in indexes:
            cur.execute(f'DROP INDEX "{index}"')
        with cur.copy("COPY customers (id, email, name, locale, tz, vip, created_at) FROM STDIN") as copy:
            copy.write(
                "".join(
                    f"{i}\tc{i}@example.com\t\t\t\tf\t{_pg_stamp(START)}\n" for i in range(1, customers_of(size) + 1)
                )
            )
        for tickets, clocks in generate(size, due, _pg_stamp):
            with cur.copy(f"COPY tickets ({', '.join(TICKET_COLUMNS)}) FROM STDIN") as copy:
                copy.write("".join(line(t) for t in tickets))
            with cur.copy(f"COPY sla_clocks ({', '.join(CLOCK_COLUMNS)}) FROM STDIN") as copy:
                copy.write("".join(line(c) for c in clocks))
        for _, sql in indexes:
            cur.execute(sql)
        cur.execute("SELECT setval(pg_get_serial_sequence('tickets', 'number'), (SELECT max(number) FROM tickets))")
        cur.execute("SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT max(id) FROM customers))")
        cur.execute("SELECT setval(pg_get_serial_sequence('sla_clocks', 'id'), (SELECT max(id) FROM sla_clocks))")
        conn.commit()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return url, time.perf_counter() - started


def drop_pg(admin_url: str, size: int) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "mdbench_sla_{size}" WITH (FORCE)'))
    admin.dispose()


# -- the measurement --------------------------------------------------------------------------------


def desk(url: str, folder: Path) -> App:
    data = {
        "desk": {"data_dir": str(folder / "data"), "secret_env": ""},
        "database": {"url": url, "url_env": ""},
        "agent": AGENTS,
    }
    settings = replace(parse_settings(data, base_dir=str(folder)), secret="bench", sla=parse_sla(SLA))
    app = App(settings, clock=lambda: NOW)
    app.migrate()
    return app


def explain(app: App) -> None:
    """The claim query's plan, as the sweep sends it."""
    from maildesk.store import sla_queries as sq

    statements: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, parameters))

    sa.event.listen(app.store.engine, "before_cursor_execute", grab)
    with app.store.reader() as session:
        sq.claim_due(session, NOW, 200)
        sq.next_due(session)
    sa.event.remove(app.store.engine, "before_cursor_execute", grab)
    for statement, parameters in statements:
        if not statement.lstrip().upper().startswith("SELECT"):
            continue
        prefix = "EXPLAIN QUERY PLAN " if app.store.is_sqlite else "EXPLAIN ANALYZE "
        print("   ", " ".join(statement.split())[:160])
        with app.store.engine.connect() as conn:
            for row in conn.exec_driver_sql(prefix + statement, parameters):
                print("       ", row[-1] if app.store.is_sqlite else row[0])


def measure(url: str, size: int, due: int, rounds: int, show_plan: bool) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        app = desk(url, Path(tmp))
        if show_plan:
            explain(app)
        acted: list[int] = []

        def work() -> None:
            report = app.sla_sweep(NOW, dry_run=True)
            assert report is not None, "the sweep failed (see the log)"
            acted.append(len(report.actions))

        values = measure_rounds(work, rounds)
        app.store.dispose()
    assert set(acted) == {due}, acted
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--due", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default="", help="PostgreSQL admin URL: also measure on a fresh database there")
    parser.add_argument("--no-sqlite", action="store_true", help="measure PostgreSQL only")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached SQLite files")
    parser.add_argument("--explain", action="store_true", help="print the claim query's plan per size")
    parser.add_argument("--keep-pg", action="store_true", help="keep the PostgreSQL databases")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.pg else [])
    for backend in backends:
        medians = []
        for size in sizes:
            if backend == "sqlite":
                url, load = sqlite_database(size, args.due, args.fresh)
            else:
                url, load = postgresql_database(args.pg, size, args.due)
            how = "cached file reused" if load is None else f"generated and loaded in {load:.1f} s"
            print(f"{backend} {size:>9,} tickets: {how}", flush=True)
            try:
                values = measure(url, size, args.due, args.rounds, args.explain)
            finally:
                if backend == "postgresql" and not args.keep_pg:
                    drop_pg(args.pg, size)
            medians.append(statistics.median(values))
            print(
                f"{backend} {size:>9,} tickets, {args.due} due: sweep {summary(values)}; "
                f"per due clock {summary([v / args.due for v in values], 1000, 'ms')}",
                flush=True,
            )
        print(f"{backend}: ratio largest/smallest (median) {medians[-1] / medians[0]:.2f}x (goal <= 2x)", flush=True)


if __name__ == "__main__":
    main()
