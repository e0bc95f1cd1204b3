"""Intake and processing throughput, measured in one run on one generated corpus.

Usage: python -m bench.intake_bench [--messages N] [--part all|smtp|processing] [--database URL]
       [--locales en,de,fr,es]  (one locale: without the customer-language step, to compare)

1. SMTP acceptance: a bare aiosmtpd handler that only answers 250 versus maildesk's SMTP
   intake (durable spool write before 250), same client process, same messages, with 1, 4
   and 8 connections. Goal: >= 0.8x.
2. Processing, spooled -> committed through the real worker, against parsing alone with
   mail-parser. Goal: >= 0.5x for issue 2's stages (parse, deduplicate, persist the message,
   open its ticket): three rounds, each next to its own parse-only measurement; the median
   ratio is the result. The full pipeline (screening, reply splitting, threading, the
   example rules and templates from `maildesk init`, the acknowledgement composed and
   queued) is measured in three rounds too (issue 17's goals: >= 0.4x on SQLite, >= 0.2x on
   PostgreSQL), with the SQL statements per message counted by a SQLAlchemy
   `before_cursor_execute` listener (plus the statements `store/fast.py` runs on the
   driver's cursor, when that module is in use).
Peak memory (max RSS) is printed for this process and for the largest child process.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import resource
import smtplib
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import mailparser
from aiosmtpd.controller import Controller

from bench.rounds import summary
from maildesk.app import App, settle_collector
from maildesk.config import Settings, parse_settings
from maildesk.ingest.smtp import SmtpIntake
from maildesk.services.init import init_directory
from maildesk.spool.files import Spool

CLIENTS = (1, 4, 8)
WORDS = "printer fire invoice refund login broken please help urgent thanks account order delivery late".split()


def corpus(n: int, seed: int = 7, tag: str = "") -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = "\r\n".join(
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(rng.randint(5, 60))
        )
        reply = i % 3 == 1 and i > 3
        headers = [
            f"From: Customer {i} <customer{i % 500}@example{i % 37}.com>",
            "To: support@example.com",
            f"Subject: {'Re: ' if reply else ''}Problem {i % 800} with {rng.choice(WORDS)}",
            "Date: Sun, 22 Nov 2026 10:00:00 +0000",
            f"Message-ID: <bench{tag}-{i}@example{i % 37}.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
        ]
        if reply:
            headers.append(f"In-Reply-To: <bench{tag}-{i - 1}@example{(i - 1) % 37}.com>")
            body += f"\r\n\r\nOn Sat, 21 Nov 2026, Support wrote:\r\n> {rng.choice(WORDS)} {rng.choice(WORDS)}\r\n"
        out.append(("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bare:
    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        return "250 OK"


def _send_share(port: int, messages: list[bytes]) -> None:
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for raw in messages:
            smtp.sendmail("c@example.com", ["support@example.com"], raw)


def _client_process(port: int, messages: list[bytes], clients: int) -> float:
    """Runs in its own process (no GIL shared with the server): `clients` connections."""
    shares = [messages[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=_send_share, args=(port, share)) for share in shares]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def send_all(port: int, messages: list[bytes], clients: int = 1) -> float:
    """Messages per second accepted, sent from a separate client process."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        elapsed = pool.submit(_client_process, port, messages, clients).result()
    return len(messages) / elapsed


def rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument(
        "--database",
        default="",
        help="a PostgreSQL URL naming a database that does not exist yet: created for the run, "
        "dropped after it (default: SQLite in a temporary folder)",
    )
    parser.add_argument(
        "--part",
        choices=("all", "smtp", "processing"),
        default="all",
        help="measure only SMTP acceptance or only processing (default: both)",
    )
    parser.add_argument(
        "--locales",
        default="en,de,fr,es",
        help="desk.locales, comma-separated (one locale: no language detection, for a side-by-side)",
    )
    args = parser.parse_args()
    msgs = corpus(args.messages)
    size = sum(map(len, msgs)) / len(msgs)
    print(f"corpus: {len(msgs)} messages, mean {size / 1024:.1f} KiB, a third are replies")

    work = Path(tempfile.mkdtemp(prefix="maildesk-bench-"))
    database = args.database
    db = {"url": database, "url_env": ""} if database else {}
    init_directory(work / "desk")  # the example rules and site templates of `maildesk init`
    settings = replace(
        parse_settings(
            {
                "desk": {
                    "data_dir": str(work / "data"),
                    "support_addresses": ["support@example.com"],
                    "secret_env": "",
                    "locales": args.locales.split(","),
                    "rules_file": str(work / "desk" / "rules.yaml"),
                    "templates_dir": str(work / "desk" / "templates"),
                },
                "database": db,
            },
            base_dir=str(work),
        ),
        secret="bench",
    )
    spool = Spool(settings.spool_path).ensure()
    if args.part in ("all", "smtp"):
        smtp_part(msgs, settings, spool)
    if args.part in ("all", "processing"):
        with scratch_database(database):
            processing_part(msgs, settings, work, database)
    print(
        f"peak memory (max RSS): this process {rss_mb():.0f} MiB; largest child process (parser, SMTP clients) "
        f"{rss_mb(resource.RUSAGE_CHILDREN):.0f} MiB"
    )
    return 0


@contextlib.contextmanager
def scratch_database(url: str) -> Iterator[None]:
    """Create the named PostgreSQL database for the run and drop it afterwards. Refuses an
    existing database, so the bench can never write into real data."""
    if not url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}).first():
            raise SystemExit(
                f"database {target.database!r} exists; name one that does not (the bench creates and drops it)"
            )
        conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    try:
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        admin.dispose()


def smtp_part(msgs: list[bytes], settings: Settings, spool: Spool) -> None:
    port = free_port()
    bare = Controller(Bare(), hostname="127.0.0.1", port=port)
    bare.start()
    send_all(port, msgs[:100])  # warm-up
    bare_rates = {c: send_all(port, msgs, c) for c in CLIENTS}
    bare.stop()

    port = free_port()
    intake = SmtpIntake(settings, spool, port=port)
    intake.start()
    md_rates = {}
    for c in CLIENTS:
        md_rates[c] = send_all(port, msgs, c)
        if c != CLIENTS[-1]:
            for entry in list(spool.entries("incoming")):
                entry.path.unlink()  # same corpus again: start from an empty spool
    intake.stop()
    for c in CLIENTS:
        print(
            f"SMTP acceptance, {c} client connection(s): bare aiosmtpd {bare_rates[c]:,.0f} msg/s; "
            "maildesk (journal synced before 250) "
            f"{md_rates[c]:,.0f} msg/s; ratio {md_rates[c] / bare_rates[c]:.2f} (goal >= 0.8)"
        )
    sync_ms = journal_sync_ms(spool.root, len(msgs[0]))
    round_trip_ms = 1000 / bare_rates[1]
    print(
        f"  one connection waits for each sync: a bare round trip takes {round_trip_ms:.2f} ms and one append + "
        f"fdatasync on this disk {sync_ms:.2f} ms (median of 200), so even a server that costs nothing reaches at most "
        f"{round_trip_ms / (round_trip_ms + sync_ms):.2f}x with one connection"
    )


def journal_sync_ms(folder: Path, size: int, rounds: int = 200) -> float:
    """Median time of one record append + fdatasync into a preallocated file on the spool's disk."""
    path = folder / "bench-sync.tmp"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size * rounds + 4096)
        os.fsync(fd)
        record = b"x" * size
        times = []
        for i in range(rounds):
            start = time.perf_counter()
            os.pwrite(fd, record, i * size)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return statistics.median(times) * 1000


def parse_only_rate(msgs: list[bytes]) -> float:
    return parse_only(msgs)[0]


def parse_only(msgs: list[bytes]) -> tuple[float, float]:
    """(messages per second, CPU seconds per message) of mail-parser alone."""
    start, cpu = time.perf_counter(), time.process_time()
    for raw in msgs:
        mailparser.parse_from_bytes(raw)
    return len(msgs) / (time.perf_counter() - start), (time.process_time() - cpu) / len(msgs)


class StatementCounter:
    """Counts the SQL statements sent to the database while active: every cursor execution
    SQLAlchemy makes (`before_cursor_execute`; an executemany counts once), plus the ones
    `store/fast.py` runs on the driver's cursor itself when that module exists. Not the
    sqlite trace callback: it formats blobs as hex and distorts the timings."""

    def __init__(self) -> None:
        self.count = 0
        self._undo: list[Any] = []

    def _on_execute(self, *args: Any) -> None:
        self.count += 1

    def __enter__(self) -> StatementCounter:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._on_execute)
        self._undo.append(lambda: event.remove(Engine, "before_cursor_execute", self._on_execute))
        try:
            from maildesk.store import fast  # type: ignore[attr-defined]
        except ImportError:
            return self
        for name in ("_cursor", "execute_many"):
            original = getattr(fast.FastStatement, name)

            def counted(stmt: Any, *args: Any, _original: Any = original) -> Any:
                self.count += 1
                return _original(stmt, *args)

            setattr(fast.FastStatement, name, counted)
            self._undo.append(lambda name=name, original=original: setattr(fast.FastStatement, name, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def pipeline_rate(settings: Settings, msgs: list[bytes], *, foundation: bool) -> tuple[float, dict[str, Any]]:
    """Spooled -> committed through the real worker, after the start-up the daemon does
    (migration, warm-up, parser processes started). `result["statements"]`: SQL statements
    sent while processing."""
    from maildesk.pipeline.order import STORE_ONLY

    app = App(settings)
    app.migrate()
    if foundation:
        app.worker.stages = STORE_ONLY
    for raw in msgs:
        app.spool.put(raw, "bench")
    app.warm_up()  # as the daemon does before it claims mail (also starts the parser processes)
    settle_collector()  # as `maildesk run` does then
    with StatementCounter() as counter:
        start, cpu = time.perf_counter(), time.process_time()
        result = app.process()
        rate = result["processed"] / (time.perf_counter() - start)
        cpu = time.process_time() - cpu
    # CPU seconds of this process (the worker; preparation children not included) per message:
    # far less sensitive to other load on the machine than the wall-clock rate.
    result = {**result, "statements": counter.count, "cpu": cpu / max(result["processed"], 1)}
    app.worker.close()
    app.store.dispose()
    return rate, result


def processing_part(msgs: list[bytes], settings: Settings, work: Path, database: str, rounds: int = 3) -> None:
    n = len(msgs)
    backend = "postgresql" if database.startswith("postgresql") else "sqlite"

    def fresh(tag: str, url: str = "") -> Settings:  # its own spool; the database is shared, the Message-IDs are new
        return replace(
            settings,
            desk=replace(settings.desk, data_dir=str(work / tag)),
            database=replace(settings.database, url=url or database or f"sqlite:///{work / 'bench.db'}"),
        )

    def own_database(tag: str) -> str:
        """A database of its own for a full-pipeline round: the corpus's senders and subjects
        repeat, so a shared one would thread a later round's mail into the earlier tickets."""
        if not database:
            return f"sqlite:///{work / f'bench-{tag}.db'}"
        from sqlalchemy.engine import make_url

        target = make_url(database)
        return target.set(database=f"{target.database}_{tag}").render_as_string(hide_password=False)

    runs = []
    for k in range(rounds):
        parse_rate = parse_only_rate(msgs)
        rate, _ = pipeline_rate(fresh(f"f{k}"), corpus(n, tag=f"f{k}"), foundation=True)
        runs.append((rate / parse_rate, rate, parse_rate))
        print(
            f"  round {k + 1}: mail-parser alone {parse_rate:,.0f} msg/s; issue 2's stages {rate:,.0f} msg/s; "
            f"ratio {rate / parse_rate:.2f}"
        )
    ratio, rate, parse_rate = sorted(runs)[len(runs) // 2]
    print(
        f"processing, issue 2's stages (parse, deduplicate, persist: message, ticket, customer, participants, "
        f"event) on {backend}, spooled -> committed: {rate:,.0f} msg/s against mail-parser alone {parse_rate:,.0f} "
        f"msg/s; median ratio of {rounds} rounds {ratio:.2f} (goal >= 0.5)"
    )

    goal = 0.2 if backend == "postgresql" else 0.4
    rates, parses, ratios, statements, cpus, cpu_ratios = [], [], [], [], [], []
    for k in range(rounds):
        parse_rate, parse_cpu = parse_only(msgs)
        url = own_database(f"full{k}")
        with scratch_database(url):
            rate, result = pipeline_rate(fresh(f"full{k}", url), corpus(n, tag=f"full{k}"), foundation=False)
        rates.append(rate)
        parses.append(parse_rate)
        ratios.append(rate / parse_rate)
        statements.append(result["statements"] / max(result["processed"], 1))
        cpus.append(result["cpu"])
        cpu_ratios.append(parse_cpu / result["cpu"])
        print(
            f"  round {k + 1}: mail-parser alone {parse_rate:,.0f} msg/s; full pipeline {rate:,.0f} msg/s; "
            f"ratio {rate / parse_rate:.3f}; {statements[-1]:.1f} SQL statements per message; worker CPU "
            f"{result['cpu'] * 1e6:,.0f} µs per message against mail-parser's {parse_cpu * 1e6:,.0f} µs "
            f"(CPU ratio {parse_cpu / result['cpu']:.3f}) "
            f"({result['tickets_created']} tickets, {result['appended']} threaded replies, {result['failed']} failed)"
        )
    print(
        f"processing, full pipeline on {backend} (adds screening, reply splitting, threading, the example rules of "
        f"`maildesk init`, acknowledgement composed and queued), {rounds} rounds: "
        f"{summary(rates, unit='msg/s', digits=0)}; mail-parser alone {summary(parses, unit='msg/s', digits=0)}; "
        f"ratio {summary(ratios, unit='x', digits=3)} (goal >= {goal}); "
        f"SQL statements per message {summary(statements, unit='', digits=1)}; worker CPU per message "
        f"{summary(cpus, 1e6, 'µs', 0)}, mail-parser CPU / worker CPU {summary(cpu_ratios, 1, 'x', 3)}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
