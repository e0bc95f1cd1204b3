"""The `agent_loads` counters (issue 17, migration 0012) equal a fresh count of the open
tickets per assignee after every change: through `services.tickets` (status, assignee,
merge, resolve/close/reopen, the history import's close), direct ORM writes (a new Ticket
with an assignee, a deleted one) and rolled-back work. The migration fills them from the
stored tickets; `recount_agent_loads` finds and repairs a wrong counter."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, text, update

from maildesk.domain import OPEN_STATUSES, STATUSES
from maildesk.services import tickets
from maildesk.store import routing_queries as rq
from maildesk.store.models import AgentLoad, Customer, Ticket

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AGENTS = ["ann@example.com", "Bob@Example.com", "cem@example.com"]
SEED = [  # (assignee, status) of the tickets 1..6
    ("ann@example.com", "open"),
    ("ann@example.com", "new"),
    ("bob@example.com", "pending"),
    ("cem@example.com", "resolved"),
    (None, "open"),
    ("ann@example.com", "closed"),
]
SEEDED = len(SEED)
RUNS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def counted(session: Any) -> dict[str, int]:
    """Open tickets per lower(assignee), counted from the tickets."""
    key = func.lower(Ticket.assignee)
    rows = session.execute(
        select(key, func.count())
        .where(Ticket.status.in_(OPEN_STATUSES), Ticket.assignee.is_not(None), Ticket.assignee != "")
        .group_by(key)
    )
    return {str(a): int(n) for a, n in rows}


def kept(session: Any) -> dict[str, int]:
    """The counters, rows at 0 left out."""
    rows = session.execute(select(AgentLoad.assignee, AgentLoad.open_tickets))
    return {str(a): int(n) for a, n in rows if n}


def _seed(desk: Any) -> None:
    with desk.store.session() as s:
        s.add(Customer(id=1, email="c1@customer.example", created_at=NOW))
        s.add(Customer(id=2, email="c2@customer.example", created_at=NOW))
        for n, (who, status) in enumerate(SEED, 1):  # numbers from the sequence (PostgreSQL)
            row = Ticket(status=status, assignee=who, customer_id=1 + n % 2, created_at=NOW, updated_at=NOW)
            s.add(row)
            s.flush()
            assert row.number == n


@pytest.fixture
def seeded(desk: Any) -> Any:
    _seed(desk)
    with desk.store.reader() as s:
        assert kept(s) == counted(s) != {}
    return desk


numbers = st.integers(1, SEEDED + 3)  # a few numbers no ticket has (yet)
operation = st.one_of(
    st.tuples(st.just("status"), numbers, st.sampled_from(STATUSES)),
    st.tuples(st.just("assign"), numbers, st.sampled_from([*AGENTS, "ANN@EXAMPLE.COM", None])),
    st.tuples(st.just("action"), numbers, st.sampled_from(["resolve", "close", "reopen"])),
    st.tuples(st.just("merge"), numbers, numbers),
    st.tuples(st.just("history"), numbers, st.none()),
    st.tuples(st.just("new"), st.sampled_from([*AGENTS, None]), st.sampled_from([None, *STATUSES])),
)
# each transaction: one to three operations, committed or rolled back as a whole
transactions = st.lists(st.tuples(st.lists(operation, min_size=1, max_size=3), st.booleans()), min_size=1, max_size=6)


class Rollback(Exception):
    pass


def _apply(s: Any, op: tuple[Any, Any, Any], now: datetime) -> None:
    kind, a, b = op
    who = {"by": "test", "via": tickets.VIA_CLI, "now": now}
    if kind == "new":
        s.add(Ticket(status=b, assignee=a.lower() if a else None, customer_id=1, created_at=now, updated_at=now))
        s.flush()
        return
    ticket = s.get(Ticket, a)
    if ticket is None or ticket.merged_into is not None:
        return
    if kind == "status":
        tickets.change_status(s, ticket, b, reason="test", **who)
    elif kind == "assign":
        tickets.change_assignee(s, ticket, b, **who)
    elif kind == "action":
        getattr(tickets, b)(s, a, "test", now)
    elif kind == "merge":
        try:
            tickets.merge(s, b, a, "test", now)
        except tickets.OperationError:
            pass  # into itself, into a merged or missing ticket
    elif kind == "history":
        tickets.close_from_history(s, a, now, new=False)


@RUNS
@given(steps=transactions)
def test_counters_equal_a_fresh_count_after_every_change(seeded: Any, steps: list[Any]) -> None:
    for k, (ops, commit) in enumerate(steps):
        now = NOW + timedelta(minutes=k)
        try:
            with seeded.store.session() as s:
                for op in ops:
                    _apply(s, op, now)
                    assert kept(s) == counted(s), op  # within the transaction too
                if not commit:
                    raise Rollback
        except Rollback:
            pass
        with seeded.store.reader() as s:
            assert kept(s) == counted(s), ops
            assert rq.recount_agent_loads(s, repair=False) == {}
            assert min(n for _, n in s.execute(select(AgentLoad.assignee, AgentLoad.open_tickets))) >= 0


def test_direct_orm_writes_and_deletes_move_the_counters(seeded: Any) -> None:
    with seeded.store.session() as s:
        before = kept(s).get("cem@example.com", 0)
        s.add(Ticket(number=50, assignee="cem@example.com", customer_id=1, created_at=NOW, updated_at=NOW))
        s.flush()  # status defaults to new: open
        assert kept(s)["cem@example.com"] == before + 1
        row = s.get(Ticket, 50)
        row.assignee, row.status = "ann@example.com", "pending"  # as test_routing seeds its loads
    with seeded.store.session() as s:
        assert kept(s).get("cem@example.com", 0) == before
        s.delete(s.get(Ticket, 50))
    with seeded.store.reader() as s:
        assert kept(s) == counted(s)


def test_open_loads_reads_the_counters_and_excludes_the_current_ticket(seeded: Any) -> None:
    with seeded.store.session() as s:
        open_ann = [
            t for t in s.scalars(select(Ticket)) if t.assignee == "ann@example.com" and t.status in OPEN_STATUSES
        ]
        loads = rq.open_loads(s, ["Ann@Example.com", "dora@example.com"], 0)
        assert loads == {"Ann@Example.com": len(open_ann), "dora@example.com": 0}
        assert open_ann, "the seed gives ann an open ticket"
        current = open_ann[0].number
        assert rq.open_loads(s, ["ann@example.com"], current) == {"ann@example.com": len(open_ann) - 1}
    with seeded.store.reader() as s:  # the current ticket read from the database, not the session
        assert rq.open_loads(s, ["ann@example.com"], current) == {"ann@example.com": len(open_ann) - 1}


def test_recount_repairs_a_wrong_counter(seeded: Any) -> None:
    with seeded.store.session() as s:
        right = counted(s)
        s.execute(update(AgentLoad).values(open_tickets=AgentLoad.open_tickets + 5))
        s.execute(insert(AgentLoad).values(assignee="ghost@example.com", open_tickets=2))
        wrong = rq.recount_agent_loads(s, repair=False)
        assert wrong == {"ghost@example.com": (2, 0), **{a: (n + 5, n) for a, n in right.items()}}
        assert rq.recount_agent_loads(s) == wrong
    with seeded.store.reader() as s:
        assert kept(s) == right
        assert rq.recount_agent_loads(s, repair=False) == {}


def test_migration_0012_fills_the_counters_from_the_stored_tickets(desk: Any) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from maildesk.store.db import MIGRATIONS

    stored = [  # written with Core (no flush hook), as older versions or other tools may have
        ("Ann@Example.com", "open"),
        ("ann@example.com", "new"),
        ("ann@example.com", "pending"),
        ("ann@example.com", "closed"),
        ("bob@example.com", "resolved"),
        ("cem@example.com", "pending"),
        ("", "open"),
        (None, "open"),
    ]
    with desk.store.engine.begin() as conn:
        conn.execute(insert(Customer.__table__).values(id=1, email="c@customer.example", created_at=NOW))
        conn.execute(
            insert(Ticket.__table__),
            [
                {"number": n, "status": status, "assignee": who, "customer_id": 1, "created_at": NOW, "updated_at": NOW}
                for n, (who, status) in enumerate(stored, 1)
            ],
        )
    with desk.store.reader() as s:
        assert kept(s) == {}  # nothing counted them
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    before = ScriptDirectory.from_config(cfg).get_revision("0012").down_revision
    assert isinstance(before, str)
    with desk.store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, before)
        names = {"sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'"}
        sql = names.get(conn.dialect.name, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        assert "agent_loads" not in set(conn.execute(text(sql)).scalars())
        command.upgrade(cfg, "head")
    with desk.store.reader() as s:
        rows = {str(a): int(n) for a, n in s.execute(select(AgentLoad.assignee, AgentLoad.open_tickets))}
        assert rows == {"ann@example.com": 3, "cem@example.com": 1}
        assert rq.recount_agent_loads(s, repair=False) == {}


def test_concurrent_assignments_to_one_agent_all_count(seeded: Any) -> None:
    """Two threads, each its own transactions, assign new tickets to the same agent at once
    (on PostgreSQL the counter's row lock orders them; SQLite writes one at a time)."""
    import threading

    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def assign_many(k: int) -> None:
        try:
            start.wait()
            for i in range(15):
                with seeded.store.session() as s:
                    row = Ticket(status="open", customer_id=1, created_at=NOW, updated_at=NOW)
                    s.add(row)
                    s.flush()
                    tickets.change_assignee(s, row, "dora@example.com", by=f"t{k}", via=tickets.VIA_CLI, now=NOW)
                    s.flush()
                    time.sleep(0.002 * (i % 3))  # hold the row lock a little, now and then
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=assign_many, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with seeded.store.reader() as s:
        assert kept(s)["dora@example.com"] == 30
        assert kept(s) == counted(s)


def test_the_agents_are_read_once_per_transaction_and_never_stale(desk: Any) -> None:
    """`all_agents` is remembered for a transaction (the worker routes a batch in one), yet
    an agent added or deleted in the session, or by another session once this transaction
    ends, is seen as a fresh read would see it."""
    from maildesk.store.models import Agent

    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM agents" in statement:
            statements.append(statement)

    from sqlalchemy import event

    event.listen(desk.store.engine, "before_cursor_execute", count)
    try:
        with desk.store.session() as s:
            s.add(Agent(email="ann@example.com", name="Ann", tiers=["L1"], queues=[]))
        with desk.store.reader() as s:
            assert [a.email for a in rq.all_agents(s)] == ["ann@example.com"]
            assert [a.email for a in rq.all_agents(s)] == ["ann@example.com"]
            assert len(statements) == 1  # the second answer is remembered
            s.add(Agent(email="bob@example.com", name="Bob", tiers=["L1"], queues=[]))
            assert sorted(a.email for a in rq.all_agents(s)) == ["ann@example.com", "bob@example.com"]
            s.flush()
            assert sorted(a.email for a in rq.all_agents(s)) == ["ann@example.com", "bob@example.com"]
            s.delete(next(a for a in rq.all_agents(s) if a.email == "bob@example.com"))
            assert [a.email for a in rq.all_agents(s)] == ["ann@example.com"]
            s.rollback()  # bob was never committed
            assert [a.email for a in rq.all_agents(s)] == ["ann@example.com"]
        with desk.store.reader() as s:
            assert [a.email for a in rq.all_agents(s)] == ["ann@example.com"]
            s.commit()  # the transaction ends (SQLite here: its lock too)
            with desk.store.session() as other:
                other.add(Agent(email="cem@example.com", name="Cem", tiers=["L2"], queues=[]))
            assert sorted(a.email for a in rq.all_agents(s)) == ["ann@example.com", "cem@example.com"]
    finally:
        event.remove(desk.store.engine, "before_cursor_execute", count)
