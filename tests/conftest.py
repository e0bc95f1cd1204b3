"""Shared fixtures: a whole maildesk built from a tmp folder, on SQLite and on PostgreSQL.

Tests that use `desk` (or `settings`) run once per backend. PostgreSQL gets a fresh
database per test, cloned from a migrated template made once per run; all are dropped at
the end. PostgreSQL must be reachable ($MAILDESK_TEST_PG, default the local server): the
test command (`./dev test`) starts or installs it; the tests fail, never skip, without it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from maildesk.config import Settings, parse_settings
from tests.support.net import free_port  # noqa: F401 - re-exported for the tests

# The CLI's tables (rich) take their width from the terminal; pytest-xdist workers have none
# (rich falls back to 80 columns and wraps addresses and paths), so every worker gets the same
# wide one. Tests that check wrapping set their own width.
os.environ["COLUMNS"] = "200"

PG_ADMIN_URL = os.environ.get("MAILDESK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")


class PgDatabases:
    """Creates and drops throw-away PostgreSQL databases for one test run."""

    def __init__(self, admin_url: str) -> None:
        import sqlalchemy as sa

        self.sa = sa
        from sqlalchemy.pool import NullPool

        # NullPool: every admin statement opens and closes its own connection, none linger
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self.base = admin_url.rsplit("/", 1)[0]
        self.run_id = f"mdt_{os.getpid()}_{secrets.token_hex(3)}"
        self.template = f"{self.run_id}_tmpl"
        self.created: list[str] = []
        try:
            with self.admin.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001
            pytest.fail(
                f"PostgreSQL is not reachable at {admin_url}: {str(exc).splitlines()[0]}. "
                "Run the tests with ./dev test, which starts or installs it.",
                pytrace=False,
            )
        self._exec(f'CREATE DATABASE "{self.template}"')
        self.created.append(self.template)
        from maildesk.store.db import Store

        store = Store(self.url(self.template))
        store.migrate()
        store.dispose()
        self.counter = 0

    def _exec(self, sql: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(self.sa.text(sql))

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def fresh(self) -> str:
        self.counter += 1
        name = f"{self.run_id}_{self.counter}"
        self._exec(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return self.url(name)

    def drop_all(self) -> None:
        for name in reversed(self.created):
            try:
                self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception:  # noqa: BLE001
                pass
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    dbs = PgDatabases(PG_ADMIN_URL)
    yield dbs
    dbs.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "desk": {
            "name": "Example Support",
            "data_dir": str(tmp_path / "data"),
            "support_addresses": ["support@example.com", "billing@example.com"],
            "secret_env": "",
        },
        "database": {"url": database_url, "url_env": ""},
        "smtp": {"port": free_port()},
        "worker": {"poll_interval": 0.05, "parse_processes": 0},  # the pool has its own tests
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    settings = parse_settings(data, source="<test>", base_dir=str(tmp_path))
    return replace(settings, secret="test-secret", secret_from="given")


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}"
    dbs: PgDatabases = request.getfixturevalue("pg_databases")
    return dbs.fresh()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def desk(settings: Settings) -> Iterator[Any]:
    from maildesk.app import App

    app = App(settings)
    app.migrate()
    yield app
    app.worker.close()
    app.store.dispose()
