"""`least_loaded`'s read at scale (issue 17, migration 0012): `open_loads` for five agents
with 1,000 vs 100,000 stored tickets (20% open), the counters of `agent_loads` against the
count over index ranges of `(assignee, status)` it replaced, side by side in one run.

Usage: python -m bench.loads_bench [--tickets 100000] [--small 1000] [--open-share 0.2]
       [--calls 2000] [--database URL-prefix]

Each round times `--calls` calls of each way in one read session (the current ticket a
stored open one, read by its number: the session does not hold it), CPU time
(`time.process_time`) and wall time per call; three rounds, min/median/max, and the ratio
large/small of the medians. `--database` names a PostgreSQL URL prefix (databases
`maildesk_loads_small|large` created and dropped); default SQLite files in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import func, select

from bench.rounds import summary
from bench.scale_bench import AGENTS, _databases, desk_settings, populate
from maildesk.app import App
from maildesk.domain import OPEN_STATUSES
from maildesk.store import Session
from maildesk.store.models import Ticket
from maildesk.store.routing_queries import open_loads


def counted_loads(session: Session, members: Sequence[str], exclude_ticket: int) -> dict[str, int]:
    """`open_loads` before 0012 (a count over index ranges of ix_tickets_assignee_status)."""
    loads = dict.fromkeys(members, 0)
    lowered = {m.lower(): m for m in members}
    rows = session.execute(
        select(Ticket.assignee, func.count())
        .where(Ticket.status.in_(OPEN_STATUSES), Ticket.assignee.in_(list(lowered)))
        .group_by(Ticket.assignee)
    ).all()
    for name, count in rows:
        loads[lowered[str(name)]] = int(count)
    current = session.execute(select(Ticket.status, Ticket.assignee).where(Ticket.number == exclude_ticket)).first()
    if current is not None and current[0] in OPEN_STATUSES and current[1] and current[1] in lowered:
        member = lowered[current[1]]
        loads[member] = max(0, loads[member] - 1)
    return loads


WAYS: dict[str, Callable[[Session, Sequence[str], int], dict[str, int]]] = {
    "count (before)": counted_loads,
    "counters (0012)": open_loads,
}


def time_calls(app: App, way: Callable[..., dict[str, int]], current: int, calls: int) -> tuple[float, float]:
    """(CPU s, wall s) per call."""
    with app.store.reader() as s:
        way(s, AGENTS, current)  # warm
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            way(s, AGENTS, current)
        return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--open-share", type=float, default=0.2)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--database", default="", help="a PostgreSQL URL prefix (databases created and dropped)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maildesk-loads-"))
    sizes = {"small": args.small, "large": args.tickets}
    prefix = args.database.rstrip("/")
    urls = {n: f"{prefix}/maildesk_loads_{n}" if prefix else "" for n in sizes}
    with _databases([u for u in urls.values() if u]):
        apps: dict[str, App] = {}
        currents: dict[str, int] = {}
        for name, size in sizes.items():
            app = App(desk_settings(work / name, urls[name]))
            app.migrate()
            populate(app, size, args.open_share)
            with app.store.reader() as s:
                same = [counted_loads(s, AGENTS, 0), open_loads(s, AGENTS, 0)]
                currents[name] = int(
                    s.scalars(select(Ticket.number).where(Ticket.status.in_(OPEN_STATUSES)).limit(1)).one()
                )
            if same[0] != same[1]:
                raise SystemExit(f"the two ways disagree: {same}")
            print(f"{name}: {size:,} tickets, open per agent {same[1]}")
            apps[name] = app
        backend = "postgresql" if prefix else "sqlite"
        cpu: dict[tuple[str, str], list[float]] = {}
        wall: dict[tuple[str, str], list[float]] = {}
        for _ in range(3):
            for way_name, way in WAYS.items():
                for name, app in apps.items():
                    c, w = time_calls(app, way, currents[name], args.calls)
                    cpu.setdefault((way_name, name), []).append(c)
                    wall.setdefault((way_name, name), []).append(w)
        for way_name in WAYS:
            for name, size in sizes.items():
                key = (way_name, name)
                print(f"open_loads {way_name}, {size:,} tickets ({backend}):")
                print(f"  CPU  {summary(cpu[key], scale=1e6, unit='us/call', digits=1)}")
                print(f"  wall {summary(wall[key], scale=1e6, unit='us/call', digits=1)}")
            for label, values in (("CPU", cpu), ("wall", wall)):
                ratio = statistics.median(values[(way_name, "large")]) / statistics.median(values[(way_name, "small")])
                print(f"  ratio large/small (median {label}): {ratio:.2f}")
        for app in apps.values():
            app.worker.close()
            app.store.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
