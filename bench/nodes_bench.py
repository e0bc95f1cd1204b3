"""Processing throughput of one node and of two nodes on one PostgreSQL database.

Usage: python -m bench.nodes_bench [--messages 600] [--rounds 3] [--parse-processes N]

Each round, for each mode (1 node, 2 nodes), a fresh PostgreSQL database is created and
migrated, and the same generated corpus (N first-contact customer mails, distinct senders)
is spooled into the nodes' spools: all of it into the one node, or half into each of the two
(as two nodes behind one MX would receive it). Every node is a process of its own (its own
data folder, the App a daemon builds, migrated and warmed up before the clock starts); on
"go" each drains its spool (`Worker.drain`: parse, screen, thread, store, route, queue the
acknowledgement). The figure is spooled -> committed: from "go" until the last node has
committed its last message, checked against the database (every message stored once).
Acknowledgements are queued in the outbox, not sent (the sender is not part of this figure).

Prints messages per second for both modes (min / median / max over the rounds) and the
ratio of the medians (goal >= 1.5x), with the machine's core count: on a 2-core machine
two nodes plus PostgreSQL share two cores, so the ratio is bounded by the CPU, not by
maildesk's design (each node's worker is one thread; the database is the shared part).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CPU: dict[int, list[tuple[float, float]]] = {1: [], 2: []}  # per run: (CPU seconds of the nodes, wall seconds)
ADMIN_URL = os.environ.get("MAILDESK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def mail(n: int, tag: str) -> bytes:
    body = "".join(f"Line {i} of my question about order {tag}-{n}: it has not arrived yet.\r\n" for i in range(12))
    return (
        f"From: Customer {n} <c{n}-{tag}@cust{n % 997}-{tag}.example>\r\n"
        "To: support@example.com\r\n"
        f"Subject: Question {n} about order {tag}-{n}\r\n"
        f"Message-ID: <{tag}-{n}@bench.example>\r\n"
        "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello,\r\n\r\n{body}\r\nThanks,\r\nCustomer {n}\r\n"
    ).encode()


def config(folder: Path, url: str, parse_processes: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "maildesk.toml"
    path.write_text(
        f'[desk]\ndata_dir = "{folder / "data"}"\nsupport_addresses = ["support@example.com"]\nsecret_env = ""\n'
        f'[database]\nurl = "{url}"\nurl_env = ""\n'
        f"[smtp]\nenabled = false\n"
        f"[worker]\nparse_processes = {parse_processes}\n"
        "[limits]\nnew_tickets_per_sender_hour = 0\nnew_tickets_per_domain_hour = 0\nper_domain_hour = 100000\n"
        "global_hour = 100000\n"
    )
    return path


# A node: build, migrate, warm up, say "ready", wait for "go", drain, report -----------------
def node_main(cfg: str) -> None:
    from maildesk.app import App
    from maildesk.config import load_settings

    desk = App(load_settings(cfg))
    desk.migrate()
    desk.warm_up()
    desk.worker.recover()
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu = time.perf_counter(), time.process_time()
    desk.worker.drain()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"seconds": elapsed, "cpu": cpu}), flush=True)
    desk.worker.close()
    desk.store.dispose()


# The driver -----------------------------------------------------------------------------
def _admin(sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(sql))
    engine.dispose()


def one_run(nodes: int, corpus: list[bytes], parse_processes: int, work: Path, name: str) -> float:
    from maildesk.config import load_settings
    from maildesk.spool import Spool
    from maildesk.store.db import Store

    _admin(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        store = Store(url)
        store.migrate()
        cfgs = [config(work / name / f"node{i}", url, parse_processes) for i in range(nodes)]
        for i, cfg in enumerate(cfgs):
            spool = Spool(load_settings(cfg).spool_path).ensure()
            spool.put_many([(raw, "bench", None) for raw in corpus[i::nodes]])
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.nodes_bench", "--node", str(cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for cfg in cfgs
        ]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        cpu = 0.0
        for proc in procs:
            assert proc.stdout is not None
            cpu += float(json.loads(proc.stdout.readline())["cpu"])
            proc.wait(timeout=1800)
        elapsed = time.perf_counter() - started
        CPU[nodes].append((cpu, elapsed))
        from sqlalchemy import text

        with store.engine.connect() as conn:
            stored = conn.execute(
                text("SELECT count(*), count(DISTINCT message_id) FROM messages WHERE direction = 'in'")
            ).one()
        store.dispose()
        if tuple(stored) != (len(corpus), len(corpus)):
            raise SystemExit(f"{nodes} node(s): stored {tuple(stored)}, expected {len(corpus)} once each")
        return elapsed
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parse-processes", type=int, default=0, help="per node (0: parse in the worker thread)")
    parser.add_argument("--node", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.node:
        node_main(args.node)
        return
    corpus = [mail(n, f"r{n % 7}") for n in range(args.messages)]
    try:
        print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}")
    except OSError:
        pass
    rates: dict[int, list[float]] = {1: [], 2: []}
    tag = f"mdbench_nodes_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="nodes-bench-") as tmp:
        for r in range(args.rounds):
            for nodes in (1, 2):
                seconds = one_run(nodes, corpus, args.parse_processes, Path(tmp), f"{tag}_{r}_{nodes}")
                rates[nodes].append(len(corpus) / seconds)
                print(f"round {r + 1}: {nodes} node(s): {len(corpus)} in {seconds:.2f}s = {rates[nodes][-1]:.1f} msg/s")
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print()
    print(f"corpus: {len(corpus)} messages; parse processes per node: {args.parse_processes}; cores: {os.cpu_count()}")
    for nodes in (1, 2):
        values = rates[nodes]
        print(
            f"{nodes} node(s): min {min(values):.1f} / median {statistics.median(values):.1f} / "
            f"max {max(values):.1f} msg/s ({len(values)} rounds)"
        )
    for nodes in (1, 2):
        per_mail = statistics.median(c / len(corpus) * 1000 for c, _ in CPU[nodes])
        cores = statistics.median(c / w for c, w in CPU[nodes])
        print(
            f"{nodes} node(s): {per_mail:.1f} ms of node CPU per message; the node processes used "
            f"{cores:.2f} cores on average (PostgreSQL's share not counted)"
        )
    ratios = [b / a for a, b in zip(rates[1], rates[2], strict=True)]
    print(
        f"ratio 2 nodes / 1 node: {two / one:.2f}x of the medians (per round: "
        f"{', '.join(f'{x:.2f}' for x in ratios)}; goal >= 1.5x)"
    )
    try:
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    except OSError:
        pass


if __name__ == "__main__":
    main()
