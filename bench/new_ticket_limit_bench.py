"""The new-ticket limit's look-up during a burst (issue 17, migration 0011): the cost of
`store.outbox_queries.new_ticket_counts` with 1,000 vs 50,000 tickets created in the last hour.

Usage: python -m bench.new_ticket_limit_bench [--small 1000] [--large 50000] [--calls 100]
       [--per-domain 10] [--repeat 20] [--database URL-PREFIX]

Each database holds a burst: `--small` or `--large` tickets created in the last hour, each by
a new customer (first contact), `--per-domain` customers a domain (so the number of domains
grows with the burst, a domain's own count does not), plus 200 customers known for days with
one ticket each in the hour. Each round calls the look-up for `--calls` senders (four in five
first-contact senders of a burst domain, one in ten of a domain with no mail, one in ten known
customers) in one read transaction, `--repeat` times over for the two new variants (their
calls are too short to time 100 at once on a busy machine):
- before: the statement as it was before 0011 (`customers.email LIKE '%@domain'`, kept inline
  here), run through Core like it was;
- core: the new statement run through Core (the index's share without the FastStatement's);
- after: `new_ticket_counts` itself (`customers.domain`, a FastStatement).
Before and after must return the same facts for every sender (checked). Three rounds, min/median/max ms a
call, wall clock and this process's CPU (on PostgreSQL the statement's work is the server's:
read the wall clock there), and the ratio large/small of the medians.
SQLite: files in a temporary folder, no ANALYZE (the desk never runs it). `--database` names a
PostgreSQL URL prefix (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/): the bench creates
`maildesk_limit_small` / `maildesk_limit_large` there, ANALYZEs them (as autovacuum would on a
live desk) and drops them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.orm import Session

from bench.intake_bench import scratch_database
from bench.rounds import ROUNDS, summary
from maildesk.store import outbox_queries as oq
from maildesk.store.db import Store
from maildesk.store.models import Customer, Ticket, email_domain
from maildesk.store.queries import core

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KNOWN = 200

# Before 0011: the domain's first-contact tickets by the email's ending; the plan walks every
# ticket created in the hour (`ix_tickets_created_at`) and looks up its customer.
_DOMAIN_LIKE = (
    select(func.count())
    .select_from(Ticket)
    .join(Customer, Customer.id == Ticket.customer_id)
    .where(
        Ticket.created_at >= bindparam("hour"),
        Customer.created_at >= bindparam("hour"),
        Customer.email.like(bindparam("d"), escape="\\"),
    )
)
_BEFORE = select(oq._SENDER_TICKETS_HOUR.scalar_subquery(), oq._KNOWN.scalar_subquery(), _DOMAIN_LIKE.scalar_subquery())


def counts_before(session: Session, *, sender: str, now: datetime) -> tuple[int, int, bool]:
    """`new_ticket_counts` as it was before migration 0011."""
    sender = sender.lower()
    domain = sender.rpartition("@")[2].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    params = {"r": sender, "hour": now - timedelta(hours=1), "d": f"%@{domain}"}
    sender_hour, known, domain_hour = (int(v or 0) for v in core(session).execute(_BEFORE, params).one())
    return sender_hour, 0 if known else domain_hour, bool(known)


def counts_new_sql_core(session: Session, *, sender: str, now: datetime) -> tuple[int, int, bool]:
    """The new statement run through Core, to tell the index's share from the FastStatement's."""
    sender = sender.lower()
    params = {"r": sender, "hour": now - timedelta(hours=1), "d": sender.rpartition("@")[2]}
    sender_hour, known, domain_hour = (
        int(v or 0) for v in core(session).execute(oq._NEW_TICKET_FACTS.stmt, params).one()
    )
    return sender_hour, 0 if known else domain_hour, bool(known)


def populate(store: Store, tickets: int, per_domain: int) -> None:
    """The burst: `tickets` new customers (one ticket each) created in the last hour, plus the known ones."""
    chunk = 5000
    customers = []
    for i in range(tickets):
        email = f"c{i}@d{i // per_domain}.example"
        customers.append({"email": email, "domain": email_domain(email), "name": "", "created_at": NOW - _ago(i)})
    for i in range(KNOWN):
        email = f"known{i}@d{i}.example"
        customers.append(
            {"email": email, "domain": email_domain(email), "name": "", "created_at": NOW - timedelta(days=3)}
        )
    with store.engine.begin() as conn:
        for start in range(0, len(customers), chunk):
            conn.execute(insert(Customer), customers[start : start + chunk])
        ids = dict(conn.execute(select(Customer.email, Customer.id)).all())
        rows = [
            {
                "subject": "burst",
                "status": "new",
                "queue": "default",
                "tier": "L1",
                "priority": "normal",
                "customer_id": ids[c["email"]],
                "tags": [],
                "fields": {},
                "created_at": NOW - _ago(n) if n < tickets else NOW - timedelta(minutes=30),
                "updated_at": NOW,
            }
            for n, c in enumerate(customers)
        ]
        for start in range(0, len(rows), chunk):
            conn.execute(insert(Ticket), rows[start : start + chunk])
        if not store.is_sqlite:
            conn.execute(text("ANALYZE"))


def _ago(i: int) -> timedelta:
    return timedelta(seconds=1 + i * 7 % 3500)


def senders(calls: int, tickets: int, per_domain: int) -> list[str]:
    domains = max(1, tickets // per_domain)
    out = []
    for i in range(calls):
        if i % 10 == 8:
            out.append(f"someone{i}@fresh{i}.example")
        elif i % 10 == 9:
            out.append(f"known{i % KNOWN}@d{i % KNOWN}.example")
        else:
            out.append(f"new{i}@d{(i * 7919) % domains}.example")
    return out


Lookup = Callable[..., tuple[int, int, bool]]
VARIANTS: list[tuple[str, Lookup]] = [
    ("before", counts_before),
    ("core", counts_new_sql_core),
    ("after", oq.new_ticket_counts),
]


def timed(store: Store, lookup: Lookup, who: list[str], repeat: int) -> tuple[list[float], list[float]]:
    """ms a call, wall and CPU, per round (each round calls for every sender `repeat` times)."""
    wall, cpu = [], []
    for _ in range(ROUNDS):
        with store.reader() as s:
            lookup(s, sender=who[0], now=NOW)  # connection and statement warm
            w, c = time.perf_counter(), time.process_time()
            for _ in range(repeat):
                for sender in who:
                    lookup(s, sender=sender, now=NOW)
            wall.append((time.perf_counter() - w) / len(who) / repeat)
            cpu.append((time.process_time() - c) / len(who) / repeat)
    return wall, cpu


def plan(store: Store, sender: str) -> str:
    """The plan of the statement `new_ticket_counts` runs (SQLite: as the driver ran it)."""
    seen: list[str] = []
    with store.reader() as s:
        if not store.is_sqlite:
            compiled = oq._NEW_TICKET_FACTS.stmt.compile(dialect=store.engine.dialect)
            params = {"r": sender, "hour": NOW - timedelta(hours=1), "d": sender.rpartition("@")[2]}
            cursor = s.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.execute("EXPLAIN (COSTS OFF) " + str(compiled), params)
            return " | ".join(" ".join(str(r[0]).split()) for r in cursor.fetchall())
        driver = s.connection().connection.driver_connection
        driver.set_trace_callback(seen.append)  # type: ignore[union-attr]
        try:
            oq.new_ticket_counts(s, sender=sender, now=NOW)
        finally:
            driver.set_trace_callback(None)  # type: ignore[union-attr]
        statement = next(sql for sql in seen if "customers.domain" in sql)
        return " | ".join(str(r[-1]) for r in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement))


def run(label: str, urls: dict[int, str], args: argparse.Namespace) -> None:
    print(f"\n== {label}: new_ticket_counts, ms a call ({args.calls} calls a round) ==")
    medians: dict[tuple[str, int], float] = {}
    for size, url in urls.items():
        store = Store(url)
        try:
            store.migrate()
            started = time.perf_counter()
            populate(store, size, args.per_domain)
            print(
                f"-- {size:,} tickets in the last hour ({size // args.per_domain:,} domains; "
                f"filled in {time.perf_counter() - started:.1f} s)"
            )
            who = senders(args.calls, size, args.per_domain)
            with store.reader() as s:
                for sender in who:
                    before, after = (
                        counts_before(s, sender=sender, now=NOW),
                        oq.new_ticket_counts(s, sender=sender, now=NOW),
                    )
                    assert before == after, (sender, before, after)
                facts = [oq.new_ticket_counts(s, sender=w, now=NOW) for w in who]
            print(
                f"   same facts before/after for all {len(who)} senders; domain counts "
                f"{min(f[1] for f in facts)}..{max(f[1] for f in facts)}"
            )
            for name, lookup in VARIANTS:
                wall, cpu = timed(store, lookup, who, 1 if lookup is counts_before else args.repeat)
                medians[(name, size)] = statistics.median(wall)
                print(f"   {name:6} wall {summary(wall, 1000, 'ms')}   cpu {summary(cpu, 1000, 'ms')}")
            print(f"   after's plan: {plan(store, who[0])}")
        finally:
            store.dispose()
    small, large = sorted(urls)
    for name, _lookup in VARIANTS:
        ratio = medians[(name, large)] / medians[(name, small)]
        print(
            f"   {name:6} median {medians[(name, small)] * 1000:.3f} ms -> {medians[(name, large)] * 1000:.3f} ms: "
            f"{large:,}/{small:,} = {ratio:.2f}x"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--per-domain", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the senders a round (not `before`)")
    parser.add_argument("--database", default="", help="a PostgreSQL URL prefix (databases created and dropped)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maildesk-limit-"))
    sizes = (args.small, args.large)
    run("SQLite", {n: f"sqlite:///{work / f'limit-{n}.db'}" for n in sizes}, args)
    if args.database:
        prefix = args.database.rstrip("/")
        urls = {n: f"{prefix}/maildesk_limit_{name}" for n, name in zip(sizes, ("small", "large"), strict=True)}
        with scratch_database(urls[args.small]), scratch_database(urls[args.large]):
            run("PostgreSQL", urls, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
