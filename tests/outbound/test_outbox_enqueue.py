"""enqueue: rows in the caller's transaction, idempotency keys, suppression and limits."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import func, select

from maildesk.outbound.compose import OutgoingMail
from maildesk.outbound.outbox import enqueue, loop_id, nonce_for, policy_from
from maildesk.rules.limits import LimitPolicy
from maildesk.store import queries as q
from maildesk.store.models import Message, OutboxItem, Suppression
from maildesk.threading import make_message_id
from tests.support.outbox_kit import Clock, event_types, events, new_ticket, outbox_rows


def mail(number: int, to: str = "anna@customer.example", key: str = "k") -> OutgoingMail:
    return OutgoingMail(
        from_addr="support@example.com",
        from_name="Example Support",
        to=(to,),
        subject=f"Re: [#{number}] Printer on fire",
        text="We are on it.\n",
        message_id=make_message_id("test-secret", number, "example.com", nonce_for(key)),
        automatic=True,
        loop_value=loop_id("test-secret"),
    )


def test_second_enqueue_with_same_key_writes_nothing(bare: Any, clock: Clock) -> None:
    number = new_ticket(bare, clock)
    with bare.store.session() as s:
        first = enqueue(
            s,
            key=f"ack:{number}",
            ticket_number=number,
            mail=mail(number, key="a"),
            template="ack",
            automatic=True,
            now=clock(),
        )
        assert first is not None and first.state == "queued"
    with bare.store.session() as s:
        again = enqueue(
            s,
            key=f"ack:{number}",
            ticket_number=number,
            mail=mail(number, key="b"),
            template="ack",
            automatic=True,
            now=clock(),
        )
        assert again is None
    rows = outbox_rows(bare)
    assert len(rows) == 1 and rows[0].idempotency_key == f"ack:{number}"
    assert rows[0].raw.startswith(b"From: ") and b"\r\n" in rows[0].raw
    with bare.store.reader() as s:
        out = s.scalars(select(Message).where(Message.direction == "out")).one()
        # the outgoing mail is a Message on the ticket, findable by its id for threading
        assert out.ticket_number == number and out.kind == "auto" and out.raw == rows[0].raw
        assert q.tickets_for_message_ids(s, [rows[0].message_id]) == {rows[0].message_id: number}


def test_enqueue_belongs_to_the_callers_transaction(bare: Any, clock: Clock) -> None:
    number = new_ticket(bare, clock)
    try:
        with bare.store.session() as s:
            enqueue(s, key="x", ticket_number=number, mail=mail(number), template="ack", automatic=True, now=clock())
            raise RuntimeError("the cause rolls back")
    except RuntimeError:
        pass
    assert outbox_rows(bare) == []
    with bare.store.reader() as s:
        assert s.scalar(select(func.count()).select_from(Message).where(Message.direction == "out")) == 0


def test_suppressed_recipient_is_held_with_an_event(bare: Any, clock: Clock) -> None:
    number = new_ticket(bare, clock)
    with bare.store.session() as s:
        s.add(Suppression(address="anna@customer.example", reason="550 5.1.1 user unknown", created_at=clock()))
    with bare.store.session() as s:
        item = enqueue(
            s, key="ack", ticket_number=number, mail=mail(number), template="ack", automatic=True, now=clock()
        )
        assert item is not None and item.state == "held"
    (ev,) = events(bare, number, "automatic-mail-held")
    assert "suppressed" in ev.data["reasons"][0] and "user unknown" in ev.data["reasons"][0]
    # a human agent's mail to a suppressed address is held too (it would only bounce again)
    with bare.store.session() as s:
        human = replace(mail(number, key="h"), automatic=False)
        item = enqueue(
            s, key="agent", ticket_number=number, mail=human, template="agent_reply", automatic=False, now=clock()
        )
        assert item is not None and item.state == "held"
    assert "mail-held" in event_types(bare, number)


def test_expired_suppression_no_longer_holds(bare: Any, clock: Clock) -> None:
    number = new_ticket(bare, clock)
    with bare.store.session() as s:
        s.add(
            Suppression(
                address="anna@customer.example",
                reason="mailbox full",
                created_at=clock(),
                until=clock().replace(year=2025),
            )
        )
    with bare.store.session() as s:
        item = enqueue(
            s, key="ack", ticket_number=number, mail=mail(number), template="ack", automatic=True, now=clock()
        )
        assert item is not None and item.state == "queued"


def test_limits_hold_automatic_mail_per_recipient_and_recover_after_an_hour(bare: Any, clock: Clock) -> None:
    number = new_ticket(bare, clock)
    policy = LimitPolicy(per_recipient_hour=2, per_recipient_day=3, per_ticket_day=100, global_hour=100)
    states = []
    for i in range(3):
        with bare.store.session() as s:
            item = enqueue(
                s,
                key=f"n{i}",
                ticket_number=number,
                mail=mail(number, key=f"n{i}"),
                template="ack",
                automatic=True,
                now=clock(),
                policy=policy,
            )
            assert item is not None
            states.append(item.state)
    assert states == ["queued", "queued", "held"]
    (held,) = events(bare, number, "automatic-mail-held")
    assert "in the last hour" in held.data["reasons"][0] and "(limit 2)" in held.data["reasons"][0]
    # another recipient is not affected; held mail does not count against anyone
    with bare.store.session() as s:
        other = enqueue(
            s,
            key="bob",
            ticket_number=number,
            mail=mail(number, to="bob_x@customer.example", key="bob"),
            template="ack",
            automatic=True,
            now=clock(),
            policy=policy,
        )
        assert other is not None and other.state == "queued"
    clock.advance(3601)
    with bare.store.session() as s:
        later = enqueue(
            s,
            key="n3",
            ticket_number=number,
            mail=mail(number, key="n3"),
            template="ack",
            automatic=True,
            now=clock(),
            policy=policy,
        )
        assert later is not None and later.state == "queued"  # 2 in the day so far, limit 3
    with bare.store.session() as s:
        full = enqueue(
            s,
            key="n4",
            ticket_number=number,
            mail=mail(number, key="n4"),
            template="ack",
            automatic=True,
            now=clock(),
            policy=policy,
        )
        assert full is not None and full.state == "held"
    assert "24 hours" in events(bare, number, "automatic-mail-held")[-1].data["reasons"][0]


def test_limit_counts_do_not_confuse_similar_addresses(bare: Any, clock: Clock) -> None:
    # LIKE-based counting must escape '_' and '%' and match whole addresses only
    number = new_ticket(bare, clock)
    policy = LimitPolicy(per_recipient_hour=1, per_recipient_day=10, per_ticket_day=100, global_hour=100)
    for i, to in enumerate(["a_b@x.example", "axb@x.example", "ba_b@x.example", "a_b@x.example.org"]):
        with bare.store.session() as s:
            item = enqueue(
                s,
                key=f"s{i}",
                ticket_number=number,
                mail=mail(number, to=to, key=f"s{i}"),
                template="ack",
                automatic=True,
                now=clock(),
                policy=policy,
            )
            assert item is not None and item.state == "queued", to


def test_non_automatic_mail_ignores_limits(bare: Any, clock: Clock) -> None:
    number = new_ticket(bare, clock)
    zero = LimitPolicy(0, 0, 0, 0)
    with bare.store.session() as s:
        item = enqueue(
            s,
            key="agent",
            ticket_number=number,
            mail=replace(mail(number), automatic=False),
            template="agent_reply",
            automatic=False,
            now=clock(),
            policy=zero,
        )
        assert item is not None and item.state == "queued"


def test_policy_comes_from_settings_and_loop_id_is_stable(bare: Any) -> None:
    policy = policy_from(bare.settings.limits)
    assert (policy.per_recipient_hour, policy.per_recipient_day) == (5, 20)
    assert loop_id("test-secret") == loop_id("test-secret") != loop_id("other")
    assert loop_id(bare.settings.secret) == bare.settings.instance_id  # what the screen looks for
    assert "test-secret" not in loop_id("test-secret")
    assert nonce_for("ack:1") == nonce_for("ack:1") != nonce_for("ack:2")


def test_outbox_counts_in_status(bare: Any, clock: Clock) -> None:
    number = new_ticket(bare, clock)
    with bare.store.session() as s:
        enqueue(s, key="x", ticket_number=number, mail=mail(number), template="ack", automatic=True, now=clock())
    with bare.store.reader() as s:
        assert q.counts(s)["outbox"] == {"queued": 1}
        assert s.scalar(select(func.count()).select_from(OutboxItem)) == 1
