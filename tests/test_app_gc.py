"""The daemon's collector settings (issue 17): `maildesk run` settles the collector once
warmed up; an App used as a library (tests, scripts) leaves the process's collector alone."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from maildesk import app as app_module


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_collector_freezes_what_lives_and_collects_less_often(restored_collector: None) -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    Cycle()  # garbage in a cycle: collected before the freeze, not kept forever
    gc.unfreeze()
    app_module.settle_collector()
    assert gc.get_threshold() == app_module.GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert not any(type(o) is Cycle for o in gc.get_objects())  # collected, not frozen
    later = Cycle()  # made after: still seen, and collected, by the collector
    del later
    assert gc.collect() >= 1


def test_the_worker_settles_it_only_when_its_process_is_the_daemons(
    desk: Any, restored_collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(app_module, "settle_collector", lambda: calls.append(1))
    monkeypatch.setattr(desk.worker, "run_forever", lambda stop: None)  # start-up only
    assert desk.settle_gc is False  # library use: the process's collector is its own
    desk._worker_loop(threading.Event())
    assert calls == []
    desk.settle_gc = True  # what `maildesk run` sets
    desk._worker_loop(threading.Event())
    assert calls == [1]


def test_maildesk_run_opts_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from maildesk.cli import app as cli
    from maildesk.commands import daemon

    seen: list[bool] = []

    def fake_open_app(_config: Any) -> Any:
        class Desk:
            settle_gc = False
            log_override: dict[str, str] = {}

            def apply_logging(self) -> None:
                pass

            def run(self, stop: threading.Event) -> None:
                seen.append(self.settle_gc)

            def request_reload(self) -> None:
                pass

        return Desk()

    monkeypatch.setattr(daemon, "open_app", fake_open_app)
    monkeypatch.setattr(daemon.signal, "signal", lambda *_a: None)  # keep the test process's handlers
    result = CliRunner().invoke(cli, ["run"])
    assert result.exit_code == 0, result.output
    assert seen == [True]
