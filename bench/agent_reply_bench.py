"""Latency of an agent's reply by mail: agent's mail accepted -> the customer's mail written.

Usage: python -m bench.agent_reply_bench [--replies N] [--stream-rate R] [--rounds 3] [--database URL]

Each round starts a fresh desk (`maildesk run` as a subprocess, no relay: outgoing mail goes
to its Maildir, one agent, limits raised), opens 2 x N tickets by customer mail over SMTP and
waits for each notification to the agent. Then, per ticket, the agent answers the
notification over SMTP (to its Reply-To token, In-Reply-To the notification, a quote below
the words) and the time is taken from the client's `250` to the customer's mail (the
`agent_reply`, recognised by a marker in the agent's words) appearing in the outgoing Maildir:

1. idle: N replies one at a time on an otherwise idle desk;
2. stream: N replies one at a time while another connection sends new customer mail at
   R mails per second (default 5; each one a new ticket, an acknowledgement and a
   notification to the agent).

Goal: median under 1 s (both). Figures: median and p95 per round, then min / median / max
over the rounds (bench.rounds.summary). The Maildir is listed every millisecond by a thread
(its cost is part of the measurement).
"""

from __future__ import annotations

import argparse
import email
import os
import re
import smtplib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from email import policy
from pathlib import Path

from bench.latency_bench import Desk, percentile
from bench.rounds import summary

AGENT = "ann@example.com"
_MARK = re.compile(rb"zzmark([a-z0-9]+)zz")


def customer_mail(key: str) -> bytes:
    return (
        f"From: Customer {key} <c-{key}@cust-{key}.example>\r\n"
        "To: support@example.com\r\n"
        f"Subject: Order {key} missing\r\n"
        f"Message-ID: <{key}@bench.example>\r\n"
        "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"Hello, my order {key} has not arrived yet. Could you please look into it?\r\n"
    ).encode()


def agent_mail(key: str, token: str, notification_id: str) -> bytes:
    return (
        f"From: Ann Agent <{AGENT}>\r\n"
        f"To: {token}\r\n"
        f"Subject: Re: Order {key} missing\r\n"
        f"Message-ID: <agent-{key}@example.com>\r\n"
        f"In-Reply-To: {notification_id}\r\n"
        f"References: {notification_id}\r\n"
        "Date: Sun, 22 Nov 2026 10:05:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"Your parcel is on its way, reference zzmark{key}zz.\r\n"
        "\r\n"
        "On Sun, 22 Nov 2026 at 10:00, Support <support@example.com> wrote:\r\n"
        "> -- reply above this line --\r\n"
        f"> Hello, my order {key} has not arrived yet.\r\n"
    ).encode()


class Outgoing:
    """Lists the outgoing Maildir's new/ every millisecond: when each customer reply (by the
    marker in the agent's words) and each notification to the agent (by subject) appeared."""

    def __init__(self, maildir: Path) -> None:
        self.new = maildir / "new"
        self.replies: dict[str, float] = {}
        self.acks = 0  # acknowledgements of the stream's mail seen (is the desk keeping up?)
        self.notifications: dict[str, tuple[str, str]] = {}  # key -> (Reply-To token, Message-ID)
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
            for name in names:
                if name in self._known:
                    continue
                self._known.add(name)
                try:
                    raw = (self.new / name).read_bytes()
                except OSError:
                    continue
                self._note(raw, now)
            time.sleep(0.001)

    def _note(self, raw: bytes, now: float) -> None:
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        to_agent = re.search(rb"^To:.*" + re.escape(AGENT.encode()), head, re.IGNORECASE | re.MULTILINE)
        with self._cond:
            if to_agent:
                msg = email.message_from_bytes(raw, policy=policy.default)
                found = re.search(r"Order (\S+) missing", str(msg["Subject"] or ""))
                if found and msg["Reply-To"] is not None:
                    token = msg["Reply-To"].addresses[0].addr_spec
                    self.notifications.setdefault(found.group(1), (token, str(msg["Message-ID"]).strip()))
            else:
                mark = _MARK.search(raw)
                if mark:
                    self.replies.setdefault(mark.group(1).decode(), now)
                elif re.search(rb"^In-Reply-To:\s*<r\d+s\d+@bench\.example>", head, re.IGNORECASE | re.MULTILINE):
                    self.acks += 1
            self._cond.notify_all()

    def wait(self, ready: Callable[[], object], what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{what}: not within {timeout:.0f}s")
                self._cond.wait(min(remaining, 0.5))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class AgentDesk(Desk):
    """The latency bench's desk plus one agent and no cap on its notifications."""

    def __init__(self, work: Path, database: str | None) -> None:
        super().__init__(work, database)
        self.config.write_text(
            self.config.read_text().replace("[limits]\n", "[limits]\nper_agent_hour = 0\n")
            + f'\n[[agent]]\nemail = "{AGENT}"\nname = "Ann Agent"\ntiers = ["L1"]\n'
        )


def open_tickets(desk: Desk, out: Outgoing, keys: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", desk.port, timeout=60) as smtp:
        for key in keys:
            smtp.sendmail(f"c-{key}@cust-{key}.example", ["support@example.com"], customer_mail(key))
    out.wait(lambda: all(k in out.notifications for k in keys), f"{len(keys)} notifications to the agent")


def replies(desk: Desk, out: Outgoing, keys: list[str]) -> list[float]:
    latencies = []
    with smtplib.SMTP("127.0.0.1", desk.port, timeout=60) as smtp:
        for key in keys:
            token, notification_id = out.notifications[key]
            smtp.sendmail(AGENT, [token], agent_mail(key, token, notification_id))
            accepted = time.monotonic()  # the client has the 250
            out.wait(lambda key=key: key in out.replies, f"the customer's mail for {key}")  # type: ignore[misc]
            latencies.append(out.replies[key] - accepted)
    return latencies


class Stream:
    """New customer mail at `rate` per second on its own connection until stopped."""

    def __init__(self, desk: Desk, rate: float, tag: str) -> None:
        self.desk, self.rate, self.tag, self.sent = desk, rate, tag, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        with smtplib.SMTP("127.0.0.1", self.desk.port, timeout=60) as smtp:
            while not self._stop.is_set():
                key = f"{self.tag}s{self.sent}"
                smtp.sendmail(f"c-{key}@cust-{key}.example", ["support@example.com"], customer_mail(key))
                self.sent += 1
                pause = start + self.sent / self.rate - time.monotonic()
                if pause > 0:
                    self._stop.wait(pause)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def run_round(number: int, args: argparse.Namespace) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="maildesk-agent-reply-") as tmp:
        desk = AgentDesk(Path(tmp), args.database)
        desk.start()
        out = Outgoing(desk.maildir)
        try:
            idle_keys = [f"r{number}i{i}" for i in range(args.replies)]
            load_keys = [f"r{number}l{i}" for i in range(args.replies)]
            open_tickets(desk, out, idle_keys + load_keys)

            def report(name: str, values: list[float], extra: str = "") -> None:
                figures[f"{name} median"] = [statistics.median(values)]
                figures[f"{name} p95"] = [percentile(values, 95)]
                figures[f"{name} max"] = [max(values)]
                print(
                    f"  round {number} {name:6}: median {statistics.median(values) * 1000:7.1f} ms, "
                    f"p95 {percentile(values, 95) * 1000:7.1f} ms, max {max(values) * 1000:7.1f} ms "
                    f"({len(values)} replies{extra})",
                    flush=True,
                )

            report("idle", replies(desk, out, idle_keys))
            started = time.monotonic()
            with Stream(desk, args.stream_rate, f"r{number}") as stream:
                values = replies(desk, out, load_keys)
                sent, acked = stream.sent, out.acks
            rate = sent / (time.monotonic() - started)
            report("stream", values, f"; {sent} customer mails at {rate:.1f}/s alongside, {acked} acknowledged by then")
        finally:
            out.close()
            desk.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--replies", type=int, default=30, help="agent replies per phase (idle, stream)")
    parser.add_argument("--stream-rate", type=float, default=5.0, help="customer mails per second during 'stream'")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default=None, help="database URL (default: SQLite in the data folder)")
    args = parser.parse_args()
    collected: dict[str, list[float]] = {}
    for number in range(1, args.rounds + 1):
        for key, values in run_round(number, args).items():
            collected.setdefault(key, []).extend(values)
    print(f"\nOver {args.rounds} rounds (each value a round's figure):")
    for key, values in collected.items():
        print(f"  {key:14} {summary(values, 1000.0, 'ms', 1)}")
    idle = statistics.median(collected["idle median"])
    stream = statistics.median(collected["stream median"])
    print(
        f"\nGoal: median < 1 s — idle {idle * 1000:.1f} ms ({'met' if idle < 1 else 'NOT met'}), "
        f"under a stream {stream * 1000:.1f} ms ({'met' if stream < 1 else 'NOT met'}); "
        f"stream / idle median ratio {stream / idle:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
