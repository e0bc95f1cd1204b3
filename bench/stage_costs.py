"""Where the worker's CPU goes, stage by stage: the map for the next piece of issue 17.

Usage: python -m bench.stage_costs [--messages 2000] [--rounds 3]

Each round runs the full pipeline through the real worker (`intake_bench.pipeline_rate`:
SQLite, the example rules of `maildesk init`, the same generated corpus) with every stage
wrapped to add up the thread CPU it spends (`time.thread_time`), and the batch's events
INSERT likewise. Printed per message, min/median/max over the rounds, largest first, with
the worker's whole CPU and the rest of it (claim, preparation results, commit, bookkeeping).
The events INSERT is counted once more inside a stage when a read of events there wrote the
pending ones first (rare on this corpus). Thread CPU is steadier than wall time on this
shared machine, but the wrapper itself costs a little: compare stages with each other, and
trees with `bench/ab_bench.py`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.budget_bench import settings_for
from bench.intake_bench import corpus, pipeline_rate
from bench.rounds import summary
from maildesk import language
from maildesk.pipeline import context
from maildesk.store import queries as q


class _Timed:
    """Stage calls and the batch's event writes, timed in thread CPU while installed."""

    def __init__(self) -> None:
        self.spent: Counter[str] = Counter()
        self._stage_call = context.Stage.__call__
        self._flush = q.flush_events

    def __enter__(self) -> _Timed:
        spent, stage_call, flush = self.spent, self._stage_call, self._flush

        def timed_stage(stage: context.Stage, ctx: Any, session: Any, deps: Any) -> None:
            start = time.thread_time()
            try:
                stage_call(stage, ctx, session, deps)
            finally:
                spent[stage.name] += time.thread_time() - start

        def timed_flush(session: Any) -> None:
            start = time.thread_time()
            try:
                flush(session)
            finally:
                spent["(events INSERT)"] += time.thread_time() - start

        context.Stage.__call__ = timed_stage  # type: ignore[method-assign]
        q.flush_events = timed_flush  # the commit hook looks it up by name at each call
        return self

    def __exit__(self, *exc: object) -> None:
        context.Stage.__call__ = self._stage_call  # type: ignore[method-assign]
        q.flush_events = self._flush


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    per_round: list[dict[str, float]] = []
    for k in range(args.rounds):
        work = Path(tempfile.mkdtemp(prefix="maildesk-stages-"))
        settings = settings_for(work, work / "pipeline.db")
        msgs = corpus(args.messages, tag=f"s{k}")
        warming = language.warm(settings.desk.locales)
        if warming is not None:
            warming.join()
        with _Timed() as timed:
            rate, result = pipeline_rate(settings, msgs, foundation=False)
        n = max(int(result["processed"]), 1)
        figures = {name: seconds / n for name, seconds in timed.spent.items()}
        figures["(worker, all)"] = float(result["cpu"])
        figures["(rest of the worker)"] = float(result["cpu"]) - sum(timed.spent.values()) / n
        per_round.append(figures)
        print(f"  round {k + 1}: {rate:,.0f} msg/s, worker CPU {result['cpu'] * 1e6:,.0f} µs per message")
    names = sorted({name for figures in per_round for name in figures}, key=lambda name: -per_round[0].get(name, 0))
    print(f"thread CPU per message, {args.rounds} rounds, {args.messages} mails, SQLite:")
    for name in names:
        print(f"  {name:24s} {summary([figures.get(name, 0.0) for figures in per_round], 1e6, 'µs', 0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
