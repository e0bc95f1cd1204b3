"""Chaos: the daemon (`python -m maildesk run`, a subprocess) SIGKILLed at random moments
while mail comes in by SMTP and by IMAP (a private Dovecot), the worker stores it and the
outbox delivers the acknowledgements (to the Maildir, or to a loopback aiosmtpd relay).

Prints kills, messages sent (250s received) and appended to IMAP, stored, duplicates,
tickets, acknowledgements sent and duplicated. Goal: 0 lost, 0 duplicated tickets, 0
duplicated acknowledgements on the Maildir (a relay cannot always tell whether a copy it
took before the kill was delivered: a duplicate there is counted, not hidden).

The kill comes 0.5-3 s (--kill-min/--kill-max) after the restarted daemon's worker is ready.

Usage: python -m bench.chaos [--count 2000] [--outbound maildir|relay|both] [--seed N]
Must run as root (the private Dovecot needs it), from the repository root.
"""

from __future__ import annotations

import argparse
import email
import os
import random
import smtplib
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from maildesk.store.db import Store
from maildesk.store.models import Message, OutboxItem, Ticket
from tests.support.daemon import Daemon, wait_port, write_config
from tests.support.dovecot import DovecotServer
from tests.support.mailgen import eml
from tests.support.net import free_port
from tests.support.outbox_kit import RelaySink
from tests.support.wait import WaitTimeout

LIMITS = """
[limits]
global_hour = 1000000
per_domain_hour = 1000000
new_tickets_per_domain_hour = 0
"""


def _mail(i: int, via: str) -> bytes:
    return eml(
        sender=f"Chaos {i} <c{i}@d{i % 40}.chaos.example>",
        subject=f"chaos {via} {i}",
        message_id=f"<chaos-{i}@chaos.example>",
    )


def _send_smtp(port: int, raws: list[tuple[int, bytes]], sent: list[int], stop: threading.Event) -> None:
    """Send each mail until the daemon answers 250; a kill mid-DATA means sending it again."""
    for i, raw in raws:
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
                    client.sendmail(f"c{i}@chaos.example", ["support@example.com"], raw)
                sent.append(i)
                break
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)


def _append(imap: DovecotServer, raws: list[bytes]) -> None:
    """Append to INBOX in chunks; a young Dovecot may refuse the first logins for a moment."""
    for start in range(0, len(raws), 50):
        for _attempt in range(100):
            try:
                imap.append_many("INBOX", raws[start : start + 50], chunk=50)
                break
            except Exception:  # noqa: BLE001 - LoginError while auth starts; retried
                imap._client = None
                time.sleep(0.3)


def _db_figures(url: str) -> dict[str, int]:
    store = Store(url)
    try:
        with store.reader() as s:
            rows = s.scalar(select(func.count()).select_from(Message).where(Message.direction == "in")) or 0
            distinct = (
                s.scalar(select(func.count(func.distinct(Message.message_id))).where(Message.direction == "in")) or 0
            )
            tickets = s.scalar(select(func.count()).select_from(Ticket)) or 0
            pending = (
                s.scalar(
                    select(func.count()).select_from(OutboxItem).where(OutboxItem.state.in_(("queued", "sending")))
                )
                or 0
            )
            acks = s.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.template == "ack")) or 0
        return {"rows": rows, "distinct": distinct, "tickets": tickets, "pending": pending, "ack_rows": acks}
    except Exception:  # noqa: BLE001 - not migrated yet
        return {"rows": 0, "distinct": 0, "tickets": 0, "pending": 1, "ack_rows": 0}
    finally:
        store.dispose()


def _maildir_ids(folder: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for sub in ("new", "cur"):
        for path in (folder / sub).glob("*") if (folder / sub).exists() else []:
            with path.open("rb") as fh:
                ids[str(email.message_from_binary_file(fh).get("Message-ID", ""))] += 1
    return ids


def _restart(daemon: Daemon) -> None:
    """Start the daemon again; on a loaded machine it may take longer than Daemon waits."""
    try:
        daemon.start()
    except WaitTimeout:
        wait_port("127.0.0.1", daemon.port, timeout=120)
    daemon.wait_ready(timeout=180)  # kills land at random moments of work, not of start-up


def run(count: int, outbound: str, seed: int, kill_min: float, kill_max: float, deadline: float) -> dict[str, Any]:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="maildesk-chaos-"))
    tmp.chmod(0o755)  # the dovecot user must reach its folder inside
    os.environ["MAILDESK_CHAOS_IMAP_PW"] = "secret-Pa55"
    (tmp / "dovecot").mkdir()
    imap = DovecotServer(tmp / "dovecot").start()
    relay = RelaySink().start() if outbound == "relay" else None
    smtp_port = free_port()
    url = f"sqlite:///{tmp / 'data' / 'maildesk.db'}"
    extra = LIMITS + (
        f'[outbound]\nrelay_host = "127.0.0.1"\nrelay_port = {relay.port}\n'
        'security = "none"\nretry_base_seconds = 1.0\n'
        if relay
        else ""
    )
    extra += f"""
[[imap]]
name = "chaos"
host = "127.0.0.1"
port = {imap.port}
security = "none"
username = "{imap.user}"
password_env = "MAILDESK_CHAOS_IMAP_PW"
folders = ["INBOX"]
batch_size = 50
poll_interval = 0.2
"""
    cfg = write_config(tmp / "maildesk.toml", data_dir=tmp / "data", database_url=url, smtp_port=smtp_port, extra=extra)
    daemon = Daemon(cfg, smtp_port, tmp / "daemon.log")
    by_smtp = [(i, _mail(i, "smtp")) for i in range(0, count, 2)]
    by_imap = [_mail(i, "imap") for i in range(1, count, 2)]
    _restart(daemon)
    stop = threading.Event()
    sent: list[int] = []
    sender = threading.Thread(target=_send_smtp, args=(smtp_port, by_smtp, sent, stop), daemon=True)
    sender.start()
    appender = threading.Thread(target=_append, args=(imap, by_imap), daemon=True)
    appender.start()
    kills = 0
    started = time.monotonic()
    figures = _db_figures(url)
    while time.monotonic() - started < deadline:
        time.sleep(rng.uniform(kill_min, kill_max))
        figures = _db_figures(url)
        done = not sender.is_alive() and not appender.is_alive()
        if done and figures["distinct"] >= count and figures["pending"] == 0:
            break
        if not done or figures["pending"] or figures["distinct"] < count:
            daemon.kill()
            kills += 1
            _restart(daemon)
    stop.set()
    time.sleep(2)
    daemon.terminate()
    figures = _db_figures(url)
    imap.cleanup()
    if relay:
        relay.stop()
        out_ids = Counter(str(email.message_from_bytes(raw).get("Message-ID", "")) for _f, _t, raw in relay.received)
    else:
        out_ids = _maildir_ids(tmp / "data" / "outgoing")
    return {
        "outbound": outbound,
        "kills": kills,
        "smtp_250": len(set(sent)),
        "imap_appended": len(by_imap),
        "stored": figures["distinct"],
        "lost": count - figures["distinct"],
        "duplicate_rows": figures["rows"] - figures["distinct"],
        "tickets": figures["tickets"],
        "duplicated_tickets": figures["tickets"] - figures["distinct"],
        "ack_rows": figures["ack_rows"],
        "acks_delivered": sum(out_ids.values()),
        "acks_duplicated": sum(n - 1 for n in out_ids.values() if n > 1),
        "seconds": round(time.monotonic() - started, 1),
        "folder": str(tmp),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--outbound", choices=("maildir", "relay", "both"), default="both")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--kill-min", type=float, default=0.5, help="seconds between kills, at least")
    parser.add_argument("--kill-max", type=float, default=3.0, help="seconds between kills, at most")
    parser.add_argument("--deadline", type=float, default=1800.0)
    args = parser.parse_args()
    bad = 0
    for mode in ("maildir", "relay") if args.outbound == "both" else (args.outbound,):
        count = args.count // 2 if args.outbound == "both" else args.count
        result = run(count, mode, args.seed, args.kill_min, args.kill_max, args.deadline)
        print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
        bad += bool(result["lost"] or result["duplicated_tickets"] or result["duplicate_rows"])
        bad += bool(mode == "maildir" and result["acks_duplicated"])
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
