"""`maildesk import --history`: old mail stored and threaded as closed tickets, nothing sent,
no clocks, no notifications; re-import adds nothing; malformed mail is reported and skipped."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from typer.testing import CliRunner

from maildesk.app import App
from maildesk.cli import app as cli
from maildesk.ingest.bulk import HistoryMail
from maildesk.pipeline.history import HistoryImporter
from maildesk.store.models import AutoSend, Event, Message, OutboxItem, SlaClock, Suppression, Ticket
from tests.support.mailgen import eml
from tests.support.routing_kit import team_settings

RULES = """
rules:
  - name: everything to billing, acknowledged and assigned
    if: {subject: ".*"}
    then: {queue: billing, assign: {least_loaded: billing}, reply: after_hours}
"""


def dated(when: str, **kw: Any) -> bytes:
    raw = eml(**kw)
    return raw.replace(b"Date: Sun, 22 Nov 2026 10:00:00 +0000", f"Date: {when}".encode())


# Thread A: a customer asks, the agent (ann, configured) answers, the customer thanks her a
# month later (beyond the reopen window); thread B: one mail; an out-of-office reply; and a
# mail from another customer that merely shares thread A's subject.
THREAD = [
    dated("Mon, 02 Mar 2026 09:00:00 +0000", message_id="<a1@customer.example>", subject="Invoice wrong"),
    dated(
        "Mon, 02 Mar 2026 11:30:00 +0000",
        message_id="<a2@example.com>",
        sender="Ann <ann@example.com>",
        to="anna@customer.example",
        subject="Re: Invoice wrong",
        extra="In-Reply-To: <a1@customer.example>\nReferences: <a1@customer.example>",
        body="Fixed, sorry.\n",
    ),
    dated(
        "Fri, 10 Apr 2026 10:00:00 +0200",
        message_id="<a3@customer.example>",
        subject="Re: Invoice wrong",
        extra="In-Reply-To: <a2@example.com>\nReferences: <a1@customer.example> <a2@example.com>",
        body="Thanks!\n",
    ),
    dated(
        "Tue, 03 Mar 2026 10:00:00 +0000",
        message_id="<b1@other.example>",
        sender="Bo <bo@other.example>",
        subject="Password reset",
    ),
    dated(
        "Tue, 03 Mar 2026 10:00:05 +0000",
        message_id="<ooo@other.example>",
        sender="Bo <bo@other.example>",
        subject="Out of office",
        extra="Auto-Submitted: auto-replied",
    ),
]


def history_box(tmp_path: Path, kind: str, extra: list[bytes] = ()) -> Path:  # type: ignore[assignment]
    """The mails newest-first (the reply before what it answers): the import must order them."""
    mails = [*reversed(THREAD), *extra]
    if kind == "mbox":
        path = tmp_path / "old.mbox"
        box: mailbox.Mailbox = mailbox.mbox(path)
    else:
        path = tmp_path / "old-maildir"
        box = mailbox.Maildir(path, create=True)
    for raw in mails:
        box.add(raw)
    box.close()
    return path


def count(desk: App, model: Any, *where: Any) -> int:
    with desk.store.reader() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def table_counts(desk: App) -> dict[str, int]:
    return {
        m.__tablename__: count(desk, m) for m in (Ticket, Message, Event, OutboxItem, AutoSend, SlaClock, Suppression)
    }


def import_history(desk: App, path: Path) -> Any:
    with HistoryMail(path) as mail:
        importer = HistoryImporter(desk.store, desk.deps, source=path.name, batch_size=2)
        for name, raw in mail:
            importer.feed(name, raw)
        return importer.close()


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def test_history_mbox_is_threaded_into_closed_tickets_with_nothing_sent(tmp_path: Path, database_url: str) -> None:
    desk = App(team_settings(tmp_path, database_url, RULES))  # rules that would answer and assign
    desk.migrate()
    desk.sync_agents()
    try:
        stats = import_history(desk, history_box(tmp_path, "mbox"))
        assert (stats.seen, stats.imported, stats.tickets, stats.agent_replies, stats.skipped) == (5, 5, 2, 1, [])
        with desk.store.reader() as s:
            tickets = {t.subject: t for t in s.scalars(select(Ticket))}
            kinds = dict(s.execute(select(Message.message_id, Message.kind)).all())
            numbers = dict(s.execute(select(Message.message_id, Message.ticket_number)).all())
            types = set(s.scalars(select(Event.type)))
        assert set(tickets) == {"Invoice wrong", "Password reset"}
        a, b = tickets["Invoice wrong"], tickets["Password reset"]
        assert {a.status, b.status} == {"closed"} and a.assignee is None and a.queue == "default"
        assert aware(a.created_at) == at("2026-03-02 09:00") and aware(a.first_response_at) == at("2026-03-02 11:30")
        assert aware(a.closed_at) == aware(a.resolved_at) == at("2026-04-10 08:00")  # its newest mail
        assert aware(b.created_at) == aware(b.closed_at) == at("2026-03-03 10:00")
        assert numbers["a1@customer.example"] == numbers["a2@example.com"] == numbers["a3@customer.example"]
        assert kinds["a2@example.com"] == "agent-reply" and kinds["a1@customer.example"] == "customer"
        assert kinds["ooo@other.example"] == "auto"
        counts = table_counts(desk)
        assert counts["outbox"] == counts["auto_sends"] == counts["sla_clocks"] == counts["suppressions"] == 0
        assert not types & {"reopened", "routed", "rule", "notified", "linked", "assigned", "new-ticket-held"}
        assert "history-imported" in types
        stats = import_history(desk, tmp_path / "old.mbox")
        assert (stats.seen, stats.imported, stats.duplicates) == (5, 0, 5)
        assert table_counts(desk) == counts  # nothing added, not even an event
    finally:
        desk.worker.close()
        desk.store.dispose()


def test_history_cli_on_a_maildir_reports_malformed_mail_and_skips_it(tmp_path: Path, database_url: str) -> None:
    cfg = tmp_path / "maildesk.toml"
    cfg.write_text(
        f'[desk]\ndata_dir = "{tmp_path / "data"}"\nsupport_addresses = ["support@example.com"]\nsecret_env = ""\n'
        f'[database]\nurl = "{database_url}"\nurl_env = ""\n'
        '[[agent]]\nemail = "ann@example.com"\nname = "Ann"\n'
    )
    path = history_box(tmp_path, "maildir", extra=[b"\x00\x01 not mail at all\n", b"   \n"])
    runner = CliRunner()
    result = runner.invoke(cli, ["import", "--history", str(path), "--config", str(cfg)])
    out = " ".join(result.output.split())
    assert result.exit_code == 65, result.output
    assert "imported 5 of 7 messages" in out and "messages/s" in out and "2 closed tickets" in out
    assert out.count("skipped: old-maildir message") == 2 and "not a mail message" in out
    again = runner.invoke(cli, ["import", "--history", str(path), "--config", str(cfg)])
    assert "imported 0 of 7 messages" in " ".join(again.output.split()) and "5 already stored" in again.output
    assert len(list((path / "new").iterdir())) == 7  # the source is left as it was
    desk = App(team_settings(tmp_path, database_url, None))
    try:
        assert count(desk, Ticket) == 2 and count(desk, Ticket, Ticket.status != "closed") == 0
        assert count(desk, Message) == 5 and count(desk, OutboxItem) == 0 and count(desk, SlaClock) == 0
        assert count(desk, Message, Message.kind == "agent-reply") == 1
    finally:
        desk.store.dispose()


def test_a_failing_mail_keeps_the_events_of_the_others_in_its_batch(
    tmp_path: Path, database_url: str, monkeypatch: Any
) -> None:
    """A batch runs again with a savepoint per mail when one fails: the failing mail's
    events go with its savepoint, those of the mails before it in the batch stay. (Batches
    of two: [a1, a2], [b1, out-of-office], [a3]; the out-of-office reply fails after b1
    opened the "Password reset" ticket in the same batch.)"""
    from maildesk.pipeline import history

    desk = App(team_settings(tmp_path, database_url, RULES))
    desk.migrate()
    desk.sync_agents()
    real = history.HistoryImporter._stages_for

    def failing(self: Any, ctx: Any, session: Any) -> None:
        real(self, ctx, session)
        if ctx.msg.message_id == "ooo@other.example":  # after its stages recorded what they do
            raise RuntimeError("disk on fire")

    monkeypatch.setattr(history.HistoryImporter, "_stages_for", failing)
    try:
        stats = import_history(desk, history_box(tmp_path, "mbox"))
        assert stats.imported == 4 and len(stats.skipped) == 1 and "disk on fire" in stats.skipped[0]
        with desk.store.reader() as s:
            tickets = set(s.scalars(select(Ticket.number)))
            imported = list(s.scalars(select(Event.ticket_number).where(Event.type == "history-imported")))
        assert len(tickets) == 2 and sorted(imported) == sorted(tickets)  # each ticket has its event
    finally:
        desk.worker.close()
        desk.store.dispose()
