"""Simulated worker deaths for crash-blame tests (no subprocess needed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class WorkerDied(BaseException):
    """Stands for the process dying (not an exception the worker may catch)."""


def drain_through_crashes(process: Callable[[], Any], limit: int = 10) -> int:
    """Call `process` (which recovers what the last "crash" left in active/, then drains)
    until it finishes without dying; return how many times it died."""
    crashes = 0
    while True:
        try:
            process()
            return crashes
        except WorkerDied:
            crashes += 1
            assert crashes < limit, "the worker keeps dying: the poison message was never parked"
