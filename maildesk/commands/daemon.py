"""`maildesk init|run|process`: set a folder up, run the daemon, work through the spool once.

Thin: parse arguments, call the App (`maildesk.app`) or `maildesk.services.init`, print.
`maildesk/cli.py` adds these functions to the main app.
Must not: decide anything about mail.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from maildesk.commands.common import EX_TEMPFAIL, ConfigOpt, JsonOpt, console, err, open_app
from maildesk.errors import MaildeskError


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("mail.log", "mailparser", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the daemon: SMTP and IMAP intake, the worker, the outbox and SLA timers.

    SIGTERM or Ctrl-C stops intake, finishes the current message and exits.

    Example: `maildesk run --config /srv/maildesk/maildesk.toml`
    """
    _setup_logging(verbose)
    desk = open_app(config)
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
