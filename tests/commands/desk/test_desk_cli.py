"""Every desk command through the real CLI (Typer's CliRunner) on a seeded desk, both backends."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.services import tickets as ops
from maildesk.services import views
from maildesk.store.models import Agent, Event, Message, OutboxItem, SlaClock, Ticket
from tests.commands.desk.conftest import NOW, cli_app, seed
from tests.support.mailgen import eml

Run = Callable[..., Any]


@pytest.fixture
def seeded(desk: Any) -> Any:
    seed(
        desk,
        [
            eml(
                subject="Printer on fire",
                body="The printer in room 4 is on fire.\n",
                message_id="<p1@customer.example>",
            ),
            eml(subject="Invoice question", body="My invoice is wrong.\n", sender="Bob Brown <bob@example.org>"),
            eml(
                subject='=HYPERLINK("http://evil") [bold]x[/bold]',
                body="Password reset please.\x1b[31m\n",
                sender="Cy <cy@example.net>",
            ),
        ],
    )
    with desk.store.session() as s:
        s.add(
            Agent(
                email="eva@example.com", name="Eva", tiers=["L1", "L2"], queues=["default"], signature="", active=True
            )
        )
        s.add(
            SlaClock(
                ticket_number=1,
                kind="first_response",
                started_at=NOW - timedelta(hours=9),
                due_at=NOW - timedelta(hours=1),
            )
        )
        s.add(SlaClock(ticket_number=2, kind="first_response", started_at=NOW, due_at=NOW + timedelta(days=30)))
        old = s.get(Ticket, 3)
        assert old is not None
        old.created_at = NOW - timedelta(days=10)
    return desk


def j(result: Any) -> Any:
    return json.loads(result.stdout)


def test_help_has_examples_and_completion_is_on() -> None:
    from typer.testing import CliRunner

    app = cli_app()
    runner = CliRunner()
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in top.output
    commands = [
        ["tickets", "list"],
        ["ticket", "show"],
        ["ticket", "note"],
        ["ticket", "assign"],
        ["ticket", "tier"],
        ["ticket", "escalate"],
        ["ticket", "priority"],
        ["ticket", "tag"],
        ["ticket", "resolve"],
        ["ticket", "close"],
        ["ticket", "reopen"],
        ["ticket", "merge"],
        ["ticket", "reply"],
        ["search"],
        ["customer", "show"],
        ["customer", "set"],
        ["customer", "export"],
        ["customer", "erase"],
        ["agents", "list"],
        ["retention", "apply"],
    ]
    for cmd in commands:
        out = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
        assert out.exit_code == 0 and "Example" in out.output, cmd


def test_tickets_list_filters_and_formats(seeded: Any, run_cli: Run) -> None:
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json"))] == [1, 2, 3]
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json", "--sort", "number", "--desc"))] == [3, 2, 1]
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json", "--customer", "@example.org"))] == [2]
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json", "--older-than", "3d"))] == [3]
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json", "--text", "printer"))] == [1]
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json", "--status", "new,open", "--tier", "l1"))] == [
        1,
        2,
        3,
    ]
    run_cli("ticket", "priority", "2", "urgent")
    run_cli("ticket", "tag", "1", "+hardware", "+fire")
    run_cli("ticket", "assign", "3", "eva@example.com")
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json", "--sort", "priority", "--desc"))][0] == 2
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json", "--priority", "urgent"))] == [2]
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json", "--tag", "fire"))] == [1]
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json", "--assignee", "eva@example.com"))] == [3]
    assert [t["number"] for t in j(run_cli("tickets", "list", "--json", "--assignee", "none"))] == [1, 2]
    rows = j(run_cli("tickets", "list", "--json", "--breaching"))
    assert [t["number"] for t in rows] == [1] and rows[0]["breaching"] is True
    table = run_cli("tickets", "list").stdout
    assert "Printer on fire" in table and "\x1b[31m" not in table
    assert "[bold]x[/bold]" in table  # mail text is never Rich markup
    reader = list(csv.DictReader(io.StringIO(run_cli("tickets", "list", "--csv").stdout)))
    assert [r["number"] for r in reader] == ["1", "2", "3"]
    assert reader[2]["subject"].startswith("'=HYPERLINK")  # spreadsheet formulas are defused
    bad = run_cli("tickets", "list", "--status", "sleeping", ok=False)
    assert bad.exit_code == 1 and "unknown status" in bad.output


def test_ticket_show_reads_like_a_conversation(seeded: Any, run_cli: Run) -> None:
    run_cli("ticket", "note", "1", "--text", "Called them, the fire is out", "--by", "eva@example.com")
    view = j(run_cli("ticket", "show", "1", "--json"))
    assert view["number"] == 1 and view["customer"] == "anna@customer.example"
    kinds = [(m["kind"], m["internal"]) for m in view["messages"]]
    assert kinds[0] == ("customer", False) and kinds[-1] == ("agent-note", True)  # an acknowledgement may sit between
    assert "fire is out" in view["messages"][-1]["text"]
    assert view["sla"][0]["state"] == "overdue"
    assert {"ticket-created", "note-added"} <= {e["type"] for e in view["events"]}
    text = run_cli("ticket", "show", "1").stdout
    assert "INTERNAL NOTE" in text and "room 4 is on fire" in text and "overdue" in text
    assert run_cli("ticket", "show", "99", ok=False).exit_code == 1


def test_note_from_file_stdin_and_editor(seeded: Any, run_cli: Run, tmp_path: Any) -> None:
    note = tmp_path / "note.txt"
    note.write_text("from a file\n")
    run_cli("ticket", "note", "2", "--file", str(note))
    run_cli("ticket", "note", "2", "--file", "-", input="from stdin\n")
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nprintf "from the editor\\n" > "$1"\n')
    editor.chmod(0o755)
    run_cli("ticket", "note", "2", env={"EDITOR": str(editor), "VISUAL": str(editor)})
    assert run_cli("ticket", "note", "2", "--text", "   ", ok=False).exit_code == 1
    with seeded.store.reader() as s:
        notes = [m.visible_text.strip() for m in s.scalars(select(Message).where(Message.kind == "agent-note"))]
    assert notes == ["from a file", "from stdin", "from the editor"]


def test_actions_change_ticket_and_record_events(seeded: Any, run_cli: Run) -> None:
    assert j(run_cli("ticket", "assign", "1", "eva@example.com", "--json"))["changed"] is True
    assert j(run_cli("ticket", "assign", "1", "EVA@example.com", "--json"))["changed"] is False
    assert run_cli("ticket", "assign", "1", "nobody@example.com", ok=False).exit_code == 1  # not an agent
    run_cli("ticket", "tier", "1", "L2")
    escalated = j(run_cli("ticket", "escalate", "1", "--note", "needs engineering", "--json"))
    assert escalated["detail"]["new"] == "L3"
    run_cli("ticket", "priority", "1", "high")
    run_cli("ticket", "tag", "1", "+a", "+b")
    assert j(run_cli("ticket", "tag", "1", "-a", "+c", "--json"))["detail"]["tags"] == ["b", "c"]
    run_cli("ticket", "resolve", "1")
    run_cli("ticket", "close", "1")
    run_cli("ticket", "reopen", "1")
    with seeded.store.reader() as s:
        t = s.get(Ticket, 1)
        assert t is not None
        assert (t.assignee, t.tier, t.priority, t.tags, t.status) == (
            "eva@example.com",
            "L3",
            "high",
            ["b", "c"],
            "open",
        )
        assert t.closed_at is None
        events = list(s.scalars(select(Event).where(Event.ticket_number == 1).order_by(Event.id)))
        types = [e.type for e in events if e.data.get("via") == "cli"]
        internal = list(s.scalars(select(Message).where(Message.ticket_number == 1, Message.internal)))
        notes = [m.visible_text for m in internal if m.kind == "agent-note"]
        # the rest is mail to staff: the agent notifications (services/notify.py)
        staff = [m for m in internal if m.kind != "agent-note"]
    assert types == [
        "assigned",
        "tier-changed",
        "escalated",
        "priority-changed",
        "tags-changed",
        "tags-changed",
        "status",
        "status",
        "status",
    ]
    assert len(notes) == 1 and "L2 -> L3" in notes[0] and "needs engineering" in notes[0]
    assert staff and all(m.source == "outbox:agent_notification" and m.direction == "out" for m in staff)
    assert ["eva@example.com"] in [m.recipients for m in staff if "assigned to you" in m.visible_text]
    assert run_cli("ticket", "tier", "1", "L9", ok=False).exit_code == 1


def test_reply_goes_through_the_outbox(seeded: Any, run_cli: Run) -> None:
    out = j(run_cli("ticket", "reply", "1", "--by", "eva@example.com", "--text", "We sent a technician.", "--json"))
    assert out["changed"] is True and out["detail"]["status"] == "pending"
    with seeded.store.reader() as s:
        item = s.scalars(select(OutboxItem).where(OutboxItem.automatic.is_(False))).one()
        assert item.recipients == ["anna@customer.example"] and b"We sent a technician." in item.raw
        t = s.get(Ticket, 1)
        assert t is not None and t.status == "pending" and t.first_response_at is not None
    assert run_cli("ticket", "reply", "1", "--text", "x", "--by", "cli", ok=False).exit_code == 2


def test_search_command(seeded: Any, run_cli: Run) -> None:
    hits = j(run_cli("search", "printer fire", "--json"))
    assert hits[0]["ticket"] == 1 and "[fire]" in hits[0]["snippet"].lower()
    assert "Printer on fire" in run_cli("search", "printer").stdout
    assert j(run_cli("search", "-", "--json")) == []


def test_customer_show_and_agents_list(seeded: Any, run_cli: Run) -> None:
    with seeded.store.session() as s:
        from maildesk.store.models import Suppression

        s.add(Suppression(address="bob@example.org", reason="hard bounce", ticket_number=2, created_at=NOW))
    view = j(run_cli("customer", "show", "BOB@example.org", "--json"))
    assert view["name"] == "Bob Brown" and [t["number"] for t in view["tickets"]] == [2]
    assert view["suppressions"][0]["reason"] == "hard bounce"
    assert "hard bounce" in run_cli("customer", "show", "bob@example.org").stdout
    run_cli("ticket", "assign", "1", "eva@example.com")
    run_cli("ticket", "tier", "1", "L2")
    with seeded.store.session() as s:
        t = s.get(Ticket, 2)
        assert t is not None
        t.assignee = "zed@example.com"  # assigned by a rule, not in the agents table
    rows = {r["email"]: r for r in j(run_cli("agents", "list", "--json"))}
    assert rows["eva@example.com"]["open_by_tier"] == {"L1": 0, "L2": 1, "L3": 0} and rows["eva@example.com"]["known"]
    assert rows["zed@example.com"]["open"] == 1 and not rows["zed@example.com"]["known"]
    assert "eva@example.com" in run_cli("agents", "list").stdout


def test_customer_set_locale_vip_name_and_time_zone(seeded: Any, run_cli: Run) -> None:
    out = run_cli("customer", "set", "BOB@example.org", "--locale", "fr-CA", "--vip", "--name", "Robert  Brun")
    assert "updated bob@example.org: locale, name, vip" in out.stdout
    assert "locale fr_CA (set by an operator)" in out.stdout and "; VIP" in out.stdout
    view = j(run_cli("customer", "show", "bob@example.org", "--json"))
    assert (view["locale"], view["locale_source"], view["vip"], view["name"]) == (
        "fr_CA",
        "operator",
        True,
        "Robert Brun",
    )
    assert (
        "locale fr_CA (set by an operator); time zone desk default; VIP"
        in run_cli("customer", "show", "bob@example.org").stdout
    )
    view = j(run_cli("customer", "set", "bob@example.org", "--no-vip", "--timezone", "Europe/Paris", "--json"))
    assert (view["vip"], view["tz"], view["locale"]) == (False, "Europe/Paris", "fr_CA")
    view = j(run_cli("customer", "set", "bob@example.org", "--locale", "default", "--json"))
    assert (view["locale"], view["locale_source"]) == ("", "")
    # A customer who never wrote is created (an operator may mark a VIP in advance).
    new = j(run_cli("customer", "set", "ceo@bigcorp.example", "--vip", "--json"))
    assert new["created"] and new["vip"] and new["tickets"] == []
    with seeded.store.reader() as s:
        changes = [e.data for e in s.scalars(select(Event).where(Event.type == "customer-updated"))]
    assert changes[0]["customer"] == "bob@example.org" and changes[0]["locale"] == "fr_CA" and changes[0]["vip"]
    assert changes[-1]["created"] is True


def test_customer_set_refuses_bad_input_and_changes_nothing(seeded: Any, run_cli: Run) -> None:
    for args, message in [
        (["--locale", "it", "--vip"], "not one of the desk's locales (en, de, fr, es"),
        (["--locale", "fr_XX", "--vip"], "unknown locale 'fr_XX'"),
        (["--timezone", "Mars/Olympus", "--vip"], "unknown time zone 'Mars/Olympus'"),
        ([], "nothing to set"),
    ]:
        out = run_cli("customer", "set", "bob@example.org", *args, ok=False)
        assert out.exit_code != 0 and message in out.output, (args, out.output)
        view = j(run_cli("customer", "show", "bob@example.org", "--json"))
        assert (view["locale"], view["tz"], view["vip"]) == ("", "", False)
    bad = run_cli("customer", "set", "not an address", "--vip", ok=False)
    assert bad.exit_code != 0 and "not an email address" in bad.output


def test_operations_parse_age() -> None:
    assert views.parse_age("3d") == timedelta(days=3) and views.parse_age("12H") == timedelta(hours=12)
    with pytest.raises(ops.OperationError):
        views.parse_age("soon")
