"""Macros on the command line: `maildesk macros list`, `ticket reply N --macro NAME`, and
`templates check` finding a broken site macro."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from maildesk.cli import app
from maildesk.store.db import Store
from maildesk.store.models import OutboxItem
from tests.support.mailgen import eml


def test_macros_list_reply_with_macro_and_check(tmp_path: Path, database_url: str) -> None:
    site = tmp_path / "templates" / "macros"
    site.mkdir(parents=True)
    (site / "refund.txt.j2").write_text(
        "Dear {{ customer.display_name }}, your refund for {{ ticket.tag }} is on its way.\n"
    )
    cfg = tmp_path / "maildesk.toml"
    cfg.write_text(
        f'[desk]\ndata_dir = "{tmp_path / "data"}"\nsupport_addresses = ["support@example.com"]\nsecret_env = ""\n'
        f'templates_dir = "{tmp_path / "templates"}"\n[database]\nurl = "{database_url}"\nurl_env = ""\n'
    )
    runner = CliRunner()
    listed = runner.invoke(app, ["macros", "list", "--json", "--config", str(cfg)])
    assert listed.exit_code == 0, listed.output
    assert {m["name"] for m in json.loads(listed.output)} >= {"refund", "thanks"}
    inject = runner.invoke(app, ["inject", "-", "--config", str(cfg)], input=eml())
    assert inject.exit_code == 0, inject.output
    processed = runner.invoke(app, ["process", "--config", str(cfg)])
    assert processed.exit_code == 0, processed.output
    sent = runner.invoke(
        app, ["ticket", "reply", "1", "--by", "eva@example.com", "--macro", "refund", "--config", str(cfg)]
    )
    assert sent.exit_code == 0, sent.output
    store = Store(database_url)
    with store.reader() as s:
        raws = [o.raw for o in s.scalars(select(OutboxItem).where(OutboxItem.template == "agent_reply"))]
    store.dispose()
    assert len(raws) == 1 and b"your refund for [#1] is on its way" in raws[0]
    unknown = runner.invoke(
        app, ["ticket", "reply", "1", "--by", "eva@example.com", "--macro", "nope", "--config", str(cfg)]
    )
    assert unknown.exit_code != 0 and "no macro" in unknown.output
    (site / "broken.txt.j2").write_text("{{ ticket.no_such_field }}\n")
    check = runner.invoke(app, ["templates", "check", "--config", str(cfg)])
    assert check.exit_code == 1 and "broken.txt.j2" in check.output
