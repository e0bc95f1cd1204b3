"""`maildesk init|run|process`: set a folder up, run the daemon, work through the spool once.

Thin: parse arguments, call the App (`maildesk.app`) or `maildesk.services.init`, print.
`maildesk/cli.py` adds these functions to the main app.
Must not: decide anything about mail.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from maildesk.commands.common import EX_TEMPFAIL, ConfigOpt, JsonOpt, console, err, open_app
from maildesk.errors import MaildeskError
from maildesk.logctx import configure

EX_USAGE = 64


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


def run(
    config: ConfigOpt = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging (the same as --log-level debug).")
    ] = False,
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", help="plain or json (one object a line); default: [log] format."),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning or error; default: [log] level."),
    ] = None,
) -> None:
    """Run the daemon: SMTP and IMAP intake, the worker, the outbox and SLA timers.

    SIGTERM or Ctrl-C stops intake, finishes the current message and exits. SIGHUP (and
    saving the rules, a template or the config file) reloads them; a broken edit shows in
    `maildesk status` and the last good version keeps running. Under systemd
    (`Type=notify`) it reports readiness, status and watchdog pings.

    Example: `maildesk run --config /srv/maildesk/maildesk.toml --log-format json`
    """
    from maildesk.config import LOG_FORMATS, LOG_LEVELS

    override: dict[str, str] = {}
    if log_format is not None:
        if log_format.lower() not in LOG_FORMATS:
            err.print(f"--log-format: must be {' or '.join(LOG_FORMATS)}, got {log_format!r}", markup=False)
            raise typer.Exit(EX_USAGE)
        override["format"] = log_format.lower()
    if log_level is not None:
        if log_level.lower() not in LOG_LEVELS:
            err.print(f"--log-level: must be {', '.join(LOG_LEVELS)}, got {log_level!r}", markup=False)
            raise typer.Exit(EX_USAGE)
        override["level"] = log_level.lower()
    if verbose:
        override.setdefault("level", "debug")
    configure(override.get("format", "plain"), override.get("level", "info"))  # until the config is read
    desk = open_app(config)
    desk.log_override = override
    desk.settle_gc = True  # this process is the daemon's own
    desk.apply_logging()
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        logging.getLogger("maildesk").info("signal %s: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: desk.request_reload())
    try:
        desk.run(stop)
    except OSError as exc:
        err.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(1) from exc


def process(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Work through everything spooled, then exit (batch use, benchmarks).

    Example: `maildesk inject < mail.eml && maildesk process`
    """
    desk = open_app(config)
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
