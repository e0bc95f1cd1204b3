"""Cost at scale (issue 17): per-message cost with 100,000 vs 1,000 stored tickets, and
`import --history` of 100,000 mails.

Usage: python -m bench.scale_bench [--part all|scale|history] [--tickets 100000] [--small 1000]
       [--messages 300] [--open-share 0.2] [--history-messages 100000] [--database URL]

1. Scale: two databases, one with `--small` stored tickets and one with `--tickets`, each
   with agents configured (five in one group) and a rules file whose every mail is assigned
   `least_loaded` in that group, plus the acknowledgement. `--open-share` of the stored
   tickets are open and assigned across the agents (the rest closed), one stored message
   per ticket. Each round spools `--messages` new mails (a third of them replies) into each
   desk and times the real worker, spooled -> committed; three rounds, min/median/max ms per
   message and the ratio large/small per round. Goal <= 1.2x.
2. History: `--history-messages` generated mails (threads of a customer mail, an agent's
   reply from a configured agent, and a customer's answer) in an mbox, imported with
   `import --history`'s own code (`ingest.bulk.HistoryMail` + `pipeline.history`) into a
   fresh database; the rate against mail-parser parsing the same mails alone.
`--database` names a PostgreSQL URL *prefix* (e.g. postgresql+psycopg://postgres@127.0.0.1/):
the bench creates `maildesk_scale_*` databases there and drops them; default SQLite files in
a temporary folder.
"""

from __future__ import annotations

import argparse
import mailbox
import random
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mailparser
from sqlalchemy import insert

from bench.intake_bench import WORDS, scratch_database
from bench.rounds import summary
from maildesk.app import App
from maildesk.config import Settings, parse_settings
from maildesk.store.models import Customer, Message, Ticket
from maildesk.store.routing_queries import recount_agent_loads

AGENTS = [f"agent{i}@example.com" for i in range(5)]
RULES = """version: 1
rules:
  - name: everyone in the team, least loaded first
    if: {subject: {contains: problem}}
    then: [{assign: {least_loaded: L1}}]
"""
BASE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def desk_settings(work: Path, url: str) -> Settings:
    work.mkdir(parents=True, exist_ok=True)
    (work / "rules.yaml").write_text(RULES)
    data: dict[str, Any] = {
        "desk": {
            "data_dir": str(work / "data"),
            "support_addresses": ["support@example.com"],
            "secret_env": "",
            "rules_file": str(work / "rules.yaml"),
        },
        "database": {"url": url or f"sqlite:///{work / 'desk.db'}", "url_env": ""},
        "agent": [{"email": a, "name": a.split("@")[0], "tiers": ["L1"]} for a in AGENTS],
        "limits": {"new_tickets_per_sender_hour": 0, "new_tickets_per_domain_hour": 0},
    }
    return replace(parse_settings(data, base_dir=str(work)), secret="bench")


def populate(app: App, tickets: int, open_share: float, seed: int = 3) -> None:
    """`tickets` stored tickets (customers, one message each), `open_share` open and assigned;
    the agent_loads counters recounted from them."""
    rng = random.Random(seed)
    customers = max(1, tickets // 2)
    engine = app.store.engine
    chunk = 5000
    with engine.begin() as conn:
        for start in range(0, customers, chunk):
            rows = [
                {"id": i + 1, "email": f"stored{i}@old{i % 97}.example", "name": "", "created_at": BASE}
                for i in range(start, min(customers, start + chunk))
            ]
            conn.execute(insert(Customer), rows)
        for start in range(0, tickets, chunk):
            trows, mrows = [], []
            for n in range(start, min(tickets, start + chunk)):
                is_open = rng.random() < open_share
                when = BASE + timedelta(minutes=n)
                trows.append(
                    {
                        "number": n + 1,
                        "subject": f"stored {n}",
                        "status": rng.choice(("new", "open", "pending")) if is_open else "closed",
                        "queue": "default",
                        "tier": "L1",
                        "priority": "normal",
                        "assignee": AGENTS[n % len(AGENTS)] if is_open or n % 2 else None,
                        "customer_id": n % customers + 1,
                        "tags": [],
                        "fields": {},
                        "created_at": when,
                        "updated_at": when,
                        "closed_at": None if is_open else when,
                        "resolved_at": None if is_open else when,
                    }
                )
                mid = f"stored-{n}@old{n % 97}.example"
                mrows.append(
                    {
                        "ticket_number": n + 1,
                        "direction": "in",
                        "kind": "customer",
                        "message_id": mid,
                        "mid_hash": _hash(mid),
                        "content_hash": _hash("c" + mid),
                        "raw": b"Subject: stored\r\n\r\nold\r\n",
                        "raw_size": 24,
                        "subject": f"stored {n}",
                        "sender": f"stored{n % customers}@old{n % customers % 97}.example",
                        "recipients": ["support@example.com"],
                        "created_at": when,
                        "full_text": "old",
                        "visible_text": "old",
                    }
                )
            conn.execute(insert(Ticket), trows)
            conn.execute(insert(Message), mrows)
    with app.store.session() as s:  # rows written with Core: fill the agent_loads counters (0012)
        recount_agent_loads(s)


def _open_total(app: App) -> int:
    from maildesk.store.routing_queries import open_loads

    with app.store.reader() as s:
        return sum(open_loads(s, AGENTS, 0).values())


def _hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.lower().encode()).hexdigest()


def new_mail(n: int, tag: str, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        reply = i % 3 == 1
        headers = [
            f"From: Customer {i} <new{tag}{i % 50}@example{i % 37}.com>",
            "To: support@example.com",
            f"Subject: {'Re: ' if reply else ''}Problem {tag} {i} with {rng.choice(WORDS)}",
            "Date: Sun, 22 Nov 2026 10:00:00 +0000",
            f"Message-ID: <scale-{tag}-{i}@example{i % 37}.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
        ]
        if reply:
            headers.append(f"In-Reply-To: <scale-{tag}-{i - 1}@example{(i - 1) % 37}.com>")
        body = "\r\n".join(" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(rng.randint(5, 30)))
        out.append(("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode())
    return out


def per_message_ms(app: App, msgs: list[bytes]) -> float:
    for raw in msgs:
        app.spool.put(raw, "bench")
    before = app.worker.stats.processed, app.worker.stats.failed
    start = time.perf_counter()
    result = app.process()  # the worker's figures add up over its life
    elapsed = time.perf_counter() - start
    if (result["processed"] - before[0], result["failed"] - before[1]) != (len(msgs), 0):
        raise SystemExit(f"bench run went wrong: {result}")
    return elapsed * 1000 / len(msgs)


def scale_part(args: argparse.Namespace, work: Path) -> None:
    sizes = {"small": args.small, "large": args.tickets}
    desks: dict[str, App] = {}
    for name, size in sizes.items():
        url = f"{args.database.rstrip('/')}/maildesk_scale_{name}" if args.database else ""
        settings = desk_settings(work / name, url)
        app = App(settings)
        app.migrate()
        app.sync_agents()
        start = time.perf_counter()
        populate(app, size, args.open_share)
        app.worker.preparer.warm()
        before = _open_total(app)
        per_message_ms(app, new_mail(20, f"warm{name}"))  # mappers, rules, templates, parser processes
        if _open_total(app) <= before:
            raise SystemExit("the least_loaded rule assigned nothing: the bench would measure no routing")
        print(f"{name}: {size:,} stored tickets ({args.open_share:.0%} open) in {time.perf_counter() - start:.1f} s")
        desks[name] = app
    results: dict[str, list[float]] = {name: [] for name in sizes}
    ratios = []
    for k in range(3):
        for name, app in desks.items():
            results[name].append(per_message_ms(app, new_mail(args.messages, f"r{k}{name}", seed=k)) / 1000)
        ratios.append(results["large"][-1] / results["small"][-1])
        print(
            f"  round {k + 1}: {args.small:,} tickets {results['small'][-1] * 1000:.2f} ms/msg; "
            f"{args.tickets:,} tickets {results['large'][-1] * 1000:.2f} ms/msg; ratio {ratios[-1]:.2f}"
        )
    backend = "postgresql" if args.database else "sqlite"
    for name, size in sizes.items():
        print(f"per message, full pipeline + least_loaded, {size:,} stored tickets ({backend}): ", end="")
        print(summary(results[name], scale=1000, unit="ms", digits=2))
    print(
        f"ratio {args.tickets:,} / {args.small:,} tickets: min {min(ratios):.2f} / median "
        f"{statistics.median(ratios):.2f} / max {max(ratios):.2f} (goal <= 1.2)"
    )
    for app in desks.values():
        with app.store.reader() as s:
            from maildesk.store.routing_queries import open_loads

            loads = open_loads(s, AGENTS, 0)
        print(f"  open tickets per agent now: {loads}")
        app.worker.close()
        app.store.dispose()


def history_corpus(n: int, seed: int = 5) -> list[bytes]:
    """Threads of three: a customer's mail, the agent's reply, the customer's answer."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        thread, step = divmod(i, 3)
        when = BASE + timedelta(minutes=i * 7)
        customer = f"c{thread % 4000}@example{thread % 53}.com"
        mid = f"<hist-{thread}-{step}@{'example.com' if step == 1 else 'example' + str(thread % 53) + '.com'}>"
        sender = f"{AGENTS[thread % len(AGENTS)]}" if step == 1 else customer
        headers = [
            f"From: {sender}",
            f"To: {'support@example.com' if step != 1 else customer}",
            f"Subject: {'Re: ' if step else ''}History {thread} {rng.choice(WORDS)}",
            f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}",
            f"Message-ID: {mid}",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
        ]
        if step:
            parent = (
                f"<hist-{thread}-{step - 1}@{'example.com' if step == 2 else 'example' + str(thread % 53) + '.com'}>"
            )
            headers += [f"In-Reply-To: {parent}", f"References: {parent}"]
        body = "\r\n".join(" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(rng.randint(5, 30)))
        out.append(("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode())
    return out


def history_part(args: argparse.Namespace, work: Path) -> None:
    from maildesk.ingest.bulk import HistoryMail
    from maildesk.pipeline.history import HistoryImporter

    msgs = history_corpus(args.history_messages)
    path = work / "history.mbox"
    box = mailbox.mbox(path)
    box.lock()
    for raw in msgs:
        box.add(raw)
    box.flush()
    box.unlock()
    box.close()
    print(f"history: {len(msgs):,} mails in an mbox of {path.stat().st_size / 2**20:.0f} MiB")
    start = time.perf_counter()
    for raw in msgs:
        mailparser.parse_from_bytes(raw)
    parse_rate = len(msgs) / (time.perf_counter() - start)
    url = f"{args.database.rstrip('/')}/maildesk_scale_history" if args.database else ""
    app = App(desk_settings(work / "history", url))
    app.migrate()
    app.sync_agents()
    start = time.perf_counter()
    with HistoryMail(path) as mail:
        ordered = time.perf_counter() - start
        importer = HistoryImporter(app.store, app.deps, source=path.name)
        for name, raw in mail:
            importer.feed(name, raw)
        stats = importer.close()
    elapsed = time.perf_counter() - start
    rate = stats.seen / elapsed
    print(
        f"import --history of {stats.seen:,} mails ({'postgresql' if args.database else 'sqlite'}): {elapsed:.1f} s, "
        f"{rate:,.0f} mails/s (of which {ordered:.1f} s reading the dates to order the box); mail-parser alone "
        f"{parse_rate:,.0f} mails/s; ratio {rate / parse_rate:.2f}"
    )
    print(f"  {stats.figures()}")
    app.worker.close()
    app.store.dispose()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("all", "scale", "history"), default="all")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--open-share", type=float, default=0.2)
    parser.add_argument("--history-messages", type=int, default=100_000)
    parser.add_argument("--database", default="", help="a PostgreSQL URL prefix (databases created and dropped)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maildesk-scale-"))
    names = []
    if args.database:
        prefix = args.database.rstrip("/")
        names = [f"{prefix}/maildesk_scale_{n}" for n in ("small", "large", "history")]
    with _databases(names):
        if args.part in ("all", "scale"):
            scale_part(args, work)
        if args.part in ("all", "history"):
            history_part(args, work)
    return 0


class _databases:
    """scratch_database for each name (created before, dropped after)."""

    def __init__(self, urls: list[str]) -> None:
        self.managers = [scratch_database(u) for u in urls]

    def __enter__(self) -> None:
        for m in self.managers:
            m.__enter__()

    def __exit__(self, *exc: object) -> None:
        for m in reversed(self.managers):
            m.__exit__(None, None, None)


if __name__ == "__main__":
    raise SystemExit(main())
