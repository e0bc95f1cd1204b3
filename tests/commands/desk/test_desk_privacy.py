"""Export then erase of a customer (no trace left in any table, counts unchanged), retention,
and merge — through the CLI, on both backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, inspect, select, text

from maildesk.store.models import Attachment, Base, Customer, Event, Message, OutboxItem, Suppression, Ticket
from tests.commands.desk.conftest import NOW, seed
from tests.support.mailgen import eml

Run = Callable[..., Any]
ADDRESS, NAME, SECRET_TEXT, ATTACHED = "anna@customer.example", "Anna Schmidt", "flamingo laserbeam", "ZEBRACODE42"


def with_attachment(message_id: str) -> bytes:
    head = (
        f"From: {NAME} <{ADDRESS}>\r\nTo: support@example.com\r\nSubject: Broken {SECRET_TEXT}\r\n"
        f"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    )
    body = (
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"My {SECRET_TEXT} broke. Regards, {NAME}\r\n"
        '--b1\r\nContent-Type: text/plain; name="log.txt"\r\n'
        'Content-Disposition: attachment; filename="log.txt"\r\n\r\n'
        f"{ATTACHED} log line\r\n--b1--\r\n"
    )
    return (head + body).encode()


def seed_customers(desk: Any) -> None:
    seed(
        desk,
        [
            with_attachment("<a1@customer.example>"),
            eml(subject="Second problem", body=f"Also my {SECRET_TEXT} is loud.\n", sender=f"{NAME} <{ADDRESS}>"),
            eml(
                subject="Bob's printer",
                body=f"Please also help my colleague {ADDRESS}.\n",
                sender="Bob Brown <bob@example.org>",
                extra=f"Cc: {NAME} <{ADDRESS}>",
            ),
        ],
    )


def dump_everything(desk: Any) -> str:
    """Every value of every table (SQLite: FTS shadow tables too), as one lower-case string."""
    parts: list[str] = []
    with desk.store.reader() as s:
        names = list(Base.metadata.tables)
        if desk.store.backend == "sqlite":
            names = [n for n in inspect(s.get_bind()).get_table_names() if n != "alembic_version"]
        for name in names:
            for row in s.execute(text(f'SELECT * FROM "{name}"')):
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        parts.append(bytes(value).decode("latin-1"))
                    else:
                        parts.append(json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value))
    return "\n".join(parts).lower()


def counts(desk: Any) -> dict[str, int]:
    with desk.store.reader() as s:
        return {
            m.__name__: int(s.scalar(select(func.count()).select_from(m)) or 0)
            for m in (Ticket, Message, Attachment, Customer, Suppression, OutboxItem)
        }


def test_export_then_erase_leaves_no_trace(desk: Any, run_cli: Run, tmp_path: Path) -> None:
    seed_customers(desk)
    run_cli("ticket", "reply", "1", "--by", "eva@example.com", "--text", f"Sorry about your {SECRET_TEXT}, {NAME}.")
    run_cli("ticket", "note", "1", "--text", f"{NAME} called about the {SECRET_TEXT}")
    with desk.store.session() as s:
        s.add(Suppression(address=ADDRESS, reason=f"bounce for {ADDRESS}", ticket_number=1, created_at=NOW))

    out = tmp_path / "export"
    result = json.loads(run_cli("customer", "export", ADDRESS, "--out", str(out), "--json").stdout)
    assert result["tickets"] == 2
    emls = sorted(out.glob("*.eml"))
    with desk.store.reader() as s:
        raws = {m.id: m.raw for m in s.scalars(select(Message).where(Message.raw.is_not(None)))}
    assert len(emls) >= 3  # her two mails, our reply, and Bob's mail she was copied on
    for path in emls:
        assert path.read_bytes() in raws.values()
    data = json.loads((out / "customer.json").read_text())
    assert data["customer"]["name"] == NAME and data["customer"]["email"] == ADDRESS
    assert {t["number"] for t in data["tickets"]} == {1, 2}
    assert data["suppressions"][0]["reason"] == f"bounce for {ADDRESS}"
    assert any(p["ticket"] == 3 and p["address"] == ADDRESS for p in data["participants"])
    assert data["events"] and data["outbox"]
    assert any(a["filename"] == "log.txt" for m in data["messages"] for a in m["attachments"])
    assert run_cli("customer", "export", ADDRESS, "--out", str(out), ok=False).exit_code == 1  # never overwrites

    before = counts(desk)
    assert SECRET_TEXT in dump_everything(desk) and ATTACHED.lower() in dump_everything(desk)
    refused = run_cli("customer", "erase", ADDRESS, input="n\n", ok=False)
    assert refused.exit_code == 1 and ADDRESS in dump_everything(desk)
    answered = run_cli("customer", "erase", ADDRESS, "--json", input="y\n")
    erased = json.loads(answered.stdout.splitlines()[-1])  # CliRunner echoes the typed answer to stdout
    assert erased["tickets"] == 2 and erased["token"].startswith("erased-") and erased["token"].endswith("@invalid")

    everything = dump_everything(desk)
    for trace in (ADDRESS, NAME.lower(), SECRET_TEXT, ATTACHED.lower(), "flamingo", "laserbeam"):
        assert trace.lower() not in everything, trace
    assert counts(desk) == before
    assert "bob brown" in everything and "bob@example.org" in everything  # other people stay
    with desk.store.reader() as s:
        assert s.scalar(select(func.count()).select_from(Ticket).where(Ticket.subject == "[erased]")) == 2
        ev = s.scalars(select(Event).where(Event.type == "customer-erased", Event.ticket_number.is_(None))).one()
        assert ev.data["messages"] >= 3 and erased["token"] in ev.data["customer"]
        customer = s.scalars(select(Customer).where(Customer.email == erased["token"])).one()
        assert customer.erased_at is not None and customer.name == ""
    show = json.loads(run_cli("ticket", "show", "1", "--json").stdout)
    assert show["subject"] == "[erased]" and "customer-erased" in {e["type"] for e in show["events"]}
    assert run_cli("customer", "show", ADDRESS, ok=False).exit_code == 1


def test_retention_drops_bytes_of_long_closed_tickets(desk: Any, run_cli: Run) -> None:
    seed_customers(desk)
    run_cli("ticket", "close", "1")
    with desk.store.session() as s:
        t = s.get(Ticket, 1)
        assert t is not None
        t.closed_at = NOW - timedelta(days=400)
        t2 = s.get(Ticket, 2)
        assert t2 is not None
        t2.status, t2.closed_at = "closed", NOW  # closed recently: kept
    with desk.store.reader() as s:
        raw_on_1 = s.scalar(
            select(func.count()).select_from(Message).where(Message.ticket_number == 1, Message.raw.is_not(None))
        )
        texts = s.scalar(select(func.count()).select_from(Message).where(Message.visible_text != ""))
    assert run_cli("retention", "apply", "--days", "365", input="n\n", ok=False).exit_code == 1
    report = json.loads(run_cli("retention", "apply", "--days", "365", "--yes", "--json").stdout)
    assert (report["tickets"], report["messages"], report["attachments"]) == (1, raw_on_1, 1)
    assert report["raw_bytes"] > 0 and report["attachment_bytes"] > 0
    with desk.store.reader() as s:
        kept = {m.ticket_number: m.raw is not None for m in s.scalars(select(Message))}
        assert kept == {1: False, 2: True, 3: True}
        assert all(a.data is None for a in s.scalars(select(Attachment)))
        assert s.scalar(select(func.count()).select_from(Message).where(Message.visible_text != "")) == texts
    again = json.loads(run_cli("retention", "apply", "--days", "365", "--yes", "--json").stdout)
    assert again["tickets"] == 0 and again["messages"] == 0
    assert json.loads(run_cli("ticket", "show", "1", "--json").stdout)["messages"][0]["raw_kept"] is False


def test_merge_sends_later_mail_to_the_kept_ticket(desk: Any, run_cli: Run) -> None:
    seed(
        desk,
        [
            eml(subject="Printer on fire", message_id="<first@customer.example>"),
            eml(subject="Also the scanner", body="Scanner smokes.\n", message_id="<second@customer.example>"),
        ],
    )
    run_cli("ticket", "tag", "2", "+scanner")
    merged = json.loads(run_cli("ticket", "merge", "1", "2", "--json").stdout)
    assert merged["detail"] == {"into": 1, "from": 2, "notice": "queued"}  # #2's customer is told
    seed(
        desk,
        [
            eml(
                subject="Re: Also the scanner",
                body="Still smoking.\n",
                message_id="<third@customer.example>",
                extra="In-Reply-To: <second@customer.example>\nReferences: <second@customer.example>",
            )
        ],
    )
    with desk.store.reader() as s:
        one, two = s.get(Ticket, 1), s.get(Ticket, 2)
        assert one is not None and two is not None
        assert (two.merged_into, two.status) == (1, "closed") and "scanner" in one.tags
        third = s.scalars(select(Message).where(Message.message_id == "third@customer.example")).one()
        assert third.ticket_number == 1
        assert s.scalar(select(func.count()).select_from(Ticket)) == 2
        assert [
            e.type for e in s.scalars(select(Event).where(Event.type.in_(["merged", "merged-into"])).order_by(Event.id))
        ] == ["merged-into", "merged"]
    view = json.loads(run_cli("ticket", "show", "1", "--json").stdout)
    assert view["merged_from"] == [2]
    refused = run_cli("ticket", "note", "2", "--text", "x", ok=False)
    assert refused.exit_code == 1 and "merged into #1" in refused.output
    assert run_cli("ticket", "merge", "1", "1", ok=False).exit_code == 1
