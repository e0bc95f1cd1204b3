"""`maildesk spool list|show|retry|discard`: the operator's view of failed and quarantined
mail (invariant 3).

Thin: parse arguments, call `maildesk.spool.files.Spool`, print (Rich or `--json`).
`maildesk/cli.py` adds `spool_app` to the main app.
Must not: touch the database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from maildesk.commands.common import ConfigOpt, JsonOpt, console, err, load_settings_or_exit
from maildesk.errors import SpoolError
from maildesk.spool.files import Spool

spool_app = typer.Typer(help="Inspect and act on the spool: failed and quarantined mail.", no_args_is_help=True)


def _spool(config: Path | None) -> Spool:
    return Spool(load_settings_or_exit(config).spool_path).ensure()


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
