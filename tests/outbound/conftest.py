"""Fixtures for the outbox tests: the test clock, a desk with respond wired, a relay sink."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.outbox_kit import Clock, RelaySink, quiet, wire


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wired(desk: Any, clock: Clock) -> Any:
    """The `desk` fixture (SQLite and PostgreSQL) with the respond stage and the test clock."""
    wire(desk, clock)
    return desk


@pytest.fixture
def sink() -> Iterator[RelaySink]:
    relay = RelaySink().start()
    yield relay
    relay.stop()


@pytest.fixture
def bare(desk: Any, clock: Clock) -> Any:
    """The `desk` fixture without the respond stage: the test queues mail itself."""
    quiet(desk, clock)
    return desk
