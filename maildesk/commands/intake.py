"""`maildesk inject|import`: take mail from an MTA pipe, or history from an mbox or Maildir.

Thin: parse arguments, spool the mail (`maildesk.spool`, `maildesk.ingest.bulk`), print;
`import --history` stores old mail itself through `maildesk.pipeline.history`.
`inject` is what an MTA runs: it exits 0 only once the message is durable in the spool and
75 (EX_TEMPFAIL) for anything that may pass, so the MTA keeps the mail and retries. Once
the mail is durable, both wake a running daemon's worker (`maildesk.wakeup.poke`; without
a daemon, or if the wake-up is lost, the worker's safety net finds the mail).
`maildesk/cli.py` adds these functions to the main app.
Must not: touch the database for `inject` (mail must be taken while it is down).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maildesk.commands.common import EX_DATAERR, EX_TEMPFAIL, ConfigOpt, console, err, open_app, open_desk
from maildesk.config import load_settings
from maildesk.errors import ConfigError, MaildeskError


def inject(
    file: Annotated[str, typer.Argument(help="Message file, or - for standard input.")] = "-",
    config: ConfigOpt = None,
) -> None:
    """Take one message from an MTA pipe (like RT's mailgate).

    Exits 0 once the message is safely spooled, 75 (EX_TEMPFAIL) when it cannot be taken
    so the MTA retries later, 65 (EX_DATAERR: the MTA bounces it) when it is empty or larger
    than smtp.max_message_size. Example for Postfix aliases:
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
    from maildesk.ingest.inject import MessageTooLarge, read_message

    try:
        raw = read_message(file, settings.smtp.max_message_size)
    except MessageTooLarge as exc:
        err.print(f"maildesk inject: refused: {exc}")
        raise typer.Exit(EX_DATAERR) from exc
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
    from maildesk.wakeup import SPOOL, poke

    poke(settings.data_path, SPOOL)  # after the sync: never announces mail that is not durable
    print(entry_id)


def import_(
    source: Annotated[Path, typer.Argument(help="An mbox file or a Maildir folder.")],
    config: ConfigOpt = None,
    process_now: Annotated[
        bool, typer.Option("--process/--no-process", help="Process the imported mail right away.")
    ] = True,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="Old mail: store and thread it as closed tickets, with no acknowledgement, "
            "notification, rule or SLA clock; mail from a configured agent is an agent reply. "
            "Re-importing adds nothing.",
        ),
    ] = False,
) -> None:
    """Bulk-import history from an mbox file or a Maildir, with a progress bar.

    Example: `maildesk import ~/old-support.mbox` (as new mail, through the spool), or
    `maildesk import --history ~/old-support.mbox` (archived, closed, nothing sent).
    """
    if history:
        _import_history(source, config)
        return
    from maildesk.ingest.bulk import import_mailbox

    desk = open_app(config)
    try:
        skipped: list[str] = []
        count = import_mailbox(
            source, desk.spool, progress=True, max_size=desk.settings.smtp.max_message_size, skipped=skipped
        )
    except MaildeskError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if count:
        desk.wakeups.spooled()  # a running daemon starts on it now
    console.print(f"spooled {count} messages from {source}")
    for why in skipped:
        err.print(f"skipped: {why}")
    if process_now:
        result = desk.process()
        console.print(", ".join(f"{k}: {v}" for k, v in result.items() if k != "last_error"))


def _import_history(source: Path, config: Path | None) -> None:
    """`import --history`: stored in this process (`pipeline/history.py`), a progress bar,
    the figures and the rate at the end; exits 65 when some mail was skipped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from maildesk.ingest.bulk import HistoryMail
    from maildesk.pipeline.history import HistoryImporter

    with open_desk(config) as desk:
        try:
            mail = HistoryMail(source)
        except MaildeskError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        with mail:
            importer = HistoryImporter(
                desk.store, desk.deps, source=source.name, max_size=desk.settings.smtp.max_message_size
            )
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=err, transient=False) as bar:
                task = bar.add_task(f"history {source.name}", total=len(mail))
                for name, raw in mail:
                    importer.feed(name, raw)
                    bar.advance(task)
            stats = importer.close()
    figures = stats.figures()
    console.print(", ".join(f"{k}: {v}" for k, v in figures.items()))
    console.print(
        f"imported {stats.imported} of {stats.seen} messages from {source} in {stats.seconds:.1f} s "
        f"({stats.rate:.0f} messages/s); {stats.tickets} closed tickets, {stats.duplicates} already stored"
    )
    for why in stats.skipped:
        err.print(f"skipped: {why}")
    if stats.skipped:
        raise typer.Exit(EX_DATAERR)
