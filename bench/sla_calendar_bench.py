"""Cost of `BusinessCalendar.add_business_time` over business spans of 1 h, 5 days and 90 days.

Run: .venv/bin/python bench/sla_calendar_bench.py [--calls N] [--rounds 3]
Calendar: Europe/Berlin, Mon-Fri 08:30-12:30 and 13:30-17:30 (8 h days), Bavarian public
holidays and two closed dates; starts spread over 2026 (both DST changes, Easter).
"cold" builds a fresh calendar per round (per-day intervals, holidays and the year's
irregular days computed on the way); "warm" repeats the same calls on that calendar. Prints
µs per call, min / median / max over the rounds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from maildesk.sla.calendar import BusinessCalendar, parse_spans

SPANS = {"1h": timedelta(hours=1), "5d": timedelta(hours=5 * 8), "90d": timedelta(hours=90 * 8)}


def make_calendar() -> BusinessCalendar:
    return BusinessCalendar(
        name="office",
        timezone="Europe/Berlin",
        week=(parse_spans("08:30-12:30, 13:30-17:30"),) * 5 + ((), ()),
        holidays="DE-BY",
        closed=frozenset({date(2026, 12, 24), date(2026, 12, 31)}),
    )


def starts(n: int) -> list[datetime]:
    rnd = random.Random(13)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    return [base + timedelta(seconds=rnd.randrange(0, 365 * 86_400)) for _ in range(n)]


def timed(fn: Callable[[], None], calls: int) -> float:
    began = time.perf_counter()
    fn()
    return (time.perf_counter() - began) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    moments = starts(args.calls)
    print(f"{args.calls} calls per round, {args.rounds} rounds; µs per call (min / median / max)")
    for label, delta in SPANS.items():
        cold: list[float] = []
        warm: list[float] = []
        for _ in range(args.rounds):
            calendar = make_calendar()

            def run(calendar: BusinessCalendar = calendar, delta: timedelta = delta) -> None:
                for start in moments:
                    calendar.add_business_time(start, delta)

            cold.append(timed(run, args.calls))
            warm.append(timed(run, args.calls))
        for name, values in (("cold", cold), ("warm", warm)):
            print(f"  {label:>4} {name}: {min(values):8.1f} / {statistics.median(values):8.1f} / {max(values):8.1f}")
    calendar = make_calendar()
    check = [calendar.business_time_between(s, calendar.add_business_time(s, SPANS["90d"])) for s in moments[:50]]
    assert all(c == SPANS["90d"] for c in check), "add_business_time and business_time_between disagree"


if __name__ == "__main__":
    main()
