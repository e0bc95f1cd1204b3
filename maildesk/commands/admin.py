"""The operator's admin commands: `suppressions list|remove`, `templates check|preview`,
`outbox list|show|retry`.

Thin like `commands/desk.py` (whose transaction and error helpers it reuses): parse
arguments, open the desk (`common.open_desk`), call one function of `maildesk.services.admin`
in one transaction, print a Rich table or `--json`. `maildesk/cli.py` adds the three sub-apps
to the main app. Text that came from mail is printed with control characters removed.

Must not: build queries or decide anything (that is `maildesk.services.admin`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from maildesk.commands.common import ConfigOpt, JsonOpt, clean, console, err, load_settings_or_exit, open_desk, plain
from maildesk.commands.desk import _by, _dump, _read, _when, _write
from maildesk.errors import MaildeskError
from maildesk.services import admin as aops

suppressions_app = typer.Typer(
    help="Addresses that get no automatic mail (permanent bounces, relay refusals).\n\n"
    "Example: `maildesk suppressions list`, `maildesk suppressions remove anna@example.org`",
    no_args_is_help=True,
)
templates_app = typer.Typer(
    help="Mail templates: check them all, or preview one.\n\n"
    "Example: `maildesk templates check`, `maildesk templates preview ack --ticket 42`",
    no_args_is_help=True,
)
outbox_app = typer.Typer(
    help="Outgoing mail: what waits, what failed, what was held back, and why.\n\n"
    "Example: `maildesk outbox list --state failed`, `maildesk outbox retry 17`",
    no_args_is_help=True,
)

STATE_STYLE = {"failed": "bold red", "held": "yellow", "queued": "cyan", "sending": "cyan", "sent": "green"}


def _fail(exc: Exception) -> typer.Exit:
    err.print(plain(f"error: {exc}", "red"))
    return typer.Exit(1)


# Suppressions -------------------------------------------------------------------------------


@suppressions_app.command("list")
def suppressions_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """List suppressed addresses with the reason and the ticket that caused it.

    Example: `maildesk suppressions list` or `maildesk suppressions list --json | jq '.[].address'`
    """
    with open_desk(config) as desk:
        rows = _read(desk, aops.list_suppressions, desk.clock())
    if as_json:
        _dump(rows)
        return
    table = Table(title=f"suppressions ({len(rows)})")
    for col in ("address", "reason", "ticket", "since", "until"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            plain(r["address"], "" if r["active"] else "dim"),
            plain(r["reason"]),
            f"#{r['ticket']}" if r["ticket"] else "-",
            _when(r["created_at"]),
            _when(r["until"]) + ("" if r["active"] else " (expired)") if r["until"] else "-",
        )
    console.print(table)


@suppressions_app.command("remove")
def suppressions_remove(
    address: Annotated[str, typer.Argument(help="The suppressed address.")],
    by: Annotated[
        str | None, typer.Option("--by", envvar="MAILDESK_AGENT", help="Who acts (default: cli:<login>).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Lift a suppression: automatic mail may go to the address again (recorded as an event).

    Example: `maildesk suppressions remove anna@example.org`
    """
    with open_desk(config) as desk:
        row = _write(desk, aops.remove_suppression, address, desk.clock(), by=_by(by))
    console.print(plain(f"{row['address']} is no longer suppressed (was: {row['reason']})"))


# Templates ----------------------------------------------------------------------------------


@templates_app.command("check")
def templates_check(config: ConfigOpt = None) -> None:
    """Compile every built-in and site template and render each with sample data.

    Prints `file:line: message` for each problem and exits 1 when there is any.

    Example: `maildesk templates check` (run it after editing templates, before a restart)
    """
    settings = load_settings_or_exit(config)
    problems = aops.check_templates(settings)
    if problems:
        for problem in problems:
            print(clean(str(problem)))
        err.print(plain(f"{len(problems)} problem(s) in the templates", "red"))
        raise typer.Exit(1)
    names = aops.template_names(settings)
    console.print(plain(f"all templates render: {', '.join(names)}", "green"))


@templates_app.command("preview")
def templates_preview(
    name: Annotated[str, typer.Argument(help="Template name, e.g. ack, agent_reply, resolved.")],
    ticket: Annotated[int | None, typer.Option("--ticket", help="Render with this ticket's real data.", min=1)] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Render with made-up sample data (the default).")] = False,
    locale: Annotated[str | None, typer.Option("--locale", help="Reader's language, e.g. de or de_AT.")] = None,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part instead of subject and text.")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Show what a template renders to: subject and text (or the HTML), without sending.

    With --ticket the context is the one maildesk would build for that ticket (customer,
    ticket, latest message, agent); sections a ticket lacks come from the sample data.

    Example: `maildesk templates preview ack --ticket 42 --locale de` or
    `maildesk templates preview survey --sample --html`
    """
    if ticket is not None and sample:
        err.print("give --ticket N or --sample, not both")
        raise typer.Exit(2)
    if ticket is None:
        settings = load_settings_or_exit(config)
        try:
            preview = aops.preview_sample(settings, name, _now(), locale=locale)
        except MaildeskError as exc:
            raise _fail(exc) from exc
    else:
        with open_desk(config) as desk:
            preview = _read(desk, aops.preview_ticket, desk.settings, name, ticket, desk.clock(), locale=locale)
    if as_json:
        _dump(preview.to_json())
        return
    if html:
        if preview.html is None:
            err.print(plain(f"{name} has no HTML part", "red"))
            raise typer.Exit(1)
        print(clean(preview.html))
        return
    for problem in preview.errors:
        err.print(plain(f"site template broken, built-in used: {problem}", "yellow"))
    if preview.sample_sections and preview.source != "sample":
        err.print(plain(f"sample data used for: {', '.join(preview.sample_sections)}", "dim"))
    for note in preview.notes:
        err.print(plain(note, "dim"))
    print(clean(f"Subject: {preview.subject}\n\n{preview.text}").rstrip("\n"))


def _now() -> datetime:
    from maildesk.app import utcnow  # the daemon's clock; no desk is opened for sample previews

    return utcnow()


# Outbox -------------------------------------------------------------------------------------


@outbox_app.command("list")
def outbox_list(
    state: Annotated[str | None, typer.Option("--state", "-s", help="queued, sending, sent, failed or held.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="At most this many rows, newest first (0: all).", min=0)
    ] = 200,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List outgoing mail, newest first, with state, attempts and the last error.

    Example: `maildesk outbox list --state held` or `maildesk outbox list --state failed --json`
    """
    with open_desk(config) as desk:
        rows = _read(desk, aops.list_outbox, desk.clock(), state=state, limit=limit)
    if as_json:
        _dump(rows)
        return
    table = Table(title=f"outbox{' (' + state + ')' if state else ''}: {len(rows)}")
    for col in ("id", "state", "ticket", "template", "to", "subject", "tries", "created", "last error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r["id"]),
            plain(r["state"], STATE_STYLE.get(r["state"], "")),
            f"#{r['ticket']}" if r["ticket"] else "-",
            plain(r["template"]),
            plain(", ".join(r["recipients"])),
            plain(r["subject"][:80]),
            str(r["attempts"]),
            _when(r["created_at"]),
            plain(r["last_error"][:120]),
        )
    console.print(table)


@outbox_app.command("show")
def outbox_show(
    item_id: Annotated[int, typer.Argument(help="Outbox id (see `maildesk outbox list`).", min=1)],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """One outgoing mail: state, attempts, last error, its headers and its history.

    Example: `maildesk outbox show 17`
    """
    with open_desk(config) as desk:
        item = _read(desk, aops.show_outbox, item_id, desk.clock())
    if as_json:
        _dump(item)
        return
    head = Table(show_header=False, title=f"outbox {item['id']}")
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    for key in (
        "state",
        "ticket",
        "template",
        "sender",
        "recipients",
        "automatic",
        "attempts",
        "next_try",
        "created_at",
        "sent_at",
        "last_error",
        "message_id",
        "size",
    ):
        value = item[key]
        if isinstance(value, list):
            value = ", ".join(value)
        style = STATE_STYLE.get(str(value), "") if key == "state" else ""
        head.add_row(key.replace("_", " "), plain("-" if value in (None, "") else value, style))
    console.print(head)
    console.rule("headers")
    for name, value in item["headers"]:
        console.print(plain(f"{name}: {value}"))
    if item["events"]:
        console.rule("history")
        for e in item["events"]:
            detail = e["data"].get("error") or e["data"].get("reasons") or e["data"].get("relay") or ""
            console.print(plain(f"{_when(e['at'])}  {e['type']}  {detail}"))


@outbox_app.command("retry")
def outbox_retry(
    item_id: Annotated[int, typer.Argument(help="Outbox id of a failed or held mail.", min=1)],
    by: Annotated[
        str | None, typer.Option("--by", envvar="MAILDESK_AGENT", help="Who acts (default: cli:<login>).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Queue a failed or held mail again, due now, with fresh attempts (recorded as an event).

    A held automatic mail is released past the limits: that is the point of retrying it.

    Example: `maildesk outbox retry 17`
    """
    with open_desk(config) as desk:
        row = _write(desk, aops.retry_outbox, item_id, desk.clock(), by=_by(by))
    console.print(plain(f"outbox {row['id']} queued again for {', '.join(row['recipients'])}"))
