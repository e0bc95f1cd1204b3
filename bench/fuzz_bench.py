"""Longer fuzz run of the real pipeline: mutated corpus messages and synthetic hostile ones
through App.process on SQLite in a tmp data folder, one message at a time.

Usage: python -m bench.fuzz_bench [--messages N] [--seed S] [--corpus DIR]

Prints messages, stored, quarantined (with reasons), failed (the run stops at the first
one, with its traceback) and the time per message (median, max, and the slowest shape).
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import statistics
import sys
import tempfile
from pathlib import Path

from maildesk.app import App
from tests.conftest import make_settings
from tests.support.hostile import CORPUS, KINDS, corpus_files, mutate, process_one, synthetic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # quarantines are counted below, not logged one by one
    files = corpus_files(args.corpus)
    rnd = random.Random(args.seed)
    counts: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    times: list[float] = []
    slowest = (0.0, "")
    with tempfile.TemporaryDirectory(prefix="maildesk-fuzz-") as tmp:
        path = Path(tmp)
        app = App(make_settings(path, f"sqlite:///{path / 'data' / 'maildesk.db'}"))
        app.migrate()
        try:
            for n in range(args.messages):
                if n % 2:
                    kind = rnd.choice(KINDS)
                    raw = synthetic(kind, rnd)
                    if rnd.random() < 0.5:
                        raw = mutate(raw, rnd)
                    shape = f"synthetic {kind}"
                else:
                    source = rnd.choice(files)
                    raw = mutate(source.read_bytes(), rnd, rnd.randint(1, 6))
                    shape = f"mutated {source.relative_to(args.corpus)}"
                if not raw.strip():
                    continue
                try:
                    outcome = process_one(app, raw)
                except AssertionError as exc:
                    counts["failed"] += 1
                    print(f"FAILED on message {n} ({shape}): {exc}", file=sys.stderr)
                    break
                counts[outcome.verdict] += 1
                if outcome.verdict == "quarantined":
                    reasons[outcome.detail.split(":")[0]] += 1
                times.append(outcome.seconds)
                if outcome.seconds > slowest[0]:
                    slowest = (outcome.seconds, shape)
        finally:
            app.worker.close()
            app.store.dispose()
    print(f"messages: {sum(counts.values())} (seed {args.seed})")
    print(f"stored: {counts['stored']}  quarantined: {counts['quarantined']}  failed: {counts['failed']}")
    for reason, count in reasons.most_common():
        print(f"  quarantined {count}: {reason}")
    if times:
        print(f"seconds per message: median {statistics.median(times):.4f}, max {max(times):.3f} ({slowest[1]})")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
