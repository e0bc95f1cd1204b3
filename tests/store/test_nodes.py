"""Several nodes on one PostgreSQL: migrations serialised, one signing secret, IMAP leases.

PostgreSQL only (SQLite is one node by construction); each test gets its own database."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from maildesk.app import App
from maildesk.errors import ConfigError
from maildesk.store.db import Store
from maildesk.store.nodes import SECRET_KEY, StoreMailboxLease, fingerprint, shared_secret
from maildesk.threading.tokens import make_message_id, parse_message_id
from tests.conftest import PgDatabases, make_settings
from tests.support.wait import wait_for


@pytest.fixture
def pg_url(pg_databases: PgDatabases) -> str:
    return pg_databases.fresh()


@pytest.fixture
def empty_pg(pg_databases: PgDatabases) -> str:
    """A database never migrated (not cloned from the migrated template)."""
    pg_databases.counter += 1
    name = f"{pg_databases.run_id}_empty_{pg_databases.counter}"
    pg_databases._exec(f'CREATE DATABASE "{name}"')
    pg_databases.created.append(name)
    return pg_databases.url(name)


def test_nodes_migrating_an_empty_database_at_once_make_one_schema(empty_pg: str) -> None:
    stores = [Store(empty_pg) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def migrate(store: Store) -> None:
        try:
            start.wait()
            store.migrate()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert {s.revision() for s in stores} == {Store.head_revision()}
        with stores[0].engine.connect() as conn:
            from sqlalchemy import text

            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
            assert conn.execute(text("SELECT count(*) FROM imap_leases")).scalar() == 0
    finally:
        for s in stores:
            s.dispose()


def _node(tmp_path: Path, name: str, url: str, secret_file: str | None = None) -> App:
    """An App like `maildesk` builds from a config naming PostgreSQL, without secret_env."""
    folder = tmp_path / name
    if secret_file is not None:
        (folder / "data").mkdir(parents=True)
        (folder / "data" / "secret.key").write_text(secret_file + "\n")
    settings = make_settings(folder, url)
    from maildesk.config import parse_settings

    data = {
        "desk": {"data_dir": str(folder / "data"), "secret_env": "", "support_addresses": ["support@example.com"]},
        "database": {"url": url, "url_env": ""},
        "smtp": {"port": settings.smtp.port},
    }
    return App(parse_settings(data, source="<test>", base_dir=str(folder)))


def test_nodes_share_one_secret_kept_in_the_database(tmp_path: Path, pg_url: str) -> None:
    a = _node(tmp_path, "a", pg_url)
    b = _node(tmp_path, "b", pg_url)
    try:
        assert a.settings.secret_from == "database" and a.settings.secret == ""
        assert not (a.settings.data_path / "secret.key").exists()  # no per-node file on PostgreSQL
        signed = make_message_id("some-secret", 7, "example.com")
        assert parse_message_id(a.settings.secret, signed) is None  # before the shared secret: nothing verifies
        a.migrate()
        b.migrate()
        assert a.settings.secret and a.settings.secret == b.settings.secret
        # what signs mail is the shared secret: the Mailer and the parser processes see it
        assert a.deps.mailer.settings.secret == a.settings.secret
        assert b.worker.preparer.settings.secret == a.settings.secret
    finally:
        a.store.dispose()
        b.store.dispose()


def test_the_first_node_brings_its_old_secret_file_and_a_different_one_is_refused(tmp_path: Path, pg_url: str) -> None:
    a = _node(tmp_path, "a", pg_url, secret_file="old-single-node-secret")
    b = _node(tmp_path, "b", pg_url)
    c = _node(tmp_path, "c", pg_url, secret_file="another-secret")
    try:
        a.migrate()
        assert a.settings.secret == "old-single-node-secret"  # its signed mail still verifies
        b.migrate()
        assert b.settings.secret == "old-single-node-secret"
        with pytest.raises(ConfigError, match="differs from the secret shared in the database") as info:
            c.migrate()
        assert fingerprint("another-secret") in str(info.value)
        assert "another-secret" not in str(info.value)  # fingerprints only, never the secret
    finally:
        for app in (a, b, c):
            app.store.dispose()


def test_secrets_from_the_environment_must_match_on_every_node(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        assert shared_secret(store, local="from-env", local_from="env") == "from-env"
        assert shared_secret(store, local="from-env", local_from="env") == "from-env"
        with pytest.raises(ConfigError, match="not the one the other nodes"):
            shared_secret(store, local="typo-env", local_from="env")
        with pytest.raises(ConfigError, match="set the same variable on this node"):
            shared_secret(store, local="", local_from="database")
        from maildesk.store.models import KeyValue

        with store.reader() as session:
            row = session.get(KeyValue, SECRET_KEY)
            assert row is not None and row.value["secret"] is None  # an environment secret is not copied
    finally:
        store.dispose()


def test_a_lease_is_held_by_one_node_and_taken_over_when_it_expires(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        a = StoreMailboxLease(store, "node-a", seconds=1.0)
        b = StoreMailboxLease(store, "node-b", seconds=1.0)
        assert a.acquire("support") is True
        assert b.acquire("support") is False
        assert a.acquire("support") is True  # renewed
        assert a.save("support", {"INBOX": (7, 42, 3)}) is True
        assert b.save("support", {"INBOX": (7, 1, 0)}) is False  # not the holder: nothing written
        assert b.load("support") == {"INBOX": (7, 42, 3)}
        wait_for(lambda: b.acquire("support"), timeout=5, message="node b never took the expired lease")
        assert a.save("support", {"INBOX": (7, 50, 4)}) is False  # a learns it lost the lease
        assert a.acquire("support") is False
        b.release("support")
        assert a.acquire("support") is True  # released: free at once
    finally:
        store.dispose()


def test_lease_seconds_is_checked(tmp_path: Path) -> None:
    from maildesk.config import parse_settings

    bad: dict[str, Any] = {
        "desk": {"data_dir": str(tmp_path), "secret_env": ""},
        "imap": [{"host": "h", "username": "u", "password_env": "PATH", "lease_seconds": 0}],
    }
    with pytest.raises(ConfigError, match=r"imap\[0\].lease_seconds"):
        parse_settings(bad)


def test_a_node_that_loses_the_race_to_store_the_same_mail_or_customer_runs_it_again(
    tmp_path: Path, pg_url: str
) -> None:
    """Two nodes process mail of one new customer at the same moment: the same message
    (delivered to both) and a second message. The node that commits second hits the unique
    rows (Message-ID, customer e-mail) the other just stored: it runs the batch again, finds
    them, and nothing ends in failed/."""
    from maildesk.pipeline.context import Stage
    from tests.support.mailgen import eml

    a = _node(tmp_path, "a", pg_url)
    b = _node(tmp_path, "b", pg_url)
    try:
        a.migrate()
        b.migrate()
        same = eml(sender="New Customer <new@race.example>", message_id="<race-1@race.example>")
        other = eml(sender="New Customer <new@race.example>", message_id="<race-2@race.example>", subject="Second")
        a.spool.put(same, "test")
        a.spool.put(other, "test")
        b.spool.put(same, "test")
        ran_b: list[bool] = []

        def let_b_commit_first(ctx: Any, session: Any, deps: Any) -> None:
            if not ran_b:  # while a's transaction is open: b stores the mail and the customer
                ran_b.append(True)
                b.process()

        stages = list(a.worker.stages)
        at = next(i for i, s in enumerate(stages) if s.name == "persist")
        stages.insert(at, Stage(let_b_commit_first, stages[at].needs))
        a.worker.stages = tuple(stages)
        a.process()
        assert ran_b == [True]
        assert list(a.spool.entries("failed")) == [] and list(a.spool.entries("incoming")) == []
        with a.store.reader() as session:
            from sqlalchemy import text

            ids = session.execute(text("SELECT message_id FROM messages WHERE direction = 'in'")).scalars().all()
            customers = session.execute(text("SELECT count(*) FROM customers")).scalar()
        assert sorted(ids) == ["race-1@race.example", "race-2@race.example"]  # each once
        assert customers == 1
        assert a.worker.stats.duplicates == 1
    finally:
        for app in (a, b):
            app.worker.close()
            app.store.dispose()
