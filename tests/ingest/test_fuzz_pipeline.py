"""Fuzzing the real pipeline (issue 16): real and mutated corpus messages and synthetic
hostile ones through App.process on SQLite in a tmp data folder. Every message is stored
or quarantined with a reason, none goes to failed/ or crashes the worker, none takes more
than a few seconds. Bounded and deterministic here (`derandomize`); `bench/fuzz_bench.py`
runs longer and prints figures."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maildesk.app import App
from tests.conftest import make_settings
from tests.support.hostile import KINDS, corpus_files, mutate, process_one, synthetic

SLOW = 5.0  # seconds one message may take, at most
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
FILES = corpus_files()  # a missing corpus fails the collection of this module: never a skip


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    with tempfile.TemporaryDirectory(prefix="maildesk-fuzz-") as tmp:
        path = Path(tmp)
        desk = App(make_settings(path, f"sqlite:///{path / 'data' / 'maildesk.db'}"))
        desk.migrate()
        yield desk
        desk.worker.close()
        desk.store.dispose()


def test_the_whole_corpus_is_stored_or_quarantined(app: App) -> None:
    for path in FILES:
        app.spool.put(path.read_bytes(), "fuzz")
    result = app.process()
    assert result["failed"] == 0 and not list(app.spool.entries("failed")), result
    quarantined = list(app.spool.entries("quarantine"))
    assert all(app.spool.info(e).get("reason") for e in quarantined)
    assert not list(app.spool.entries("incoming")) and not list(app.spool.entries("active"))
    assert result["processed"] + result["quarantined"] == len(FILES), result


@FUZZ
@given(index=st.integers(0, len(FILES) - 1), seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 6))
def test_mutated_corpus_messages(app: App, index: int, seed: int, rounds: int) -> None:
    raw = mutate(FILES[index].read_bytes(), random.Random(seed), rounds)
    outcome = process_one(app, raw) if raw.strip() else None
    assert outcome is None or outcome.seconds < SLOW, (FILES[index], outcome)


@FUZZ
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1), mutated=st.booleans())
def test_synthetic_hostile_messages(app: App, kind: str, seed: int, mutated: bool) -> None:
    rnd = random.Random(seed)
    raw = synthetic(kind, rnd)
    if mutated:
        raw = mutate(raw, rnd)
    if not raw.strip():
        return
    outcome = process_one(app, raw)
    assert outcome.seconds < SLOW, (kind, seed, outcome)
