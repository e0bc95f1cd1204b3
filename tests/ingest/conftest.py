"""Fixtures for intake tests: `dovecot`, a private Dovecot per test (tests/support/dovecot.py)."""

from __future__ import annotations

from tests.support.dovecot import dovecot  # noqa: F401 - the fixture, shared by intake tests
