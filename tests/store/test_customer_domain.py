"""`customers.domain` (issue 17, migration 0011): every customer carries the lower-case part of
its email after the last "@", so the new-ticket limit counts a domain's first-contact tickets
from that domain's new customers (`ix_customers_domain_created_at`) instead of walking every
ticket of the hour. Migration 0011 fills it for existing rows; every path that creates a
customer (or changes its email: erasure) keeps it right; on SQLite the plan of the statement
`new_ticket_counts` runs reads the new index and not `ix_tickets_created_at`; on both backends
the counts are the expected ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, inspect, select, text

from maildesk.app import App
from maildesk.pipeline.history import HistoryImporter
from maildesk.services import customers
from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store.models import Customer, Ticket, email_domain
from tests.commands.desk.conftest import seed
from tests.support.mailgen import eml

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def _migrate(desk: Any, target: str) -> None:
    from alembic import command
    from alembic.config import Config

    from maildesk.store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with desk.store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if target == "0010" else command.upgrade)(cfg, target)


def _columns(desk: Any) -> set[str]:
    with desk.store.engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns("customers")}


def test_migration_0011_fills_the_domain_of_existing_customers(desk: Any) -> None:
    _migrate(desk, "0010")
    assert "domain" not in _columns(desk)
    odd = {
        "Ann@Example.COM": "example.com",
        '"a@b"@Sub.Example.org': "sub.example.org",  # the part after the last "@"
        "no-at-sign": "",
        "trailing@": "",
        "erased-0123456789abcdef@invalid": "invalid",
    }
    many = {f"c{i}@d{i % 7}.example": f"d{i % 7}.example" for i in range(1205)}  # more than one batch
    insert_sql = text(
        "INSERT INTO customers (email, name, locale, locale_source, tz, vip, created_at) "
        "VALUES (:e, '', '', '', '', :vip, :at)"
    )
    with desk.store.engine.begin() as conn:
        conn.execute(insert_sql, [{"e": e, "vip": False, "at": NOW} for e in [*odd, *many]])
    _migrate(desk, "head")
    with desk.store.reader() as s:
        stored = dict(s.execute(select(Customer.email, Customer.domain)).all())
    assert stored == {**odd, **many}
    _migrate(desk, "0010")
    assert "domain" not in _columns(desk)
    _migrate(desk, "head")
    with desk.store.reader() as s:
        assert dict(s.execute(select(Customer.email, Customer.domain)).all()) == {**odd, **many}


def test_every_path_that_creates_a_customer_stores_its_domain(desk: Any) -> None:
    seed(desk, [eml(sender="Cy <Cy@Mail.Example.NET>")])  # the pipeline (`_NEW_CUSTOMER`)
    importer = HistoryImporter(desk.store, desk.deps, source="old.mbox", batch_size=2)
    importer.feed("1", eml(sender="Old <old@History.example>", message_id="<h1@history.example>"))
    importer.close()
    with desk.store.session() as s:
        q.customer_id_for(s, "fast@fast.example", "Fast", NOW)
        customers.set_customer(s, "Set@Service.Example", NOW, supported=desk.settings.desk.locales, vip=True)
        s.add(Customer(email="Orm@Orm.Example", created_at=NOW))  # tests and scripts
        s.flush()
        s.execute(insert(Customer).values(email="core@Core.Example", created_at=NOW))  # a Core INSERT
        q.customer_id_for(s, "gone@leaving.example", "Gone", NOW)
    with desk.store.session() as s:
        customers.erase_customer(s, "gone@leaving.example", NOW)  # the email changes: so does the domain
    with desk.store.reader() as s:
        rows = s.execute(select(Customer.email, Customer.domain)).all()
    by_domain = sorted(domain for _email, domain in rows)
    assert by_domain == [
        "core.example",
        "fast.example",
        "history.example",
        "invalid",
        "mail.example.net",
        "orm.example",
        "service.example",
    ]
    assert all(domain == email_domain(email) for email, domain in rows), rows


def _customer(s: Any, email: str, created: timedelta, tickets: list[timedelta]) -> None:
    """A customer created `created` before NOW with tickets opened `tickets` before NOW (ORM rows)."""
    customer = Customer(email=email, created_at=NOW - created)
    s.add(customer)
    s.flush()
    for ago in tickets:
        s.add(Ticket(customer_id=customer.id, created_at=NOW - ago, updated_at=NOW, tags=[], fields={}))
    s.flush()


def _burst(s: Any) -> None:
    minutes = timedelta(minutes=1)
    _customer(s, "old@a.example", timedelta(days=3), [10 * minutes, 20 * minutes])  # known: never counted
    _customer(s, "f1@a.example", 30 * minutes, [25 * minutes, 5 * minutes])
    _customer(s, "F2@A.Example", 50 * minutes, [45 * minutes, 90 * minutes])  # one ticket before the hour
    _customer(s, "f3@a.example", 2 * 60 * minutes, [30 * minutes])  # a customer since before the hour
    _customer(s, "x@sub.a.example", 10 * minutes, [10 * minutes])
    _customer(s, "y@a.example.org", 10 * minutes, [10 * minutes])
    for i in range(60):  # the rest of the burst, in other domains
        _customer(s, f"n{i}@d{i % 12}.example", 40 * minutes, [30 * minutes])


def test_new_ticket_counts_follow_the_domain_on_both_backends(desk: Any) -> None:
    with desk.store.session() as s:
        _burst(s)
        assert oq.new_ticket_counts(s, sender="new@a.example", now=NOW) == (0, 3, False)
        assert oq.new_ticket_counts(s, sender="F1@A.example", now=NOW) == (2, 3, False)
        assert oq.new_ticket_counts(s, sender="old@a.example", now=NOW) == (2, 0, True)
        assert oq.new_ticket_counts(s, sender="f3@a.example", now=NOW) == (1, 0, True)
        assert oq.new_ticket_counts(s, sender="z@SUB.a.example", now=NOW) == (0, 1, False)
        assert oq.new_ticket_counts(s, sender="z@a.example.org", now=NOW) == (0, 1, False)
        assert oq.new_ticket_counts(s, sender="z@d3.example", now=NOW) == (0, 5, False)
        assert oq.new_ticket_counts(s, sender="z@nobody.example", now=NOW) == (0, 0, False)
        assert oq.new_ticket_counts(s, sender="z@d3.example", now=NOW + timedelta(hours=1)) == (0, 0, False)


def test_sqlite_plan_reads_the_domain_index_not_the_hour_of_tickets(lite: App) -> None:
    with lite.store.session() as s:
        _burst(s)
    with lite.store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")  # with statistics too
    run: list[str] = []
    with lite.store.reader() as s:
        driver = s.connection().connection.driver_connection
        driver.set_trace_callback(run.append)  # the statement as the driver runs it (values expanded)
        try:
            assert oq.new_ticket_counts(s, sender="new@a.example", now=NOW) == (0, 3, False)
        finally:
            driver.set_trace_callback(None)
        counts = [sql for sql in run if "customers.domain" in sql]
        assert len(counts) == 1, run  # one statement for the three facts
        plan = " | ".join(str(r[-1]) for r in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + counts[0]))
    assert "ix_customers_domain_created_at (domain=? AND created_at>?)" in plan, plan
    assert "ix_tickets_customer_id (customer_id=?)" in plan, plan
    assert "ix_tickets_created_at" not in plan, plan
