"""The default clock: aware UTC now. Everything that needs time takes a clock argument."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
