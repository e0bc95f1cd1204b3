"""`maildesk report` over 1,000,000 stored tickets (30 days, by queue) on SQLite and PostgreSQL.

Owns the report bench (issue 14): it generates a help desk's history, bulk-loads it once
(timed apart, cached), then times `build_report(--since 30d --by queue)` in three rounds
(min/median/max). Goal: under 5 s per report on each backend. It must not be imported by
maildesk, and its load shortcuts (SQLite without journal or fsync, PostgreSQL with
triggers off) are for its own throw-away databases only.

The history (deterministic, seed 1): N tickets created over two years before `UNTIL` (so
about N/24 in the report's 30 days: a desk with a million tickets gets ~1,400 a day),
N/20 customers over 2,000 domains, 10% of the tickets still open (new/open/pending; the
rest resolved, some closed), 1% spam, 0.5% merged; per ticket ~7 events: ticket-created, a
status change to open, 1-3 agent replies (each with its mail-sent, customer follow-ups in
between), pending, resolved; 3% reopened and resolved again, 5% escalated, 1% tier-changed,
30% with SLA clocks (sla-started, 8% of them breached), 20% of the resolved with a survey
answer. The events table holds about 7 x N rows.

Loading: SQLite through the driver's `executemany` in one transaction with
`journal_mode=OFF`/`synchronous=OFF` and the secondary indexes dropped and rebuilt after;
PostgreSQL through `COPY` (psycopg `cursor.copy`), indexes rebuilt after, then
`VACUUM ANALYZE`. The loaded database is cached, keyed by size, generator version and a
hash of the migrations: SQLite as a file under /tmp/maildesk-report-bench/, PostgreSQL as a
database `mdbench_report_<N>_<key>` (older caches of the same size are dropped; `--fresh` rebuilds,
`--drop-cache` removes them all).

Run: `.venv/bin/python -m bench.report_bench [--tickets N] [--backend sqlite|postgresql|both]
[--rounds 3] [--fresh] [--explain]` (PostgreSQL: $MAILDESK_TEST_PG, default the local server).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

from bench.rounds import measure_rounds, summary
from maildesk.domain import TIERS
from maildesk.services import kpis
from maildesk.sla.calendar import BusinessCalendar
from maildesk.store.db import MIGRATIONS, Store
from maildesk.store.models import Event, Ticket

UNTIL = datetime(2026, 11, 1, tzinfo=UTC)
SINCE = UNTIL - timedelta(days=30)
SPAN_DAYS = 730
GOAL = 5.0
CHUNK = 50_000
GENERATOR = 3  # bump when the generated history changes: invalidates the caches
CACHE_DIR = Path("/tmp/maildesk-report-bench")
PG_PREFIX = "mdbench_report_"
QUEUES = ["billing", "support", "sales", "returns", "shipping", "accounts", "api", "mobile", "web", "partners"]
AGENTS = [f"agent{i}@desk.test" for i in range(60)]
TOPICS = "printer invoice password login refund delivery order account upgrade license".split()
TROUBLE = "broken missing late wrong locked expired failing slow duplicate blocked".split()
EXTRA = "please help urgent again today question issue problem".split()

TICKET_COLUMNS = (
    "number, subject, status, queue, tier, priority, assignee, customer_id, tags, fields, spam,"
    " created_at, updated_at, first_response_at, resolved_at, closed_at, merged_into"
)
EVENT_COLUMNS = "ticket_number, type, data, at"
CUSTOMER_COLUMNS = "id, email, name, locale, tz, vip, created_at"

TicketT = tuple[Any, ...]
EventT = tuple[int, str, str, int]


# -- the history ---------------------------------------------------------------------------------


def generate(tickets: int, seed: int = 1) -> Iterator[tuple[list[TicketT], list[EventT]]]:
    """Chunks of (tickets, events); times are POSIX seconds (ints), JSON already encoded."""
    rng = random.Random(seed)
    until = int(UNTIL.timestamp())
    start = until - SPAN_DAYS * 86400
    customers = max(1, tickets // 20)
    reply_data = [json.dumps({"agent": a}) for a in AGENTS]
    tiers_data = json.dumps({"from": "L1", "to": "L2"})
    tier_changed = json.dumps({"old": "L2", "new": "L3"})
    sla = {k: json.dumps({"kind": k}) for k in kpis.SLA_KINDS}
    status = {
        (a, b): json.dumps({"from": a, "to": b, "by": "agent"})
        for a, b in [
            ("new", "open"),
            ("open", "pending"),
            ("pending", "resolved"),
            ("resolved", "open"),
            ("open", "resolved"),
            ("resolved", "closed"),
        ]
    }
    surveys = [json.dumps({"rating": r}) for r in range(1, 6)]
    created_data = json.dumps({"from": "customer"})
    empty = "{}"
    # Creation times: sorted, so ticket numbers grow with time (as they do on a desk).
    number = 0
    per_chunk_span = (until - start) / tickets
    while number < tickets:
        rows: list[TicketT] = []
        events: list[EventT] = []
        size = min(CHUNK, tickets - number)
        base = start + number * per_chunk_span
        stamps = sorted(int(base + rng.random() * size * per_chunk_span) for _ in range(size))
        for created in stamps:
            number += 1
            ev = events.append
            ev((number, "ticket-created", created_data, created))
            agent_i = rng.randrange(len(AGENTS))
            tier = "L1"
            t = created + rng.randrange(30, 3600)
            ev((number, "status", status["new", "open"], t))
            sla_on = rng.random() < 0.3
            if sla_on:
                ev((number, "sla-started", sla["first_response"], created))
                ev((number, "sla-started", sla["resolution"], created))
                if rng.random() < 0.08:
                    ev((number, "sla-breached", sla["first_response"], created + 8 * 3600))
            if rng.random() < 0.05:
                ev((number, "escalated", tiers_data, t + rng.randrange(60, 7200)))
                tier = "L2"
                if rng.random() < 0.2:
                    ev((number, "tier-changed", tier_changed, t + 7200 + rng.randrange(60, 7200)))
                    tier = "L3"
            first_response = None
            replies = rng.choice((1, 1, 1, 2, 2, 3))
            for i in range(replies):
                t += rng.randrange(300, 2 * 86400)
                if t >= until:
                    break
                if i:
                    ev((number, "message-received", empty, t - rng.randrange(60, 300)))
                ev((number, "agent-replied", reply_data[agent_i], t))
                ev((number, "mail-sent", empty, t + 5))
                first_response = first_response or t
            state, resolved, closed = "open", None, None
            r = rng.random()
            if r < 0.10 or t >= until:
                state = rng.choice(("new", "open", "pending", "pending"))
                if state == "pending" and first_response is not None:
                    ev((number, "status", status["open", "pending"], t + 1))
            else:
                t += rng.randrange(600, 4 * 86400)
                if t < until:
                    ev((number, "status", status["pending", "resolved"], t))
                    state, resolved = "resolved", t
                    if rng.random() < 0.03 and t + 86400 < until:
                        t += rng.randrange(3600, 86400)
                        ev((number, "status", status["resolved", "open"], t))
                        t += rng.randrange(600, 86400)
                        if t < until:
                            ev((number, "status", status["open", "resolved"], t))
                            resolved = t
                        else:
                            state, resolved = "open", None
                    if resolved is not None and rng.random() < 0.2:
                        ev((number, "survey-answered", surveys[rng.choice((0, 1, 2, 3, 3, 4, 4, 4))], resolved + 3600))
                    if resolved is not None and rng.random() < 0.3 and resolved + 7 * 86400 < until:
                        closed = resolved + 7 * 86400
                        ev((number, "status", status["resolved", "closed"], closed))
                        state = "closed"
                else:
                    state = "pending"
            subject = f"{rng.choice(TOPICS)} {rng.choice(TROUBLE)}" + (
                f" {rng.choice(EXTRA)}" if rng.random() < 0.5 else ""
            )
            spam = rng.random() < 0.01
            merged = rng.randrange(1, number) if number > 1 and rng.random() < 0.005 else None
            rows.append(
                (
                    number,
                    subject,
                    state,
                    QUEUES[rng.randrange(len(QUEUES))],
                    tier,
                    "high" if rng.random() < 0.1 else "normal",
                    None if state == "new" else AGENTS[agent_i],
                    rng.randrange(1, customers + 1),
                    f'["t{rng.randrange(40)}"]',
                    empty,
                    spam,
                    created,
                    max(t, created) if t < until else created,
                    first_response,
                    resolved,
                    closed,
                    merged,
                )
            )
        events.sort(key=lambda e: e[3])  # stored in time order, interleaved, as a desk writes them
        yield rows, events


def customers_of(tickets: int) -> Iterator[tuple[Any, ...]]:
    start = int(UNTIL.timestamp()) - SPAN_DAYS * 86400
    for i in range(1, max(1, tickets // 20) + 1):
        yield (i, f"customer{i}@d{i % 2000}.example", "", "", "", False, start)


# -- time formats per backend ------------------------------------------------------------------------

_DAYS: dict[int, str] = {}


def _stamp(ts: int | None, suffix: str) -> str | None:
    """POSIX seconds as the text SQLite rows hold (SQLAlchemy's format) or PostgreSQL's COPY reads."""
    if ts is None:
        return None
    day, sec = divmod(ts, 86400)
    text_day = _DAYS.get(day)
    if text_day is None:
        text_day = _DAYS[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")
    hour, rest = divmod(sec, 3600)
    return f"{text_day} {hour:02d}:{rest // 60:02d}:{rest % 60:02d}{suffix}"


# -- caching -------------------------------------------------------------------------------------------


def cache_key() -> str:
    """The generated data's version and the migrations' revisions (not their text: a cached
    database gets its indexes brought in line with the models by `sync_indexes`)."""
    names = sorted(p.name for p in (MIGRATIONS / "versions").glob("*.py"))
    return hashlib.sha256(f"generator {GENERATOR} {names}".encode()).hexdigest()[:10]


def sync_indexes(store: Store) -> None:
    """Make a cached database's indexes on tickets and events those of the models (which
    tests/store/test_schema.py proves the migrations build), so an amended index migration
    does not need a regenerated million tickets."""
    changed = []
    with store.engine.begin() as conn:
        inspector = inspect(conn)
        for table in (Ticket.__table__, Event.__table__):
            have = {i["name"] for i in inspector.get_indexes(table.name)}
            want = {str(i.name): i for i in table.indexes}
            for name in sorted(have - want.keys()):
                conn.execute(text(f'DROP INDEX "{name}"'))
                changed.append(f"-{name}")
            for name in sorted(want.keys() - have):
                want[name].create(conn)
                changed.append(f"+{name}")
        if changed:
            conn.execute(text("ANALYZE"))
    if changed:
        print(f"{store.backend}: cached database's indexes brought in line with the models: {' '.join(changed)}")


# -- SQLite ----------------------------------------------------------------------------------------------


def sqlite_database(tickets: int, fresh: bool) -> tuple[str, float | None]:
    """The cached SQLite file for `tickets` (built when missing): (url, load seconds or None)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"report-{tickets}-{cache_key()}.db"
    if path.exists() and not fresh:
        return f"sqlite:///{path}", None
    for old in CACHE_DIR.glob(f"report-{tickets}-*.db*"):
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
    indexes = [
        (name, sql)
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
            " AND tbl_name IN ('tickets', 'events', 'customers')"
        )
    ]
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("BEGIN")
    conn.executemany(
        f"INSERT INTO customers ({CUSTOMER_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
        ((*c[:6], _stamp(c[6], ".000000")) for c in customers_of(tickets)),
    )
    ms = ".000000"
    for rows, events in generate(tickets):
        conn.executemany(
            f"INSERT INTO tickets ({TICKET_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(*r[:11], *(_stamp(v, ms) for v in r[11:16]), r[16]) for r in rows],
        )
        conn.executemany(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?)",
            [(n, ty, d, _stamp(at, ms)) for n, ty, d, at in events],
        )
    conn.execute("COMMIT")
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("ANALYZE")
    conn.close()
    elapsed = time.perf_counter() - started
    building.rename(path)
    return f"sqlite:///{path}", elapsed


# -- PostgreSQL ----------------------------------------------------------------------------------------


def _admin() -> tuple[str, Engine]:
    url = os.environ.get("MAILDESK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    return url, create_engine(url, isolation_level="AUTOCOMMIT")


def _pg_caches(admin: Engine, prefix: str) -> list[str]:
    """Databases whose name starts with `prefix` (compared in Python: `_` is a LIKE wildcard)."""
    with admin.connect() as conn:
        names = [r[0] for r in conn.execute(text("SELECT datname FROM pg_database"))]
    return [n for n in names if n.startswith(prefix)]


def postgresql_database(tickets: int, fresh: bool) -> tuple[str, float | None]:
    """The cached PostgreSQL database for `tickets` (built when missing): (url, load seconds or None)."""
    admin_url, admin = _admin()
    base = admin_url.rsplit("/", 1)[0]
    name = f"{PG_PREFIX}{tickets}_{cache_key()}"
    try:
        if name in _pg_caches(admin, name) and not fresh:
            return f"{base}/{name}", None
        with admin.connect() as conn:
            for old in _pg_caches(admin, f"{PG_PREFIX}{tickets}_"):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}_building"'))
        url = f"{base}/{name}_building"
        store = Store(url)
        store.migrate()
        store.dispose()
        started = time.perf_counter()
        _pg_load(url, tickets)
        elapsed = time.perf_counter() - started
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}_building" RENAME TO "{name}"'))
        return f"{base}/{name}", elapsed
    finally:
        admin.dispose()


def _pg_load(url: str, tickets: int) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # bench only: no FK triggers while loading
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public'"
            " AND i.tablename IN ('tickets', 'events', 'customers')"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        ts = "+00"

        def line(values: tuple[Any, ...]) -> str:
            return "\t".join("\\N" if v is None else str(v).replace("\\", "\\\\") for v in values) + "\n"

        with cur.copy(f"COPY customers ({CUSTOMER_COLUMNS}) FROM STDIN") as copy:
            copy.write("".join(line((*c[:6], _stamp(c[6], ts))) for c in customers_of(tickets)))
        for rows, events in generate(tickets):
            with cur.copy(f"COPY tickets ({TICKET_COLUMNS}) FROM STDIN") as copy:
                copy.write("".join(line((*r[:11], *(_stamp(v, ts) for v in r[11:16]), r[16])) for r in rows))
            with cur.copy(f"COPY events ({EVENT_COLUMNS}) FROM STDIN") as copy:
                copy.write("".join(f"{n}\t{ty}\t{d}\t{_stamp(at, ts)}\n" for n, ty, d, at in events))
        for _, sql in indexes:
            cur.execute(sql)
        cur.execute("SELECT setval(pg_get_serial_sequence('tickets', 'number'), (SELECT max(number) FROM tickets))")
        conn.commit()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def drop_caches() -> None:
    shutil.rmtree(CACHE_DIR, ignore_errors=True)
    _, admin = _admin()
    try:
        with admin.connect() as conn:
            for name in _pg_caches(admin, PG_PREFIX):  # only this bench's, never another bench's
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# -- the measurement ----------------------------------------------------------------------------------


def measure(url: str, backend: str, tickets: int, load: float | None, rounds: int, explain: bool) -> list[float]:
    store = Store(url)
    sync_indexes(store)
    if load is None:
        print(f"{backend} {tickets:,}: cached database reused ({url.rsplit('/', 1)[-1]})", flush=True)
    else:
        print(f"{backend} {tickets:,}: generated and bulk-loaded in {load:.1f} s", flush=True)
    result: list[kpis.Report] = []
    cpu: list[float] = []
    server: list[float] = []

    def report() -> None:
        started = time.process_time()
        with store.reader() as session:
            pid = None if store.is_sqlite else session.execute(text("SELECT pg_backend_pid()")).scalar()
            server_started = _process_cpu(pid)
            result.append(kpis.build_report(session, since=SINCE, until=UNTIL, by="queue", calendar=BusinessCalendar()))
            if server_started is not None and (server_now := _process_cpu(pid)) is not None:
                server.append(server_now - server_started)
        cpu.append(time.process_time() - started)

    if explain:
        explain_queries(store)
    load_before = os.getloadavg()[0]
    values = measure_rounds(report, rounds=rounds)
    r = result[-1]
    verdict = "OK" if statistics.median(values) < GOAL else "OVER GOAL"
    print(
        f"{backend} {tickets:,}: report --since 30d --by queue ({r.total.created:,} created,"
        f" {r.total.resolved:,} resolved, backlog {r.total.backlog_total:,}): {summary(values)}"
        f" — goal < {GOAL:.0f} s: {verdict}",
        flush=True,
    )
    # The wall time on a shared machine is mostly waiting for a core: this process's own CPU
    # time (SQLite's work included; PostgreSQL's server work not) and the load say how much.
    print(
        f"{backend} {tickets:,}: this process's CPU time {summary(cpu)}; load average"
        f" {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores",
        flush=True,
    )
    if server:
        print(
            f"{backend} {tickets:,}: the server backend's CPU time {summary(server)} (a local server, read"
            " from /proc; parallel query workers not included)",
            flush=True,
        )
    store.dispose()
    return values


def _process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of a local process (a PostgreSQL backend), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def explain_queries(store: Store) -> None:
    """Print each report query's plan and its own time (one run each)."""
    from maildesk.store import report_queries as rq

    calls = {
        "period_tickets": lambda s: rq.period_tickets(s, SINCE, UNTIL, kpis.REPEAT_WINDOW),
        "period_facts": lambda s: rq.period_facts(s, SINCE, UNTIL, TIERS, kpis.SLA_KINDS),
        "open_now": lambda s: rq.open_now(s, UNTIL, "queue", kpis.BACKLOG_BUCKETS).backlog,
        "replies_by_agent": lambda s: rq.replies_by_agent(s, SINCE, UNTIL),
    }
    statements: list[Any] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, parameters))

    from sqlalchemy import event

    for name, call in calls.items():
        statements.clear()
        event.listen(store.engine, "before_cursor_execute", grab)
        with store.reader() as session:
            started = time.perf_counter()
            rows = call(session)
            took = time.perf_counter() - started
        event.remove(store.engine, "before_cursor_execute", grab)
        print(f"--- {name}: {len(rows):,} rows in {took:.3f} s", flush=True)
        for statement, parameters in statements:
            prefix = "EXPLAIN QUERY PLAN " if store.is_sqlite else "EXPLAIN "
            with store.engine.connect() as conn:
                for row in conn.exec_driver_sql(prefix + statement, parameters):
                    print("   ", row[-1] if store.is_sqlite else row[0], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tickets", type=int, action="append", help="sizes (repeatable); default 1,000,000")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached databases")
    parser.add_argument("--explain", action="store_true", help="print the report queries' plans and times")
    parser.add_argument("--drop-cache", action="store_true", help="remove every cached bench database and exit")
    args = parser.parse_args()
    if args.drop_cache:
        drop_caches()
        return
    medians: dict[tuple[str, int], float] = {}
    for tickets in args.tickets or [1_000_000]:
        for backend in ("sqlite", "postgresql"):
            if args.backend not in (backend, "both"):
                continue
            build = sqlite_database if backend == "sqlite" else postgresql_database
            url, load = build(tickets, args.fresh)
            values = measure(url, backend, tickets, load, args.rounds, args.explain)
            medians[backend, tickets] = statistics.median(values)
    for backend in ("sqlite", "postgresql"):
        sizes = sorted(n for b, n in medians if b == backend)
        if len(sizes) > 1:
            lo, hi = sizes[0], sizes[-1]
            print(
                f"{backend}: median {hi:,} / {lo:,} = {medians[backend, hi] / medians[backend, lo]:.1f}x"
                f" for {hi / lo:.0f}x the tickets",
                flush=True,
            )


if __name__ == "__main__":
    main()
