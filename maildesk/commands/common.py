"""What every `maildesk` command module shares: options, consoles, exit codes.

Owns no command. Imported by cli.py and the command modules it registers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

EX_DATAERR = 65
EX_TEMPFAIL = 75
EX_CONFIG = 78

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="MAILDESK_CONFIG",
        help="Config file (default: ./maildesk.toml, else built-in defaults).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
