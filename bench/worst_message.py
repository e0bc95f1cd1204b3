"""The worst single message: adversarial shapes up to smtp.max_message_size, each processed
end-to-end through App.process (SQLite, the rules `maildesk init` writes), three rounds,
min/median/max seconds, and the delay of an ordinary mail queued right behind it: spooled
after the worst one, in a batch of its own, timed from the start of the drain to its own
commit (the worker's after-commit hook).

Usage: python -m bench.worst_message [--size BYTES] [--rounds 3] [--profile SHAPE]

Goal: under 5 s per shape. `--profile SHAPE` prints the cProfile top functions of one round.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import logging
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from maildesk.app import App
from maildesk.config import SmtpSettings
from maildesk.pipeline.context import MessageContext
from tests.conftest import make_settings
from tests.support.mailgen import eml

HEAD = b"From: Worst <worst@customer.example>\r\nTo: support@example.com\r\nSubject: worst case\r\n"


def _text(body: bytes) -> bytes:
    return HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body


def _parts(size: int) -> bytes:
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + part * (size // len(part)) + b"--b--\r\n"


def _html(size: int) -> bytes:
    unit = b"<div><blockquote><p>quoted <b>text</b></p></blockquote></div>\r\n"
    return HEAD + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + unit * (size // len(unit))


SHAPES: dict[str, Callable[[int], bytes]] = {
    "whitespace runs": lambda n: _text((b" " * 998 + b"\r\n") * (n // 1000)),
    "deep > quoting": lambda n: _text((b">" * 900 + b" quoted\r\n") * (n // 910)),
    "many short lines": lambda n: _text(b"a\r\n" * (n // 3)),
    "one huge line": lambda n: _text(b"x" * n + b"\r\n"),
    "thousands of MIME parts": _parts,
    "huge HTML": _html,
}


def _stamp(committed: dict[str, float], ctx: MessageContext) -> None:
    committed.setdefault(ctx.msg.message_id, time.perf_counter())


def run_shape(shape: str, size: int, rounds: int, profile: bool) -> tuple[list[float], list[float]]:
    times, behind = [], []
    for n in range(rounds):
        with tempfile.TemporaryDirectory(prefix="maildesk-worst-") as tmp:
            path = Path(tmp)
            app = App(make_settings(path, f"sqlite:///{path / 'data' / 'maildesk.db'}"))
            app.migrate()
            committed: dict[str, float] = {}
            app.worker.after_commit = functools.partial(_stamp, committed)
            app.worker.batch_size = app.worker.max_batch = 1  # the ordinary mail in a batch of its own
            try:
                raw = SHAPES[shape](size - 2000)
                app.spool.put(raw, "bench")
                app.spool.put(eml(message_id=f"<behind{n}@customer.example>"), "bench")
                started = time.perf_counter()
                profiler = cProfile.Profile() if profile and n == 0 else None
                if profiler:
                    profiler.enable()
                result = app.process()
                if profiler:
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
                assert result["failed"] == 0, result
                assert len(committed) == 2, committed
                ordinary = committed.pop(f"behind{n}@customer.example")
                times.append(min(committed.values()) - started)
                behind.append(ordinary - started)
            finally:
                app.worker.close()
                app.store.dispose()
    return times, behind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=SmtpSettings().max_message_size)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="")
    parser.add_argument("--shape", action="append", default=[])
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    slow = 0
    for shape in args.shape or list(SHAPES):
        times, behind = run_shape(shape, args.size, args.rounds, profile=shape == args.profile)
        flag = "" if max(times) < 5 else "  OVER 5 s"
        slow += bool(flag)
        print(
            f"{shape:26} {args.size:>10} B  min {min(times):6.2f}  median {statistics.median(times):6.2f}  "
            f"max {max(times):6.2f} s  ordinary mail behind it committed after: max {max(behind):6.2f} s{flag}",
            flush=True,
        )
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
