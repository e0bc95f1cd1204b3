"""The Alembic migrations build exactly the schema the models describe, on both backends
(besides the full-text search objects of migration 0002, which the models do not map)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from maildesk.store.models import Base

SEARCH_OBJECTS = ("messages_fts", "search_vector", "ix_messages_search")


def _names(diff: Any) -> str:
    return repr(diff)


def test_migrations_build_exactly_the_models(desk: Any) -> None:
    with desk.store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    unexpected = [d for d in diffs if not any(name in _names(d) for name in SEARCH_OBJECTS)]
    assert unexpected == []
    assert "auto_sends" in Base.metadata.tables
