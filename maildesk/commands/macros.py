"""`maildesk macros …`: the canned replies (macros) agents send with `#macro NAME` by mail
or `maildesk ticket reply N --macro NAME`.

Owns only the command line: the macros live in `macros/` of the site templates (and the
built-in ones), found and rendered by `outbound.render`; `maildesk templates check`
checks them. Must not: render mail or touch the database.
"""

from __future__ import annotations

import typer
from rich.table import Table

from maildesk.commands.common import ConfigOpt, JsonOpt, console, load_settings_or_exit
from maildesk.commands.desk import _dump
from maildesk.outbound.mailer import Mailer
from maildesk.services.agent_mail import macros

macros_app = typer.Typer(
    help="Macros (canned replies): `#macro NAME` in a mail, or `maildesk ticket reply N --macro NAME`.\n\n"
    "Example: `maildesk macros list`",
    no_args_is_help=True,
)


@macros_app.command("list")
def macros_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """List the macros: the site's `macros/<name>.txt.j2` files and the built-in ones.

    Example: `maildesk macros list --json`
    """
    found = macros(Mailer(load_settings_or_exit(config)))
    if as_json:
        _dump(found)
        return
    table = Table("macro", "file")
    for row in found:
        table.add_row(row["name"], row["file"])
    console.print(table)
