"""The driver-level statements of the hot path (issue 17, `maildesk/store/fast.py`) give the
same answers as SQLAlchemy's own execution: result columns through their types (datetimes,
JSON), literals in the SQL, IN lists of any length; a row just inserted becomes an ORM
object equal to what a fresh load reads; the customer's other tickets, the recipient facts
of an automatic mail (suppression and limits in one statement) and the per-domain count of
migration 0013 agree with the separate look-ups they replace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, event, func, select, text, true

from maildesk.domain import OPEN_STATUSES
from maildesk.rules.limits import LimitPolicy, SentCounts, check_limits
from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store.fast import FastIn, FastStatement, _bind_processor, inline_in
from maildesk.store.models import AutoSend, Customer, Ticket

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
COLUMNS = [c.key for c in Ticket.__table__.c]


def _ticket(
    s: Any, email: str, *, status: str = "new", created: datetime = NOW, since: timedelta = timedelta(days=3)
) -> int:
    customer = q.customer_id_for(s, email, "Anna", NOW - since)
    number = q.insert_ticket(s, subject=f"about {status}", customer_id=customer, now=created)
    if status != "new":
        s.get(Ticket, number).status = status
    return number


def _plain(value: Any) -> Any:
    return value.replace(tzinfo=None) if isinstance(value, datetime) else value


def test_result_columns_are_read_through_their_types(desk: Any) -> None:
    with desk.store.session() as s:
        number = _ticket(s, "anna@customer.example")
        s.get(Ticket, number).tags = ["vip", "printer"]
    stmt = FastStatement(
        select(Ticket.number, Ticket.created_at, Ticket.tags, Customer.email)
        .join(Customer, Customer.id == Ticket.customer_id)
        .where(Ticket.number == bindparam("n"), inline_in(Ticket.status, list(OPEN_STATUSES)))
    )
    with desk.store.session() as s:
        fast = stmt.first(q.core(s), {"n": number})
        core = s.execute(stmt.stmt, {"n": number}).one()
        assert fast == tuple(core)
        assert isinstance(fast[1], datetime) and fast[2] == ["vip", "printer"]
        assert stmt.first(q.core(s), {"n": number + 1}) is None


def test_sqlite_datetimes_are_bound_as_sqlalchemy_binds_them() -> None:
    from datetime import date, timezone

    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    fast = _bind_processor(DateTime(), dialect)
    own = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert fast is not own and fast is not None and own is not None
    values = [
        datetime(2026, 11, 22, 10, 0),
        datetime(2026, 1, 2, 3, 4, 5, 6),
        datetime(999, 1, 1),
        datetime(2026, 5, 5, 1, 1, 1, 999999, tzinfo=timezone(timedelta(hours=2))),
        NOW,
        date(2026, 3, 4),
    ]
    for value in values:
        assert fast(value) == own(value)
        assert fast(value) == own(value)  # the same object again: the remembered text
    for value in (*values, *reversed(values)):  # equal instants in other zones, other objects
        assert fast(value) == own(value)
        assert fast(value.replace() if isinstance(value, datetime) else value) == own(value)
    with pytest.raises(TypeError):
        fast("2026-11-22")


def test_inline_in_takes_only_plain_constants() -> None:
    with pytest.raises(ValueError, match="not a plain constant"):
        inline_in(Ticket.status, ["open", "x') OR ('1'='1"])


def test_expanding_in_lists_are_refused_and_fast_in_keeps_one_statement_per_length(desk: Any) -> None:
    with desk.store.session() as s:
        numbers = [_ticket(s, f"c{i}@customer.example") for i in range(4)]
        with pytest.raises(ValueError, match="expanding"):
            FastStatement(select(Ticket.number).where(Ticket.number.in_(numbers))).all(q.core(s), {})
        many = FastIn(lambda n: select(Ticket.number).where(Ticket.number.in_([bindparam(f"v{i}") for i in range(n)])))
        for k in (1, 3, 4, 3):
            assert sorted(r[0] for r in many.all(q.core(s), numbers[:k])) == numbers[:k]
        assert sorted(many._by_length) == [1, 3, 4]


def test_a_new_ticket_and_customer_are_objects_as_a_fresh_load_reads_them(desk: Any) -> None:
    with desk.store.session() as s:
        number = _ticket(s, "Anna@Customer.example")
        attached = s.get(Ticket, number)  # no SELECT: the insert made it persistent
        seen = {c: getattr(attached, c) for c in COLUMNS}
        customer = {c.key: getattr(attached.customer, c.key) for c in Customer.__table__.c}
    with desk.store.reader() as s:
        loaded = s.get(Ticket, number)
        assert seen == {c: getattr(loaded, c) for c in COLUMNS}
        assert customer == {c.key: getattr(loaded.customer, c.key) for c in Customer.__table__.c}


def test_customer_tickets_equal_the_separate_counts(desk: Any) -> None:
    with desk.store.session() as s:
        current = _ticket(s, "anna@customer.example")
        for i, status in enumerate(["open", "pending", "resolved", "closed", "new", "open", "open", "open", "open"]):
            _ticket(s, "anna@customer.example", status=status, created=NOW - timedelta(hours=i + 1))
        _ticket(s, "bob@else.example", status="open")
        customer = s.get(Ticket, current).customer_id
        s.flush()
        others = q.customer_tickets(s, customer, current)
        rows = s.execute(
            select(Ticket.number, Ticket.subject, Ticket.status, Ticket.created_at)
            .where(Ticket.customer_id == customer, Ticket.number != current)
            .order_by(Ticket.created_at.desc())
        ).all()
        assert others.total == len(rows) == 9
        assert others.open == sum(1 for r in rows if r[2] in OPEN_STATUSES) == 7
        assert others.past == 2
        assert [_plain(t[3]) for t in others.newest_open] == [_plain(r[3]) for r in rows if r[2] in OPEN_STATUSES][:5]
        assert q.customer_tickets(s, customer, current) is others  # remembered
        s.get(Ticket, others.newest_open[0][0]).status = "resolved"  # another of the customer's tickets changes
        s.flush()
        assert q.customer_tickets(s, customer, current).open == 6
        assert q.customer_tickets(s, 10_000, current).total == 0


def test_recipient_facts_equal_the_separate_look_ups(desk: Any) -> None:
    with desk.store.session() as s:
        number = _ticket(s, "anna@customer.example")  # known for three days
        _ticket(s, "new@fresh.example", since=timedelta(0))
        q.customer_id_for(s, "gone@fresh.example", "", NOW - timedelta(days=9))
        oq.suppress(s, "gone@fresh.example", "bounced", None, NOW)
        for i, rcpt in enumerate(["anna@customer.example", "other@fresh.example", "new@fresh.example"] * 2):
            oq.record_automatic(s, 100 + i, [rcpt], number, NOW - timedelta(minutes=5 + i))
        oq.record_automatic(s, 200, ["old@fresh.example"], None, NOW - timedelta(hours=3))
        for rcpt in ("anna@customer.example", "new@fresh.example", "nobody@else.example", "gone@fresh.example"):
            for ticket in (number, None):
                suppression, counts, first = oq.recipient_facts(
                    s, recipient=rcpt, ticket_number=ticket, now=NOW, global_cap=1000
                )
                want_counts, want_first = oq.limit_facts(s, recipient=rcpt, ticket_number=ticket, now=NOW)
                assert suppression == q.is_suppressed(s, rcpt, NOW)
                assert first == want_first
                known = want_first[0]
                assert counts[:3] == want_counts[:3]
                assert counts[3] == (0 if known else want_counts[3])  # the global count: first contacts only
        assert oq.recipient_facts(s, recipient="new@fresh.example", ticket_number=None, now=NOW, global_cap=1000)[
            2
        ] == (
            False,
            4,
        )


def test_the_global_count_stops_at_the_limit_and_decides_the_same(desk: Any) -> None:
    policy = LimitPolicy(per_recipient_hour=5, per_recipient_day=20, per_ticket_day=10, global_hour=3)
    with desk.store.session() as s:
        for i in range(5):
            oq.record_automatic(s, 300 + i, [f"r{i}@far.example"], None, NOW - timedelta(minutes=i + 1))
        exact = oq.limit_facts(s, recipient="first@new.example", ticket_number=None, now=NOW)[0][3]
        capped = oq.recipient_facts(s, recipient="first@new.example", ticket_number=None, now=NOW, global_cap=3)[1][3]
        roomy = oq.recipient_facts(s, recipient="first@new.example", ticket_number=None, now=NOW, global_cap=50)[1][3]
        assert (exact, capped, roomy) == (5, 3, 5)
        for count in (exact, capped):
            verdict = check_limits(
                policy, SentCounts(0, 0, 0, count, 0, False), recipient="first@new.example", suppressed=False
            )
            assert not verdict.allowed and "in the last hour (limit 3)" in verdict.reason


def test_the_global_count_counts_mails_not_recipients(desk: Any) -> None:
    with desk.store.session() as s:
        oq.record_automatic(s, 1, ["a@one.example", "b@one.example"], 7, NOW - timedelta(minutes=3))
        oq.record_automatic(s, 1, ["agent@desk.example"], None, NOW - timedelta(minutes=3), first=False)
        oq.record_automatic(s, 2, ["agent@desk.example"], None, NOW - timedelta(minutes=2))
        oq.record_automatic(s, 3, ["c@two.example"], 8, NOW - timedelta(hours=2))  # before the hour
        distinct = s.execute(
            select(func.count(func.distinct(AutoSend.outbox_id))).where(AutoSend.at >= NOW - timedelta(hours=1))
        ).scalar()
        assert oq.automatic_counts(s, recipient="x@new.example", ticket_number=None, now=NOW)[3] == distinct == 2
        facts = oq.recipient_facts(s, recipient="x@new.example", ticket_number=None, now=NOW, global_cap=1000)
        assert facts[1][3] == 2


def test_auto_sends_carry_their_domain_and_the_domain_count_reads_its_index(desk: Any) -> None:
    with desk.store.session() as s:
        oq.record_automatic(s, 1, ["A@Sub.Example.org", "b@example.org"], None, NOW - timedelta(minutes=1))
        assert dict(s.execute(select(AutoSend.recipient, AutoSend.domain)).all()) == {
            "a@sub.example.org": "sub.example.org",
            "b@example.org": "example.org",
        }
        if desk.store.engine.dialect.name == "sqlite":
            sql = str(oq._DOMAIN_HOUR.compile(dialect=desk.store.engine.dialect))
            raw = s.connection().connection.driver_connection
            plan = " ".join(str(row[-1]) for row in raw.execute("EXPLAIN QUERY PLAN " + sql, ("example.org", "x")))
            assert "ix_auto_sends_domain_at" in plan, plan


def test_migration_0013_fills_the_domain_of_existing_auto_sends(desk: Any) -> None:
    from alembic import command
    from alembic.config import Config

    from maildesk.store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))

    def migrate(target: str) -> None:
        with desk.store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if target == "0012" else command.upgrade)(cfg, target)

    migrate("0012")
    rows = [
        {"outbox_id": i, "recipient": f"c{i}@D{i % 3}.example", "ticket_number": None, "at": NOW} for i in range(1203)
    ]
    rows.append({"outbox_id": 9999, "recipient": "no-at-sign", "ticket_number": None, "at": NOW})
    rows.append({"outbox_id": 5, "recipient": "second@d2.example", "ticket_number": None, "at": NOW})  # a cc
    with desk.store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO auto_sends (outbox_id, recipient, ticket_number, at)"
                " VALUES (:outbox_id, :recipient, :ticket_number, :at)"
            ),
            rows,
        )
    migrate("head")
    with desk.store.engine.connect() as conn:
        found = dict(conn.execute(select(AutoSend.recipient, AutoSend.domain)).all())
        assert found["no-at-sign"] == ""
        assert all(found[f"c{i}@D{i % 3}.example"] == f"d{i % 3}.example" for i in range(1203))
        assert (
            conn.execute(select(func.count()).select_from(AutoSend).where(AutoSend.domain == "d1.example")).scalar()
            == 401
        )
        firsts = conn.execute(select(AutoSend.outbox_id).where(AutoSend.mail_first == true())).scalars().all()
        assert sorted(firsts) == sorted({r["outbox_id"] for r in rows})  # one row per mail


def _updates(engine: Any) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(str(a[2])) if "UPDATE" in str(a[2]) else None)
    return seen


def test_plain_ticket_changes_are_written_without_the_unit_of_work(desk: Any) -> None:
    with desk.store.session() as s:
        number = _ticket(s, "anna@customer.example")
    with desk.store.session() as s:
        ticket = s.get(Ticket, number)
        orm_updates = _updates(s.get_bind())
        ticket.queue, ticket.tags, ticket.updated_at = "billing", ["vip"], NOW + timedelta(minutes=1)
        q.core(s)  # the stages' next statement writes it
        assert orm_updates == [] and ticket not in s.dirty
        ticket.status = "open"  # the agent-load counters' column: the unit of work writes it
        q.core(s)
        assert len(orm_updates) == 1 and "status" in orm_updates[0]
    with desk.store.reader() as s:
        row = s.get(Ticket, number)
        assert (row.queue, row.tags, row.status) == ("billing", ["vip"], "open")
        assert _plain(row.updated_at) == _plain(NOW + timedelta(minutes=1))


def test_a_savepoint_rollback_forgets_changes_written_directly(desk: Any) -> None:
    with desk.store.session() as s:
        number = _ticket(s, "anna@customer.example")
    with desk.store.session() as s:
        ticket = s.get(Ticket, number)
        try:
            with s.begin_nested():
                ticket.queue = "billing"
                q.core(s)
                raise RuntimeError("this message failed")
        except RuntimeError:
            pass
        assert ticket.queue == "default"  # read again from the database
        ticket.tier = "L2"
    with desk.store.reader() as s:
        assert (s.get(Ticket, number).queue, s.get(Ticket, number).tier) == ("default", "L2")


def test_a_direct_write_of_another_ticket_forgets_the_customer_tickets(desk: Any) -> None:
    with desk.store.session() as s:
        current = _ticket(s, "anna@customer.example")
        other = _ticket(s, "anna@customer.example", status="open")
        customer = s.get(Ticket, current).customer_id
        assert q.customer_tickets(s, customer, current).newest_open[0][1] == "about open"
        s.get(Ticket, other).subject = "renamed"
        q.core(s)
        assert q.customer_tickets(s, customer, current).newest_open[0][1] == "renamed"


def test_the_senders_claim_reads_the_first_due_entry_without_sorting_the_queue(desk: Any) -> None:
    from sqlalchemy import insert as core_insert

    from maildesk.store.models import OutboxItem

    rows = [
        {"idempotency_key": f"k{i}", "message_id": f"m{i}@x", "sender": "s@x", "raw": b"x", "state": state}
        | {"next_try": NOW - timedelta(minutes=minutes), "created_at": NOW, "recipients": [], "attempts": 0}
        for i, (state, minutes) in enumerate([("queued", 1), ("sent", 9), ("queued", 5), ("queued", -5), ("held", 7)])
    ]
    with desk.store.session() as s:
        s.execute(core_insert(OutboxItem), rows)
        until = NOW + timedelta(seconds=30)
        claimed = oq.claim_due_rows(s, NOW, 2, until)  # the two earliest queued and due, in order
        assert [(row[6], row[4]) for row in claimed] == [("", 1), ("", 1)]
        keys = {r[0]: r[7] for r in claimed}
        taken = s.execute(
            select(OutboxItem.idempotency_key, OutboxItem.state, OutboxItem.attempts, OutboxItem.next_try)
            .where(OutboxItem.id.in_(list(keys)))
            .order_by(OutboxItem.idempotency_key)
        ).all()
        assert [(k, state, n) for k, state, n, _due in taken] == [("k0", "sending", 1), ("k2", "sending", 1)]
        assert [str(row[7]) for row in claimed] == ["m2@x", "m0@x"]
        assert all(_plain(due) == _plain(until) for *_rest, due in taken)
        assert oq.claim_due_rows(s, NOW, 5, until) == []  # k3 is not due yet; the others are not queued
        if desk.store.engine.dialect.name == "postgresql":  # several nodes: a row held by one is skipped
            assert "FOR UPDATE SKIP LOCKED" in oq._CLAIM_ROWS._plan(q.core(s))[0]
        if desk.store.engine.dialect.name == "sqlite":
            compiled = oq._CLAIM_ROWS._plan(q.core(s))
            params = oq._CLAIM_ROWS._convert(compiled, {"now": NOW, "n": 1})
            raw = s.connection().connection.driver_connection
            plan = " ".join(str(row[-1]) for row in raw.execute("EXPLAIN QUERY PLAN " + compiled[0], params))
            assert "ix_outbox_state_next_try" in plan and "TEMP B-TREE" not in plan, plan
