"""Helpers for the desk tests: a seeded desk and a CLI runner bound to its config."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.support.mailgen import eml

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def seed(desk: Any, mails: list[bytes]) -> None:
    for raw in mails:
        desk.spool.put(raw, "test")
    result = desk.process()
    assert result["failed"] == 0 and result["quarantined"] == 0, result


def cli_app() -> typer.Typer:
    from maildesk.cli import app

    return app


def write_config(desk: Any, tmp_path: Path) -> Path:
    settings = desk.settings
    path = tmp_path / "maildesk-test.toml"
    path.write_text(
        "[desk]\n"
        f"data_dir = {str(settings.data_path)!r}\n"
        'support_addresses = ["support@example.com", "billing@example.com"]\n'
        'secret_env = ""\n'
        "[database]\n"
        f"url = {settings.database_url!r}\n"
        'url_env = ""\n'
    )
    return path


@pytest.fixture
def run_cli(desk: Any, tmp_path: Path) -> Callable[..., Any]:
    config = write_config(desk, tmp_path)
    app = cli_app()
    runner = CliRunner()

    def run(*args: str, input: str | None = None, ok: bool = True, env: dict[str, str] | None = None) -> Any:
        result = runner.invoke(
            app,
            [*args, "--config", str(config)],
            input=input,
            env={"COLUMNS": "200", "MAILDESK_AGENT": "", **(env or {})},
        )
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    return run


__all__ = ["NOW", "eml", "seed"]
