"""The sender against a real SMTP relay on loopback (aiosmtpd) and the local Maildir:
acknowledgement end to end, retries with backoff, permanent failures, crash recovery."""

from __future__ import annotations

import mailbox
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from maildesk.message import parse_bytes
from maildesk.outbound.outbox import loop_id
from maildesk.outbound.sender import backoff_seconds
from maildesk.store.models import Agent, Message, OutboxItem, Suppression, Ticket
from maildesk.threading import new_thread_index, parse_message_id, parse_reply_address, thread_index_root
from maildesk.threading.thread_index import thread_index_depth
from tests.support.mailgen import eml
from tests.support.outbox_kit import (
    Clock,
    RelaySink,
    event_types,
    events,
    new_ticket,
    outbox_rows,
    relay_settings,
    sender_for,
)
from tests.support.wait import wait_for


def test_ack_reaches_the_relay_with_threading_headers(wired: Any, clock: Clock, sink: RelaySink) -> None:
    theirs = new_thread_index(clock() - timedelta(days=1))
    number = new_ticket(
        wired,
        clock,
        message_id="<q1@customer.example>",
        subject="Re: Printer on fire",
        extra=f"References: <older@customer.example>\nThread-Index: {theirs}",
        envelope={"rcpt_tos": ["billing@example.com"], "mail_from": "anna@customer.example"},
    )
    sender = sender_for(wired, relay_settings(wired.settings, sink.port), clock)
    assert sender.send_due() == {"sent": 1, "deferred": 0, "failed": 0, "recovered": 0}
    (mail_from, rcpts, raw) = sink.received[0]
    assert len(sink.received) == 1
    assert mail_from == "billing@example.com" and rcpts == ["anna@customer.example"]
    got = parse_bytes(raw)
    secret = wired.settings.secret
    assert got.in_reply_to == ("q1@customer.example",)
    assert got.references[-1] == "q1@customer.example" and "older@customer.example" in got.references
    assert f"[#{number}]" in got.subject and got.subject.startswith("Re: ") and "Printer on fire" in got.subject
    assert got.header("Auto-Submitted") == "auto-replied"
    assert got.header("X-Maildesk-Loop") == loop_id(secret)
    assert got.from_ is not None and got.from_.email == "billing@example.com" and got.from_.name == "Example Support"
    assert parse_reply_address(secret, got.reply_to[0].email) == number
    assert parse_message_id(secret, got.message_id) == number
    ours = got.header("Thread-Index")  # a child of theirs: same conversation root, one level deeper
    assert thread_index_root(ours) == thread_index_root(theirs) and thread_index_depth(ours) == 1
    assert "request" in got.text and f"[#{number}]" in got.text
    row = outbox_rows(wired)[0]
    assert row.state == "sent" and row.attempts == 1 and row.sent_at is not None
    assert row.idempotency_key == f"ack:{number}"
    with wired.store.reader() as s:
        out = s.scalars(select(Message).where(Message.direction == "out")).one()
        assert out.sent_at is not None and out.message_id == got.message_id
    assert "mail-sent" in event_types(wired, number)
    assert sender.send_due()["sent"] == 0  # nothing left: sent exactly once


def test_replayed_customer_mail_sends_no_second_ack(wired: Any, clock: Clock, sink: RelaySink) -> None:
    from tests.support.mailgen import eml

    raw = eml(message_id="<replay@customer.example>")
    for _ in range(3):
        wired.spool.put(raw, "smtp")
    wired.process()
    sender = sender_for(wired, relay_settings(wired.settings, sink.port), clock)
    sender.send_due()
    assert len(sink.received) == 1 and len(outbox_rows(wired)) == 1


def test_without_relay_mail_goes_to_the_local_maildir(wired: Any, clock: Clock) -> None:
    number = new_ticket(wired, clock)
    assert not wired.settings.outbound.relay_host
    sender = sender_for(wired, wired.settings, clock)
    assert sender.send_due()["sent"] == 1
    box = mailbox.Maildir(str(wired.settings.outgoing_maildir), create=False)
    (key,) = list(box.keys())
    data = box.get_bytes(key)
    assert data.startswith(b"Return-Path: <support@example.com>\r\nX-Envelope-To: anna@customer.example\r\n")
    got = parse_bytes(data)
    assert f"[#{number}]" in got.subject and got.header("Auto-Submitted") == "auto-replied"
    assert outbox_rows(wired)[0].state == "sent"


def test_temporary_failure_retries_with_backoff_and_delivers_once(wired: Any, clock: Clock, sink: RelaySink) -> None:
    number = new_ticket(wired, clock)
    sink.handler.rcpt_script = ["451 4.7.1 greylisted, try again later"]
    sender = sender_for(wired, relay_settings(wired.settings, sink.port), clock)
    assert sender.send_due()["deferred"] == 1
    row = outbox_rows(wired)[0]
    assert row.state == "queued" and row.attempts == 1 and "451" in row.last_error
    (ev,) = events(wired, number, "send-deferred")
    assert ev.data["retry_in_seconds"] == 30.0
    clock.advance(29)
    assert sender.send_due() == {"sent": 0, "deferred": 0, "failed": 0, "recovered": 0}  # not due yet
    clock.advance(2)
    assert sender.send_due()["sent"] == 1
    assert len(sink.received) == 1 and sink.handler.rcpt_attempts == 2
    row = outbox_rows(wired)[0]
    assert row.state == "sent" and row.attempts == 2 and row.last_error == ""


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n, 30) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff_seconds(30, 30) == 6 * 3600


def test_gives_up_after_max_attempts(wired: Any, clock: Clock) -> None:
    from dataclasses import replace

    number = new_ticket(wired, clock)
    settings = relay_settings(wired.settings, 1)  # nothing listens on port 1: connection refused
    settings = replace(settings, outbound=replace(settings.outbound, max_attempts=3, retry_base_seconds=10))
    sender = sender_for(wired, settings, clock)
    for _ in range(3):
        sender.send_due()
        clock.advance(3600)
    row = outbox_rows(wired)[0]
    assert row.state == "failed" and row.attempts == 3 and "cannot reach relay" in row.last_error
    (failed,) = events(wired, number, "send-failed")
    assert failed.data["why"] == "gave up after 3 attempts"
    assert len(events(wired, number, "send-deferred")) == 2


def test_permanent_failure_fails_suppresses_and_tells_the_assignee(wired: Any, clock: Clock, sink: RelaySink) -> None:
    number = new_ticket(wired, clock)
    with wired.store.session() as s:
        s.add(Agent(email="jonas@example.com", name="Jonas Weber", tiers=["L1"], queues=["default"]))
        s.get(Ticket, number).assignee = "jonas@example.com"
    sink.handler.rcpt_script = ["550 5.1.1 <anna@customer.example>: user unknown"]
    sender = sender_for(wired, relay_settings(wired.settings, sink.port), clock)
    counts = sender.send_due()
    assert counts["failed"] == 1 and counts["sent"] == 1  # the ack failed; the notice to the agent went
    rows = outbox_rows(wired)
    assert [r.state for r in rows] == ["failed", "sent"]
    assert rows[0].attempts == 1 and "550" in rows[0].last_error
    notice = rows[1]
    assert notice.template == "bounce_notice" and notice.recipients == ["jonas@example.com"] and notice.automatic
    (_, rcpts, raw) = sink.received[0]
    got = parse_bytes(raw)
    assert rcpts == ["jonas@example.com"] and f"[#{number}]" in got.subject
    assert "anna@customer.example" in got.text and "user unknown" in got.text
    types = event_types(wired, number)
    assert "send-failed" in types and "address-suppressed" in types
    (failed,) = events(wired, number, "send-failed")
    assert failed.data["why"] == "permanent" and failed.data["code"] == 550
    with wired.store.reader() as s:
        sup = s.scalars(select(Suppression)).one()
        assert sup.address == "anna@customer.example" and "550" in sup.reason
        note = s.scalars(select(Message).where(Message.message_id == notice.message_id)).one()
        assert note.internal and note.ticket_number == number


def test_permanent_failure_without_assignee_tells_queue_agents_and_never_loops(
    wired: Any, clock: Clock, sink: RelaySink
) -> None:
    new_ticket(wired, clock)
    with wired.store.session() as s:
        s.add(Agent(email="maria@example.com", name="Maria Rossi", queues=["default"]))
        s.add(Agent(email="other@example.com", name="Other", queues=["billing"]))
        s.add(Agent(email="gone@example.com", name="Gone", queues=["default"], active=False))
    # the ack and then the notice are refused for good: no notice about the notice
    sink.handler.rcpt_script = ["550 5.1.1 no such user", "550 5.1.1 no such agent"]
    sender = sender_for(wired, relay_settings(wired.settings, sink.port), clock)
    sender.send_due()
    rows = outbox_rows(wired)
    assert [(r.template, r.state, r.recipients) for r in rows] == [
        ("ack", "failed", ["anna@customer.example"]),
        ("bounce_notice", "failed", ["maria@example.com"]),
    ]
    assert sink.received == []


def test_permanent_failure_with_no_agent_is_an_event(wired: Any, clock: Clock, sink: RelaySink) -> None:
    number = new_ticket(wired, clock)
    sink.handler.data_script = ["554 5.7.1 message refused as spam"]
    sender = sender_for(wired, relay_settings(wired.settings, sink.port), clock)
    sender.send_due()
    assert [r.state for r in outbox_rows(wired)] == ["failed"]
    assert "agent-not-notified" in event_types(wired, number)
    with wired.store.reader() as s:  # a DATA refusal is about the content: the address stays usable
        assert s.scalars(select(Suppression)).first() is None


def test_crash_between_sending_and_sent_is_recovered(wired: Any, clock: Clock, sink: RelaySink) -> None:
    number = new_ticket(wired, clock)
    sender = sender_for(wired, relay_settings(wired.settings, sink.port), clock)
    claimed = sender._claim()  # attempt committed, then the process "dies" before SMTP
    assert claimed is not None
    row = outbox_rows(wired)[0]
    assert row.state == "sending" and row.attempts == 1
    # a fresh sender (another node, or after restart) must not steal a row inside its lease
    other = sender_for(wired, relay_settings(wired.settings, sink.port), clock)
    assert other.recover() == 0 and other.send_due()["sent"] == 0
    clock.advance(other.lease.total_seconds() + 1)
    assert other.recover() == 1
    (ev,) = events(wired, number, "send-interrupted")
    assert ev.data["outbox_id"] == row.id and "may or may not" in ev.data["detail"]
    assert other.send_due()["sent"] == 1
    row = outbox_rows(wired)[0]
    assert row.state == "sent" and row.attempts == 2
    assert len(sink.received) == 1
    # the same bytes (same Message-ID) whatever attempt delivers them
    assert parse_bytes(sink.received[0][2]).message_id == row.message_id


def test_finishing_a_row_recovered_by_someone_else_changes_nothing(wired: Any, clock: Clock, sink: RelaySink) -> None:
    new_ticket(wired, clock)
    sender = sender_for(wired, relay_settings(wired.settings, sink.port), clock)
    claimed = sender._claim()
    assert claimed is not None
    with wired.store.session() as s:
        s.get(OutboxItem, claimed.id).state = "queued"  # recovered meanwhile
    from maildesk.outbound.relay import DeliveryResult
    from maildesk.outbound.sender import SendCounts

    counts = SendCounts()
    sender._finish(claimed, DeliveryResult(True, False, 250, "ok"), counts)
    assert counts.sent == 0 and outbox_rows(wired)[0].state == "queued"


def queue_plain_mails(desk: Any, number: int, n: int, now: Any) -> None:
    from maildesk.outbound.compose import OutgoingMail
    from maildesk.outbound.outbox import enqueue, nonce_for
    from maildesk.threading import make_message_id

    with desk.store.session() as s:
        for i in range(n):
            key = f"bulk:{i}"
            mail = OutgoingMail(
                from_addr="support@example.com",
                to=(f"c{i}@customer.example",),
                subject=f"[#{number}] n{i}",
                text="x",
                message_id=make_message_id("test-secret", number, "example.com", nonce_for(key)),
            )
            enqueue(s, key=key, ticket_number=number, mail=mail, template="agent_reply", automatic=False, now=now)


def test_two_senders_draining_one_outbox_send_each_mail_once(bare: Any, clock: Clock, sink: RelaySink) -> None:
    import threading

    number = new_ticket(bare, clock)
    queue_plain_mails(bare, number, 40, clock())
    settings = relay_settings(bare.settings, sink.port)
    senders = [sender_for(bare, settings, clock) for _ in range(2)]
    threads = [threading.Thread(target=s.send_due, kwargs={"limit": 100}) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = [parse_bytes(raw).message_id for _, _, raw in sink.received]
    assert len(ids) == 40 and len(set(ids)) == 40
    assert sum(s.totals.sent for s in senders) == 40
    assert {r.state for r in outbox_rows(bare)} == {"sent"} and {r.attempts for r in outbox_rows(bare)} == {1}


def test_run_forever_recovers_then_drains_until_stopped(bare: Any, clock: Clock, sink: RelaySink) -> None:
    import threading

    number = new_ticket(bare, clock)
    queue_plain_mails(bare, number, 3, clock())
    settings = relay_settings(bare.settings, sink.port)
    crashed = sender_for(bare, settings, clock)
    assert crashed._claim() is not None  # left in `sending` by a "dead" sender
    clock.advance(crashed.lease.total_seconds() + 1)
    sender = sender_for(bare, settings, clock)
    sender.poll_interval = 0.02
    stop = threading.Event()
    thread = threading.Thread(target=sender.run_forever, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: len(sink.received) >= 3, timeout=20, interval=0.02, message="three mails at the relay")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(sink.received) == 3 and sender.totals.recovered == 1
    assert "send-interrupted" in event_types(bare, number)


def test_maildir_delivery_claims_and_records_rows_in_batches(wired: Any, clock: Clock) -> None:
    from sqlalchemy import event as sa_event

    from maildesk.outbound.sender import MAILDIR_BATCH

    n = MAILDIR_BATCH + 5
    for i in range(n):
        wired.spool.put(
            eml(sender=f"c{i}@customer{i}.example", subject=f"Question {i}", message_id=f"<q{i}@x>"), "smtp"
        )
    assert wired.process()["tickets_created"] == n
    commits: list[int] = []
    sa_event.listen(wired.store.engine, "commit", lambda conn: commits.append(1))
    sender = sender_for(wired, wired.settings, clock)
    assert sender.send_due()["sent"] == n
    assert len(commits) == 4  # two claims (20 + 5 rows) and two records, not two per mail
    box = mailbox.Maildir(str(wired.settings.outgoing_maildir), create=False)
    assert len(box) == n
    rows = outbox_rows(wired)
    assert {r.state for r in rows} == {"sent"} and all(r.attempts == 1 and r.sent_at for r in rows)
    with wired.store.reader() as s:
        sent = s.scalars(select(Message).where(Message.direction == "out")).all()
        assert len(sent) == n and all(m.sent_at is not None for m in sent)
