"""Business calendars: when the SLA clocks run, and how much business time lies between two instants.

Owns `BusinessCalendar`: working spans per weekday (several a day, e.g. a lunch break) in one
time zone, public holidays from the `holidays` package (`DE`, `DE-BY`, `US-CA`), extra closed
dates, or plain calendar time; `add_business_time(start, delta)` and
`business_time_between(a, b)`, both exact across nights, weekends, holidays, breaks and
daylight-saving changes.

Daylight saving: a span is the real time between the moments the wall clock reaches its start
and its end on that day, so 00:00-24:00 lasts 23 hours on the spring-forward day and 25 on
the fall-back day. A boundary that falls into the skipped hour is the moment of the change; one
that falls into the repeated hour is its first occurrence. All results are aware UTC datetimes;
a naive input is taken as UTC. Arithmetic is done in UTC only (Python subtracts two datetimes
that share a ZoneInfo by wall clock, which is wrong across a change).

Cost: one step per day spanned, and whole weeks without a holiday, closed date or offset
change are skipped in one step (the irregular days of each year are listed once and cached).

Must not: read the clock, touch the database or the configuration file (policy.py parses the
`[[sla.calendar]]` tables into this class).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 86_400
_ZERO = timedelta(0)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, order=True)
class Span:
    """Working time within one day, in seconds after local midnight: [start, end), end <= 24:00."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= DAY_SECONDS:
            raise ValueError(f"a span must lie within one day and end after it starts, got {self}")

    @classmethod
    def parse(cls, text: str) -> Span:
        """`09:00-12:30`; `24:00` is allowed as an end."""
        start, sep, end = text.strip().partition("-")
        if not sep:
            raise ValueError(f"{text.strip()!r} is not a span like 09:00-17:00")
        return cls(_seconds(start), _seconds(end))

    @property
    def length(self) -> timedelta:
        return timedelta(seconds=self.end - self.start)

    def __str__(self) -> str:
        return f"{_clock_text(self.start)}-{_clock_text(self.end)}"


def _seconds(text: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"{text.strip()!r} is not a time like 09:00")
    value = int(hours) * 3600 + int(minutes) * 60
    if int(minutes) > 59 or value > DAY_SECONDS:
        raise ValueError(f"{text.strip()!r} is not a time of day (00:00-24:00)")
    return value


def _clock_text(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def parse_spans(text: str) -> tuple[Span, ...]:
    """`09:00-12:00, 13:00-17:00` → sorted spans; raises ValueError when they overlap. Empty: closed."""
    spans = sorted(Span.parse(part) for part in text.split(",") if part.strip())
    for before, after in zip(spans, spans[1:], strict=False):
        if after.start < before.end:
            raise ValueError(f"spans {before} and {after} overlap")
    return tuple(spans)


def holiday_dates(code: str, year: int) -> frozenset[date]:
    """Public holidays of one year for `DE` / `DE-BY` style codes; raises ValueError if unknown."""
    import holidays  # the one module that owns the `holidays` package for SLA work

    country, _, subdiv = code.strip().partition("-")
    try:
        return frozenset(holidays.country_holidays(country.upper(), subdiv=subdiv.upper() or None, years=year))
    except NotImplementedError as exc:  # unknown country or subdivision
        raise ValueError(str(exc) or f"unknown holiday calendar {code!r}") from None


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class BusinessCalendar:
    """When business time runs. `week[0]` is Monday's spans; `calendar_time` makes every instant count."""

    name: str = "default"
    timezone: str = "UTC"
    week: tuple[tuple[Span, ...], ...] = ((Span(9 * 3600, 17 * 3600),),) * 5 + ((), ())
    holidays: str = ""  # `DE`, `DE-BY`, `US-CA`; empty: none
    closed: frozenset[date] = frozenset()
    calendar_time: bool = False
    _cache: dict[object, object] = field(default_factory=dict, init=False, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError(f"a week has 7 days of spans, got {len(self.week)}")
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if not self.calendar_time and not any(self.week):
            raise ValueError("a business calendar needs at least one working span in the week")

    # Public API -------------------------------------------------------------------------
    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def day_length(self) -> timedelta:
        """One business day: the average working time of the working weekdays (24 h in calendar time)."""
        if self.calendar_time:
            return timedelta(days=1)
        days = [sum((s.length for s in spans), _ZERO) for spans in self.week if spans]
        return sum(days, _ZERO) / len(days)

    def add_business_time(self, start: datetime, delta: timedelta) -> datetime:
        """The instant at which `delta` of business time has passed since `start`."""
        start = _utc(start)
        if delta < _ZERO:
            raise ValueError(f"cannot add negative business time {delta}")
        if self.calendar_time or delta == _ZERO:
            return start + delta
        remaining = delta
        day = start.astimezone(self.zone).date()
        cursor = start
        first = True
        while True:
            if not first and remaining > self._week_length:
                day, remaining = self._skip_weeks(day, remaining)
            first = False
            for begin, end in self._intervals(day):
                if end <= cursor:
                    continue
                begin = max(begin, cursor)
                available = end - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
            day += timedelta(days=1)

    def business_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Business time in [a, b); negative when b is before a."""
        a, b = _utc(a), _utc(b)
        if b < a:
            return -self.business_time_between(b, a)
        if self.calendar_time:
            return b - a
        zone = self.zone
        first, last = a.astimezone(zone).date(), b.astimezone(zone).date()
        day, total = first, _ZERO
        while day <= last:
            whole = day < last and (day > first or a <= self._midnight(day))
            if whole:  # every day from here to `last` is wholly inside [a, b): skip regular weeks
                weeks = min((last - day).days // 7, self._regular_run(day, last) // 7)
                if weeks:
                    total += self._week_length * weeks
                    day += timedelta(days=7 * weeks)
                    continue
            for begin, end in self._intervals(day):
                begin, end = max(begin, a), min(end, b)
                if end > begin:
                    total += end - begin
            day += timedelta(days=1)
        return total

    def is_open(self, at: datetime) -> bool:
        """True while business time runs at `at`."""
        if self.calendar_time:
            return True
        at = _utc(at)
        return any(begin <= at < end for begin, end in self._intervals(at.astimezone(self.zone).date()))

    def is_closed_day(self, day: date) -> bool:
        return day in self.closed or day in self._holidays(day.year)

    def describe(self) -> str:
        if self.calendar_time:
            return f"{self.name}: calendar time"
        days = "; ".join(
            f"{DAY_NAMES[i]} {', '.join(str(s) for s in spans)}" for i, spans in enumerate(self.week) if spans
        )
        extra = f", holidays {self.holidays}" if self.holidays else ""
        closed = f", {len(self.closed)} closed dates" if self.closed else ""
        return f"{self.name}: {days} ({self.timezone}{extra}{closed})"

    # Days ----------------------------------------------------------------------------------
    def _intervals(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The UTC intervals of business time on local `day` (cached)."""
        key = ("day", day)
        cached = self._cache.get(key)
        if cached is None:
            spans = () if self.is_closed_day(day) else self.week[day.weekday()]
            cached = tuple((self._instant(day, s.start), self._instant(day, s.end)) for s in spans)
            self._cache[key] = cached
        return cached  # type: ignore[return-value]

    def _midnight(self, day: date) -> datetime:
        return self._instant(day, 0)

    def _instant(self, day: date, seconds: int) -> datetime:
        """The first moment the wall clock reaches `seconds` after midnight on `day`, in UTC."""
        if seconds == DAY_SECONDS:
            day, seconds = day + timedelta(days=1), 0
        naive = datetime.combine(day, time()) + timedelta(seconds=seconds)
        zone = self.zone
        early = naive.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the offset before a change
        late = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if early <= late:  # unambiguous, or the first of a repeated hour
            return early
        # `naive` was skipped: the change itself is the first moment the clock shows >= naive.
        low, high = int(late.timestamp()), int(early.timestamp())  # wall(low) < naive <= wall(high)
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= naive:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)

    # Week skipping -----------------------------------------------------------------------------
    @cached_property
    def _week_length(self) -> timedelta:
        return sum((s.length for spans in self.week for s in spans), _ZERO)

    def _skip_weeks(self, day: date, remaining: timedelta) -> tuple[date, timedelta]:
        """Jump over whole regular weeks from local midnight of `day`, leaving some time to place."""
        week = self._week_length
        if remaining <= week:
            return day, remaining
        wanted = (remaining - _MICROSECOND) // week  # keep remaining > 0: it ends inside a day
        horizon = day + timedelta(days=7 * wanted)
        weeks = min(wanted, self._regular_run(day, horizon) // 7)
        return day + timedelta(days=7 * weeks), remaining - week * weeks

    def _regular_run(self, day: date, limit: date) -> int:
        """How many days from `day` (up to `limit`) are regular: no holiday, closed date or offset change."""
        year = day.year
        while year <= limit.year:
            irregular = self._irregular_days(year)
            index = bisect.bisect_left(irregular, day)
            if index < len(irregular):
                return min((irregular[index] - day).days, (limit - day).days)
            year += 1
        return (limit - day).days

    def _irregular_days(self, year: int) -> list[date]:
        key = ("irregular", year)
        cached = self._cache.get(key)
        if cached is None:
            days = {d for d in self.closed if d.year == year} | set(self._holidays(year))
            days |= set(self._offset_changes(year))
            cached = sorted(days)
            self._cache[key] = cached
        return cached  # type: ignore[return-value]

    def _offset_changes(self, year: int) -> Iterable[date]:
        """Days whose length is not 24 hours (a UTC offset change between their midnights)."""
        zone = self.zone
        day = date(year, 1, 1)
        previous = datetime.combine(day, time()).replace(tzinfo=zone).utcoffset()
        while day.year == year:
            following = datetime.combine(day + timedelta(days=1), time()).replace(tzinfo=zone).utcoffset()
            if following != previous:
                yield day
            previous = following
            day += timedelta(days=1)

    def _holidays(self, year: int) -> frozenset[date]:
        if not self.holidays:
            return frozenset()
        key = ("holidays", year)
        cached = self._cache.get(key)
        if cached is None:
            cached = holiday_dates(self.holidays, year)
            self._cache[key] = cached
        return cached  # type: ignore[return-value]


CALENDAR_TIME = BusinessCalendar(name="calendar time", calendar_time=True)
