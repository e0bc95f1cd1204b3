"""What every `maildesk` command module shares: options, consoles, exit codes, and the one
way to load the config and open the App.

Owns no command. Imported by cli.py and the command modules it assembles.
Must not: decide anything or build queries (that is `maildesk.services`).
"""

from __future__ import annotations

import atexit
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from maildesk.config import Settings, load_settings
from maildesk.errors import ConfigError

if TYPE_CHECKING:  # the App (and everything it imports) loads only for commands that use it
    from maildesk.app import App

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

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(value: Any) -> str:
    """Text from mail made safe for a terminal: no escapes, no bidi overrides."""
    return _CONTROL.sub("\ufffd", "" if value is None else str(value))


def plain(value: Any, style: str = "") -> Text:
    """`value` as plain terminal-safe text (never Rich markup)."""
    return Text(clean(value), style=style)


def load_settings_or_exit(config: Path | None) -> Settings:
    """The Settings for `--config`; a config error is printed and exits 78 (EX_CONFIG)."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(Text(f"config error: {exc}", style="red"))
        raise typer.Exit(EX_CONFIG) from exc


def _new_app(config: Path | None) -> App:
    from maildesk.app import App

    return App(load_settings_or_exit(config))


def open_app(config: Path | None) -> App:
    """The App for `--config`, not migrated; its database connections close however the
    command ends."""
    desk = _new_app(config)
    atexit.register(desk.store.dispose)
    return desk


@contextlib.contextmanager
def open_desk(config: Path | None) -> Iterator[App]:
    """The App for `--config`, migrated, closed afterwards; a database that cannot be
    reached is printed and exits 75 (EX_TEMPFAIL)."""
    desk = _new_app(config)
    try:
        try:
            desk.migrate()
        except Exception as exc:  # noqa: BLE001
            err.print(plain(f"database unavailable: {str(exc).splitlines()[0]}", "red"))
            raise typer.Exit(EX_TEMPFAIL) from exc
        yield desk
    finally:
        desk.store.dispose()
