"""The one way tests wait for something to happen: poll a condition until a deadline.

Owns `wait_for`. Tests use it instead of fixed sleeps, so they are as fast as the system
under test allows and fail with a message saying what did not happen. It must not be
used to pace a client or to space out events on purpose (that is a sleep, and says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline (an AssertionError: the test fails)."""


def wait_for(
    condition: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "",
) -> T:
    """Call `condition` every `interval` seconds until it returns something truthy; return that.

    The condition is checked once more at the deadline, so a slow last step still counts.
    After `timeout` seconds raises WaitTimeout with `message` (a string, or a callable that
    describes the state at the deadline) and the time waited.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        value = condition()
        if value:
            return value
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(min(interval, deadline - now))
    what = message() if callable(message) else message
    raise WaitTimeout(f"{what or 'condition'}: not met within {timeout:g}s")


# A hang guard, not a speed goal: the pathological inputs it guards against ran for minutes
# (split_reply 54 s+, the `re` invoice rule 112 s, the per-line parse ~50 s), the fixed code
# runs in about a second on a quiet machine. The speed figures live in bench/ (worst_message,
# quotes_bench, rules_bench); this bound only has to fail a regression back to the old
# behaviour and survive a machine loaded by other work.
HANG_GUARD_SECONDS = 30.0
