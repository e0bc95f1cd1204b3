"""`maildesk imap reconcile [--since 30d] [--fetch]`: what each configured IMAP mailbox holds
that maildesk did not store (after an outage, a lost spool, a restore).

Thin: parse arguments, call `maildesk.services.reconcile`, print (Rich or `--json`).
`maildesk/cli.py` adds `imap_app` to the main app.
Exit codes: 0 nothing missing (mail the poller has not reached yet is "waiting", not
missing), 1 something missing (after `--fetch`: spooled again), 75 a mailbox or the database
could not be reached.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from maildesk.commands.common import EX_TEMPFAIL, ConfigOpt, JsonOpt, console, err, open_desk, plain

imap_app = typer.Typer(help="IMAP mailboxes: prove nothing was missed.", no_args_is_help=True)

_SINCE = re.compile(r"^(\d{1,4})d$")


def parse_since(value: str, today: date | None = None) -> date:
    """`30d` (days back) or an ISO date `2026-11-01`."""
    today = today or datetime.now(UTC).date()
    match = _SINCE.match(value.strip())
    if match:
        return today - timedelta(days=int(match.group(1)))
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use a number of days like 30d, or a date like 2026-11-01") from None


@imap_app.command("reconcile")
def reconcile_cmd(
    since: Annotated[str, typer.Option(help="How far back: 30d (days) or a date 2026-11-01.")] = "30d",
    fetch: Annotated[bool, typer.Option("--fetch", help="Spool what is not stored, for ingestion.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare each mailbox (SEARCH SINCE; UID, UIDVALIDITY, Message-ID) with the stored mail
    and list what is missing. Example: `maildesk imap reconcile --since 7d --fetch`"""
    first_day = parse_since(since)
    from maildesk.services.reconcile import reconcile

    with open_desk(config) as desk:
        if not desk.settings.imap:
            err.print("no [[imap]] mailbox is configured")
            raise typer.Exit(0)
        reports = reconcile(desk.settings, desk.store, desk.spool, first_day, fetch=fetch)
        if fetch and any(f.spooled_as for r in reports for f in r.findings):
            from maildesk.wakeup import SPOOL, poke

            poke(desk.settings.data_path, SPOOL)  # a running daemon's worker takes them now
    missing = sum(1 for r in reports for f in r.findings if f.state == "missing")
    if as_json:
        print(json.dumps({"since": first_day.isoformat(), "mailboxes": [r.to_json() for r in reports]}))
    else:
        for r in reports:
            if r.error:
                err.print(plain(f"{r.mailbox}: cannot reconcile: {r.error}", "red"))
                continue
            console.print(
                plain(
                    f"{r.mailbox}: {r.on_server} on the server since {first_day}, {r.stored} stored, "
                    f"{sum(f.state == 'missing' for f in r.findings)} missing, "
                    f"{sum(f.state == 'waiting' for f in r.findings)} waiting"
                )
            )
            if r.findings:
                table = Table()
                for col in ("folder", "uid", "uidvalidity", "message-id", "state", "spooled"):
                    table.add_column(col)
                for f in r.findings:
                    table.add_row(
                        plain(f.folder), str(f.uid), str(f.uidvalidity), plain(f.message_id), f.state, f.spooled_as
                    )
                console.print(table)
    if any(r.error for r in reports):
        raise typer.Exit(EX_TEMPFAIL)
    if missing:
        raise typer.Exit(1)
