"""`maildesk parse|status|explain`: what maildesk makes of a mail file, how the node is
doing, and why a stored mail went where it went.

Thin: parse arguments, call `maildesk.services.describe` / `maildesk.services.explain` or
read the spool and the database counts, print (Rich or `--json`).
`maildesk/cli.py` adds these functions to the main app.
Must not: write anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from maildesk.commands.common import ConfigOpt, JsonOpt, console, err, load_settings_or_exit, open_app


def parse(
    files: Annotated[list[Path], typer.Argument(help="Message files.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Show what maildesk extracts from messages, without storing anything.

    One JSON object per line with `--json`, each with its `file`; a file that cannot be
    parsed gives an object with an `error`. Example: `maildesk parse --json mail/*.eml`
    """
    from maildesk.app import describers, history_store

    settings = load_settings_or_exit(config)
    store, why = history_store(settings)  # threading evidence is looked up when the desk has a database
    extra = describers(store, why)
    try:
        for file in files:
            _parse_one(file, settings, extra, as_json)
    finally:
        if store is not None:
            store.dispose()


def _field(key: str, value: Any) -> Text:
    """`key: value` with the value as plain text: mail text is never Rich markup (a subject
    like `Re: [#1] Printer` would lose its `[#1]`)."""
    line = Text(f"{key}", style="bold")
    line.append(f": {value}")
    return line


def _parse_one(file: Path, settings: Any, extra: Any, as_json: bool) -> None:
    from maildesk.services.describe import describe_file

    data = describe_file(file, settings, extra)
    if as_json:
        print(json.dumps(data, ensure_ascii=False, default=str))
    elif "error" in data:
        console.print(Text(f"{file}", style="red").append(f": {data['error']}", style=""))
    else:
        console.rule(Text(str(file)))
        for key in ("message_id", "subject", "from", "to", "cc", "date", "content_type", "defects"):
            console.print(_field(key, data.get(key)))
        for att in data.get("attachments", []):
            console.print(_field("attachment", f"{att['filename']} ({att['content_type']}, {att['size']} bytes)"))
        for key in ("screen", "threading"):
            if key in data:
                console.print(_field(key, data[key]))
        console.print(data.get("visible_text", data.get("text", ""))[:2000], markup=False)


def status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Spool depths, mailbox state, worker figures and database counts.

    Example: `maildesk status --json | jq .spool`
    """
    from maildesk.app import read_daemon_status
    from maildesk.spool.files import Spool

    settings = load_settings_or_exit(config)
    data: dict[str, Any] = {"config": settings.source, "data_dir": str(settings.data_path)}
    spool = Spool(settings.spool_path).ensure()
    data["spool"] = spool.depths()  # drains the journal first
    data["daemon"] = read_daemon_status(settings)
    from maildesk.app import spool_oldest_age
    from maildesk.commands.ops import database_facts

    data["database"] = database_facts(settings)  # `initialised: false` with a note on a fresh folder
    data["held"] = data["database"].pop("held", {})
    from maildesk.commands.ops import intake_state

    usage = shutil.disk_usage(settings.spool_path)
    facts = {"disk_free": usage.free, "disk_total": usage.total}
    accepting, why = intake_state(data["daemon"], data["database"], facts, settings.smtp.max_message_size)
    data["intake"] = {"accepting": accepting, "why": why, **facts}
    data["waiting"] = {  # seconds; None: nothing waiting
        "spool_oldest_seconds": spool_oldest_age(spool),
        "outbox_oldest_due_seconds": data["database"].pop("outbox_oldest_due_seconds", None),
    }
    if as_json:
        print(json.dumps(data, default=str))
        return
    table = Table(title="maildesk status", show_header=False)
    table.add_row("config", data["config"])
    table.add_row("spool", ", ".join(f"{k} {v}" for k, v in data["spool"].items()))
    daemon = data["daemon"]
    table.add_row("daemon", "running" if daemon and daemon.get("running") else "not running")
    if daemon:
        for box in daemon.get("imap", []):
            table.add_row(f"imap {box.get('name')}", json.dumps(box, default=str)[:300])
        table.add_row("worker", json.dumps(daemon.get("worker"), default=str)[:300])
    table.add_row("intake", why)
    database = data["database"]
    if database.get("reachable") and not database.get("initialised"):
        table.add_row("database", f"{database.get('backend')}: {database.get('note')}")
    elif not database.get("reachable"):
        table.add_row("database", f"unreachable: {database.get('error')}")
    else:
        table.add_row("database", json.dumps(database, default=str)[:300])
    if daemon:
        reload = daemon.get("reload") or {}
        rules = daemon.get("rules") or {}
        for line in rules.get("errors") or []:
            table.add_row("rules error (previous rules in force)", line)
        for line in reload.get("config_errors") or []:
            table.add_row("config error (running settings stay)", line)
        for line in reload.get("template_problems") or []:
            table.add_row("template problem (built-in used)", line)
        if reload.get("restart_needed"):
            table.add_row("config edited", "restart to apply: " + ", ".join(reload["restart_needed"]))
        metrics = daemon.get("metrics") or {}
        if metrics.get("listen"):
            table.add_row("metrics", metrics.get("error") or f"http://{metrics.get('listening')}/metrics")
    table.add_row("waiting", ", ".join(f"{k} {'-' if v is None else v}" for k, v in data["waiting"].items()))
    for window, kinds in data.get("held", {}).items():
        table.add_row(
            f"held automatic mail, {window.replace('_', ' ')}",
            ", ".join(f"{k} {v}" for k, v in kinds.items()) or "none",
        )
    console.print(table)


def explain(
    message_id: Annotated[str, typer.Argument(help="The Message-ID, with or without <>.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why did this mail go where it went? Screening, threading, rules and replies, in order.

    Example: `maildesk explain '<CAH3x@mail.gmail.com>'`
    """
    from maildesk.services.explain import explain as explain_message
    from maildesk.services.explain import render_text

    desk = open_app(config)
    data = explain_message(desk.store, message_id)
    if data is None:
        err.print(f"no stored message with Message-ID {message_id}")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(data, default=str))
    else:
        console.print(render_text(data), markup=False, highlight=False)
