"""SLA policies and calendars from configuration, and which policy a ticket gets.

Owns the shape of the `[sla]` table (`[[sla.calendar]]`, `[[sla.policy]]`): `parse_sla(table)`
turns it into frozen `SlaSettings` or raises `ConfigError` naming the key, e.g.
`sla.policy[1].first_response: cannot read '8x'`. Targets are durations such as `8h`, `30m`,
`5d` or `1d 4h`; they count business time on the policy's calendar unless the policy says
`time = "calendar"` or the target ends in `calendar` (`"4h calendar"`). A business day is the
calendar's `day_length` (the average working day: 8 h for 09:00-17:00). `select_policy` picks
the policy a rule named (`sla: NAME`), otherwise the first whose conditions all match.
`DEFAULT_TOML` is the commented example `maildesk init` writes.

Must not: read files, the environment or the clock; touch the database. config.py calls
`parse_sla` with the `[sla]` table it read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from maildesk.domain import PRIORITIES, TIERS
from maildesk.errors import ConfigError
from maildesk.sla.calendar import CALENDAR_TIME, DAY_NAMES, BusinessCalendar, Span, holiday_dates, parse_spans

KINDS = ("first_response", "next_response", "resolution")
BREACH_ACTIONS = ("escalate", "raise_priority", "notify_lead", "notify_assignee")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(min|m|h|d)\s*", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "min": 60, "h": 3600}


@dataclass(frozen=True)
class Target:
    """A duration such as `8h` or `5d`: hours and minutes exact, days as the calendar's working day."""

    text: str
    seconds: int = 0
    days: float = 0.0
    calendar_time: bool | None = None  # None: as the policy says

    @classmethod
    def parse(cls, text: str) -> Target:
        raw = text.strip()
        body, calendar_time = raw, None
        for word, flag in (("calendar", True), ("business", False)):
            if body.lower().endswith(word):
                body, calendar_time = body[: -len(word)].strip(), flag
        seconds, days, at = 0.0, 0.0, 0
        while at < len(body):
            match = _PART.match(body, at)
            if match is None:
                raise ValueError(f'cannot read {text!r} (write e.g. "8h", "30m", "5d", "1d 4h" or "4h calendar")')
            number, unit = float(match.group(1)), match.group(2).lower()
            if unit == "d":
                days += number
            else:
                seconds += number * _UNIT_SECONDS[unit]
            at = match.end()
        if not body or (seconds == 0 and days == 0):
            raise ValueError(f'cannot read {text!r}: a target must be longer than zero (e.g. "8h")')
        return cls(raw, round(seconds), days, calendar_time)

    def duration(self, calendar: BusinessCalendar) -> timedelta:
        """How much time of `calendar` (business or calendar time) this target is."""
        return timedelta(seconds=self.seconds) + calendar.day_length * self.days

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SlaPolicy:
    name: str
    calendar: str = "default"
    calendar_time: bool = False  # `time = "calendar"`: every target counts calendar time
    first_response: Target | None = None
    next_response: Target | None = None
    resolution: Target | None = None
    warn_at: float = 0.8  # share of a target at which the warning goes out; 0: no warning
    on_breach: tuple[str, ...] = ("notify_lead",)
    priorities: tuple[str, ...] = ()  # selection; empty: any
    queues: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    vip: bool | None = None  # True: VIP customers only; False: others only; None: anyone
    followup_after: Target | None = None  # a pending ticket gets a reminder after this
    resolve_after: Target | None = None  # … and is resolved after this (from when it went pending)

    def target(self, kind: str) -> Target | None:
        if kind not in KINDS:
            raise ValueError(f"unknown clock kind {kind!r}")
        return getattr(self, kind)  # type: ignore[no-any-return]

    def matches(self, priority: str, queue: str, tier: str, vip: bool) -> bool:
        return (
            (not self.priorities or priority in self.priorities)
            and (not self.queues or queue in self.queues)
            and (not self.tiers or tier in self.tiers)
            and (self.vip is None or self.vip == vip)
        )

    def clock_calendar(self, target: Target | None, calendar: BusinessCalendar) -> BusinessCalendar:
        """The calendar a target counts on: `calendar`, or calendar time when the policy or target says so."""
        calendar_time = self.calendar_time if target is None or target.calendar_time is None else target.calendar_time
        return CALENDAR_TIME if calendar_time else calendar

    def target_text(self, kind: str) -> str:
        """A clock's target as people read it: "8h business", "1h calendar"; "" when none.
        Kinds are the response and resolution targets and the timers `followup`, `autoresolve`."""
        target = {"followup": self.followup_after, "autoresolve": self.resolve_after}.get(kind)
        if kind in KINDS:
            target = self.target(kind)
        if target is None:
            return ""
        calendar_time = self.calendar_time if target.calendar_time is None else target.calendar_time
        body = target.text
        for word in ("calendar", "business"):
            if body.lower().endswith(word):
                body = body[: -len(word)].strip()
        return f"{body} {'calendar' if calendar_time else 'business'}"

    def describe(self) -> str:
        parts = [f"{kind.replace('_', ' ')} {t}" for kind in KINDS if (t := self.target(kind)) is not None]
        when = [f"{name} {', '.join(v)}" for name, v in (("priority", self.priorities), ("queue", self.queues)) if v]
        when += [f"tier {', '.join(self.tiers)}"] if self.tiers else []
        when += [("VIP" if self.vip else "not VIP")] if self.vip is not None else []
        clock = "calendar time" if self.calendar_time else f"calendar {self.calendar}"
        return f"{self.name}: {'; '.join(parts) or 'no targets'} ({clock}; when {' and '.join(when) or 'always'})"


@dataclass(frozen=True)
class SlaSettings:
    enabled: bool = True
    calendars: tuple[BusinessCalendar, ...] = ()
    policies: tuple[SlaPolicy, ...] = ()

    def policy(self, name: str) -> SlaPolicy | None:
        return next((p for p in self.policies if p.name == name), None)

    def calendar(self, name: str) -> BusinessCalendar:
        for calendar in self.calendars:
            if calendar.name == name:
                return calendar
        raise KeyError(f"unknown SLA calendar {name!r}")

    def calendar_for(self, policy: SlaPolicy) -> BusinessCalendar:
        return self.calendar(policy.calendar)


def select_policy(
    policies: tuple[SlaPolicy, ...] | list[SlaPolicy],
    priority: str,
    queue: str,
    tier: str,
    vip: bool,
    rule_choice: str | None = None,
) -> SlaPolicy | None:
    """The policy a rule chose (`sla: NAME`; `none` means no SLA), else the first that matches.

    A rule naming a policy that no longer exists (the rules file and the configuration are
    reloaded separately) falls back to matching rather than leaving the ticket without a
    policy; config loading is where unknown names are reported."""
    if rule_choice:
        if rule_choice.lower() == "none":
            return None
        for policy in policies:
            if policy.name == rule_choice:
                return policy
    for policy in policies:
        if policy.matches(priority, queue, tier, vip):
            return policy
    return None


# Parsing -----------------------------------------------------------------------------------

_SLA_KEYS = ("enabled", "calendar", "policy")
_CALENDAR_KEYS = ("name", "timezone", "days", "hours", "holidays", "closed", "time", *DAY_NAMES)
_POLICY_KEYS = (
    "name",
    "calendar",
    "time",
    *KINDS,
    "warn_at",
    "on_breach",
    "priority",
    "queue",
    "tier",
    "vip",
    "followup_after",
    "resolve_after",
)


def parse_sla(table: dict[str, Any], default_timezone: str = "UTC") -> SlaSettings:
    """The `[sla]` table → `SlaSettings`. Without calendars there is one, `default`: Mon-Fri 09:00-17:00."""
    if not isinstance(table, dict):
        raise ConfigError(f"[sla] must be a table, got {type(table).__name__}")
    _known("sla", table, _SLA_KEYS)
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"sla.enabled: must be true or false, got {enabled!r}")
    calendars: list[BusinessCalendar] = []
    for i, raw in enumerate(_array(table, "calendar")):
        calendar = _parse_calendar(f"sla.calendar[{i}]", raw, default_timezone)
        if any(c.name == calendar.name for c in calendars):
            raise ConfigError(f"sla.calendar[{i}].name: duplicate calendar name {calendar.name!r}")
        calendars.append(calendar)
    if not any(c.name == "default" for c in calendars):
        calendars.append(BusinessCalendar(name="default", timezone=default_timezone))
    names = [c.name for c in calendars]
    policies: list[SlaPolicy] = []
    for i, raw in enumerate(_array(table, "policy")):
        policy = _parse_policy(f"sla.policy[{i}]", raw, names)
        if any(p.name == policy.name for p in policies):
            raise ConfigError(f"sla.policy[{i}].name: duplicate policy name {policy.name!r}")
        policies.append(policy)
    return SlaSettings(enabled=enabled, calendars=tuple(calendars), policies=tuple(policies))


def _array(table: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"sla.{key}: must be an array of tables ([[sla.{key}]]), got {value!r}")
    return value


def _known(where: str, data: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a table, got {data!r}")
    for key in data:
        if key not in keys:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(keys))})")


def _string(where: str, data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: must be a string, got {value!r}")
    return value.strip()


def _strings(where: str, data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key}: must be a string or a list of strings, got {value!r}")
    return tuple(v.strip() for v in value)


def _name(where: str, data: dict[str, Any], default: str | None = None) -> str:
    name = _string(where, data, "name", default or "")
    if not _NAME.match(name):
        raise ConfigError(f"{where}.name: required; letters, digits, '_', '.', '-' (got {name!r})")
    return name


def _time_mode(where: str, data: dict[str, Any]) -> bool:
    mode = _string(where, data, "time", "business").lower()
    if mode not in ("business", "calendar"):
        raise ConfigError(f'{where}.time: must be "business" or "calendar", got {mode!r}')
    return mode == "calendar"


def _parse_calendar(where: str, data: dict[str, Any], default_timezone: str) -> BusinessCalendar:
    _known(where, data, _CALENDAR_KEYS)
    name = _name(where, data)
    timezone = _string(where, data, "timezone", default_timezone)
    try:
        ZoneInfo(timezone)
    except Exception as exc:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for odd keys
        raise ConfigError(f"{where}.timezone: unknown time zone {timezone!r}") from exc
    calendar_time = _time_mode(where, data)
    days = _weekdays(where, data)
    try:
        hours = parse_spans(_string(where, data, "hours", "09:00-17:00"))
    except ValueError as exc:
        raise ConfigError(f"{where}.hours: {exc}") from None
    week: list[tuple[Span, ...]] = [hours if i in days else () for i in range(7)]
    for i, day in enumerate(DAY_NAMES):
        if day in data:
            try:
                week[i] = parse_spans(_string(where, data, day))
            except ValueError as exc:
                raise ConfigError(f"{where}.{day}: {exc}") from None
    if not calendar_time and not any(week):
        raise ConfigError(f'{where}: no working hours on any day (set days and hours, or time = "calendar")')
    code = _string(where, data, "holidays")
    if code:
        try:
            holiday_dates(code, 2026)
        except ValueError as exc:
            raise ConfigError(f"{where}.holidays: unknown holiday calendar {code!r} ({exc})") from None
    closed: set[date] = set()
    values = data.get("closed", [])
    if not isinstance(values, list):
        raise ConfigError(f'{where}.closed: must be a list of dates like ["2026-12-24"], got {values!r}')
    for value in values:
        try:
            closed.add(value if isinstance(value, date) else date.fromisoformat(str(value)))
        except ValueError:
            raise ConfigError(f"{where}.closed: {value!r} is not a date like 2026-12-24") from None
    return BusinessCalendar(
        name=name,
        timezone=timezone,
        week=tuple(week),
        holidays=code.upper(),
        closed=frozenset(closed),
        calendar_time=calendar_time,
    )


def _weekdays(where: str, data: dict[str, Any]) -> set[int]:
    """`days = "mon-fri"`, `"mon,wed,fri"` or a list of day names."""
    value = data.get("days", "mon-fri")
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple) or not all(isinstance(p, str) for p in parts):
        raise ConfigError(f'{where}.days: must be day names like "mon-fri", got {value!r}')
    days: set[int] = set()
    for part in (p.strip().lower() for p in parts if p.strip()):
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ConfigError(f"{where}.days: unknown day {part!r} (use {', '.join(DAY_NAMES)}, or a range mon-fri)")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return days


def _target(where: str, data: dict[str, Any], key: str) -> Target | None:
    if key not in data or data[key] in ("", None):
        return None
    value = data[key]
    if not isinstance(value, str):
        raise ConfigError(f'{where}.{key}: must be a duration string like "8h", got {value!r}')
    try:
        return Target.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}: {exc}") from None


def _parse_policy(where: str, data: dict[str, Any], calendars: list[str]) -> SlaPolicy:
    _known(where, data, _POLICY_KEYS)
    name = _name(where, data)
    if name.lower() == "none":
        raise ConfigError(f"{where}.name: 'none' is reserved (a rule's `sla: none` removes the SLA)")
    calendar = _string(where, data, "calendar", "default")
    if calendar not in calendars:
        raise ConfigError(
            f"{where}.calendar: unknown calendar {calendar!r} "
            f"(the [[sla.calendar]] tables name: {', '.join(calendars)})"
        )
    targets = {key: _target(where, data, key) for key in (*KINDS, "followup_after", "resolve_after")}
    warn_at = data.get("warn_at", 0.8)
    if isinstance(warn_at, bool) or not isinstance(warn_at, int | float) or not 0 <= warn_at < 1:
        raise ConfigError(f"{where}.warn_at: must be a share between 0 and 1 (e.g. 0.8), got {warn_at!r}")
    on_breach = _strings(where, data, "on_breach") if "on_breach" in data else ("notify_lead",)
    for action in on_breach:
        if action not in BREACH_ACTIONS:
            raise ConfigError(f"{where}.on_breach: unknown action {action!r} (use {', '.join(BREACH_ACTIONS)})")
    priorities = tuple(p.lower() for p in _strings(where, data, "priority"))
    for priority in priorities:
        if priority not in PRIORITIES:
            raise ConfigError(f"{where}.priority: unknown priority {priority!r} (use {', '.join(PRIORITIES)})")
    tiers = tuple(t.upper() for t in _strings(where, data, "tier"))
    for tier in tiers:
        if tier not in TIERS:
            raise ConfigError(f"{where}.tier: unknown tier {tier!r} (use {', '.join(TIERS)})")
    vip = data.get("vip")
    if vip is not None and not isinstance(vip, bool):
        raise ConfigError(f"{where}.vip: must be true or false, got {vip!r}")
    followup, resolve = targets["followup_after"], targets["resolve_after"]
    if followup is not None and resolve is not None and _nominal(resolve) <= _nominal(followup):
        raise ConfigError(f"{where}.resolve_after: must be longer than followup_after ({resolve} <= {followup})")
    return SlaPolicy(
        name=name,
        calendar=calendar,
        calendar_time=_time_mode(where, data),
        first_response=targets["first_response"],
        next_response=targets["next_response"],
        resolution=targets["resolution"],
        warn_at=float(warn_at),
        on_breach=tuple(dict.fromkeys(on_breach)),
        priorities=priorities,
        queues=_strings(where, data, "queue"),
        tiers=tiers,
        vip=vip,
        followup_after=followup,
        resolve_after=resolve,
    )


def _nominal(target: Target) -> float:
    """For comparing two targets of one policy: a day as 8 hours (both sides use the same calendar)."""
    return target.seconds + target.days * 8 * 3600


DEFAULT_TOML = """\
# Service levels. Targets count business time on the policy's calendar ("8h", "30m", "5d",
# "1d 4h"; a business day is the calendar's average working day), or calendar time with
# time = "calendar" on the policy or "4h calendar" on one target. The first policy whose
# priority / queue / tier / vip conditions all match applies; a rule's `sla: NAME` overrides.

[[sla.calendar]]
name = "office"
timezone = "Europe/Berlin"        # default: desk.timezone
days = "mon-fri"
hours = "08:30-12:30, 13:30-17:30"  # several spans a day: a lunch break (8 h a day)
# fri = "09:00-15:00"             # one weekday differently; "" closes it
holidays = "DE-BY"                # country or country-region of the `holidays` package
closed = ["2026-12-24", "2026-12-31"]

[[sla.policy]]
name = "vip"
calendar = "office"
vip = true
first_response = "2h"
next_response = "4h"
resolution = "2d"
warn_at = 0.8
on_breach = ["escalate", "raise_priority", "notify_lead"]

[[sla.policy]]
name = "urgent"
calendar = "office"
priority = ["urgent"]
time = "calendar"                 # urgent tickets run around the clock
first_response = "1h"
next_response = "2h"
resolution = "1d"
on_breach = ["escalate", "notify_lead"]

[[sla.policy]]
name = "standard"                 # no conditions: every other ticket
calendar = "office"
first_response = "8h"
next_response = "8h"
resolution = "5d"
warn_at = 0.8
on_breach = ["notify_lead"]
followup_after = "3d"             # a pending ticket: reminder to the customer after 3 business days
resolve_after = "7d"              # … and resolved after 7
"""
