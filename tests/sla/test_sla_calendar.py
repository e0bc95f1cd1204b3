"""BusinessCalendar: exact business time across nights, weekends, holidays, breaks and DST."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from maildesk.sla.calendar import CALENDAR_TIME, BusinessCalendar, Span, parse_spans

BERLIN = ZoneInfo("Europe/Berlin")
H = timedelta(hours=1)
OFFICE = parse_spans("09:00-17:00")
LUNCH = parse_spans("09:00-12:00, 13:00-17:00")


def week(spans: tuple[Span, ...], days: int = 5) -> tuple[tuple[Span, ...], ...]:
    return tuple(spans if i < days else () for i in range(7))


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def office(**kw: object) -> BusinessCalendar:
    return BusinessCalendar(**{"name": "office", "timezone": "Europe/Berlin", "week": week(OFFICE), **kw})  # type: ignore[arg-type]


def test_within_one_day() -> None:
    cal = office()
    assert cal.add_business_time(berlin(2026, 3, 3, 10), 2 * H) == berlin(2026, 3, 3, 12)
    assert cal.business_time_between(berlin(2026, 3, 3, 10), berlin(2026, 3, 3, 12)) == 2 * H


def test_results_are_utc_and_naive_inputs_are_utc() -> None:
    cal = office()
    due = cal.add_business_time(datetime(2026, 3, 3, 9), H)  # naive: 09:00 UTC is 10:00 in Berlin
    assert due.tzinfo is UTC and due == berlin(2026, 3, 3, 11)


def test_across_a_night() -> None:
    cal = office()
    assert cal.add_business_time(berlin(2026, 3, 3, 16), 2 * H) == berlin(2026, 3, 4, 10)
    assert cal.business_time_between(berlin(2026, 3, 3, 16), berlin(2026, 3, 4, 10)) == 2 * H
    # starting at night: the clock starts at the next opening
    assert cal.add_business_time(berlin(2026, 3, 3, 22), H) == berlin(2026, 3, 4, 10)
    assert cal.add_business_time(berlin(2026, 3, 4, 3), H) == berlin(2026, 3, 4, 10)


def test_across_a_weekend() -> None:
    cal = office()
    friday, monday = berlin(2026, 3, 6, 16), berlin(2026, 3, 9, 10)
    assert cal.add_business_time(friday, 2 * H) == monday
    assert cal.business_time_between(friday, monday) == 2 * H
    assert cal.business_time_between(berlin(2026, 3, 7, 10), berlin(2026, 3, 8, 20)) == timedelta(0)
    assert not cal.is_open(berlin(2026, 3, 7, 10)) and cal.is_open(berlin(2026, 3, 9, 9))


def test_public_holiday_germany_bavaria() -> None:
    cal = office(holidays="DE-BY")
    # Tuesday 2026-01-06 is Epiphany in Bavaria (not in Berlin, say)
    assert cal.add_business_time(berlin(2026, 1, 5, 16), 2 * H) == berlin(2026, 1, 7, 10)
    assert cal.business_time_between(berlin(2026, 1, 5, 9), berlin(2026, 1, 8, 9)) == 16 * H
    assert office(holidays="DE").add_business_time(berlin(2026, 1, 5, 16), 2 * H) == berlin(2026, 1, 6, 10)


def test_public_holiday_us_california() -> None:
    la = ZoneInfo("America/Los_Angeles")
    cal = BusinessCalendar(timezone="America/Los_Angeles", week=week(OFFICE), holidays="US-CA")
    # Tuesday 2026-03-31 is Cesar Chavez Day in California
    start = datetime(2026, 3, 30, 16, tzinfo=la)
    assert cal.add_business_time(start, 2 * H) == datetime(2026, 4, 1, 10, tzinfo=la)


def test_closed_dates() -> None:
    cal = office(closed=frozenset({date(2026, 3, 4)}))
    assert cal.add_business_time(berlin(2026, 3, 3, 16), 2 * H) == berlin(2026, 3, 5, 10)


def test_lunch_break() -> None:
    cal = office(week=week(LUNCH))
    assert cal.add_business_time(berlin(2026, 3, 3, 11, 30), H) == berlin(2026, 3, 3, 13, 30)
    assert cal.add_business_time(berlin(2026, 3, 3, 12, 15), H) == berlin(2026, 3, 3, 14)
    assert cal.business_time_between(berlin(2026, 3, 3, 11), berlin(2026, 3, 3, 14)) == 2 * H
    assert cal.day_length == 7 * H
    # exactly at the end of a span: the due time is the end, not the next opening
    assert cal.add_business_time(berlin(2026, 3, 3, 9), 3 * H) == berlin(2026, 3, 3, 12)


ROUND_THE_CLOCK = week(parse_spans("00:00-24:00"), days=7)


def test_spring_forward_day_has_23_hours() -> None:
    cal = BusinessCalendar(timezone="Europe/Berlin", week=ROUND_THE_CLOCK)
    assert cal.business_time_between(berlin(2026, 3, 29, 0), berlin(2026, 3, 30, 0)) == 23 * H
    # 00:30 CET + 2 h of real time is 03:30 CEST (the clock skipped 02:00-03:00)
    assert cal.add_business_time(berlin(2026, 3, 29, 0, 30), 2 * H) == berlin(2026, 3, 29, 3, 30)
    assert cal.add_business_time(berlin(2026, 3, 29, 0, 30), 2 * H) == utc(2026, 3, 29, 1, 30)


def test_fall_back_day_has_25_hours() -> None:
    cal = BusinessCalendar(timezone="Europe/Berlin", week=ROUND_THE_CLOCK)
    assert cal.business_time_between(berlin(2026, 10, 25, 0), berlin(2026, 10, 26, 0)) == 25 * H
    # 01:30 CEST + 2 h is 02:30 CET (the second 02:30)
    assert cal.add_business_time(berlin(2026, 10, 25, 1, 30), 2 * H) == utc(2026, 10, 25, 1, 30)


def test_wall_clock_spans_on_dst_days_are_real_time() -> None:
    night = BusinessCalendar(timezone="Europe/Berlin", week=week(parse_spans("01:00-04:00"), days=7))
    assert night.business_time_between(berlin(2026, 3, 29, 0), berlin(2026, 3, 29, 12)) == 2 * H
    assert night.business_time_between(berlin(2026, 10, 25, 0), berlin(2026, 10, 25, 12)) == 4 * H
    assert night.business_time_between(berlin(2026, 3, 28, 0), berlin(2026, 3, 28, 12)) == 3 * H
    # a boundary in the skipped hour is the moment of the change (03:00 CEST)
    gap = BusinessCalendar(timezone="Europe/Berlin", week=week(parse_spans("02:30-04:00"), days=7))
    assert gap.business_time_between(berlin(2026, 3, 29, 0), berlin(2026, 3, 29, 12)) == H
    assert gap.add_business_time(berlin(2026, 3, 29, 0), timedelta(minutes=1)) == utc(2026, 3, 29, 1, 1)


def test_office_hours_across_both_dst_changes() -> None:
    cal = office(week=week(LUNCH))
    # Friday before the spring change 16:00 CET + 2 h → Monday 10:00 CEST, i.e. 08:00 UTC
    assert cal.add_business_time(berlin(2026, 3, 27, 16), 2 * H) == utc(2026, 3, 30, 8)
    assert cal.business_time_between(berlin(2026, 3, 27, 16), berlin(2026, 3, 30, 10)) == 2 * H
    assert cal.add_business_time(berlin(2026, 10, 23, 16), 2 * H) == utc(2026, 10, 26, 9)
    # a whole week around each change holds exactly five working days
    for monday in (date(2026, 3, 23), date(2026, 10, 19), date(2026, 3, 30)):
        start = berlin(monday.year, monday.month, monday.day)
        assert cal.business_time_between(start, start + timedelta(days=7)) == 35 * H


def test_calendar_time() -> None:
    assert CALENDAR_TIME.add_business_time(berlin(2026, 3, 28, 23), 5 * H) == berlin(2026, 3, 29, 5)
    assert CALENDAR_TIME.business_time_between(utc(2026, 3, 1), utc(2026, 3, 2)) == 24 * H
    assert CALENDAR_TIME.day_length == 24 * H


def test_negative_and_reversed() -> None:
    cal = office()
    assert cal.business_time_between(berlin(2026, 3, 4, 10), berlin(2026, 3, 3, 10)) == -8 * H
    assert cal.add_business_time(berlin(2026, 3, 3, 10), timedelta(0)) == berlin(2026, 3, 3, 10)
    with pytest.raises(ValueError):
        cal.add_business_time(berlin(2026, 3, 3, 10), -H)


def test_bad_calendars() -> None:
    with pytest.raises(ValueError, match="overlap"):
        parse_spans("09:00-12:00, 11:00-13:00")
    with pytest.raises(ValueError):
        Span.parse("17:00-09:00")
    with pytest.raises(ValueError):
        BusinessCalendar(week=((),) * 7)
    assert parse_spans("13:00-17:00,09:00-12:00") == LUNCH
    assert Span.parse("18:00-24:00").end == 86_400


def _reference_between(cal: BusinessCalendar, a: datetime, b: datetime) -> timedelta:
    """Stepping half-hours by wall-clock containment (spans on half-hours away from the DST hours)."""
    zone, step, total = ZoneInfo(cal.timezone), timedelta(minutes=30), timedelta(0)
    t = a
    while t < b:
        local = t.astimezone(zone)
        seconds = local.hour * 3600 + local.minute * 60
        if not cal.is_closed_day(local.date()) and any(s.start <= seconds < s.end for s in cal.week[local.weekday()]):
            total += min(step, b - t)
        t += step
    return total


def test_matches_stepping_over_90_days_with_holidays_breaks_and_dst() -> None:
    spans = list(week(LUNCH))
    spans[4] = parse_spans("08:00-12:00, 12:30-14:00")  # a short Friday
    spans[5] = parse_spans("10:00-13:00")  # Saturday mornings
    cal = office(week=tuple(spans), holidays="DE-BY", closed=frozenset({date(2026, 3, 18), date(2026, 12, 24)}))
    rng = random.Random(13)
    for _ in range(12):
        a = utc(2026, 1, 1) + timedelta(minutes=30 * rng.randrange(0, 330 * 48))
        b = a + timedelta(minutes=30 * rng.randrange(0, 90 * 48) + rng.choice((0, 17)))
        assert cal.business_time_between(a, b) == _reference_between(cal, a, b), (a, b)
    a = berlin(2026, 3, 1, 7, 30)  # spans the spring change, Easter and Good Friday
    assert cal.business_time_between(a, a + timedelta(days=90)) == _reference_between(cal, a, a + timedelta(days=90))


def test_add_and_between_are_inverse_and_minimal() -> None:
    cal = office(week=week(LUNCH), holidays="DE-BY", closed=frozenset({date(2026, 11, 2)}))
    rng = random.Random(7)
    for _ in range(300):
        start = utc(2025, 12, 1) + timedelta(seconds=rng.randrange(0, 400 * 86_400))
        delta = timedelta(seconds=rng.randrange(1, 200 * 3600))
        due = cal.add_business_time(start, delta)
        assert cal.business_time_between(start, due) == delta, (start, delta)
        assert cal.business_time_between(start, due - timedelta(seconds=1)) < delta  # the first such moment


def test_long_spans_skip_weeks_and_agree_with_day_by_day() -> None:
    cal = office(week=week(LUNCH), holidays="DE-BY")
    start = berlin(2026, 1, 2, 10)
    due = cal.add_business_time(start, 7 * H * 200)  # about 40 weeks, over both DST changes
    assert cal.business_time_between(start, due) == 7 * H * 200
    total, day = timedelta(0), start
    while day < due:  # day by day, no skipping
        nxt = min(day + timedelta(days=1), due)
        total += cal.business_time_between(day, nxt)
        day = nxt
    assert total == 7 * H * 200
