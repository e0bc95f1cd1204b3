"""Fixtures for intake tests: a private Dovecot (tests/support/dovecot.py) and a fresh spool."""

from __future__ import annotations

from pathlib import Path

import pytest

from maildesk.spool import Spool
from tests.support.dovecot import dovecot  # noqa: F401 - the fixture, re-exported for these tests


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool").ensure()
