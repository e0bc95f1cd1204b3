"""The `maildesk` command line (Typer; the only module that imports it).

Thin: parse arguments, call one function of the application, print. Every command takes
`--config PATH` (or $MAILDESK_CONFIG); without either it uses ./maildesk.toml when present,
else the embedded default.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from maildesk.commands.common import EX_CONFIG, EX_DATAERR, EX_TEMPFAIL, ConfigOpt, JsonOpt, console, err
from maildesk.config import Settings, load_settings
from maildesk.errors import ConfigError, MaildeskError, SpoolError

app = typer.Typer(
    name="maildesk",
    help="maildesk: an email-first help desk that runs as a daemon.\n\n"
    "Start with `maildesk init DIR`, then `maildesk run` in that folder.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
spool_app = typer.Typer(help="Inspect and act on the spool: failed and quarantined mail.", no_args_is_help=True)
app.add_typer(spool_app, name="spool")


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(EX_CONFIG) from exc


def _app(config: Path | None) -> Any:
    from maildesk.app import App

    desk = App(_settings(config))
    atexit.register(desk.store.dispose)  # close database connections however the command ends
    return desk


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("mail.log", "mailparser", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# Setup and daemon -----------------------------------------------------------------------
@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to set up (created when missing).")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Write a commented maildesk.toml, example rules and a templates folder.

    Example: `maildesk init /srv/maildesk && cd /srv/maildesk && maildesk run`
    """
    from maildesk.services.init import init_directory

    try:
        written = init_directory(directory, force=force)
    except MaildeskError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"next: cd {directory} && maildesk run")


@app.command()
def run(
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the daemon: SMTP and IMAP intake, the worker, the outbox and SLA timers.

    SIGTERM or Ctrl-C stops intake, finishes the current message and exits.

    Example: `maildesk run --config /srv/maildesk/maildesk.toml`
    """
    _setup_logging(verbose)
    desk = _app(config)
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        logging.getLogger("maildesk").info("signal %s: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: desk.reload())
    try:
        desk.run(stop)
    except OSError as exc:
        err.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(1) from exc


@app.command()
def process(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Work through everything spooled, then exit (batch use, benchmarks).

    Example: `maildesk inject < mail.eml && maildesk process`
    """
    desk = _app(config)
    try:
        result = desk.process()
    except Exception as exc:  # noqa: BLE001
        err.print(f"[red]cannot process:[/red] {str(exc).splitlines()[0]}")
        raise typer.Exit(EX_TEMPFAIL) from exc
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            console.print(f"{key}: {value}")
    if result.get("database_unavailable"):
        raise typer.Exit(EX_TEMPFAIL)


# Intake ---------------------------------------------------------------------------------
@app.command()
def inject(
    file: Annotated[str, typer.Argument(help="Message file, or - for standard input.")] = "-",
    config: ConfigOpt = None,
) -> None:
    """Take one message from an MTA pipe (like RT's mailgate).

    Exits 0 once the message is safely spooled, 75 (EX_TEMPFAIL) when it cannot be taken
    so the MTA retries later. Example for Postfix aliases:
    `support: "|/usr/local/bin/maildesk inject --config /srv/maildesk/maildesk.toml"`
    """
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        err.print(f"maildesk inject: config error: {exc}")
        raise typer.Exit(EX_TEMPFAIL) from exc
    except Exception as exc:  # noqa: BLE001 - anything else is temporary too: the MTA must keep the mail
        err.print(f"maildesk inject: cannot start: {type(exc).__name__}: {exc}")
        raise typer.Exit(EX_TEMPFAIL) from exc
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        err.print(f"maildesk inject: cannot read {file}: {exc.strerror}")
        raise typer.Exit(EX_TEMPFAIL if file == "-" else 66) from exc
    if not raw.strip():
        err.print("maildesk inject: empty message, nothing to take")
        raise typer.Exit(EX_DATAERR)
    from maildesk.spool.files import Spool

    try:
        entry_id = Spool(settings.spool_path).ensure().put(raw, "inject", {"file": file})
    except Exception as exc:  # noqa: BLE001 - SpoolError, OSError or a bug: never exit 1 (a bounce)
        err.print(f"maildesk inject: cannot spool: {exc}")
        raise typer.Exit(EX_TEMPFAIL) from exc
    print(entry_id)


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="An mbox file or a Maildir folder.")],
    config: ConfigOpt = None,
    process_now: Annotated[
        bool, typer.Option("--process/--no-process", help="Process the imported mail right away.")
    ] = True,
) -> None:
    """Bulk-import history from an mbox file or a Maildir, with a progress bar.

    Example: `maildesk import ~/old-support.mbox`
    """
    from maildesk.ingest.bulk import import_mailbox

    desk = _app(config)
    try:
        count = import_mailbox(source, desk.spool, progress=True)
    except MaildeskError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"spooled {count} messages from {source}")
    if process_now:
        result = desk.process()
        console.print(", ".join(f"{k}: {v}" for k, v in result.items() if k != "last_error"))


@app.command()
def parse(
    files: Annotated[list[Path], typer.Argument(help="Message files.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Show what maildesk extracts from messages, without storing anything.

    One JSON object per line with `--json`, each with its `file`; a file that cannot be
    parsed gives an object with an `error`. Example: `maildesk parse --json mail/*.eml`
    """
    from maildesk.app import describers
    from maildesk.services.describe import describe_file

    settings = _settings(config)
    extra = describers()
    for file in files:
        data = describe_file(file, settings, extra)
        if as_json:
            print(json.dumps(data, ensure_ascii=False, default=str))
        elif "error" in data:
            console.print(f"[red]{file}[/red]: {data['error']}")
        else:
            console.rule(str(file))
            for key in ("message_id", "subject", "from", "to", "cc", "date", "content_type", "defects"):
                console.print(f"[bold]{key}[/bold]: {data.get(key)}")
            for att in data.get("attachments", []):
                console.print(
                    f"[bold]attachment[/bold]: {att['filename']} ({att['content_type']}, {att['size']} bytes)"
                )
            for key in ("screen", "threading"):
                if key in data:
                    console.print(f"[bold]{key}[/bold]: {data[key]}")
            console.print(data.get("visible_text", data.get("text", ""))[:2000], markup=False)


@app.command()
def status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Spool depths, mailbox state, worker figures and database counts.

    Example: `maildesk status --json | jq .spool`
    """
    from maildesk.app import read_daemon_status
    from maildesk.spool.files import Spool

    settings = _settings(config)
    data: dict[str, Any] = {"config": settings.source, "data_dir": str(settings.data_path)}
    data["spool"] = Spool(settings.spool_path).ensure().depths()
    data["daemon"] = read_daemon_status(settings)
    from maildesk.commands.ops import database_facts

    data["database"] = database_facts(settings)  # `initialised: false` with a note on a fresh folder
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
    table.add_row("database", json.dumps(data["database"], default=str)[:300])
    console.print(table)


@app.command()
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

    desk = _app(config)
    data = explain_message(desk.store, message_id)
    if data is None:
        err.print(f"no stored message with Message-ID {message_id}")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(data, default=str))
    else:
        console.print(render_text(data), markup=False, highlight=False)


# Spool ----------------------------------------------------------------------------------
def _spool(config: Path | None) -> Any:
    from maildesk.spool.files import Spool

    return Spool(_settings(config).spool_path).ensure()


@spool_app.command("list")
def spool_list(
    state: Annotated[str, typer.Option(help="incoming, active, failed, quarantine or discarded.")] = "failed",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List spool entries in one state. Example: `maildesk spool list --state quarantine`"""
    spool = _spool(config)
    try:
        entries = list(spool.entries(state))
    except SpoolError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    rows = []
    for entry in entries:
        info = spool.info(entry)
        rows.append(
            {
                "id": entry.id,
                "state": entry.state,
                "attempt": entry.attempt,
                "size": entry.path.stat().st_size,
                "reason": info.get("reason") or info.get("error") or "",
                "stage": info.get("stage", ""),
            }
        )
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title=f"spool: {state} ({len(rows)})")
    for col in ("id", "attempt", "size", "stage", "reason"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["id"], str(row["attempt"]), str(row["size"]), row["stage"], row["reason"][:80])
    console.print(table)


@spool_app.command("show")
def spool_show(entry_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show one entry: where it came from, why it is parked, its headers."""
    spool = _spool(config)
    try:
        entry = spool.find(entry_id)
    except SpoolError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    meta, raw = spool.read(entry)
    head = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    data = {
        "id": entry.id,
        "state": entry.state,
        "attempt": entry.attempt,
        "meta": meta,
        "info": spool.info(entry),
        "size": len(raw),
        "headers": head,
    }
    if as_json:
        print(json.dumps(data, default=str))
        return
    for key in ("id", "state", "attempt", "size", "meta", "info"):
        console.print(f"[bold]{key}[/bold]: {data[key]}", markup=True, highlight=False)
    console.rule("headers")
    console.print(head, markup=False)


@spool_app.command("retry")
def spool_retry(entry_id: str, config: ConfigOpt = None) -> None:
    """Put a failed or quarantined entry back in the queue. Example: `maildesk spool retry 0001763`"""
    try:
        entry = _spool(config).retry(entry_id)
    except SpoolError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{entry.id} queued again")


@spool_app.command("discard")
def spool_discard(
    entry_id: str,
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Set a failed or quarantined entry aside in discarded/ (kept, never processed)."""
    spool = _spool(config)
    if not yes and not typer.confirm(f"discard spool entry {entry_id}?"):
        raise typer.Exit(1)
    try:
        entry = spool.discard(entry_id)
    except SpoolError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{entry.id} discarded (kept in {entry.path.parent})")


def _register_desk_commands() -> None:
    from maildesk.commands.admin import register as register_admin
    from maildesk.commands.desk import register as register_desk
    from maildesk.commands.ops import register as register_ops
    from maildesk.commands.rules import register as register_rules

    register_desk(app)
    register_rules(app)
    register_admin(app)
    register_ops(app)


_register_desk_commands()


def main() -> None:
    os.environ.setdefault("COLUMNS", os.environ.get("COLUMNS", "120"))
    try:
        app()
    except ConfigError as exc:  # found after the settings loaded, e.g. PostgreSQL without maildesk[postgresql]
        err.print(f"config error: {exc}", markup=False, style="red")
        sys.exit(EX_CONFIG)


if __name__ == "__main__":  # pragma: no cover
    main()
