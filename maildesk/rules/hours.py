"""Business hours for the `business_hours` condition: weekdays, opening times, holidays.

Owns `BusinessHours.is_open(now)`: converts `now` to the desk's time zone, then checks the
weekday, public holidays (the `holidays` package, by country code such as `DE` or `DE-BY`),
extra closed dates and the opening window [start, end). A naive `now` is taken as UTC.

Must not: read the clock (callers pass `now`) or compute SLA deadlines (that is `sla/`).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def holiday_calendar(code: str) -> Container[date]:
    """The public-holiday calendar for `DE` or `DE-BY` style codes; raises ValueError if unknown."""
    import holidays  # imported here: only rules files that name holidays pay for it

    country, _, subdiv = code.partition("-")
    try:
        return holidays.country_holidays(country.upper(), subdiv=subdiv.upper() or None)
    except NotImplementedError as exc:  # unknown country or subdivision
        raise ValueError(str(exc) or f"unknown holiday calendar {code!r}") from None


@dataclass(frozen=True)
class BusinessHours:
    timezone: str
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time
    holidays: str = ""
    closed: frozenset[date] = frozenset()
    _calendar: Container[date] | None = field(default=None, compare=False, repr=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, now: datetime) -> bool:
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        local = now.astimezone(self.zone)
        if local.weekday() not in self.days:
            return False
        today = local.date()
        if today in self.closed or (self._calendar is not None and today in self._calendar):
            return False
        return self.start <= local.time().replace(tzinfo=None) < self.end

    def describe(self) -> str:
        days = ",".join(DAY_NAMES[d] for d in sorted(self.days))
        extra = f", holidays {self.holidays}" if self.holidays else ""
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.timezone}{extra}"
