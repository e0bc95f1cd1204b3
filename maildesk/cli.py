"""The `maildesk` command line: the root Typer app and the table of its commands.

Each area's commands live in `maildesk/commands/<area>.py` as plain functions or Typer
sub-apps; this module only assembles them, in the order `maildesk --help` lists them
(commands first, then groups). Config loading and opening the App are
`commands/common.py`'s. Every command takes `--config PATH` (or $MAILDESK_CONFIG); without
either it uses ./maildesk.toml when present, else the embedded default.
Must not: hold a command's body, or register commands anywhere but the block below.
"""

from __future__ import annotations

import os
import sys

import typer

from maildesk.commands import admin, daemon, desk, imap, inspection, intake, macros, ops, report, rules, sla, spool
from maildesk.commands.common import EX_CONFIG, err
from maildesk.errors import ConfigError

app = typer.Typer(
    name="maildesk",
    help="maildesk: an email-first help desk that runs as a daemon.\n\n"
    "Start with `maildesk init DIR`, then `maildesk run` in that folder.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.callback()(ops.main_options)  # --version

# Commands ------------------------------------------------------------------------------
app.command()(daemon.init)
app.command()(daemon.run)
app.command()(daemon.process)
app.command()(intake.inject)
app.command("import")(intake.import_)
app.command()(inspection.parse)
app.command()(inspection.status)
app.command()(inspection.explain)
app.command("search")(desk.search_cmd)
app.command("health")(ops.health)
app.command("systemd-unit")(ops.systemd_unit)
app.command("report")(report.report)

# Groups --------------------------------------------------------------------------------
app.add_typer(spool.spool_app, name="spool")
app.add_typer(desk.tickets_app, name="tickets")
app.add_typer(desk.ticket_app, name="ticket")
app.add_typer(desk.customer_app, name="customer")
app.add_typer(desk.agents_app, name="agents")
app.add_typer(desk.retention_app, name="retention")
app.add_typer(rules.rules_app, name="rules")
app.add_typer(admin.suppressions_app, name="suppressions")
app.add_typer(admin.templates_app, name="templates")
app.add_typer(macros.macros_app, name="macros")
app.add_typer(admin.outbox_app, name="outbox")
app.add_typer(ops.db_app, name="db")
app.add_typer(sla.sla_app, name="sla")
app.add_typer(imap.imap_app, name="imap")


def main() -> None:
    os.environ.setdefault("COLUMNS", os.environ.get("COLUMNS", "120"))
    try:
        app()
    except ConfigError as exc:  # found after the settings loaded, e.g. PostgreSQL without maildesk[postgresql]
        err.print(f"config error: {exc}", markup=False, style="red")
        sys.exit(EX_CONFIG)


if __name__ == "__main__":  # pragma: no cover
    main()
