"""Where a message's CPU goes, against what issue 17's ratio goal allows on this machine.

Usage: python -m bench.budget_bench [--messages N] [--goal 0.4]

The full-pipeline goal is a ratio to mail-parser's parse-only rate on one core. A goal of
0.4x leaves, per message, `cores / (0.4 x parse rate)` seconds of CPU for everything: the
preparation children and the worker share the machine's cores. Each round measures on the
same corpus as `intake_bench` (SQLite, the example rules of `maildesk init`):

1. parse-only: mail-parser alone, CPU per message (the goal's yardstick);
2. preparation: what a child spends per message (`prepare_raw` with the pipeline's needs:
   parse, screening verdict, reply split, language guess, the agent split), in this process;
3. worker: the full pipeline through the real worker (`intake_bench.pipeline_rate`), CPU of
   the worker's process per message (children not included);
4. database floor: the rows that run wrote, replayed with the bare sqlite3 module into an
   empty database of the same schema (triggers and indexes included), one transaction per 50
   messages, with three indexed look-ups per message: what storing the mail costs with no
   Python logic at all; once more without the full-text search triggers (what the search
   index costs).

It prints each figure as min/median/max over three rounds, the budget the goal leaves,
and how far the preparation + worker total and the essential part (parse + database floor)
are from it. The figures are measured, nothing is assumed.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import mailparser

from bench.intake_bench import corpus, pipeline_rate
from bench.rounds import summary
from maildesk import language
from maildesk.config import Settings, parse_settings
from maildesk.pipeline.context import needs_of
from maildesk.pipeline.order import PIPELINE
from maildesk.pipeline.prepare import prepare_raw
from maildesk.services.init import init_directory

TABLES = ("customers", "tickets", "messages", "participants", "events", "outbox", "auto_sends")
BATCH = 50


def settings_for(work: Path, database: Path) -> Settings:
    init_directory(work / "desk")
    return replace(
        parse_settings(
            {
                "desk": {
                    "data_dir": str(work / "data"),
                    "support_addresses": ["support@example.com"],
                    "secret_env": "",
                    "locales": ["en", "de", "fr", "es"],
                    "rules_file": str(work / "desk" / "rules.yaml"),
                    "templates_dir": str(work / "desk" / "templates"),
                },
                "database": {"url": f"sqlite:///{database}", "url_env": ""},
            },
            base_dir=str(work),
        ),
        secret="bench",
    )


def parse_cpu(msgs: list[bytes]) -> float:
    start = time.process_time()
    for raw in msgs:
        mailparser.parse_from_bytes(raw)
    return (time.process_time() - start) / len(msgs)


def prepare_cpu(msgs: list[bytes], settings: Settings) -> float:
    needs = needs_of(PIPELINE)
    start = time.process_time()
    for raw in msgs:
        prepare_raw({}, raw, settings, needs)
    return (time.process_time() - start) / len(msgs)


def floor_cpu(source: Path, target: Path, messages: int, *, search: bool) -> float:
    """CPU per message of writing `source`'s rows again with bare sqlite3 (see the module doc)."""
    src = sqlite3.connect(source)
    schema = [
        sql
        for (sql,) in src.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        )
        if search or "fts" not in sql.lower()
    ]
    rows = {t: src.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}  # noqa: S608 - own names
    src.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(target, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for sql in schema:
        try:
            db.execute(sql)
        except sqlite3.OperationalError:  # FTS shadow tables are made by their virtual table
            pass
    inserts = {t: f"INSERT INTO {t} VALUES ({','.join('?' * len(rows[t][0]))})" for t in TABLES if rows[t]}  # noqa: S608
    share = {
        t: [rows[t][i * len(rows[t]) // messages : (i + 1) * len(rows[t]) // messages] for i in range(messages)]
        for t in inserts
    }
    start = time.process_time()
    for i in range(messages):
        if i % BATCH == 0:
            db.execute("BEGIN")
        db.execute("SELECT id FROM messages WHERE mid_hash = ?", (f"h{i}",)).fetchall()
        db.execute("SELECT ticket_number FROM messages WHERE message_id = ?", (f"<m{i}>",)).fetchall()
        db.execute("SELECT id FROM customers WHERE email = ?", (f"c{i}@example.com",)).fetchall()
        for table, sql in inserts.items():
            if share[table][i]:
                db.executemany(sql, share[table][i])
        if i % BATCH == BATCH - 1:
            db.execute("COMMIT")
    if db.in_transaction:
        db.execute("COMMIT")
    cpu = (time.process_time() - start) / messages
    db.close()
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--goal", type=float, default=0.4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    n = args.messages
    parse, prepare, worker, floor, floor_plain, rates = [], [], [], [], [], []
    for k in range(args.rounds):
        work = Path(tempfile.mkdtemp(prefix="maildesk-budget-"))
        database = work / "pipeline.db"
        settings = settings_for(work, database)
        msgs = corpus(n, tag=f"b{k}")
        warming = language.warm(settings.desk.locales)
        if warming is not None:
            warming.join()
        parse.append(parse_cpu(msgs))
        prepare.append(prepare_cpu(msgs, settings))
        rate, result = pipeline_rate(settings, msgs, foundation=False)
        rates.append(rate)
        worker.append(result["cpu"])
        floor.append(floor_cpu(database, work / "floor.db", n, search=True))
        floor_plain.append(floor_cpu(database, work / "floor-plain.db", n, search=False))
        print(
            f"  round {k + 1}: parse-only {parse[-1] * 1e6:,.0f} µs; preparation {prepare[-1] * 1e6:,.0f} µs; worker "
            f"{worker[-1] * 1e6:,.0f} µs ({rate:,.0f} msg/s); database floor {floor[-1] * 1e6:,.0f} µs "
            f"({floor_plain[-1] * 1e6:,.0f} µs without the search index) — CPU per message"
        )

    def mid(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    budget = cores * mid(parse) / args.goal
    spent = mid(prepare) + mid(worker)
    essential = mid(parse) + mid(floor)
    print(f"CPU per message, {args.rounds} rounds, {n} mails, SQLite, {cores} cores:")
    print(f"  mail-parser parse-only      {summary(parse, 1e6, 'µs', 0)}")
    print(f"  preparation (a child)       {summary(prepare, 1e6, 'µs', 0)}")
    print(f"  worker (full pipeline)      {summary(worker, 1e6, 'µs', 0)}")
    print(f"  database floor (sqlite3)    {summary(floor, 1e6, 'µs', 0)}")
    print(f"  ... without search triggers {summary(floor_plain, 1e6, 'µs', 0)}")
    print(
        f"goal {args.goal}x of parse-only: {args.goal / mid(parse):,.0f} msg/s, so at most "
        f"{budget * 1e6:,.0f} µs of CPU per message on {cores} cores (and the worker, one process, at most "
        f"{mid(parse) / args.goal * 1e6:,.0f} µs)"
    )
    print(
        f"spent now: preparation + worker {spent * 1e6:,.0f} µs = {spent / budget:.1f}x the budget; "
        f"best ratio these costs allow with perfect use of every core "
        f"{min(cores * mid(parse) / spent, mid(parse) / mid(worker)):.3f}x (measured full pipeline: median "
        f"{mid(rates):,.0f} msg/s = {mid(rates) * mid(parse):.3f}x of parse-only's CPU rate)"
    )
    print(
        f"essential part (parse + database floor) {essential * 1e6:,.0f} µs = {essential / budget:.2f}x the budget: "
        f"the rest, {(spent - essential) * 1e6:,.0f} µs, is the pipeline's own Python (screening, threading, "
        "rules, templates, composition, the audit events' data)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
