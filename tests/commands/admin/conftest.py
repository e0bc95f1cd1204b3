"""Helpers for the admin CLI tests: a CLI runner bound to a maildesk.toml for the `desk` fixture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.support.mailgen import eml


def cli_app() -> typer.Typer:
    from maildesk.cli import app

    return app


def write_config(desk: Any, tmp_path: Path, *, templates_dir: Path | None = None) -> Path:
    settings = desk.settings
    path = tmp_path / "maildesk-admin.toml"
    site = f"templates_dir = {str(templates_dir)!r}\n" if templates_dir else ""
    path.write_text(
        "[desk]\n"
        f"name = {settings.desk.name!r}\n"
        f"data_dir = {str(settings.data_path)!r}\n"
        'support_addresses = ["support@example.com", "billing@example.com"]\n'
        'secret_env = ""\n'
        f"{site}"
        "[database]\n"
        f"url = {settings.database_url!r}\n"
        'url_env = ""\n'
    )
    return path


def seed(desk: Any, mails: list[bytes]) -> None:
    for raw in mails:
        desk.spool.put(raw, "test")
    result = desk.process()
    assert result["failed"] == 0 and result["quarantined"] == 0, result


Run = Callable[..., Any]


def make_runner(config: Path) -> Run:
    app = cli_app()
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(
            app, [*args, "--config", str(config)], env={"COLUMNS": "200", "MAILDESK_AGENT": "", "MAILDESK_CONFIG": ""}
        )
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    return run


@pytest.fixture
def run_cli(desk: Any, tmp_path: Path) -> Run:
    return make_runner(write_config(desk, tmp_path))


__all__ = ["eml", "seed"]
