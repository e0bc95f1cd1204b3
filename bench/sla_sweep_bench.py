"""Cost of one SLA sweep with 10,000 and 1,000,000 stored tickets: it follows the due clocks.

Run: .venv/bin/python bench/sla_sweep_bench.py [--sizes 10000,1000000] [--due 300] [--rounds 3] [--pg URL]
Each size gets a fresh database (SQLite in a temporary folder; PostgreSQL too with --pg, an
admin URL like postgresql+psycopg://postgres@127.0.0.1:5432/postgres). Rows are bulk-inserted
with SQLAlchemy Core: the tickets, 10% of them open with a met first-response clock and a
running resolution clock, and `--due` of those with a warning that has come. Each round runs
one dry-run sweep (`maildesk sla sweep --dry-run`: everything is done and rolled back, so every
round sees the same due clocks). Prints min / median / max seconds per sweep and per due clock,
and the ratio of the largest to the smallest size (goal: at most 2x).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.rounds import measure_rounds, summary
from maildesk.app import App
from maildesk.config import parse_settings
from maildesk.sla.policy import parse_sla
from maildesk.store.models import Customer, SlaClock, Ticket

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CHUNK = 20_000
SLA = {"policy": [{"name": "standard", "time": "calendar", "first_response": "8h", "resolution": "5d"}]}


def build(folder: Path, url: str | None, size: int, due: int) -> App:
    data = {
        "desk": {"data_dir": str(folder / "data"), "secret_env": ""},
        "database": {"url": url or "", "url_env": ""},
    }
    settings = replace(parse_settings(data, base_dir=str(folder)), secret="bench", sla=parse_sla(SLA))
    app = App(settings, clock=lambda: NOW)
    app.migrate()
    engine = app.store.engine
    start = NOW - timedelta(days=2)
    with engine.begin() as conn:
        conn.execute(sa.insert(Customer.__table__), [{"email": "c@example.com", "name": "", "created_at": start}])
        cid = conn.execute(sa.select(Customer.id)).scalar_one()
        open_every = 10
        due_left = due
        for first in range(1, size + 1, CHUNK):
            tickets, clocks = [], []
            for n in range(first, min(first + CHUNK, size + 1)):
                is_open = n % open_every == 0
                tickets.append(
                    {
                        "number": n, "subject": f"t{n}", "status": "open" if is_open else "closed", "queue": "default",
                        "tier": "L1", "priority": "normal", "customer_id": cid, "tags": [], "fields": {}, "spam": False,
                        "created_at": start, "updated_at": start,
                    }
                )  # fmt: skip
                if not is_open:
                    continue
                is_due = due_left > 0
                due_left -= int(is_due)
                res_due = NOW - timedelta(minutes=5) if is_due else NOW + timedelta(days=3)
                base = {
                    "ticket_number": n, "policy": "standard", "started_at": start, "paused_total": 0.0,
                    "counted": 0.0, "warn_at": None, "paused_at": None, "warned_at": None, "breached_at": None,
                }  # fmt: skip
                clocks.append({**base, "kind": "first_response", "due_at": start + timedelta(hours=8),
                               "resumed_at": None, "stopped_at": start + timedelta(hours=1), "stop_reason": "met",
                               "next_at": None})  # fmt: skip
                clocks.append({**base, "kind": "resolution", "due_at": res_due, "resumed_at": start,
                               "stopped_at": None, "stop_reason": "", "next_at": res_due})  # fmt: skip
            conn.execute(sa.insert(Ticket.__table__), tickets)
            if clocks:
                conn.execute(sa.insert(SlaClock.__table__), clocks)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    return app


def one_size(url: str | None, size: int, due: int, rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        app = build(Path(tmp), url, size, due)
        acted: list[int] = []

        def work() -> None:
            report = app.sla_sweep(NOW, dry_run=True)
            acted.append(len(report.actions))

        values = measure_rounds(work, rounds)
        app.store.dispose()
    assert set(acted) == {due}, acted
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--due", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default="", help="PostgreSQL admin URL: also measure on a fresh database there")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if args.pg:
        backends.append(("postgresql", args.pg))
    for name, admin in backends:
        medians = []
        for size in sizes:
            url = None
            if admin:
                url = _pg_database(admin, f"sla_bench_{size}")
            values = one_size(url, size, args.due, args.rounds)
            medians.append(statistics.median(values))
            print(f"{name} {size:>9,} tickets, {args.due} due: sweep {summary(values)}; "
                  f"per due clock {summary([v / args.due for v in values], 1000, 'ms')}")  # fmt: skip
        print(f"{name}: ratio largest/smallest (median) {medians[-1] / medians[0]:.2f}x (goal <= 2x)")


def _pg_database(admin_url: str, name: str) -> str:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


if __name__ == "__main__":
    main()
