"""Intake and processing throughput, measured in one run on one generated corpus.

Usage: python -m bench.intake_bench [--messages N] [--database URL]

1. SMTP acceptance: a bare aiosmtpd handler that only answers 250 versus maildesk's SMTP
   intake (durable spool write before 250), same client, same messages. Goal: >= 0.8x.
2. Processing: parsing alone with mail-parser versus maildesk's end-to-end worker
   (spooled -> committed: parse, screen, visible text, threading, persist). Goal: >= 0.5x.
Peak memory (max RSS) is printed for the whole run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import smtplib
import socket
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import mailparser
from aiosmtpd.controller import Controller

from maildesk.app import App
from maildesk.config import Settings, parse_settings
from maildesk.ingest.smtp import SmtpIntake
from maildesk.spool import Spool

CLIENTS = (1, 4, 8)
WORDS = "printer fire invoice refund login broken please help urgent thanks account order delivery late".split()


def corpus(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = "\r\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(rng.randint(5, 60)))
        reply = i % 3 == 1 and i > 3
        headers = [
            f"From: Customer {i} <customer{i % 500}@example{i % 37}.com>",
            "To: support@example.com",
            f"Subject: {'Re: ' if reply else ''}Problem {i % 800} with {rng.choice(WORDS)}",
            "Date: Sun, 22 Nov 2026 10:00:00 +0000",
            f"Message-ID: <bench-{i}@example{i % 37}.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
        ]
        if reply:
            headers.append(f"In-Reply-To: <bench-{i - 1}@example{(i - 1) % 37}.com>")
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


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--database", default="")
    parser.add_argument("--part", choices=("all", "smtp", "processing"), default="all",
                        help="measure only SMTP acceptance or only processing (default: both)")
    args = parser.parse_args()
    msgs = corpus(args.messages)
    size = sum(map(len, msgs)) / len(msgs)
    print(f"corpus: {len(msgs)} messages, mean {size / 1024:.1f} KiB, a third are replies")

    work = Path(tempfile.mkdtemp(prefix="maildesk-bench-"))
    database = args.database
    db = {"url": database, "url_env": ""} if database else {}
    settings = replace(
        parse_settings({"desk": {"data_dir": str(work / "data"), "support_addresses": ["support@example.com"], "secret_env": ""},
                        "database": db}, base_dir=str(work)),
        secret="bench",
    )
    spool = Spool(settings.spool_path).ensure()
    if args.part in ("all", "smtp"):
        smtp_part(msgs, settings, spool)
    else:
        for raw in msgs:
            spool.put(raw, "bench")
    if args.part in ("all", "processing"):
        processing_part(msgs, settings, work, database)
    print(f"peak memory (max RSS of this run): {rss_mb():.0f} MiB")
    return 0


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
        print(f"SMTP acceptance, {c} client connection(s): bare aiosmtpd {bare_rates[c]:,.0f} msg/s; maildesk (fsync before 250) "
              f"{md_rates[c]:,.0f} msg/s; ratio {md_rates[c] / bare_rates[c]:.2f} (goal >= 0.8)")


def processing_part(msgs: list[bytes], settings: Settings, work: Path, database: str) -> None:
    start = time.perf_counter()
    for raw in msgs:
        mailparser.parse_from_bytes(raw)
    parse_rate = len(msgs) / (time.perf_counter() - start)

    app = App(settings)
    app.migrate()
    app.worker.preparer.warm()  # the daemon starts its parser processes while it warms up
    start = time.perf_counter()
    result = app.process()
    proc_rate = result["processed"] / (time.perf_counter() - start)
    print(f"processing: mail-parser alone {parse_rate:,.0f} msg/s; maildesk full pipeline ({app.store.backend}: screen, "
          f"threading, rules, acknowledgement composed and queued) {proc_rate:,.0f} msg/s; ratio {proc_rate / parse_rate:.2f} (goal >= 0.5)")
    print(f"  outcome: {result['tickets_created']} tickets, {result['appended']} threaded replies, {result['failed']} failed")
    app.store.dispose()

    # The stages of the foundation alone (parse, deduplicate, persist), on a fresh database.
    from maildesk.pipeline.stages import dedupe, persist

    settings2 = replace(settings, desk=replace(settings.desk, data_dir=str(work / "data2")),
                        database=replace(settings.database, url=database or ""))
    if database:
        print("  (foundation-only run skipped for a given --database: it needs a second empty database)")
    else:
        app2 = App(settings2)
        app2.migrate()
        app2.worker.stages = (dedupe, persist)
        for raw in msgs:
            app2.spool.put(raw, "bench")
        app2.worker.preparer.warm()
        start = time.perf_counter()
        result2 = app2.process()
        base_rate = result2["processed"] / (time.perf_counter() - start)
        print(f"processing, foundation stages only (parse, deduplicate, persist): {base_rate:,.0f} msg/s; "
              f"ratio {base_rate / parse_rate:.2f}")
        app2.store.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
