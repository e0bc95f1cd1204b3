"""Look-ups that stay flat with size (issue 17, migrations 0010 and 0012): the e-mail look-ups
are served by the expression indexes, the least-loaded count by the `agent_loads` counters,
never a scan of the table.

SQLite's plan is checked (EXPLAIN QUERY PLAN of the statements the functions really run);
PostgreSQL's planner picks a scan for tables this small, so the counts themselves are
checked there (and the timing is in bench/scale_bench.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from maildesk.app import App
from maildesk.services import tickets
from maildesk.store import routing_queries as rq
from maildesk.store.models import Agent, Customer, Ticket

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _seed(app: App) -> None:
    with app.store.session() as s:
        s.add(Customer(id=1, email="Mixed.Case@Customer.example", created_at=NOW))
        s.add(Agent(email="Ann@Example.com"))
        for n, status in enumerate(["open", "new", "closed", "open"], 1):
            s.add(Ticket(number=n, status=status, customer_id=1, created_at=NOW, updated_at=NOW, tags=[], fields={}))
        s.flush()
        for n, who in enumerate(["ANN@example.com", " ann@example.com", "Ann@Example.COM", "bob@x"], 1):
            row = s.get(Ticket, n)
            assert row is not None
            tickets.change_assignee(s, row, who, by="test", via=tickets.VIA_CLI, now=NOW)


def _plans(app: App, run: Any) -> list[str]:
    """EXPLAIN QUERY PLAN of every SELECT `run` executes."""
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(app.store.engine, "before_cursor_execute", grab)
    try:
        with app.store.reader() as s:
            run(s)
    finally:
        event.remove(app.store.engine, "before_cursor_execute", grab)
    plans = []
    with app.store.engine.connect() as conn:
        for statement, parameters in seen:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            plans.append(" | ".join(str(r[-1]) for r in rows))
    return plans


def test_email_lookups_and_least_loaded_use_the_expression_indexes(lite: App) -> None:
    _seed(lite)
    plans = _plans(lite, lambda s: rq.customer_by_email(s, "mixed.case@customer.EXAMPLE"))
    assert plans and all("ix_customers_email_lower" in p for p in plans), plans
    plans = _plans(lite, lambda s: rq.agent_by_email(s, "ANN@example.com"))
    assert plans and all("ix_agents_email_lower" in p for p in plans), plans
    plans = _plans(lite, lambda s: rq.open_loads(s, ["ann@example.com", "cem@example.com"], 99))
    # 0012: the members' counters by primary key, the current ticket by its number
    assert plans == [
        "SEARCH agent_loads USING INDEX sqlite_autoindex_agent_loads_1 (assignee=?)",
        "SEARCH tickets USING INTEGER PRIMARY KEY (rowid=?)",
    ], plans


def test_lookups_are_case_insensitive_and_exclude_the_current_ticket(desk: App) -> None:
    _seed(desk)
    with desk.store.reader() as s:
        customer = rq.customer_by_email(s, " MIXED.case@customer.example ")
        agent = rq.agent_by_email(s, "ann@EXAMPLE.com")
        assert customer is not None and customer.id == 1 and agent is not None
        assert rq.open_loads(s, ["Ann@Example.com", "cem@example.com"], 99) == {
            "Ann@Example.com": 2,
            "cem@example.com": 0,
        }
        assert rq.open_loads(s, ["ann@example.com"], 1) == {"ann@example.com": 1}  # #1 is the one being routed
        assert rq.open_loads(s, ["ann@example.com"], 3) == {"ann@example.com": 2}  # #3 is closed: nothing to take off


def test_assignees_are_stored_lower_case(desk: App) -> None:
    _seed(desk)
    with desk.store.reader() as s:
        assert {t.assignee for t in s.query(Ticket)} == {"ann@example.com", "bob@x"}
