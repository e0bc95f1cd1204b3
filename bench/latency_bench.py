"""Latency of a whole hand-off chain: mail accepted -> acknowledgement written.

Usage: python -m bench.latency_bench [--idle N] [--inject N] [--burst N] [--rounds 3] [--database URL]

Each round starts a fresh desk (`maildesk run` as a subprocess, outgoing mail to its local
Maildir, limits raised so every new ticket gets its acknowledgement) and measures, per mail,
the time from the acceptance to the acknowledgement appearing in the outgoing Maildir:

1. idle: N mails (default 30) sent one at a time over SMTP, each after the previous one's
   acknowledgement: from the client's `250` to the acknowledgement. Goals: median under
   100 ms, p99 under 250 ms.
2. inject: N mails (default 10) through `maildesk inject` (the MTA pipe), one at a time:
   from the command's exit to the acknowledgement ("inject"; negative when the
   acknowledgement was written before the command had finished exiting), and from the
   moment it printed the entry id, i.e. the mail was durable and the daemon woken
   ("inject-spooled").
3. burst: N mails (default 2,000) over 4 SMTP connections as fast as they are taken: from
   each mail's `250` to its acknowledgement. Goal: p99 no worse than the time the burst
   needs to drain (last acknowledgement - first `250`).

Acknowledgements are matched to mails by their In-Reply-To. The Maildir is watched by a
thread that lists it every millisecond (its cost is part of the measurement). Figures are
printed as min / median / max over the rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.intake_bench import scratch_database
from bench.rounds import summary

_IN_REPLY_TO = re.compile(rb"^In-Reply-To:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mail(n: int, tag: str) -> bytes:
    return (
        f"From: Customer {n} <c{n}-{tag}@cust{n % 997}-{tag}.example>\r\n"
        "To: support@example.com\r\n"
        f"Subject: Question {n} about order {tag}-{n}\r\n"
        f"Message-ID: <{tag}-{n}@bench.example>\r\n"
        "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"Hello, my order {n} has not arrived yet. Could you please look into it?\r\n"
        "Thanks, a customer\r\n"
    ).encode()


class AckWatch:
    """Lists the outgoing Maildir's new/ every millisecond; records when each
    acknowledgement (by the Message-ID it answers) was first seen."""

    def __init__(self, maildir: Path) -> None:
        self.new = maildir / "new"
        self.seen: dict[str, float] = {}
        self._known: set[str] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                names = os.listdir(self.new)
            except FileNotFoundError:
                names = []
            now = time.monotonic()
            fresh = [n for n in names if n not in self._known]
            for name in fresh:
                self._known.add(name)
                try:
                    head = (self.new / name).read_bytes()[:8192]
                except OSError:
                    continue
                found = _IN_REPLY_TO.search(head)
                if found:
                    with self._cond:
                        self.seen.setdefault(found.group(1).decode(), now)
                        self._cond.notify_all()
            time.sleep(0.001)

    def wait(self, message_id: str, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while message_id not in self.seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no acknowledgement for {message_id} within {timeout:.0f}s")
                self._cond.wait(remaining)
            return self.seen[message_id]

    def wait_all(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(i in self.seen for i in ids):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = sum(1 for i in ids if i not in self.seen)
                    raise TimeoutError(f"{missing} acknowledgements missing after {timeout:.0f}s")
                self._cond.wait(min(remaining, 1.0))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Desk:
    """A fresh data folder and `maildesk run` on it."""

    def __init__(self, work: Path, database: str | None) -> None:
        self.work = work
        self.port = free_port()
        data = work / "data"
        url = database or f"sqlite:///{data / 'maildesk.db'}"
        self.config = work / "maildesk.toml"
        self.config.write_text(
            f"""
[desk]
name = "Latency Bench"
data_dir = "{data}"
support_addresses = ["support@example.com"]
secret_env = "MAILDESK_BENCH_SECRET"

[database]
url = "{url}"
url_env = ""

[smtp]
port = {self.port}

[limits]
per_recipient_hour = 100000
per_recipient_day = 100000
per_ticket_day = 100000
global_hour = 1000000
per_domain_hour = 1000000
"""
        )
        self.env = {**os.environ, "MAILDESK_BENCH_SECRET": "bench-secret"}
        self.log = work / "daemon.log"
        self.maildir = data / "outgoing"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "maildesk", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + 120
        while "worker ready" not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.stop()  # a daemon that waits for its database must not outlive the bench
                raise RuntimeError(f"the daemon did not start:\n{tail}")
            time.sleep(0.05)
        while True:  # the SMTP listener
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def idle_smtp(desk: Desk, watch: AckWatch, n: int, tag: str) -> list[float]:
    latencies = []
    with smtplib.SMTP("127.0.0.1", desk.port, timeout=30) as client:
        for i in range(n):
            client.sendmail(f"c{i}@bench.example", ["support@example.com"], mail(i, tag))
            accepted = time.monotonic()  # the client has the 250
            latencies.append(watch.wait(f"<{tag}-{i}@bench.example>") - accepted)
    return latencies


def idle_inject(desk: Desk, watch: AckWatch, n: int, tag: str) -> tuple[list[float], list[float]]:
    """Per mail: (from the exit, from the entry id printed, i.e. spooled and the daemon woken)
    to the acknowledgement. The first is negative when the acknowledgement was written
    before the command had finished exiting (interpreter teardown)."""
    from_exit, from_spooled = [], []
    for i in range(n):
        proc = subprocess.Popen(
            [sys.executable, "-m", "maildesk", "inject", "--config", str(desk.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=desk.env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(mail(i, tag))
        proc.stdin.close()
        proc.stdout.readline()
        spooled = time.monotonic()
        code = proc.wait()
        exited = time.monotonic()
        if code != 0:
            raise RuntimeError(
                f"inject exited {code}: {proc.stderr.read().decode(errors='replace') if proc.stderr else ''}"
            )
        acked = watch.wait(f"<{tag}-{i}@bench.example>")
        from_exit.append(acked - exited)
        from_spooled.append(acked - spooled)
    return from_exit, from_spooled


def burst(desk: Desk, watch: AckWatch, n: int, tag: str, connections: int = 4) -> tuple[list[float], float]:
    accepted: dict[str, float] = {}
    lock = threading.Lock()

    def client(part: range) -> None:
        with smtplib.SMTP("127.0.0.1", desk.port, timeout=60) as smtp:
            for i in part:
                smtp.sendmail(f"c{i}@bench.example", ["support@example.com"], mail(i, tag))
                now = time.monotonic()
                with lock:
                    accepted[f"<{tag}-{i}@bench.example>"] = now

    threads = [threading.Thread(target=client, args=(range(c, n, connections),)) for c in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = list(accepted)
    watch.wait_all(ids, timeout=max(120.0, n * 0.5))
    latencies = [watch.seen[i] - accepted[i] for i in ids]
    drain = max(watch.seen[i] for i in ids) - min(accepted.values())
    return latencies, drain


def _first(keep: list[list[float]], pair: tuple[list[float], list[float]]) -> list[float]:
    keep.append(pair[1])
    return pair[0]


def run_round(number: int, args: argparse.Namespace) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    database = None
    if args.database:  # a database of its own for the round, created and dropped here
        from sqlalchemy.engine import make_url

        target = make_url(args.database)
        database = target.set(database=f"{target.database}_r{number}").render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory(prefix="maildesk-latency-") as tmp, scratch_database(database or ""):
        desk = Desk(Path(tmp), database)
        desk.start()
        watch = AckWatch(desk.maildir)
        try:
            parts: list[tuple[str, Callable[[], list[float]]]] = []
            if args.idle:
                parts.append(("idle", lambda: idle_smtp(desk, watch, args.idle, f"r{number}idle")))
            if args.inject:
                injected: list[list[float]] = []
                parts.append(("inject", lambda: _first(injected, idle_inject(desk, watch, args.inject, f"r{number}i"))))
                parts.append(("inject-spooled", lambda: injected[0]))
            for name, work in parts:
                values = work()
                figures[f"{name} median"] = [statistics.median(values)]
                figures[f"{name} p90"] = [percentile(values, 90)]
                figures[f"{name} p99"] = [percentile(values, 99)]
                figures[f"{name} max"] = [max(values)]
                print(
                    f"  round {number} {name:14}: median {statistics.median(values) * 1000:7.1f} ms, "
                    f"p99 {percentile(values, 99) * 1000:7.1f} ms, "
                    f"max {max(values) * 1000:7.1f} ms ({len(values)} mails)",
                    flush=True,
                )
            if args.burst:
                values, drain = burst(desk, watch, args.burst, f"r{number}burst")
                figures["burst median"] = [statistics.median(values)]
                figures["burst p99"] = [percentile(values, 99)]
                figures["burst max"] = [max(values)]
                figures["burst drain"] = [drain]
                print(
                    f"  round {number} burst         : median {statistics.median(values):7.2f} s, "
                    f"p99 {percentile(values, 99):7.2f} s, drain {drain:7.2f} s ({len(values)} mails, "
                    f"{len(values) / drain:.0f} acks/s)",
                    flush=True,
                )
        finally:
            watch.close()
            desk.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=30, help="mails sent one at a time over SMTP")
    parser.add_argument("--inject", type=int, default=10, help="mails through `maildesk inject`, one at a time")
    parser.add_argument("--burst", type=int, default=2000, help="mails in the burst (0: none)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database",
        default=None,
        help="a PostgreSQL URL: each round creates <name>_r<round> next to it and drops it afterwards "
        "(default: SQLite in the data folder)",
    )
    args = parser.parse_args()
    collected: dict[str, list[float]] = {}
    for number in range(1, args.rounds + 1):
        for key, values in run_round(number, args).items():
            collected.setdefault(key, []).extend(values)
    print(f"\nOver {args.rounds} rounds (each value a round's figure):")
    for key, values in collected.items():
        unit_ms = not key.startswith("burst")
        print(
            f"  {key:20} {summary(values, 1000.0 if unit_ms else 1.0, 'ms' if unit_ms else 's', 1 if unit_ms else 2)}"
        )
    idle_median = statistics.median(collected.get("idle median", [0.0]))
    idle_p99 = statistics.median(collected.get("idle p99", [0.0]))
    print(
        f"\nGoals: idle median < 100 ms: {idle_median * 1000:.1f} ms "
        f"({'met' if idle_median < 0.1 else 'NOT met'}); idle p99 < 250 ms: {idle_p99 * 1000:.1f} ms "
        f"({'met' if idle_p99 < 0.25 else 'NOT met'})"
    )
    if "burst p99" in collected:
        worst = max(p / d for p, d in zip(collected["burst p99"], collected["burst drain"], strict=True))
        print(f"Burst: p99 / drain time, worst round: {worst:.2f} ({'met' if worst <= 1.0 else 'NOT met'}: <= 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
