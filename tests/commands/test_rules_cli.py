"""`maildesk rules check|test|replay` through Typer's CliRunner, on a desk built from a real
config file (both backends). Replay must show what a change would do and write nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from maildesk.commands.rules import rules_app
from maildesk.config import load_settings
from maildesk.store.models import Event, KeyValue, Message, OutboxItem, Ticket
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk

RULES_V1 = """version: 1
rules:
  - name: invoices to billing
    when: new
    if: {subject: {regex: '(?i)invoice\\s+(?P<inv>\\d+)'}}
    then: [{queue: billing}, {field: {invoice: "{{inv}}"}}, {assign: {round_robin: billing}}]
  - name: outages to L2
    if: {body: {contains: outage}}
    then: [{queue: technical}, {tier: L2}]
"""

RULES_V2 = """version: 1
rules:
  - name: invoices to billing
    when: new
    if: {subject: {regex: '(?i)invoice\\s+(?P<inv>\\d+)'}}
    then: [{queue: billing}, {field: {invoice: "{{inv}}"}}, {assign: {round_robin: billing}}, {priority: high}]
  - name: outages to L3 with after-hours reply
    if: {body: {contains: outage}}
    then: [{queue: technical}, {tier: L3}, {reply: after_hours}]
"""


def write_config(tmp_path: Path, database_url: str) -> Path:
    (tmp_path / "templates" / "en").mkdir(parents=True)
    (tmp_path / "templates" / "en" / "after_hours.txt.j2").write_text("Subject: closed\n\nWe are closed.\n")
    (tmp_path / "rules.yaml").write_text(RULES_V1)
    (tmp_path / "rules-v2.yaml").write_text(RULES_V2)
    cfg = tmp_path / "maildesk.toml"
    cfg.write_text(f"""
[desk]
data_dir = "{tmp_path / "data"}"
support_addresses = ["support@example.com", "billing@example.com"]
secret_env = ""
rules_file = "rules.yaml"
templates_dir = "templates"

[database]
url = "{database_url}"
url_env = ""

[[queue]]
name = "billing"
address = "billing@example.com"

[[queue]]
name = "technical"

[[agent]]
email = "ann@example.com"
queues = ["billing"]

[[agent]]
email = "bob@example.com"
queues = ["billing"]
tiers = ["L1", "L2"]
""")
    return cfg


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Iterator[tuple[Path, Desk, Any]]:
    cfg = write_config(tmp_path, database_url)
    desk = Desk(load_settings(cfg))
    app = typer.Typer()
    app.add_typer(rules_app, name="rules")

    @app.callback()
    def _main() -> None:  # a group, so "rules" is a sub-command as on the real CLI
        pass

    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, ["rules", *args, "--config", str(cfg)], env={"COLUMNS": "200"})

    yield cfg, desk, run
    desk.close()


def test_check_reports_every_problem_with_file_and_line(cli: Any, tmp_path: Path) -> None:
    _, _, run = cli
    ok = run("check")
    assert ok.exit_code == 0 and "ok, 2 rules" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nrules:\n  - name: a\n    then: [{queue: bilingg}]\n  - name: b\n"
        "    if: {sendr: x@y.z}\n    then: [{assign: {round_robin: nobody}}, {reply: nope}]\n"
    )
    res = run("check", str(bad))
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.startswith(str(bad))]
    assert f"{bad}:4: rule 'a': unknown queue 'bilingg'" in lines[0] and "did you mean 'billing'" in lines[0]
    assert any(f"{bad}:6: rule 'b': unknown condition field 'sendr'" in ln for ln in lines)
    assert any("unknown group 'nobody'" in ln for ln in lines) and any("unknown template 'nope'" in ln for ln in lines)
    assert "4 problem(s)" in res.output


def test_test_shows_each_rule_and_the_decision_without_side_effects(cli: Any, tmp_path: Path) -> None:
    _, desk, run = cli
    mail = tmp_path / "m.eml"
    mail.write_bytes(eml(subject="Invoice 4711 is wrong", body="Also we had an outage."))
    res = run("test", str(mail))
    assert res.exit_code == 0, res.output
    assert "invoices to billing" in res.output and "outages to L2" in res.output
    assert "queue: technical" in res.output and "tier: L2" in res.output and "invoice" in res.output
    assert "Automatic mail to the customer: 1\n  ack (ack): a new ticket is acknowledged" in res.output
    data = json.loads(run("test", str(mail), "--json").stdout)
    assert [h["matched"] for h in data["decision"]["hits"]] == [True, True]
    assert data["decision"]["fields"] == {"invoice": "4711"} and data["facts_from_db"] is True
    mail.write_bytes(eml(subject="hello", body="fine"))
    miss = json.loads(run("test", str(mail), "--json").stdout)
    assert "did not hold" in miss["decision"]["hits"][0]["why"]
    # as a reply on a stored ticket: `when: new` rules are skipped
    number = desk.say(eml(subject="first")).ticket_number
    as_reply = json.loads(run("test", str(mail), "--ticket", str(number), "--json").stdout)
    assert as_reply["event"] == "reply" and "only for new mail" in as_reply["decision"]["hits"][0]["why"]
    assert run("test", str(mail), "--ticket", "999").exit_code == 1
    with desk.app.store.reader() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1
        # no round-robin cursor moved (PostgreSQL also keeps the nodes' shared secret in kv)
        assert s.scalar(select(func.count()).select_from(KeyValue).where(KeyValue.key != "desk.secret")) == 0


def _counts(desk: Desk) -> tuple[int, ...]:
    with desk.app.store.reader() as s:
        return tuple(
            int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in (Ticket, Message, Event, OutboxItem, KeyValue)
        )


def test_replay_on_a_stored_history_shows_what_would_change_and_writes_nothing(cli: Any) -> None:
    cfg, desk, run = cli
    desk.now = datetime.now(UTC) - timedelta(days=3)
    desk.say(eml(subject="Invoice 100 please", message_id="<h1@customer.example>"))
    desk.say(eml(subject="Invoice 200 please", message_id="<h2@customer.example>"))
    desk.say(eml(subject="site down", body="we have an outage", message_id="<h3@customer.example>"))
    desk.say(
        eml(
            subject="Re: site down",
            body="still an outage",
            message_id="<h4@customer.example>",
            extra="In-Reply-To: <h3@customer.example>",
        )
    )
    desk.say(eml(subject="just a question", message_id="<h5@customer.example>"))
    old = desk.say(eml(subject="Invoice 1 from long ago", message_id="<h0@customer.example>"))
    with desk.app.store.session() as s:
        row = s.get(Message, old.id)
        assert row is not None
        row.created_at = datetime.now(UTC) - timedelta(days=90)
    before = _counts(desk)

    # nothing changed yet: the current rules agree with what happened
    same = json.loads(run("replay", "--since", "30d", "--json").stdout)
    assert same["messages"] == 5 and same["changed"] == 0 and same["items"] == []

    res = run("replay", "--since", "30d", "--rules", str(cfg.parent / "rules-v2.yaml"))
    assert res.exit_code == 0, res.output
    assert (
        "priority: (none) -> high" in res.output
        and "tier: L2 -> L3" in res.output
        and "replies: +after_hours" in res.output
    )
    assert "ack: ack -> (none)" in res.output  # the new after_hours reply takes the acknowledgement's place
    assert "5 messages, 4 would change: priority 2, replies 2, tier 2, ack 1\n" in res.output
    data = json.loads(
        run(
            "replay", "--since", "30d", "--rules", str(cfg.parent / "rules-v2.yaml"), "--against", "recorded", "--json"
        ).stdout
    )
    assert data["changed"] == 4 and data["against"] == "recorded decisions"
    by_mid = {i["message"]: i for i in data["items"]}
    assert by_mid["h4@customer.example"]["event"] == "reply" and by_mid["h4@customer.example"]["approximate"] is False
    assert "h5@customer.example" not in by_mid and "h0@customer.example" not in by_mid
    assert _counts(desk) == before  # no side effects: no ticket, event, outbox row or cursor written


def test_replay_of_mail_stored_before_rules_existed_is_marked_approximate(tmp_path: Path, database_url: str) -> None:
    cfg = write_config(tmp_path, database_url)
    settings = load_settings(cfg)
    from dataclasses import replace

    bare = Desk(replace(settings, desk=replace(settings.desk, rules_file="")))
    bare.now = datetime.now(UTC) - timedelta(days=1)
    bare.say(eml(subject="Invoice 42", message_id="<pre1@customer.example>"))
    bare.close()
    app = typer.Typer()
    app.add_typer(rules_app, name="rules")

    @app.callback()
    def _main() -> None:
        pass

    out = CliRunner().invoke(app, ["rules", "replay", "--json", "--config", str(cfg)])
    data = json.loads(out.stdout)
    assert data["messages"] == 1 and data["changed"] == 1
    item = data["items"][0]
    assert item["approximate"] is True and item["baseline"] == "not routed"
    assert "queue: (none) -> billing" in item["changes"]
