"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maildesk.app import App
from tests.conftest import make_settings


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[App]:
    app = App(make_settings(tmp_path, f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}"))
    app.migrate()
    yield app
    app.worker.close()
    app.store.dispose()
