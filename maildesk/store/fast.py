"""Hot-path statements run straight on the DB-API cursor.

The pipeline writes about seven rows and reads a handful of facts per message. Through
SQLAlchemy's execution context a statement costs ten times what the driver itself spends
on it (this machine, SQLite: a prebuilt Core `SELECT count(*)` on the session's connection
100 µs, the same through `Session.execute` 196 µs, built per call 437 µs, on the driver
10 µs), so the statements of the hot path are compiled once per dialect by SQLAlchemy (same
SQL, same type conversions: each bind's own processor, Python-side defaults filled in, each
result column's own result processor) and then run on the session's DB-API connection,
inside the same transaction. Driver errors are raised as SQLAlchemy's exceptions, so
`is_unavailable()` and the worker's failure policy see them as before.

A statement may join tables and hold scalar subqueries; a plain `bindparam("x")` takes its
type from the column it is compared with (SQLAlchemy infers it), and `table` fills in the
Python-side defaults of an INSERT's missing values. Expanding `IN` parameters are not
supported: `FastIn` keeps one compiled statement per list length.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, FromClause, Insert, literal_column
from sqlalchemy.dialects.sqlite.base import DATETIME as _SQLITE_DATETIME
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

_MISSING = object()
Processor = Callable[[Any], Any] | None


class Plan(NamedTuple):
    """A statement compiled for one dialect, with how a dict of values becomes its parameters.

    `names[i]` is read from the values with `defaults[i]` when missing (a column's constant
    default or a literal, else None); `late` are the (index, fill) of the callable defaults
    (`_MISSING` in `defaults`), `processors` the (index, bind processor) pairs; `order` puts
    the converted values in the statement's positional order (None: already in it), `named`
    says the driver takes a dict (psycopg's `%(name)s`). Splitting the work this way lets one
    `map` read every value and a short loop do the rest."""

    sql: str
    names: tuple[str, ...]
    defaults: tuple[Any, ...]
    late: tuple[tuple[int, Callable[[], Any]], ...]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    order: tuple[int, ...] | None
    named: bool
    results: list[Processor] | None


class _Constant:
    """A fill that is always the same value (a column's scalar default, a literal, None)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self) -> Any:
        return self.value


def _column_default(default: Any) -> Callable[[], Any]:
    """A column's Python-side default for a value the caller left out (None without one)."""
    if default is None:
        return _Constant(None)
    if default.is_callable:
        return lambda: default.arg(None)
    return _Constant(default.arg)


def _bind_processor(bind_type: Any, dialect: Any) -> Processor:
    """The bind processor of `bind_type` on `dialect`. SQLite's DATETIME gets an equivalent
    of SQLAlchemy's (same text: `2026-11-22 10:00:00.000000`, the zone dropped) that is
    `datetime.isoformat`, 2.3x cheaper (measured) than formatting seven fields through a
    dict; anything that is not a datetime goes to SQLAlchemy's own."""
    impl = bind_type.dialect_impl(dialect)
    processor = impl.bind_processor(dialect)
    if processor is None or dialect.name != "sqlite" or not isinstance(impl, _SQLITE_DATETIME):
        return processor
    if getattr(impl, "_storage_format", None) != _SQLITE_DATETIME._storage_format:
        return processor  # a custom storage format: SQLAlchemy's own processor
    own = processor
    # The last datetime written and its text, as one tuple (read and replaced atomically, so
    # threads sharing the statement never pair one value with another's text): a message's
    # rows carry the same `now` many times (its events, ticket, message and outbox rows).
    last: list[tuple[datetime | None, str]] = [(None, "")]

    def process(value: Any) -> Any:
        if type(value) is datetime:
            seen = last[0]
            if seen[0] is value:
                return seen[1]
            naive = value.replace(tzinfo=None) if value.tzinfo is not None else value
            text = naive.isoformat(" ", "microseconds")
            last[0] = (value, text)
            return text
        return own(value)

    return process


def inline_in(column: Any, values: Sequence[str]) -> Any:
    """`column IN ('a', 'b')` with the values written into the SQL (for the code's own
    constants, e.g. the open statuses; a Python list would be an expanding parameter)."""
    for value in values:
        if not value.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"not a plain constant: {value!r}")
    return column.in_([literal_column(f"'{value}'") for value in values])


def _layout(
    sql: str,
    positional: list[str] | None,
    params: list[tuple[str, Processor, Callable[[], Any]]],
    results: list[Processor] | None,
) -> Plan:
    """The Plan of a compiled statement: `params` are (name, bind processor, fill) in the
    statement's order, each name once; `positional` the statement's parameter names in
    order (with repeats), or None for a driver that takes them by name."""
    names = tuple(name for name, _p, _f in params)
    defaults = tuple(fill.value if isinstance(fill, _Constant) else _MISSING for _n, _p, fill in params)
    late = tuple((i, fill) for i, (_n, _p, fill) in enumerate(params) if not isinstance(fill, _Constant))
    processors = tuple((i, p) for i, (_n, p, _f) in enumerate(params) if p is not None)
    order = None
    if positional is not None and list(positional) != list(names):  # a name used twice
        order = tuple(names.index(name) for name in positional)
    return Plan(sql, names, defaults, late, processors, order, positional is None, results)


def _positional(dialect: Any) -> Any:
    """`dialect` as it compiles with positional parameters: psycopg takes `%s` with a tuple
    as well as `%(name)s` with a dict, and the tuple spares its per-execution work of
    matching names to placeholders (drivers that are positional already are returned as they
    are). A shallow copy, made once per statement and dialect (plans are kept)."""
    if dialect.positional or dialect.paramstyle != "pyformat":
        return dialect
    twin = copy.copy(dialect)
    twin.paramstyle, twin.positional = "format", True
    return twin


class FastStatement:
    """A Core statement compiled once per dialect and executed on the raw driver connection."""

    def __init__(self, stmt: ClauseElement, table: FromClause | None = None, keys: Sequence[str] | None = None) -> None:
        self.stmt = stmt
        self.table = table
        self.keys = list(keys) if keys is not None else None
        self._plans: dict[str, Plan] = {}

    def __repr__(self) -> str:
        return f"FastStatement({str(self.stmt)[:80]!r})"

    def _plan(self, conn: Connection) -> Plan:
        dialect = conn.dialect
        known = self._plans.get(dialect.name)
        if known is None:
            compiled: Any = self.stmt.compile(
                dialect=_positional(dialect),
                column_keys=self.keys,
                # no implicit `RETURNING id` on an INSERT (PostgreSQL): nobody reads it
                for_executemany=isinstance(self.stmt, Insert),
            )
            names = list(compiled.positiontup) if compiled.positiontup is not None else list(compiled.binds)
            params: list[tuple[str, Processor, Callable[[], Any]]] = []
            for name in dict.fromkeys(names):  # the statement's order, each name once
                column = self.table.c.get(name) if self.table is not None else None
                if column is not None:
                    bind_type = column.type
                    fill = _column_default(column.default)
                else:
                    bind = compiled.binds[name]
                    if getattr(bind, "expanding", False):
                        raise ValueError(f"expanding parameter {name!r}: use FastIn or inline_in")
                    bind_type = bind.type
                    fill = _Constant(None if bind.callable else bind.value)  # a literal in the statement
                processor = _bind_processor(bind_type, dialect)
                params.append((name, processor, fill))
            positional = list(compiled.positiontup) if compiled.positiontup is not None else None
            results: list[Processor] | None = None
            if compiled._result_columns:
                results = [
                    col.type.dialect_impl(dialect).result_processor(dialect, None) for col in compiled._result_columns
                ]
                if not any(results):
                    results = None
            known = _layout(str(compiled.string), positional, params, results)
            self._plans[dialect.name] = known
        return known

    @staticmethod
    def _convert(plan: Plan, values: dict[str, Any]) -> Any:
        converted = list(map(values.get, plan.names, plan.defaults))
        for i, fill in plan.late:
            if converted[i] is _MISSING:
                converted[i] = fill()
        for i, processor in plan.processors:
            value = converted[i]
            if value is not None:
                converted[i] = processor(value)
        if plan.named:
            return dict(zip(plan.names, converted, strict=True))
        if plan.order is None:
            return tuple(converted)
        return tuple([converted[i] for i in plan.order])

    def _cursor(self, conn: Connection, values: dict[str, Any]) -> tuple[Any, Plan]:
        plan = self._plan(conn)
        params = self._convert(plan, values)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(plan.sql, params)
        except conn.dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise DBAPIError.instance(plan.sql, params, exc, conn.dialect.loaded_dbapi.Error) from exc
        return cursor, plan

    @staticmethod
    def _row(plan: Plan, row: Sequence[Any]) -> tuple[Any, ...]:
        results = plan.results
        if results is None:
            return tuple(row)
        return tuple(p(v) if p is not None else v for p, v in zip(results, row, strict=False))

    def execute(self, conn: Connection, values: dict[str, Any]) -> int:
        """Run once, for its effect; returns the driver's rowcount."""
        cursor, _plan = self._cursor(conn, values)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def execute_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        plan = self._plan(conn)
        params = [self._convert(plan, row) for row in rows]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(plan.sql, params)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(plan.sql, params, exc, conn.dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()

    def first(self, conn: Connection, values: dict[str, Any]) -> tuple[Any, ...] | None:
        cursor, plan = self._cursor(conn, values)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return None if row is None else self._row(plan, row)

    def scalar(self, conn: Connection, values: dict[str, Any]) -> Any:
        row = self.first(conn, values)
        return None if row is None else row[0]

    def all(self, conn: Connection, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        cursor, plan = self._cursor(conn, values)
        try:
            return [self._row(plan, row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def column(self, conn: Connection, values: dict[str, Any]) -> list[Any]:
        return [row[0] for row in self.all(conn, values)]


class FastIn:
    """A FastStatement whose `IN` list varies in length: `build(n)` makes the statement for
    `n` values (bind names `v0` … `v{n-1}`); one compiled statement is kept per length."""

    def __init__(self, build: Callable[[int], ClauseElement], table: FromClause | None = None) -> None:
        self.build = build
        self.table = table
        self._by_length: dict[int, FastStatement] = {}

    def statement(self, n: int) -> FastStatement:
        known = self._by_length.get(n)
        if known is None:
            known = self._by_length[n] = FastStatement(self.build(n), self.table)
        return known

    def all(self, conn: Connection, values: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self.statement(len(values)).all(conn, {f"v{i}": v for i, v in enumerate(values)})


_ROUNDTRIPS: dict[tuple[str, str], list[tuple[str, Processor, Processor, Callable[[], Any]]]] = {}


def as_stored(conn: Connection, table: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Every column of a row just inserted with `values`, as a SELECT would read it back on
    this connection's database (missing values: the column's Python default or None; then
    each value the database returns converted through its bind and result processors: naive
    datetimes and JSON parsed again on SQLite; psycopg returns Python values itself). Lets
    the ORM take the row as loaded without reading it."""
    dialect = conn.dialect
    key = (dialect.name, table.name)
    steps = _ROUNDTRIPS.get(key)
    if steps is None:
        steps = []
        for column in table.columns:
            impl = column.type.dialect_impl(dialect)
            steps.append(
                (
                    column.key,
                    _bind_processor(column.type, dialect),
                    impl.result_processor(dialect, None),
                    _column_default(column.default),
                )
            )
        _ROUNDTRIPS[key] = steps
    row: dict[str, Any] = {}
    for name, bind, result, fill in steps:
        value = values[name] if name in values else fill()
        if value is not None and result is not None:  # stored as something else (SQLite: text)
            value = result(bind(value) if bind is not None else value)
        row[name] = value
    return row
