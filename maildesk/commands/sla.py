"""`maildesk sla status|sweep|replay`: the service levels as an operator sees and checks them.

Thin: parse arguments, call `services.views.sla_status`, `App.sla_sweep` or `sla.replay`, print
(Rich or `--json`). `maildesk/cli.py` adds `sla_app` to the main app.
Must not: decide anything about clocks or build SQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from maildesk.commands.common import ConfigOpt, JsonOpt, console, err, load_settings_or_exit, open_desk, plain
from maildesk.services.tickets import OperationError
from maildesk.services.views import parse_age, sla_status

sla_app = typer.Typer(help="Service levels: clocks, the sweep, and what another policy would do.", no_args_is_help=True)


def _age(value: str | None) -> object:
    if value is None:
        return None
    try:
        return parse_age(value)
    except OperationError as exc:
        err.print(plain(f"error: {exc}", "red"))
        raise typer.Exit(2) from exc


@sla_app.command("status")
def status(
    breaching: Annotated[bool, typer.Option("--breaching", help="Only breached or overdue clocks.")] = False,
    due_within: Annotated[str | None, typer.Option(help="Only clocks due within this, e.g. 2h or 1d.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The running and paused SLA clocks, soonest due first. Example: `maildesk sla status --due-within 2h`"""
    within = _age(due_within)
    with open_desk(config) as desk, desk.store.reader() as session:
        rows = sla_status(session, desk.clock(), breaching=breaching, due_within=within)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="SLA clocks")
    for col in ("ticket", "clock", "policy", "target", "due", "state", "paused", "warned", "breached", "subject"):
        table.add_column(col)
    for r in rows:
        paused = r["paused_seconds"]
        table.add_row(
            f"#{r['ticket']}",
            r["kind"],
            r["policy"] or "-",
            r["target"] or "-",
            _short(r["due_at"]),
            plain(r["state"], "bold red" if r["state"] in ("breached", "overdue") else ""),
            f"{paused // 3600}h{paused % 3600 // 60:02d}m" if paused else "-",
            _short(r["warned_at"]),
            _short(r["breached_at"]),
            plain(r["subject"]),
        )
    console.print(table)


@sla_app.command("sweep")
def sweep(
    now: Annotated[
        str | None, typer.Option(help="Act as if it were this time (ISO 8601), e.g. 2026-03-02T09:00Z.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what is due; change and send nothing.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Act on the warnings, breaches and follow-ups due now (or at --now). The daemon does this itself."""
    at: datetime | None = None
    if now is not None:
        try:
            at = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError as exc:
            err.print(plain(f"error: cannot read --now {now!r}: use ISO 8601 like 2026-03-02T09:00Z", "red"))
            raise typer.Exit(2) from exc
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    with open_desk(config) as desk:
        report = desk.sla_sweep(at, dry_run=dry_run)
    if report is None:
        err.print(plain("error: the sweep failed; see the log", "red"))
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return
    verb = "would act" if dry_run else "acted"
    console.print(
        plain(
            f"{verb} on {len(report.actions)} due item(s) on {report.tickets} ticket(s) "
            f"at {report.now:%Y-%m-%d %H:%M} UTC"
        )
    )
    for a in report.actions:
        console.print(plain(f"  #{a['ticket']} {a['action']} {a.get('kind', '')} due {a.get('due_at', '')}"))


@sla_app.command("replay")
def replay(
    other: Annotated[Path, typer.Option("--config", help="The configuration to try: its [sla] tables.")],
    since: Annotated[str, typer.Option(help="Tickets with SLA events in this period, e.g. 90d.")] = "90d",
    desk_config: Annotated[
        Path | None,
        typer.Option("--desk", envvar="MAILDESK_CONFIG", help="The desk's own config (default: ./maildesk.toml)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What another SLA policy or calendar would have given, from the stored events; nothing changes.
    Example: `maildesk sla replay --config new.toml --since 30d`"""
    from maildesk.sla.replay import compare, replay_desk

    period = _age(since)
    trial = load_settings_or_exit(other)
    with open_desk(desk_config) as desk, desk.store.reader() as session:
        now = desk.clock()
        start = now - period  # type: ignore[operator]
        before = replay_desk(session, desk.settings.sla, start, now)
        after = replay_desk(session, trial.sla, start, now)
    result = compare(before, after)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    table = Table(title=f"SLA replay: {result['tickets']} ticket(s) since {since}")
    for col in ("target", "before", "after"):
        table.add_column(col)
    for kind, was in result["before"]["compliance"].items():
        new = result["after"]["compliance"][kind]
        table.add_row(kind, _share(was), _share(new))
    table.add_row("breaches", str(result["before"]["breaches"]), str(result["after"]["breaches"]))
    console.print(table)
    console.print(plain(f"{len(result['changed'])} ticket(s) would have different clocks"))


def _short(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "-"


def _share(row: dict[str, object]) -> str:
    value = row["compliance"]
    share = "-" if value is None else f"{float(value):.0%}"  # type: ignore[arg-type]
    return f"{share} ({row['met']} met, {row['breached']} breached, {row['open']} open)"
