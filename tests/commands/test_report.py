"""`maildesk report` in every format on the seeded history (tests/support/report_history.py),
on SQLite and PostgreSQL: tables, JSON, CSV, the single-file HTML report rendered by headless
Chromium to a screenshot (charts present and not blank), customer text escaped, and the
leads' digest queued once per period with the report attached."""

from __future__ import annotations

import csv
import email
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from maildesk.cli import app as cli_app
from maildesk.store.models import OutboxItem
from tests.conftest import make_settings
from tests.support.report_history import SCRIPT, seed_history

PERIOD = ["--since", "2026-11-03", "--until", "2026-11-10"]


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Iterator[Path]:
    from maildesk.app import App

    settings = make_settings(tmp_path, database_url)
    desk = App(settings)
    desk.migrate()
    seed_history(desk.store)
    desk.store.dispose()
    path = tmp_path / "maildesk-test.toml"
    path.write_text(
        "[desk]\n"
        f"data_dir = {str(settings.data_path)!r}\n"
        'support_addresses = ["support@example.com"]\n'
        'secret_env = ""\n'
        "[database]\n"
        f"url = {settings.database_url!r}\n"
        'url_env = ""\n'
        "[report]\n"
        'digest = "weekly"\n'
        'digest_to = ["lead@example.com", "boss@example.com"]\n'
    )
    yield path


def run(config: Path, *args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(cli_app, ["report", *args, "--config", str(config)], env={"COLUMNS": "200"})
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_tables(config: Path) -> None:
    out = run(config, *PERIOD).output
    for text in (
        "KPIs",
        "billing",
        "tech",
        "Backlog by age",
        "SLA compliance",
        "first_response",
        "50%",
        "alice@desk.test",
        "printer",
        "x.com",
    ):
        assert text in out, text


def test_json(config: Path) -> None:
    data = json.loads(run(config, *PERIOD, "--format", "json", "--by", "agent").output)
    assert data["by"] == "agent" and data["total"]["created"] == 4 and data["total"]["backlog_total"] == 3
    assert data["total"]["first_response_business"]["median"] == 7200
    assert data["total"]["satisfaction"]["distribution"] == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 1}
    assert set(data["groups"]) == {"alice@desk.test", "bob@desk.test", "(unassigned)"}
    assert {"tag": SCRIPT, "tickets": 1} in data["top_tags"]


def test_csv(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    run(config, *PERIOD, "--format", "csv", "--output", str(target))
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["group"] for r in rows] == ["(all)", "billing", "tech"]
    assert rows[0]["first_response_business_median_h"] == "2.0000" and rows[0]["fcr_rate"] == "0.5000"
    assert rows[2]["csat_average"] == ""  # no data for tech


def test_bad_period_is_refused(config: Path) -> None:
    result = run(config, "--since", "yesterday", ok=False)
    assert result.exit_code == 2 and "30d" in result.output


def _png_colours(path: Path) -> int:
    from PIL import Image  # installed with matplotlib (the report extra)

    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    return len(colours or [])


def test_html_report_in_chromium(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report.html"
    run(config, *PERIOD, "--format", "html", "--output", str(target))
    page = target.read_text()
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # tags escaped
    assert "<script" not in page.lower()  # no script at all: charts are inline SVG
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing loaded from the network
    for chart in ("volume", "response", "sla", "satisfaction", "backlog"):
        block = page.split(f'id="chart-{chart}"', 1)[1].split('<div class="chart"', 1)[0]
        assert "<svg" in block and block.count("<path") >= 5, chart
    assert "no satisfaction data" not in page and "no SLA data" not in page
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: ./dev test installs it"
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--hide-scrollbars",
            target.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with capsys.disabled():  # shown in every run (not only -s or a failure), for a person to look
        print(f"\nHTML report screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert _png_colours(shot) > 50  # charts and text, not a blank page


def test_digest_now_queues_once_with_the_report_attached(config: Path, database_url: str) -> None:
    started = datetime.now(UTC).replace(second=0, microsecond=0)
    first = run(config, "--digest-now").output
    assert "digest queued" in first
    second = run(config, "--digest-now").output  # same minute: the same period, never twice
    ended = datetime.now(UTC).replace(second=0, microsecond=0)
    from maildesk.store.db import Store

    store = Store(database_url)
    try:
        with store.reader() as session:
            items = session.scalars(select(OutboxItem).where(OutboxItem.template == "report_digest")).all()
    finally:
        store.dispose()
    keys = [i.idempotency_key for i in items]
    assert len(set(keys)) == len(keys)  # one row per period, never two
    if started == ended:  # both runs in one minute: one period
        assert len(items) == 1 and "queued before" in second, second
    else:  # the runs straddled a minute (a loaded machine): a period each
        assert len(items) in (1, 2)
    item = items[0]
    assert item.ticket_number is None and sorted(item.recipients) == ["boss@example.com", "lead@example.com"]
    msg = email.message_from_bytes(item.raw, policy=policy.default)
    assert msg["Auto-Submitted"] == "auto-generated" and "weekly report" in str(msg["Subject"])
    body = msg.get_body(("plain",))
    assert body is not None and "Created:" in body.get_content()
    attached = [p for p in msg.iter_attachments() if (p.get_filename() or "").endswith(".html")]
    assert len(attached) == 1 and b"<svg" in attached[0].get_content()


def test_digest_period() -> None:
    from maildesk.report.digest import digest_period

    now = datetime(2026, 11, 9, 7, 0, 12, tzinfo=UTC)
    assert digest_period("weekly", now) == (datetime(2026, 11, 2, 7, tzinfo=UTC), datetime(2026, 11, 9, 7, tzinfo=UTC))
    assert digest_period("daily", now)[0] == datetime(2026, 11, 8, 7, tzinfo=UTC)
