"""Business hours: inside and outside the window, weekends, public holidays, time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from rules_kit import mail, ruleset

from maildesk.rules.engine import evaluate
from maildesk.rules.loader import load_rules_text
from maildesk.rules.ruleset import RuleSet

BERLIN_WINTER = timezone(timedelta(hours=1))


def hours_rules(extra: str = "") -> RuleSet:
    text = (
        "version: 1\n"
        "business_hours:\n  timezone: Europe/Berlin\n  days: [mon, tue, wed, thu, fri]\n"
        '  start: "08:00"\n  end: "18:00"\n  holidays: DE-BY\n' + extra + "rules:\n"
        "  - name: after hours\n    when: new\n    if: {business_hours: false}\n    then: [{reply: after_hours}]\n"
    )
    return load_rules_text(text)


@pytest.mark.parametrize(
    ("local", "is_open", "why"),
    [
        (datetime(2026, 11, 23, 8, 0), True, "Monday at opening"),
        (datetime(2026, 11, 23, 17, 59), True, "Monday just before closing"),
        (datetime(2026, 11, 23, 18, 0), False, "closing time is exclusive"),
        (datetime(2026, 11, 23, 7, 59), False, "before opening"),
        (datetime(2026, 11, 21, 11, 0), False, "Saturday"),
        (datetime(2026, 11, 22, 11, 0), False, "Sunday"),
        (datetime(2026, 12, 25, 11, 0), False, "Christmas Day (public holiday, a Friday)"),
        (datetime(2026, 10, 3, 11, 0), False, "German Unity Day (a Saturday anyway)"),
        (datetime(2026, 1, 6, 11, 0), False, "Epiphany: a holiday in Bavaria (DE-BY) only"),
        (datetime(2026, 11, 24, 11, 0), True, "an ordinary Tuesday"),
    ],
)
def test_business_hours(local: datetime, is_open: bool, why: str) -> None:
    rs = hours_rules()
    now = local.replace(tzinfo=BERLIN_WINTER).astimezone(UTC)  # these dates are all in CET (UTC+1)
    if local.month == 10:
        now = local.replace(tzinfo=timezone(timedelta(hours=2))).astimezone(UTC)  # CEST
    decision = evaluate(rs, mail(now=now))
    assert (decision.replies == ()) is is_open, why


def test_time_zone_conversion() -> None:
    rs = hours_rules()
    # 07:30 UTC on a Monday is 08:30 in Berlin: open. 17:30 UTC is 18:30 Berlin: closed.
    assert evaluate(rs, mail(now=datetime(2026, 11, 23, 7, 30, tzinfo=UTC))).replies == ()
    assert evaluate(rs, mail(now=datetime(2026, 11, 23, 17, 30, tzinfo=UTC))).replies == ("after_hours",)
    # naive datetimes are taken as UTC
    assert evaluate(rs, mail(now=datetime(2026, 11, 23, 7, 30))).replies == ()


def test_holiday_in_a_region_only() -> None:
    berlin_only = ruleset("- name: a\n  if: {business_hours: true}\n  then: [{tags: [open]}]\n", hours=True)
    # Epiphany (6 Jan 2026, a Tuesday) is not a holiday for plain DE
    assert evaluate(berlin_only, mail(now=datetime(2026, 1, 6, 10, 0, tzinfo=UTC))).tags_add == ("open",)
    assert evaluate(hours_rules(), mail(now=datetime(2026, 1, 6, 10, 0, tzinfo=UTC))).replies == ("after_hours",)


def test_extra_closed_dates_and_weekend_days() -> None:
    rs = hours_rules("  closed: [2026-12-24, '2026-12-31']\n")
    assert evaluate(rs, mail(now=datetime(2026, 12, 24, 10, 0, tzinfo=UTC))).replies == ("after_hours",)
    assert evaluate(rs, mail(now=datetime(2026, 12, 31, 10, 0, tzinfo=UTC))).replies == ("after_hours",)
    assert evaluate(rs, mail(now=datetime(2026, 12, 30, 10, 0, tzinfo=UTC))).replies == ()
