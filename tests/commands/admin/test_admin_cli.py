"""The admin commands through the real CLI (Typer's CliRunner), on SQLite and PostgreSQL:
suppressions, templates (check, preview with sample data and with a ticket's real context)
and the outbox (list, show, retry)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maildesk.outbound.relay import DeliveryResult
from maildesk.outbound.sender import OutboxSender
from maildesk.store.models import Event, Message, OutboxItem, Suppression
from tests.commands.admin.conftest import Run, cli_app, make_runner, seed, write_config
from tests.support.mailgen import eml

COMMANDS = [
    ["suppressions", "list"],
    ["suppressions", "remove"],
    ["templates", "check"],
    ["templates", "preview"],
    ["outbox", "list"],
    ["outbox", "show"],
    ["outbox", "retry"],
]


def j(result: Any) -> Any:
    return json.loads(result.stdout)


def test_every_admin_command_has_an_example_in_its_help() -> None:
    from typer.testing import CliRunner

    app = cli_app()
    cli_app()  # registering twice is harmless
    runner = CliRunner()
    for group in ("suppressions", "templates", "outbox"):
        out = runner.invoke(app, [group, "--help"], env={"COLUMNS": "200"})
        assert out.exit_code == 0 and "Example" in out.output, group
    for cmd in COMMANDS:
        out = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
        assert out.exit_code == 0 and "Example" in out.output, cmd


# Suppressions -------------------------------------------------------------------------------


def test_suppressions_list_and_remove_records_an_event(desk: Any, run_cli: Run) -> None:
    seed(desk, [eml(sender="Anna <anna@customer.example>")])
    now = desk.clock()
    with desk.store.session() as s:
        s.add(
            Suppression(
                address="anna@customer.example",
                reason="permanent bounce: 550 5.1.1 user unknown",
                ticket_number=1,
                created_at=now,
            )
        )
        s.add(
            Suppression(
                address="old@customer.example",
                reason="relay refused",
                ticket_number=None,
                created_at=now.replace(year=now.year - 1),
                until=now.replace(year=now.year - 1, month=1, day=2),
            )
        )
    rows = j(run_cli("suppressions", "list", "--json"))
    assert [(r["address"], r["ticket"], r["active"]) for r in rows] == [
        ("anna@customer.example", 1, True),
        ("old@customer.example", None, False),
    ]
    table = run_cli("suppressions", "list").stdout
    assert "anna@customer.example" in table and "550 5.1.1" in table

    out = run_cli("suppressions", "remove", "Anna@Customer.example", "--by", "eva@example.com")
    assert "no longer suppressed" in out.stdout
    assert [r["address"] for r in j(run_cli("suppressions", "list", "--json"))] == ["old@customer.example"]
    with desk.store.reader() as s:
        ev = s.scalars(select(Event).where(Event.type == "suppression-removed")).one()
        assert ev.ticket_number == 1
        assert ev.data["address"] == "anna@customer.example" and ev.data["by"] == "eva@example.com"
        assert "550 5.1.1" in ev.data["reason"]

    missing = run_cli("suppressions", "remove", "nobody@example.org", ok=False)
    assert missing.exit_code == 1 and "not suppressed" in missing.stderr


# Templates ----------------------------------------------------------------------------------


def test_templates_check_passes_on_the_built_in_templates(desk: Any, run_cli: Run) -> None:
    out = run_cli("templates", "check")
    assert "all templates render" in out.stdout and "ack" in out.stdout


def test_templates_check_lists_each_broken_site_template_with_file_and_line(desk: Any, tmp_path: Path) -> None:
    site = tmp_path / "site-templates"
    (site / "en").mkdir(parents=True)
    (site / "en" / "ack.txt.j2").write_text("Subject: Thanks {{ ticket.tag }}\n\nHello,\n{% if %}\nbye\n")
    (site / "en" / "resolved.txt.j2").write_text("Subject: Done\n\nHi,\n\n{{ ticket.no_such_field.deeper }}\n")
    (site / "en" / "custom_note.txt.j2").write_text("Subject: A note on {{ ticket.tag }}\n\nAll fine.\n")
    run = make_runner(write_config(desk, tmp_path, templates_dir=site))
    out = run("templates", "check", ok=False)
    assert out.exit_code == 1
    lines = out.stdout.strip().splitlines()
    # The two broken files, and custom_note missing in each other desk locale (de, fr, es).
    lacking = [line for line in lines if "lacks 1 template(s): custom_note" in line]
    assert len(lines) == 5 and len(lacking) == 3, out.stdout
    assert {line.split(": locale ")[0] for line in lacking} == {f"{site / loc}:0" for loc in ("de", "fr", "es")}
    lines = [line for line in lines if line not in lacking]
    ack = next(line for line in lines if "ack.txt.j2" in line)
    resolved = next(line for line in lines if "resolved.txt.j2" in line)
    assert f"{site / 'en' / 'ack.txt.j2'}:4: syntax error" in ack
    assert f"{site / 'en' / 'resolved.txt.j2'}:5: " in resolved and "no_such_field" in resolved
    assert "5 problem(s)" in out.stderr
    # A working site template is previewable by name like a built-in one.
    preview = run("templates", "preview", "custom_note", "--sample")
    assert preview.stdout.startswith("Subject: A note on [#42]")


def test_templates_preview_with_sample_data(desk: Any, run_cli: Run) -> None:
    out = run_cli("templates", "preview", "ack", "--sample")
    assert out.stdout.startswith("Subject: Re: [#42] Printer on fire")
    assert "Hi Anna," in out.stdout and "[#42]" in out.stdout
    de = run_cli("templates", "preview", "ack", "--locale", "de")
    assert de.stdout.startswith("Subject: ") and "Hallo Anna," in de.stdout
    html = run_cli("templates", "preview", "survey", "--sample", "--html").stdout
    assert html.lstrip().lower().startswith(("<!doctype", "<html")) and "RATING" in html
    # Customer text is escaped in HTML, never evaluated as a template.
    agent_reply = run_cli("templates", "preview", "agent_reply", "--html").stdout
    assert "&lt;b&gt;and&lt;/b&gt;" in agent_reply and "{{ 7*7 }}" in agent_reply and "49" not in agent_reply
    unknown = run_cli("templates", "preview", "no_such_template", ok=False)
    assert unknown.exit_code == 1 and "no template 'no_such_template'" in unknown.stderr
    both = run_cli("templates", "preview", "ack", "--sample", "--ticket", "1", ok=False)
    assert both.exit_code == 2


def test_templates_preview_for_a_ticket_matches_the_real_acknowledgement(desk: Any, run_cli: Run) -> None:
    seed(
        desk,
        [
            eml(
                subject="Scanner jams",
                sender='"Schmidt, Berta" <berta.schmidt@customer.example>',
                body="Hello,\n\nthe scanner jams on every page <b>bold</b>.\n\nBerta\n",
            )
        ],
    )
    with desk.store.reader() as s:
        ack = s.scalars(select(Message).where(Message.direction == "out", Message.source == "outbox:ack")).one()
        real_subject, real_text = ack.subject, ack.full_text
    out = run_cli("templates", "preview", "ack", "--ticket", "1")
    subject_line, _, text = out.stdout.partition("\n\n")
    assert subject_line == f"Subject: {real_subject}"
    assert subject_line == "Subject: Re: [#1] Scanner jams"
    assert text.strip() == real_text.strip()
    assert "Hi Berta," in text
    assert out.stderr == ""  # nothing borrowed from the sample for an acknowledgement

    de = run_cli("templates", "preview", "ack", "--ticket", "1", "--locale", "de")
    assert "Hallo Berta," in de.stdout and "[#1]" in de.stdout

    # Agent-facing template: the reader is an agent; the bounce section comes from the sample, said so.
    notice = j(run_cli("templates", "preview", "bounce_notice", "--ticket", "1", "--json"))
    assert notice["source"] == "ticket 1" and "bounce" in notice["sample_sections"]
    assert "[#1]" in notice["subject"] and "Scanner jams" in notice["text"]
    # The HTML part carries the customer's words escaped.
    html = run_cli("templates", "preview", "ack", "--ticket", "1", "--html").stdout
    assert "Berta" in html and "<b>bold</b>" not in html

    missing = run_cli("templates", "preview", "ack", "--ticket", "99", ok=False)
    assert missing.exit_code == 1 and "no ticket 99" in missing.stderr


# Outbox -------------------------------------------------------------------------------------


def _refusing_relay(raw: bytes, sender: str, recipients: Any) -> DeliveryResult:
    addr = list(recipients)[0]
    return DeliveryResult(
        False,
        True,
        550,
        "550 5.1.1 user unknown",
        refused={addr: (550, "5.1.1 user unknown")},
        permanent_recipients=(addr,),
    )


def test_outbox_list_show_and_retry_a_failed_mail(desk: Any, run_cli: Run) -> None:
    seed(desk, [eml(subject="Printer on fire", sender="Anna <anna@customer.example>")])
    queued = j(run_cli("outbox", "list", "--json"))
    assert [(r["state"], r["ticket"], r["template"], r["recipients"]) for r in queued] == [
        ("queued", 1, "ack", ["anna@customer.example"])
    ]
    item_id = queued[0]["id"]

    sender = OutboxSender(desk.store, desk.settings, deliver=_refusing_relay)
    assert sender.send_due()["failed"] == 1
    failed = j(run_cli("outbox", "list", "--state", "failed", "--json"))
    assert [r["id"] for r in failed] == [item_id] and "550" in failed[0]["last_error"]
    assert j(run_cli("outbox", "list", "--state", "queued", "--json")) == []
    bad_state = run_cli("outbox", "list", "--state", "lost", ok=False)
    assert bad_state.exit_code == 1 and "unknown outbox state" in bad_state.stderr

    shown = j(run_cli("outbox", "show", str(item_id), "--json"))
    assert shown["state"] == "failed" and shown["attempts"] == 1 and "550" in shown["last_error"]
    headers = dict(shown["headers"])
    assert headers["Subject"] == "Re: [#1] Printer on fire" and headers["To"].endswith("anna@customer.example")
    assert headers["Auto-Submitted"] == "auto-replied" and "X-Maildesk-Loop" in headers
    assert [e["type"] for e in shown["events"]][:1] == ["mail-queued"] and "send-failed" in [
        e["type"] for e in shown["events"]
    ]
    text = run_cli("outbox", "show", str(item_id)).stdout
    assert "failed" in text and "Subject: Re: [#1] Printer on fire" in text and "send-failed" in text

    # The relay refused the address permanently, so it is suppressed: retry says what to do first.
    refused = run_cli("outbox", "retry", str(item_id), ok=False)
    assert refused.exit_code == 1 and "suppressions remove anna@customer.example" in refused.stderr
    run_cli("suppressions", "remove", "anna@customer.example")
    out = run_cli("outbox", "retry", str(item_id), "--by", "eva@example.com")
    assert f"outbox {item_id} queued again" in out.stdout
    with desk.store.reader() as s:
        row = s.get(OutboxItem, item_id)
        assert row is not None and row.state == "queued" and row.attempts == 0 and row.last_error == ""
        ev = s.scalars(select(Event).where(Event.type == "outbox-retried")).one()
        assert ev.data["previous_state"] == "failed" and ev.data["previous_attempts"] == 1
        assert ev.data["by"] == "eva@example.com" and ev.ticket_number == 1

    again = run_cli("outbox", "retry", str(item_id), ok=False)
    assert again.exit_code == 1 and "is queued; only failed or held" in again.stderr
    assert run_cli("outbox", "show", "999", ok=False).exit_code == 1


def test_outbox_retry_releases_a_mail_held_by_the_limits(desk: Any, run_cli: Run) -> None:
    from dataclasses import replace

    desk.settings = replace(desk.settings, limits=replace(desk.settings.limits, per_recipient_hour=1))
    desk.deps.settings = desk.settings
    seed(
        desk,
        [
            eml(subject="First", sender="Anna <anna@customer.example>"),
            eml(subject="Second", sender="Anna <anna@customer.example>"),
        ],
    )
    held = j(run_cli("outbox", "list", "--state", "held", "--json"))
    assert len(held) == 1 and held[0]["ticket"] == 2 and "limit 1" in held[0]["last_error"]
    shown = j(run_cli("outbox", "show", str(held[0]["id"]), "--json"))
    assert [e["type"] for e in shown["events"]] == ["automatic-mail-held"]
    assert "limit 1" in run_cli("outbox", "list", "--state", "held").stdout
    run_cli("outbox", "retry", str(held[0]["id"]))
    assert j(run_cli("outbox", "list", "--state", "held", "--json")) == []
    with desk.store.reader() as s:
        ev = s.scalars(select(Event).where(Event.type == "outbox-retried")).one()
        assert ev.data["previous_state"] == "held" and "past the automatic-mail limits" in ev.data["note"]
