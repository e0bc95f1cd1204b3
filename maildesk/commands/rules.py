"""`maildesk rules check|test|replay`: check a rules file, see how one mail would be routed,
and see what a rules change would have done to the mail already stored.

Thin: parse arguments, call `maildesk.services.rules`, print (a Rich table or `--json`);
`maildesk/cli.py` adds `rules_app` to the main app. Nothing here writes to the database or
the outbox. Text that came from mail is printed as plain text (`common.clean`), never as
Rich markup.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from maildesk.commands.common import ConfigOpt, JsonOpt, clean, console, err, load_settings_or_exit
from maildesk.errors import MaildeskError

rules_app = typer.Typer(help="Check, try and replay routing rules (desk.rules_file).", no_args_is_help=True)

RulesOpt = Annotated[Path | None, typer.Option("--rules", "-r", help="Rules file to use instead of desk.rules_file.")]


def _path(settings: Any, file: Path | None) -> Path:
    from maildesk.services import rules as rules_ops

    path = rules_ops.rules_path(settings, file)
    if path is None:
        err.print("no rules file: give FILE or set desk.rules_file in maildesk.toml")
        raise typer.Exit(2)
    return path


def _load(settings: Any, path: Path) -> Any:
    from maildesk.services import rules as rules_ops

    ruleset, problems = rules_ops.check(settings, path)
    if ruleset is None:
        for line in problems:
            err.print(Text(line))
        err.print(Text(f"{len(problems)} problem(s) in {path}; nothing was changed", style="red"))
        raise typer.Exit(1)
    return ruleset


@rules_app.command("check")
def check_cmd(
    file: Annotated[Path | None, typer.Argument(help="Rules file (default: desk.rules_file).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Check a rules file as the daemon would load it; every problem as `file:line: rule 'x': problem`.

    Exit 0 when the file is good, 1 when it has problems. Example: `maildesk rules check rules.yaml`
    """
    settings = load_settings_or_exit(config)
    path = _path(settings, file)
    ruleset = _load(settings, path)
    console.print(Text(f"{path}: ok, {len(ruleset.rules)} rules"))


@rules_app.command("test")
def test_cmd(
    mail: Annotated[Path, typer.Argument(help="A mail file (.eml).", exists=True, dir_okay=False)],
    ticket: Annotated[int | None, typer.Option("--ticket", "-t", help="Decide it as a reply on this ticket.")] = None,
    rules: RulesOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show how the rules would route one mail: each rule, matched or not and why, then the decision.

    Nothing is stored or sent. Customer facts (VIP, earlier tickets) come from the database
    when it can be read. Example: `maildesk rules test mail.eml --ticket 42`
    """
    from maildesk.services import rules as rules_ops
    from maildesk.store.db import Store

    settings = load_settings_or_exit(config)
    ruleset = _load(settings, _path(settings, rules))
    store = Store(settings.database_url)
    try:
        result = rules_ops.decide_mail(
            settings, ruleset, mail.read_bytes(), datetime.now(UTC), store=store, ticket=ticket
        )
    except LookupError as exc:
        err.print(Text(str(exc), style="red"))
        raise typer.Exit(1) from exc
    finally:
        store.dispose()
    if as_json:
        print(
            json.dumps(
                {
                    "event": result.input.event,
                    "facts_from_db": result.facts_from_db,
                    "decision": result.decision.to_json(),
                },
                indent=2,
            )
        )
        return
    table = Table(title=f"{len(ruleset.rules)} rules, {result.input.event} mail from {clean(result.input.sender)}")
    for col in ("line", "rule", "matched", "why / actions"):
        table.add_column(col)
    for hit in result.decision.hits:
        detail = "; ".join(hit.actions) if hit.matched else hit.why
        table.add_row(str(hit.line), Text(clean(hit.name)), "yes" if hit.matched else "no", Text(clean(detail)))
    console.print(table)
    if not result.facts_from_db:
        console.print("(database not readable: customer facts are defaults)")
    data = result.decision.to_json()
    console.print("Decision:")
    for key in (
        "queue",
        "tier",
        "priority",
        "status",
        "assign",
        "tags_add",
        "fields",
        "tags_remove",
        "notify",
        "escalate",
        "resolve",
        "spam",
        "discard",
        "notes",
    ):
        value = data[key]
        if value not in (None, [], {}, False):
            console.print(Text(f"  {key}: {clean(value)}"))
    ask = result.decision.ask
    if ask is not None:
        console.print(Text(f"  ask: {', '.join(result.decision.ask_missing)} with {ask.template} (again: {ask.again})"))
    mails = result.decision.mails
    console.print(Text(f"Automatic mail to the customer: {len(mails) or 'none'}"))
    for auto in mails:
        console.print(Text(f"  {auto.template} ({auto.kind}): {clean(auto.why)}"))


@rules_app.command("replay")
def replay_cmd(
    since: Annotated[str, typer.Option("--since", help="How far back: 30d, 12h, 2w.")] = "30d",
    rules: RulesOpt = None,
    against: Annotated[
        str,
        typer.Option("--against", help="recorded (what the events say happened) or current (the current rules file)."),
    ] = "",
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many messages.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-decide stored mail with a rules file and show what would change. No side effects.

    Without --rules: the current rules file against what happened. With --rules NEW: NEW
    against the current rules (or --against recorded). Example:
    `maildesk rules replay --since 30d --rules rules-new.yaml`
    """
    from maildesk.services import rules as rules_ops
    from maildesk.services.views import parse_age
    from maildesk.store.db import Store

    settings = load_settings_or_exit(config)
    try:
        age = parse_age(since)
    except MaildeskError as exc:
        err.print(Text(str(exc), style="red"))
        raise typer.Exit(2) from exc
    mode = against or ("current" if rules else "recorded")
    if mode not in ("current", "recorded"):
        err.print("--against must be current or recorded")
        raise typer.Exit(2)
    candidate = _load(settings, _path(settings, rules))
    baseline = None
    if mode == "current":
        if rules is None:
            err.print("--against current needs --rules NEW_FILE (else both sides are the same file)")
            raise typer.Exit(2)
        baseline = _load(settings, _path(settings, None))
    store = Store(settings.database_url)
    try:
        report = rules_ops.replay(store, datetime.now(UTC) - age, candidate, baseline=baseline, limit=limit)
    finally:
        store.dispose()
    if as_json:
        print(json.dumps(report.to_json(), indent=2, default=str))
        return
    console.print(
        Text(f"replaying mail since {report.since:%Y-%m-%d %H:%M} UTC: {report.candidate} against {report.against}")
    )
    for item in report.items:
        mark = " (approximate: never routed, facts from today's database)" if item.approximate else ""
        console.print(Text(f"#{item.ticket} {item.event} <{clean(item.message_id)}> {clean(item.subject)!r}{mark}"))
        for line in item.diff:
            console.print(Text(f"    {clean(line)}"))
    console.print(Text(report.summary(), style="bold"))
