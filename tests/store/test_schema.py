"""The Alembic migrations build exactly the schema the models describe, on both backends
(besides the full-text search objects of migration 0002, which the models do not map)."""

from __future__ import annotations

import warnings
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from maildesk.store.models import Base

SEARCH_OBJECTS = ("messages_fts", "search_vector", "ix_messages_search")
# Expression indexes (0010): SQLAlchemy does not reflect them on SQLite (a warning), so the
# comparison leaves them out and `test_expression_indexes_exist` checks them by name.
EXPRESSION_INDEXES = ("ix_customers_email_lower", "ix_agents_email_lower")


def _names(diff: Any) -> str:
    return repr(diff)


def test_migrations_build_exactly_the_models(desk: Any) -> None:
    with desk.store.engine.connect() as conn, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index")
        warnings.filterwarnings("ignore", message="autogenerate skipping metadata-specified expression-based index")
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    known = SEARCH_OBJECTS + EXPRESSION_INDEXES
    unexpected = [d for d in diffs if not any(name in _names(d) for name in known)]
    assert unexpected == []
    assert "auto_sends" in Base.metadata.tables


def test_expression_indexes_exist(desk: Any) -> None:
    from sqlalchemy import text

    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'index'"
        if desk.store.is_sqlite
        else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    )
    with desk.store.engine.connect() as conn:
        names = set(conn.execute(text(sql)).scalars())
    assert set(EXPRESSION_INDEXES) <= names


def test_migration_0016_drops_the_unused_indexes_and_down_makes_them_again(desk: Any) -> None:
    """Message-IDs are found through `mid_hash`, event types through `ix_events_type_at`."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from maildesk.store.db import MIGRATIONS

    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'index'"
        if desk.store.is_sqlite
        else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    )
    unused = {"ix_messages_message_id", "ix_events_type"}
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))

    def names() -> set[str]:
        with desk.store.engine.connect() as conn:
            return set(conn.execute(text(sql)).scalars())

    assert not unused & names() and {"messages_mid_hash_key", "ix_events_type_at"} & names()
    for target, present in (("0015", True), ("head", False)):
        with desk.store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if target == "0015" else command.upgrade)(cfg, target)
        assert (unused <= names()) is present and (not unused & names()) is not present
