"""The leads' digest as the daemon sends it: `[report] digest = "daily" | "weekly"` schedules
one job at `digest_hour` in the desk's time zone (weekly: Mondays), and running it queues one
mail to the leads (the first in To, the others in Cc) whose headline figures are those of
the seeded history (tests/support/report_history.py) for the period the digest covers;
running it again in the same minute queues nothing; `digest = "off"` schedules nothing.
On SQLite and PostgreSQL, in-process (the scheduler's job is called directly)."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maildesk.store.models import OutboxItem
from tests.conftest import make_settings
from tests.support.report_history import UNTIL, seed_history

LEADS = ["lead@example.com", "boss@example.com"]


def _desk(tmp_path: Path, database_url: str, now: datetime, **report: Any) -> Any:
    from maildesk.app import App

    settings = make_settings(tmp_path, database_url, report=report, desk={"timezone": "Europe/Berlin"})
    desk = App(settings, clock=lambda: now)
    desk.migrate()
    seed_history(desk.store)
    return desk


def _digests(desk: Any) -> list[OutboxItem]:
    with desk.store.reader() as session:
        return list(session.scalars(select(OutboxItem).where(OutboxItem.template == "report_digest")).all())


def _run_job(desk: Any) -> Any:
    scheduler = desk._scheduler()
    try:
        job = scheduler.get_job("report-digest")
        assert job is not None
        job.func()
        return job
    finally:
        scheduler.shutdown(wait=False)


def _text(item: OutboxItem) -> tuple[Any, str]:
    msg = email.message_from_bytes(item.raw, policy=policy.default)
    body = msg.get_body(("plain",))
    assert body is not None
    return msg, body.get_content()


def test_weekly_digest_is_scheduled_on_mondays_and_mails_the_week(tmp_path: Path, database_url: str) -> None:
    now = UNTIL.replace(second=30)  # Tue 2026-11-10 00:00:30 UTC: the week is exactly the seeded period
    desk = _desk(tmp_path, database_url, now, digest="weekly", digest_to=LEADS, digest_hour=6)
    try:
        job = _run_job(desk)
        fields = {f.name: str(f) for f in job.trigger.fields}
        assert (fields["day_of_week"], fields["hour"], fields["minute"]) == ("mon", "6", "0")
        assert str(job.trigger.timezone) == "Europe/Berlin"
        _run_job(desk)  # the same period again (a restart, a second node): not a second mail
        [item] = _digests(desk)
    finally:
        desk.worker.close()
        desk.store.dispose()
    assert item.ticket_number is None and item.recipients == LEADS
    msg, text = _text(item)
    assert msg["To"] == "lead@example.com" and msg["Cc"] == "boss@example.com"
    assert "weekly report 2026-11-10" in str(msg["Subject"]) and msg["Auto-Submitted"] == "auto-generated"
    assert "Period: 2026-11-03 00:00 – 2026-11-10 00:00 UTC" in text
    # the hand-known figures of tests/services/test_kpis.py
    assert "Created: 4    Resolved: 2    Backlog now: 3" in text
    assert "First response, median / p90 (business): 2.0 h / 4.0 h" in text  # across a weekend: 2 h
    assert "Resolution, median / p90 (business): 7.5 h / 11.0 h" in text
    assert "First contact resolution: 50% (1/2)" in text
    assert "Reopened: 50% (1/2)    Escalated: 25% (1/4)    Repeat: 25% (1/4)" in text
    assert "SLA compliance: first_response 50%" in text
    assert "Satisfaction: 3.00 average, 50% rated 4-5, 100% answered" in text  # one 5, one 1
    assert "billing: 2 created, 2 resolved, 0 open" in text and "tech: 2 created, 0 resolved, 3 open" in text
    attached = [p for p in msg.iter_attachments() if p.get_filename() == "report-2026-11-10.html"]
    assert len(attached) == 1 and b"<svg" in attached[0].get_content()


def test_daily_digest_mails_the_last_24_hours(tmp_path: Path, database_url: str) -> None:
    now = datetime(2026, 11, 9, 13, 0, 5, tzinfo=UTC)  # the day before: T1 resolved at 12:00, rated at 15:00
    desk = _desk(tmp_path, database_url, now, digest="daily", digest_to=LEADS[:1], digest_hour=14)
    try:
        job = _run_job(desk)
        fields = {f.name: str(f) for f in job.trigger.fields}
        assert (fields["day_of_week"], fields["hour"]) == ("*", "14")
        [item] = _digests(desk)
    finally:
        desk.worker.close()
        desk.store.dispose()
    assert item.recipients == LEADS[:1]
    msg, text = _text(item)
    assert "daily report 2026-11-09" in str(msg["Subject"]) and msg["Cc"] is None
    assert "Period: 2026-11-08 13:00 – 2026-11-09 13:00 UTC" in text
    assert "Created: 0    Resolved: 1    Backlog now: 3" in text
    assert "Satisfaction: no data" in text  # T1's answer came after the period


def test_digest_off_schedules_nothing(tmp_path: Path, database_url: str) -> None:
    desk = _desk(tmp_path, database_url, UNTIL, digest="off")
    scheduler = desk._scheduler()
    try:
        assert scheduler.get_job("report-digest") is None
        assert scheduler.get_job("sla-safety-net") is not None  # the scheduler itself runs
    finally:
        scheduler.shutdown(wait=False)
        desk.worker.close()
        desk.store.dispose()
