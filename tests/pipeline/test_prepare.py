"""Preparation in child processes (worker.parse_processes) and the fast write path: the
pool gives the same results as preparing inline, survives a dead child without losing
mail, keeps crash blame exact while it claims ahead, and rows written on the driver
connection read back through the ORM exactly as the ORM would have written them."""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.app import App
from maildesk.config import Settings
from maildesk.pipeline.context import stage
from maildesk.pipeline.prepare import (
    Needs,
    Prepared,
    PrepareFailed,
    PreparePool,
    Unparseable,
    default_processes,
    prepare_entry,
)
from maildesk.spool.files import Spool, SpoolEntry
from maildesk.store.models import Event, Message, Participant, Ticket
from tests.support.crashes import WorkerDied, drain_through_crashes
from tests.support.mailgen import eml

HTML = (
    b"From: Hans <hans@customer.example>\r\nTo: support@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Message-ID: <html-1@customer.example>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=x\r\n\r\n"
    b'--x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hallo <img src="http://evil.example/t.png">'
    b"<script>alert(1)</script></p><blockquote>old</blockquote>\r\n--x--\r\n"
)
AUTO = eml(subject="Out of office", extra="Auto-Submitted: auto-replied", message_id="<ooo-1@customer.example>")
REPLY = eml(
    subject="Re: Printer",
    body="Still broken.\n\nOn Sun, 22 Nov 2026, Support wrote:\n> What model?\n",
    message_id="<re-1@customer.example>",
)


def pool_settings(settings: Settings, processes: int) -> Settings:
    return replace(settings, worker=replace(settings.worker, parse_processes=processes))


def spooled(spool: Spool, raws: list[bytes]) -> list[SpoolEntry]:
    for raw in raws:
        spool.put(raw, "test")
    entries = []
    while (entry := spool.claim()) is not None:
        entries.append(entry)
    return entries


def test_pool_prepares_exactly_what_inline_preparation_does(settings: Settings, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool").ensure()
    raws = [HTML, AUTO, REPLY, b"not a mail at all\r\n", *(eml() for _ in range(6))]
    entries = spooled(spool, raws)
    needs = Needs(screen=True, reply=True, language=True)
    pool = PreparePool(settings, processes=1)
    try:
        in_child = pool.results(entries, pool.submit(entries, needs), needs)
    finally:
        pool.close()
    inline = [prepare_entry(e.path, settings, needs) for e in entries]
    assert len(in_child) == len(entries) == len(inline)
    for got, want in zip(in_child, inline, strict=True):
        assert type(got) is type(want)
        if isinstance(want, Prepared):
            assert isinstance(got, Prepared)
            assert got.msg == want.msg and got.content_hash == want.content_hash and got.html == want.html
            assert got.screen == want.screen and got.reply == want.reply
            assert got.language == want.language and got.language_done and want.language_done
    html = next(p for p in in_child if isinstance(p, Prepared) and p.msg.message_id == "html-1@customer.example")
    assert "<script" not in html.html and "evil.example" not in html.html and "Hallo" in html.html
    auto = next(p for p in in_child if isinstance(p, Prepared) and p.msg.message_id == "ooo-1@customer.example")
    assert auto.screen.verdict == "auto-reply"
    reply = next(p for p in in_child if isinstance(p, Prepared) and p.msg.message_id == "re-1@customer.example")
    assert reply.reply.visible.strip() == "Still broken." and "What model?" in reply.reply.quoted
    assert sum(isinstance(p, Unparseable) for p in in_child) == 1
    # The customer's language is guessed in the child too (no database needed): English text here.
    plain = [p for p in in_child if isinstance(p, Prepared) and p.msg.message_id.endswith("@customer.example")]
    assert any(p.language is not None and (p.language.locale, p.language.source) == ("en", "text") for p in plain)


def test_two_children_share_a_batch_and_keep_its_order(settings: Settings, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool").ensure()
    entries = spooled(spool, [eml(message_id=f"<two{i}@customer.example>") for i in range(9)] + [b"junk\r\n"])
    pool = PreparePool(settings, processes=2)
    try:
        outcomes = pool.results(entries, pool.submit(entries, Needs()), Needs())
    finally:
        pool.close()
    ids = [o.msg.message_id if isinstance(o, Prepared) else "unparseable" for o in outcomes]
    assert ids == [f"two{i}@customer.example" for i in range(9)] + ["unparseable"]


def test_automatic_size_of_the_pool() -> None:
    assert default_processes(0) == 0 and default_processes(3) == 3
    cores = os.cpu_count() or 1
    assert default_processes(-1) == max(0, min(4, cores - 1))


def test_a_killed_parser_process_loses_nothing(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool").ensure()
    entries = spooled(spool, [eml(message_id=f"<k{i}@customer.example>", body="word " * 400) for i in range(600)])
    needs = Needs(screen=True, reply=True)
    pool = PreparePool(settings, processes=1)
    try:
        pool.warm()
        future = pool.submit(entries, needs)
        executor: Any = pool._executor()
        for pid in list(executor._processes):  # the child dies while it works
            os.kill(pid, signal.SIGKILL)
        with caplog.at_level(logging.ERROR, logger="maildesk.prepare"):
            outcomes = pool.results(entries, future, needs)
    finally:
        pool.close()
    assert [o.msg.message_id for o in outcomes if isinstance(o, Prepared)] == [
        f"k{i}@customer.example" for i in range(600)
    ]
    assert "parser process died" in caplog.text


def test_when_parser_processes_cannot_start_messages_are_prepared_in_the_worker(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A spawned child re-imports the main module; make that impossible, as a broken install would.
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "__spec__", None, raising=False)
    monkeypatch.setattr(main, "__file__", str(tmp_path / "no-such-main.py"), raising=False)
    spool = Spool(tmp_path / "spool").ensure()
    entries = spooled(spool, [eml(message_id=f"<n{i}@customer.example>") for i in range(8)])
    pool = PreparePool(settings, processes=1)
    try:
        with caplog.at_level(logging.ERROR, logger="maildesk.prepare"):
            outcomes = pool.results(entries, pool.submit(entries, Needs()), Needs())
    finally:
        pool.close()
    assert [o.msg.message_id for o in outcomes if isinstance(o, Prepared)] == [
        f"n{i}@customer.example" for i in range(8)
    ]
    assert not pool.parallel and "cannot start" in caplog.text  # none quarantined for the pool's fault


def test_an_unreadable_entry_is_a_failure_not_a_crash(settings: Settings, tmp_path: Path) -> None:
    outcome = prepare_entry(tmp_path / "gone.msg", settings, Needs())
    assert isinstance(outcome, PrepareFailed) and "cannot read" in outcome.error


def test_worker_with_a_parser_process_stores_every_message_once(settings: Settings) -> None:
    app = App(pool_settings(settings, 1))
    app.migrate()
    try:
        for i in range(130):  # three batches: the second and third are claimed ahead
            app.spool.put(eml(message_id=f"<w{i}@customer.example>", subject=f"case {i}"), "test")
        app.spool.put(eml(message_id="<w0@customer.example>", subject="case 0"), "test")  # a replay
        result = app.process()
        assert result["processed"] == 131 and result["duplicates"] == 1 and result["failed"] == 0
        assert app.spool.depths()["active"] == 0 and app.spool.depths()["incoming"] == 0
        with app.store.reader() as s:
            ids = list(s.scalars(select(Message.message_id).where(Message.direction == "in")))
        assert sorted(ids) == sorted(f"w{i}@customer.example" for i in range(130))
    finally:
        app.worker.close()
        app.store.dispose()


def test_crash_blame_stays_exact_while_batches_are_claimed_ahead(settings: Settings) -> None:
    app = App(pool_settings(settings, 1))
    app.migrate()

    @stage()
    def poison(ctx: Any, session: Any, deps: Any) -> None:
        if ctx.msg.subject == "poison":
            raise WorkerDied()

    app.worker.stages = (poison, *app.worker.stages)
    try:
        for i in range(120):
            app.spool.put(
                eml(message_id=f"<q{i}@customer.example>", subject="poison" if i == 70 else f"fine {i}"), "test"
            )
        crashes = drain_through_crashes(app.process)  # recovers what each crash left, then drains
        # one crash in a batch (with the next batch claimed ahead: nobody blamed), then three alone
        assert crashes == 4
        (failed,) = app.spool.entries("failed")
        assert b"Subject: poison" in app.spool.read(failed)[1]
        with app.store.reader() as s:
            assert len(list(s.scalars(select(Message.id).where(Message.direction == "in")))) == 119
    finally:
        app.worker.close()
        app.store.dispose()


def test_rows_written_on_the_driver_connection_read_back_through_the_orm(desk: Any) -> None:
    raw = eml(
        sender="Zoë Ärger <zoe@customer.example>",
        subject="Ünïcode ✓",
        message_id="<fast@customer.example>",
        extra="Cc: Bob <bob@customer.example>, support@example.com",
    )
    desk.spool.put(raw, "smtp", {"rcpt_tos": ["support@example.com"]})
    before = datetime.now(UTC)
    desk.process()
    with desk.store.reader() as s:
        ticket = s.scalars(select(Ticket)).one()
        msg = s.scalars(select(Message).where(Message.direction == "in")).one()
        assert ticket.subject == "Ünïcode ✓" and ticket.tags == [] and ticket.fields == {} and ticket.spam is False
        assert ticket.customer.name == "Zoë Ärger" and ticket.customer.vip is False
        # "my printer is on fire": English, detected from the text (maildesk/language.py)
        assert (ticket.customer.locale, ticket.customer.locale_source) == ("en", "text")
        for stamp in (ticket.created_at, ticket.updated_at, msg.created_at):
            aware = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
            assert abs((aware - before).total_seconds()) < 60
        assert msg.raw == raw and msg.raw_size == len(raw) and msg.internal is False
        assert msg.recipients == ["support@example.com", "bob@customer.example", "support@example.com"]
        assert msg.sent_at is not None and msg.sent_at.year == 2026
        assert {(p.address, p.role) for p in s.scalars(select(Participant))} == {
            ("zoe@customer.example", "customer"),
            ("bob@customer.example", "cc"),
        }
        created = s.scalars(select(Event).where(Event.type == "ticket-created")).one()
        assert created.data["from"] == "zoe@customer.example" and created.data["source"] == "smtp"
        assert created.message_pk == msg.id and created.ticket_number == ticket.number
