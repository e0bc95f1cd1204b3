"""Hot-path statements run straight on the DB-API cursor.

The pipeline writes about seven rows per message. Through SQLAlchemy's execution context a
statement costs three to four times what the driver itself spends on it, so the statements
of the hot path are compiled once per dialect by SQLAlchemy (same SQL, same type
conversions: each column's own bind processor, Python-side defaults filled in) and then run
on the session's DB-API connection, inside the same transaction. Driver errors are raised as
SQLAlchemy's exceptions, so `is_unavailable()` and the worker's failure policy see them as
before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, FromClause
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

_MISSING = object()
Plan = tuple[str, list[str] | None, list[tuple[str, Callable[[Any], Any] | None, Any]]]


class FastStatement:
    """A Core INSERT or SELECT on one table, executed on the raw driver connection."""

    def __init__(self, stmt: ClauseElement, table: FromClause, keys: Sequence[str] | None = None) -> None:
        self.stmt = stmt
        self.table = table
        self.keys = list(keys) if keys is not None else None
        self._plans: dict[str, Plan] = {}

    def _plan(self, conn: Connection) -> Plan:
        dialect = conn.dialect
        known = self._plans.get(dialect.name)
        if known is None:
            compiled: Any = self.stmt.compile(dialect=dialect, column_keys=self.keys)
            names = list(compiled.positiontup) if compiled.positiontup is not None else list(compiled.binds)
            params: list[tuple[str, Callable[[Any], Any] | None, Any]] = []
            for name in dict.fromkeys(names):  # the statement's order, each name once
                column = self.table.c.get(name)
                if column is not None:
                    bind_type = column.type
                    default = column.default
                else:
                    bind_type = compiled.binds[name].type
                    default = None
                processor = bind_type.dialect_impl(dialect).bind_processor(dialect)
                params.append((name, processor, default))
            positional = list(compiled.positiontup) if compiled.positiontup is not None else None
            known = (str(compiled.string), positional, params)
            self._plans[dialect.name] = known
        return known

    def _convert(self, plan: Plan, values: dict[str, Any]) -> Any:
        _sql, positional, params = plan
        converted = []
        for name, processor, default in params:
            value = values.get(name, _MISSING)
            if value is _MISSING:
                if default is None:
                    value = None
                else:
                    value = default.arg(None) if default.is_callable else default.arg
            if processor is not None and value is not None:
                value = processor(value)
            converted.append(value)
        if positional is None:
            return dict(zip((p[0] for p in params), converted, strict=True))
        if len(positional) == len(params):  # each name once, in the statement's order
            return tuple(converted)
        by_name = dict(zip((p[0] for p in params), converted, strict=True))
        return tuple(by_name[name] for name in positional)

    def execute(self, conn: Connection, values: dict[str, Any]) -> Any:
        """Run once; returns the driver cursor (fetch RETURNING or SELECT rows from it)."""
        plan = self._plan(conn)
        params = self._convert(plan, values)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(plan[0], params)
        except conn.dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise DBAPIError.instance(plan[0], params, exc, conn.dialect.loaded_dbapi.Error) from exc
        return cursor

    def execute_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        plan = self._plan(conn)
        params = [self._convert(plan, row) for row in rows]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(plan[0], params)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(plan[0], params, exc, conn.dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()

    def scalar(self, conn: Connection, values: dict[str, Any]) -> Any:
        cursor = self.execute(conn, values)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return None if row is None else row[0]

    def first(self, conn: Connection, values: dict[str, Any]) -> tuple[Any, ...] | None:
        cursor = self.execute(conn, values)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return None if row is None else tuple(row)

    def column(self, conn: Connection, values: dict[str, Any]) -> list[Any]:
        cursor = self.execute(conn, values)
        try:
            return [row[0] for row in cursor.fetchall()]
        finally:
            cursor.close()
