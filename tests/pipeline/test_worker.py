"""The worker over the spool, on SQLite and PostgreSQL: one ticket per new message,
idempotency by Message-ID, quarantine and failed/ with the stage."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from maildesk.pipeline.context import stage
from maildesk.store.models import Attachment, Event, Message, Participant, Ticket
from tests.support.crashes import WorkerDied, drain_through_crashes
from tests.support.mailgen import eml


def count(desk: Any, model: Any) -> int:
    stmt = select(func.count()).select_from(model)
    if model is Message:
        stmt = stmt.where(Message.direction == "in")  # acknowledgements are stored as outgoing messages
    with desk.store.reader() as s:
        return int(s.scalar(stmt) or 0)


def test_new_message_opens_ticket_with_everything_stored(desk: Any) -> None:
    raw = eml(message_id="<m1@customer.example>", extra="Cc: Bob <bob@customer.example>")
    desk.spool.put(raw, "test")
    result = desk.process()
    assert result["tickets_created"] == 1 and result["failed"] == 0
    with desk.store.reader() as s:
        ticket = s.scalars(select(Ticket)).one()
        msg = s.scalars(select(Message).where(Message.direction == "in")).one()
        assert ticket.subject == "Printer on fire" and ticket.status == "new"
        assert ticket.customer.email == "anna@customer.example" and ticket.customer.name == "Anna Schmidt"
        assert msg.raw == raw and msg.message_id == "m1@customer.example"
        assert "printer is on fire" in msg.full_text
        parts = {(p.address, p.role) for p in s.scalars(select(Participant))}
        assert parts == {("anna@customer.example", "customer"), ("bob@customer.example", "cc")}
        types = [e.type for e in s.scalars(select(Event))]
        assert "ticket-created" in types


def test_replayed_message_is_stored_once(desk: Any) -> None:
    raw = eml(message_id="<same@customer.example>")
    for _ in range(3):
        desk.spool.put(raw, "test")
    result = desk.process()
    assert result["tickets_created"] == 1 and result["duplicates"] == 2
    assert count(desk, Message) == 1


def test_same_message_to_two_support_addresses_is_one_ticket(desk: Any) -> None:
    # two deliveries of one mail differ only in trace headers
    base = eml(message_id="<two@customer.example>", to="support@example.com, billing@example.com")
    desk.spool.put(b"Delivered-To: support@example.com\r\n" + base, "smtp", {"rcpt_tos": ["support@example.com"]})
    desk.spool.put(b"Delivered-To: billing@example.com\r\n" + base, "smtp", {"rcpt_tos": ["billing@example.com"]})
    desk.process()
    assert count(desk, Ticket) == 1 and count(desk, Message) == 1


def test_same_id_different_content_is_kept_under_synthetic_id(desk: Any) -> None:
    desk.spool.put(eml(message_id="<clash@x>", body="first"), "test")
    desk.spool.put(eml(message_id="<clash@x>", body="second, different"), "test")
    desk.process()
    with desk.store.reader() as s:
        ids = [m.message_id for m in s.scalars(select(Message).where(Message.direction == "in").order_by(Message.id))]
        assert ids[0] == "clash@x" and ids[1].endswith("@synthetic.maildesk")
        assert s.scalars(select(Event).where(Event.type == "message-id-collision")).first() is not None


def test_missing_message_id_gets_deterministic_synthetic_id(desk: Any) -> None:
    raw = eml(message_id="")
    desk.spool.put(raw, "test")
    desk.spool.put(raw, "test")
    result = desk.process()
    assert result["tickets_created"] == 1 and result["duplicates"] == 1
    with desk.store.reader() as s:
        assert (
            s.scalars(select(Message.message_id).where(Message.direction == "in")).one().endswith("@synthetic.maildesk")
        )


def test_unparseable_goes_to_quarantine_with_reason(desk: Any) -> None:
    desk.spool.put(b"this is not a mail message at all\r\n", "test")
    desk.spool.put(eml(), "test")
    result = desk.process()
    assert result["quarantined"] == 1 and result["tickets_created"] == 1
    (entry,) = desk.spool.entries("quarantine")
    assert "no header block" in desk.spool.info(entry)["reason"]


def test_stage_that_raises_sends_entry_to_failed_and_rolls_back(desk: Any) -> None:
    @stage()
    def exploding(ctx: Any, session: Any, deps: Any) -> None:
        raise RuntimeError("rule engine exploded")

    exploding.__name__ = "route"
    desk.worker.stages = (*desk.worker.stages, exploding)
    desk.spool.put(eml(), "test")
    result = desk.process()
    assert result["failed"] == 1
    assert count(desk, Ticket) == 0 and count(desk, Message) == 0  # whole transaction rolled back
    (entry,) = desk.spool.entries("failed")
    info = desk.spool.info(entry)
    assert info["stage"] == "route" and "rule engine exploded" in info["error"]
    assert "Traceback" in info["traceback"]


def test_attachments_are_stored_with_safe_names(desk: Any) -> None:
    raw = (
        b"From: a@customer.example\r\nTo: support@example.com\r\nSubject: files\r\nMessage-ID: <att@x>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        b'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="../../etc/passwd"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n"
    )
    desk.spool.put(raw, "test")
    desk.process()
    with desk.store.reader() as s:
        att = s.scalars(select(Attachment)).one()
        assert att.filename == "passwd" and att.data == b"hello" and att.size == 5


def test_non_utf8_bytes_are_never_decoded_lossily_before_parsing(desk: Any) -> None:
    raw = (
        "From: =?iso-8859-1?q?J=F6rg?= <jorg@customer.example>\r\nTo: support@example.com\r\n"
        "Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\nMessage-ID: <latin1@x>\r\n"
        "Content-Type: text/plain; charset=iso-8859-1\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nSch\xf6ne Gr\xfc\xdfe\r\n"
    ).encode("latin-1")
    desk.spool.put(raw, "test")
    desk.process()
    with desk.store.reader() as s:
        msg = s.scalars(select(Message).where(Message.direction == "in")).one()
        assert msg.raw == raw and msg.subject == "Grüße" and "Schöne Grüße" in msg.full_text
        assert msg.sender_name == "Jörg"


def test_unquoted_comma_in_sender_name_keeps_the_address(desk: Any) -> None:
    desk.spool.put(eml(sender="Schmidt, Berta <berta@customer.example>", message_id="<comma@x>"), "test")
    desk.process()
    with desk.store.reader() as s:
        ticket = s.scalars(select(Ticket)).one()
        assert ticket.customer.email == "berta@customer.example"
        assert ticket.customer.name == "Schmidt, Berta"


def test_poison_message_is_isolated_and_parked_after_three_crashes(desk: Any) -> None:
    @stage()
    def poison(ctx: Any, session: Any, deps: Any) -> None:
        if ctx.msg.subject == "poison":
            raise WorkerDied()

    desk.worker.stages = (poison, *desk.worker.stages)
    for i in range(20):
        desk.spool.put(eml(message_id=f"<p{i}@customer.example>", subject="poison" if i == 7 else f"fine {i}"), "test")
    crashes = drain_through_crashes(desk.process)  # recovers what each crash left, then drains
    # one crash with the whole batch in flight (no one blamed), then three with it alone
    assert crashes == 4
    (failed,) = desk.spool.entries("failed")
    meta, raw = desk.spool.read(failed)
    assert b"Subject: poison" in raw and desk.spool.info(failed)["stage"] == "crash"
    assert count(desk, Message) == 19  # every other message stored, once


def test_the_daemons_drainer_turns_journal_records_into_entries_off_the_worker(desk: Any) -> None:
    """SMTP intake's journal is drained by a thread of its own (`App._drain_loop`) when a
    group is durable: the records become incoming/ entries without the worker claiming,
    and the worker is woken for them. Nothing is lost or doubled when the worker drains too."""
    import threading

    from tests.support.wait import wait_for

    writer = desk.spool.journal_writer()
    stop = threading.Event()
    drainer = threading.Thread(target=desk._drain_loop, args=(stop,), daemon=True)
    drainer.start()
    try:
        woken = desk.wakeups.spool.notified
        raws = [eml(message_id=f"<j{i}@customer.example>", subject=f"journal {i}") for i in range(6)]
        results = writer.append([(raw, "smtp", {"rcpt_tos": ["support@example.com"]}) for raw in raws[:3]])
        assert all(isinstance(r, str) for r in results)
        desk._smtp_spooled()
        wait_for(lambda: len(list((desk.spool.root / "incoming").glob("*.msg"))) == 3, timeout=10)
        wait_for(lambda: desk.wakeups.spool.notified >= woken + 2, timeout=10)  # by SMTP and by the drainer
        writer.append([(raw, "smtp", {"rcpt_tos": ["support@example.com"]}) for raw in raws[3:]])
        desk._smtp_spooled()
        assert desk.process()["tickets_created"] == 6  # whichever of the two drained the rest
    finally:
        stop.set()
        drainer.join(timeout=5)
        writer.close()
    assert not drainer.is_alive()
    assert count(desk, Message) == 6 and count(desk, Ticket) == 6
    assert desk.spool.journal_backlog() == 0
