"""Repeated measurements for the bench scripts: run a measurement in rounds, print min/median/max.

Owns `measure_rounds` and `summary`. It only times and formats; what is measured and the
goals belong to each bench script. Bench figures never fail a test run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

ROUNDS = 3


def measure_rounds(work: Callable[[], object], rounds: int = ROUNDS, repeat: int = 1) -> list[float]:
    """Seconds per call of `work`: `rounds` values, each the mean over `repeat` calls."""
    values = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            work()
        values.append((time.perf_counter() - start) / repeat)
    return values


def summary(values: list[float], scale: float = 1.0, unit: str = "s", digits: int = 3) -> str:
    """`min x / median y / max z unit` over the rounds, each value multiplied by `scale`."""
    lo, mid, hi = min(values) * scale, statistics.median(values) * scale, max(values) * scale
    return f"min {lo:.{digits}f} / median {mid:.{digits}f} / max {hi:.{digits}f} {unit} ({len(values)} rounds)"
