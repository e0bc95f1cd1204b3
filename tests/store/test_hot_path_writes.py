"""The hot path's batched writes (issue 17): events recorded in a session are written by one
multi-row INSERT, in order, before anything reads them and before commit, and forgotten on
rollback; outbox rows go in without a savepoint and a repeated key writes nothing; the
limit facts in one statement equal the two separate look-ups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, event, func, select

from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store.models import Customer, OutboxItem, Ticket

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def _count_statements(engine: Any) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(str(a[2]).split()[0].upper()))
    return seen


def _ticket(session: Any, email: str = "anna@customer.example", since: timedelta = timedelta(days=3)) -> int:
    customer = q.customer_id_for(session, email, "Anna", NOW - since)
    return q.insert_ticket(session, subject="Printer", customer_id=customer, now=NOW)


def test_events_are_written_together_in_order_and_before_reads(desk: Any) -> None:
    with desk.store.session() as s:
        number = _ticket(s)
        for i in range(5):
            q.add_event(s, number, f"step-{i}", {"i": i}, NOW)
        statements = _count_statements(s.get_bind())
        types = [e.type for e in q.events_for_ticket(s, number)]  # an ORM read flushes them first
        assert types == [f"step-{i}" for i in range(5)]
        assert statements.count("INSERT") == 0  # store/fast.py writes them on the driver's cursor
        q.add_event(s, number, "last", {}, NOW)
    with desk.store.reader() as s:
        assert [e.type for e in q.events_for_ticket(s, number)] == [*(f"step-{i}" for i in range(5)), "last"]


def test_rolled_back_events_are_forgotten(desk: Any) -> None:
    with desk.store.session() as s:
        number = _ticket(s)
    with pytest.raises(RuntimeError), desk.store.session() as s:
        q.add_event(s, number, "lost", {}, NOW)
        raise RuntimeError("the message failed")
    with desk.store.session() as s:
        try:
            with s.begin_nested():
                q.add_event(s, number, "inside-savepoint", {}, NOW)
                raise RuntimeError("one message of the batch failed")
        except RuntimeError:
            pass
        q.add_event(s, number, "kept", {}, NOW)
    with desk.store.reader() as s:
        assert [e.type for e in q.events_for_ticket(s, number)] == ["kept"]


def _item(key: str, number: int) -> tuple[dict[str, Any], dict[str, Any]]:
    item = dict(
        idempotency_key=key,
        ticket_number=number,
        message_id=f"{key}@example.com",
        template="ack",
        sender="support@example.com",
        recipients=["anna@customer.example"],
        raw=b"Subject: x\r\n\r\nx\r\n",
        automatic=True,
        state="queued",
        attempts=0,
        next_try=NOW,
        last_error="",
        created_at=NOW,
    )
    message = dict(
        ticket_number=number,
        direction="out",
        kind="auto",
        message_id=f"{key}@example.com",
        mid_hash=q.mid_hash(f"{key}@example.com"),
        content_hash="0" * 64,
        raw=b"x",
        raw_size=1,
        subject="x",
        sender="support@example.com",
        sender_name="Support",
        recipients=["anna@customer.example"],
        created_at=NOW,
        source="outbox:ack",
        screen="human",
        internal=False,
    )
    return item, message


def test_outbox_rows_without_a_savepoint_and_a_repeated_key_writes_nothing(desk: Any) -> None:
    with desk.store.session() as s:
        number = _ticket(s)
        statements = _count_statements(s.get_bind())
        values, message = _item(f"ack:{number}", number)
        item = oq.add_unless_queued(s, values["idempotency_key"], values, message)
        assert item is not None and item.id is not None and s.get(OutboxItem, item.id) is item
        assert (item.idempotency_key, item.state, item.recipients) == (
            f"ack:{number}",
            "queued",
            ["anna@customer.example"],
        )
        assert item not in s.dirty  # as after a flush: nothing more to write
        assert oq.key_queued(s, f"ack:{number}") and not oq.key_queued(s, f"ack:{number + 1}")
        long_key = "rule:" + "x" * 300  # stored cut at 200 characters; asked the same way
        long_values, long_message = _item(long_key, number)
        long_message.update(message_id="long@example.com", mid_hash=q.mid_hash("long@example.com"))
        assert oq.add_unless_queued(s, long_key, {**long_values, "idempotency_key": long_key[:200]}, long_message)
        assert oq.key_queued(s, long_key)
        again, again_message = _item(f"ack:{number}", number)
        assert oq.add_unless_queued(s, again["idempotency_key"], again, again_message) is None
        assert not any(word in ("SAVEPOINT", "RELEASE", "ROLLBACK") for word in statements)
    with desk.store.reader() as s:
        assert oq.item_by_key(s, f"ack:{number}") is not None
        assert q.stored_facts(s, f"ack:{number}@example.com") is not None
        assert s.query(OutboxItem).count() == 2


def test_limit_facts_equal_the_separate_look_ups(desk: Any) -> None:
    with desk.store.session() as s:
        number = _ticket(s)
        _ticket(s, "new@fresh.example", timedelta(0))
        values, message = _item(f"ack:{number}", number)
        item = oq.add_unless_queued(s, values["idempotency_key"], values, message)
        assert item is not None
        oq.record_automatic(s, item.id, ["anna@customer.example"], number, NOW - timedelta(minutes=5))
        oq.record_automatic(s, item.id, ["other_1@fresh.example"], None, NOW - timedelta(minutes=5), first=False)
        for rcpt in ("anna@customer.example", "new@fresh.example", "nobody@else.example", "x%_\\@fresh.example"):
            for ticket in (number, None):
                counts, first = oq.limit_facts(s, recipient=rcpt, ticket_number=ticket, now=NOW)
                assert counts == oq.automatic_counts(s, recipient=rcpt, ticket_number=ticket, now=NOW)
                assert first == oq.first_contact_counts(s, recipient=rcpt, now=NOW)
        assert oq.limit_facts(s, recipient="new@fresh.example", ticket_number=None, now=NOW)[1] == (False, 1)


# The domain count before migration 0011 (by the email's ending; the reference)
_DOMAIN_BY_EMAIL_LIKE = (
    select(func.count())
    .select_from(Ticket)
    .join(Customer, Customer.id == Ticket.customer_id)
    .where(
        Ticket.created_at >= bindparam("hour"),
        Customer.created_at >= bindparam("hour"),
        Customer.email.like(bindparam("d"), escape="\\"),
    )
)


def _new_ticket_counts_before(s: Any, sender: str, now: datetime) -> tuple[int, int, bool]:
    """The three-statement version `new_ticket_counts` replaced (the reference)."""
    hour = now - timedelta(hours=1)
    sender_hour = int(s.execute(oq._SENDER_TICKETS_HOUR, {"r": sender, "hour": hour}).scalar() or 0)
    if s.execute(oq._KNOWN, {"r": sender, "hour": hour}).scalar():
        return sender_hour, 0, True
    domain = sender.rpartition("@")[2].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return (
        sender_hour,
        int(s.execute(_DOMAIN_BY_EMAIL_LIKE, {"hour": hour, "d": f"%@{domain}"}).scalar() or 0),
        False,
    )


def test_new_ticket_counts_in_one_statement_equal_the_three(desk: Any) -> None:
    with desk.store.session() as s:
        _ticket(s)  # known for three days
        _ticket(s, "first@fresh.example", timedelta(minutes=10))
        _ticket(s, "second@fresh.example", timedelta(minutes=20))
        for sender in ("anna@customer.example", "first@fresh.example", "third@fresh.example", "x%_@fresh.example"):
            assert oq.new_ticket_counts(s, sender=sender, now=NOW) == _new_ticket_counts_before(s, sender, NOW)
        assert oq.new_ticket_counts(s, sender="third@fresh.example", now=NOW)[2] is False


def test_json_columns_round_trip_what_json_dumps_wrote(desk: Any) -> None:
    """JSON columns are written by orjson (`store.db.json_text`); what it refuses goes to
    `json.dumps`. Either way a reader gets back what was stored, on both backends."""
    import json

    from maildesk.store.db import json_text

    odd = {
        "text": "Grüße, 日本語 \u2028 <b>",
        "surrogate": "bad \udcff byte",  # left by surrogateescape decoding of a mail's bytes
        "big": 2**70,  # beyond orjson's 64 bits
        "nested": {"list": [1, 2.5, None, True], "tuple": ("a", "b")},
        7: "a key that is not text",
    }
    assert json.loads(json_text(odd)) == json.loads(json.dumps(odd))
    assert json_text({"a": [1, 2]}) == '{"a":[1,2]}'  # compact, one line
    with desk.store.session() as s:
        number = _ticket(s)
        q.add_event(s, number, "odd", odd, NOW)
    with desk.store.session() as s:
        (stored,) = [e.data for e in q.events_for_ticket(s, number) if e.type == "odd"]
    assert stored == json.loads(json.dumps(odd))


def test_a_new_customers_first_ticket_has_no_others_without_asking(desk: Any, monkeypatch: Any) -> None:
    """A customer made in this transaction: its first ticket's "other tickets" are known to
    be none (no statement); its second ticket sees the first; a rollback forgets it all."""
    asked: list[Any] = []
    real = q._CUSTOMER_TICKETS.all
    monkeypatch.setattr(q._CUSTOMER_TICKETS, "all", lambda conn, values: asked.append(values) or real(conn, values))
    with desk.store.session() as s:
        customer, _stored = q.customer_for_mail(s, "new@fresh.example", "New", NOW, None)
        first = q.insert_ticket(s, subject="First", customer_id=customer, now=NOW)
        seen = q.customer_tickets(s, customer, first)
        assert (seen.total, seen.open, seen.newest_open) == (0, 0, ()) and asked == []
        second = q.insert_ticket(s, subject="Second", customer_id=customer, now=NOW)
        others = q.customer_tickets(s, customer, second)
        assert (others.total, others.open, [t[0] for t in others.newest_open]) == (1, 1, [first])
        assert len(asked) == 1  # the second ticket was asked about
        again = q.customer_tickets(s, customer, first)  # the first ticket now has an other too
        assert (again.total, again.open) == (1, 1)
    with desk.store.session() as s:  # a known customer: asked as ever
        known, _stored = q.customer_for_mail(s, "new@fresh.example", "New", NOW, None)
        third = q.insert_ticket(s, subject="Third", customer_id=known, now=NOW)
        assert q.customer_tickets(s, known, third).total == 2
    with desk.store.session() as s:  # made, rolled back to a savepoint: nothing is assumed
        nested = s.begin_nested()
        gone, _stored = q.customer_for_mail(s, "gone@fresh.example", "Gone", NOW, None)
        nested.rollback()
        assert "maildesk.ticketless_customers" not in s.info
