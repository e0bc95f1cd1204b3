"""The numbers a help desk is run by, computed from the tickets and their events.

Owns the KPI definitions below and their computation: `compute(...)` is pure (plain rows from
`store/report_queries.py` in, a `Report` out); `build_report(session, ...)` reads the rows
and calls it. Must not: build SQL (store/report_queries.py), print or format for a terminal
(commands/report.py), render HTML (services/report_html.py), or read the clock (`until`
is given).

## Report definitions

A report covers a period [since, until) (`--since 30d` = the 30 days before `--until`,
default now) and groups tickets by their *current* queue, tier, priority or assignee
(`--by`; "(unassigned)" for none). Spam tickets and tickets merged into another are never
counted. Times are measured twice: in calendar time, and in business time on the desk's
default SLA calendar (`[[sla.calendar]]` named `default`; without one, Mon-Fri 09:00-17:00
in `desk.timezone`), e.g. created Friday 16:00, answered Monday 10:00 = 66 h calendar, 2 h
business. Medians are the middle value (the mean of the two middle values for an even
count); p90 is the nearest rank: the value at position ceil(0.9 x n) of the sorted values.

- **C, created**: tickets whose `created_at` is in the period.
- **R, resolved**: tickets whose `resolved_at` (their latest resolution; closing sets it
  too, reopening clears it) is in the period - so a ticket reopened and still open is not in R.
- **Backlog by age**: tickets open now (new, open, pending) and created before `until`, by
  their age at `until`: under 1 day, 1-3 days, 3-7 days, 7-30 days, 30 days and older.
- **First response time** (over C): `first_response_at - created_at`, where
  `first_response_at` is the first agent reply mailed to the customer (`agent-replied`).
  Tickets of C without one are counted as `unanswered`.
- **Resolution time** (over R): `resolved_at - created_at`.
- **First contact resolution** (over R): of the tickets of R that got at least one agent
  reply (`agent-replied` events), the share that got exactly one and were never reopened.
- **Reopen rate** (over R): the share of R with at least one reopen: a `status` event whose
  `from` is resolved or closed and whose `to` is new, open or pending.
- **Repeat tickets** (over C): a ticket is a repeat when the same customer opened another
  counted ticket in the 7 days before it with a similar subject. Subjects are normalised
  (lower case; `Re:`/`Fwd:`/`AW:`/`WG:`/`SV:` prefixes and `[#123]` tags removed; every
  run of non-letters-or-digits becomes one space); similar = equal after normalising, or a
  Jaccard similarity of their word sets >= 0.6 (shared words / all words).
- **SLA compliance per target** (over C, per target kind `first_response`,
  `next_response`, `resolution`): measured = tickets with an `sla-started` event of that
  kind (`data.kind`); breached = measured tickets with an `sla-breached` event of that
  kind before `until`; compliance = 1 - breached / measured. No `sla-started` events: "no data".
- **Escalation rate per tier** (over C): for tier T, handled = tickets that were at T at
  some time (current tier, or `from`/`to` of an `escalated` event, or `old`/`new` of a
  `tier-changed` event); escalated = tickets with an `escalated` event whose `from` is T;
  rate = escalated / handled. The overall rate is the share of C with any `escalated` event.
- **Satisfaction** (over R): a ticket's rating is the `rating` (1-5) of its latest
  `survey-answered` event before `until`. Average rating, share of ratings 4-5, the count
  of each rating, and response rate = rated tickets / R. No ratings: "no data".
- **Agents**: per agent, replies = `agent-replied` events in the period by that agent
  (`data.agent`); open now = open tickets assigned to them now; resolved = tickets of R
  assigned to them; first-reply time = median business first response time of the tickets
  of C whose first `agent-replied` event was theirs.
- **Top tags** and **top sender domains** (over C): the most frequent ticket tags and
  customer address domains, by number of tickets.

Events the report reads and their data: `status` {from, to}, `agent-replied` {agent},
`escalated` {from, to}, `tier-changed` {old, new}, `sla-started` {kind},
`sla-breached` {kind}, `survey-answered` {rating: 1-5, comment?}; all on the ticket.
"""

from __future__ import annotations

import bisect
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from maildesk.domain import CLOSED_STATUSES, OPEN_STATUSES, TIERS
from maildesk.sla.calendar import BusinessCalendar
from maildesk.store import Session
from maildesk.store import report_queries as rq
from maildesk.store.report_queries import EventRow, TicketRow

DIMENSIONS = ("queue", "tier", "agent", "priority")
UNASSIGNED = "(unassigned)"
REPEAT_WINDOW = timedelta(days=7)
JACCARD_MIN = 0.6
SLA_KINDS = ("first_response", "next_response", "resolution")
BACKLOG_BUCKETS: tuple[tuple[str, timedelta], ...] = (
    ("<1d", timedelta(days=1)),
    ("1-3d", timedelta(days=3)),
    ("3-7d", timedelta(days=7)),
    ("7-30d", timedelta(days=30)),
)
BACKLOG_LABELS = (*(label for label, _ in BACKLOG_BUCKETS), ">=30d")
TOP = 10

# -- small definitions ------------------------------------------------------------------------

_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_TAG = re.compile(r"\[#\s*\d+\]")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_subject(subject: str) -> str:
    """`Re: [#12] Printer  broken!` -> `printer broken`."""
    text = _TAG.sub(" ", subject or "")
    text = _PREFIX.sub("", text)
    return _NON_WORD.sub(" ", text.lower()).strip()


def similar_subjects(a: str, b: str) -> bool:
    """Equal after normalising, or word-set Jaccard similarity >= 0.6."""
    na, nb = normalise_subject(a), normalise_subject(b)
    if na == nb:
        return True
    wa, wb = set(na.split()), set(nb.split())
    if not wa or not wb:
        return False
    return len(wa & wb) / len(wa | wb) >= JACCARD_MIN


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def p90(values: Sequence[float]) -> float | None:
    """Nearest rank: the value at position ceil(0.9 n) of the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(0.9 * len(ordered))) - 1])


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# -- business time, fast --------------------------------------------------------------------


class BusinessClock:
    """Business seconds between instants on one calendar, O(log n) per question.

    The calendar's working intervals of every local day in [first, last] are laid out once
    with a running total, so `seconds(a, b)` is two binary searches; it agrees exactly with
    `BusinessCalendar.business_time_between` (tests compare them), which is used for
    instants outside the prepared days."""

    def __init__(self, calendar: BusinessCalendar, first: datetime, last: datetime) -> None:
        self.calendar = calendar
        self._known: dict[tuple[datetime, datetime], float] = {}  # the report asks for most spans 3-4 times
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.before: list[float] = []  # business seconds before each interval
        if calendar.calendar_time:
            return
        zone = calendar.zone
        day = first.astimezone(zone).date() - timedelta(days=1)
        end_day = last.astimezone(zone).date() + timedelta(days=1)
        total = 0.0
        while day <= end_day:
            if not calendar.is_closed_day(day):
                for span in calendar.week[day.weekday()]:
                    begin, end = _instant(calendar, day, span.start), _instant(calendar, day, span.end)
                    if end > begin:
                        self.starts.append(begin)
                        self.ends.append(end)
                        self.before.append(total)
                        total += end - begin
            day += timedelta(days=1)
        self.low = _instant(calendar, first.astimezone(zone).date(), 0)
        self.high = _instant(calendar, end_day, 0)

    def _at(self, t: float) -> float:
        i = bisect.bisect_right(self.starts, t) - 1
        if i < 0:
            return 0.0
        return self.before[i] + min(t, self.ends[i]) - self.starts[i]

    def seconds(self, a: datetime, b: datetime) -> float:
        known = self._known.get((a, b))
        if known is None:
            known = self._known[a, b] = self._seconds(a, b)
        return known

    def _seconds(self, a: datetime, b: datetime) -> float:
        if self.calendar.calendar_time:
            return (b - a).total_seconds()
        ta, tb = a.timestamp(), b.timestamp()
        if not self.starts or ta < self.low or tb > self.high:
            return self.calendar.business_time_between(a, b).total_seconds()
        return self._at(tb) - self._at(ta)


def _instant(calendar: BusinessCalendar, day: date, seconds: int) -> float:
    """The first moment the wall clock reaches `seconds` after midnight of local `day` (a
    time inside a skipped hour is the moment of the change), as a POSIX timestamp; the same
    rule as the calendar's own."""
    if seconds >= 86_400:
        day, seconds = day + timedelta(days=1), seconds - 86_400
    naive = datetime.combine(day, time()) + timedelta(seconds=seconds)
    zone = calendar.zone
    early = naive.replace(tzinfo=zone).astimezone(UTC)
    late = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if early <= late:
        return early.timestamp()
    low, high = int(late.timestamp()), int(early.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return float(high)


# -- the report's shape ------------------------------------------------------------------------


@dataclass
class Durations:
    """Median and p90 in seconds, and how many values they are of."""

    n: int = 0
    median: float | None = None
    p90: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> Durations:
        return cls(len(values), median(values), p90(values))


@dataclass
class Rate:
    count: int = 0
    of: int = 0
    rate: float | None = None

    @classmethod
    def of_counts(cls, count: int, of: int) -> Rate:
        return cls(count, of, ratio(count, of))


@dataclass
class Satisfaction:
    rated: int = 0
    resolved: int = 0
    average: float | None = None
    share_4_5: float | None = None
    response_rate: float | None = None
    distribution: dict[str, int] = field(default_factory=lambda: {str(r): 0 for r in range(1, 6)})


@dataclass
class GroupKpis:
    created: int = 0
    resolved: int = 0
    backlog: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BACKLOG_LABELS, 0))
    unanswered: int = 0
    first_response_business: Durations = field(default_factory=Durations)
    first_response_calendar: Durations = field(default_factory=Durations)
    resolution_business: Durations = field(default_factory=Durations)
    resolution_calendar: Durations = field(default_factory=Durations)
    first_contact_resolution: Rate = field(default_factory=Rate)
    reopened: Rate = field(default_factory=Rate)
    repeat: Rate = field(default_factory=Rate)
    escalated: Rate = field(default_factory=Rate)
    escalation_by_tier: dict[str, Rate] = field(default_factory=dict)
    sla: dict[str, Rate] | None = None  # kind -> breached of measured, rate = compliance; None: no data
    satisfaction: Satisfaction | None = None  # None: no data

    @property
    def backlog_total(self) -> int:
        return sum(self.backlog.values())


@dataclass
class AgentKpis:
    agent: str
    replies: int = 0
    open_now: int = 0
    resolved: int = 0
    first_reply_business: Durations = field(default_factory=Durations)


@dataclass
class DayPoint:
    day: str
    created: int = 0
    resolved: int = 0
    first_response_business_median: float | None = None


@dataclass
class Report:
    since: datetime
    until: datetime
    by: str
    calendar: str
    total: GroupKpis
    groups: dict[str, GroupKpis]
    agents: list[AgentKpis]
    trend: list[DayPoint]
    top_tags: list[tuple[str, int]]
    top_domains: list[tuple[str, int]]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"], data["until"] = self.since.isoformat(), self.until.isoformat()
        for kpis, out in [(self.total, data["total"]), *((g, data["groups"][k]) for k, g in self.groups.items())]:
            out["backlog_total"] = kpis.backlog_total
        data["top_tags"] = [{"tag": t, "tickets": n} for t, n in self.top_tags]
        data["top_domains"] = [{"domain": d, "tickets": n} for d, n in self.top_domains]
        return data


# -- computing ---------------------------------------------------------------------------------


def group_of(ticket: TicketRow, by: str) -> str:
    if by == "agent":
        return ticket.assignee or UNASSIGNED
    return str(getattr(ticket, by)) or "(none)"


def _in(at: datetime | None, since: datetime, until: datetime) -> bool:
    return at is not None and since <= at < until


def _is_reopen(event: EventRow) -> bool:
    return (
        event.type == "status" and event.data.get("from") in CLOSED_STATUSES and event.data.get("to") in OPEN_STATUSES
    )


@dataclass
class _Facts:
    """What the events say about one ticket."""

    replies: list[EventRow] = field(default_factory=list)
    reopened: bool = False
    escalated_from: set[str] = field(default_factory=set)
    tiers: set[str] = field(default_factory=set)
    sla_started: set[str] = field(default_factory=set)
    sla_breached: set[str] = field(default_factory=set)
    rating: tuple[datetime, int] | None = None


def _facts(events: Iterable[EventRow]) -> dict[int, _Facts]:
    out: dict[int, _Facts] = defaultdict(_Facts)
    for e in events:
        f = out[e.ticket_number]
        d = e.data
        if e.type == "agent-replied":
            f.replies.append(e)
        elif e.type == "status":
            f.reopened = f.reopened or _is_reopen(e)
        elif e.type == "escalated":
            f.escalated_from.add(str(d.get("from", "")))
            f.tiers.update(str(d.get(k)) for k in ("from", "to") if d.get(k))
        elif e.type == "tier-changed":
            f.tiers.update(str(d.get(k)) for k in ("old", "new") if d.get(k))
        elif e.type == "sla-started":
            f.sla_started.add(str(d.get("kind", "")))
        elif e.type == "sla-breached":
            f.sla_breached.add(str(d.get("kind", "")))
        elif e.type == "survey-answered":
            rating = _rating(d.get("rating"))
            if rating is not None and (f.rating is None or e.at >= f.rating[0]):
                f.rating = (e.at, rating)
    return out


def _rating(value: Any) -> int | None:
    try:
        rating = int(value)
    except (TypeError, ValueError):
        return None
    return rating if 1 <= rating <= 5 else None


def _repeats(tickets: Sequence[TicketRow], since: datetime) -> set[int]:
    """Numbers of the tickets created at or after `since` that repeat an earlier one (7 days, similar subject)."""
    by_customer: dict[int, list[TicketRow]] = defaultdict(list)
    for t in tickets:
        by_customer[t.customer_id].append(t)
    out: set[int] = set()
    for rows in by_customer.values():
        if len(rows) < 2:
            continue
        rows.sort(key=lambda t: (t.created_at, t.number))
        for i, t in enumerate(rows):
            if t.created_at < since:
                continue
            for earlier in rows[:i]:
                if t.created_at - REPEAT_WINDOW <= earlier.created_at < t.created_at and similar_subjects(
                    earlier.subject, t.subject
                ):
                    out.add(t.number)
                    break
    return out


def _group_kpis(
    created: Sequence[TicketRow],
    resolved: Sequence[TicketRow],
    facts: dict[int, _Facts],
    repeats: set[int],
    clock: BusinessClock,
) -> GroupKpis:
    k = GroupKpis(created=len(created), resolved=len(resolved))
    empty = _Facts()
    frt_b, frt_c = [], []
    for t in created:
        if t.first_response_at is None:
            k.unanswered += 1
            continue
        frt_c.append((t.first_response_at - t.created_at).total_seconds())
        frt_b.append(clock.seconds(t.created_at, t.first_response_at))
    k.first_response_business, k.first_response_calendar = Durations.of(frt_b), Durations.of(frt_c)
    res_b = [clock.seconds(t.created_at, t.resolved_at) for t in resolved if t.resolved_at is not None]
    res_c = [(t.resolved_at - t.created_at).total_seconds() for t in resolved if t.resolved_at is not None]
    k.resolution_business, k.resolution_calendar = Durations.of(res_b), Durations.of(res_c)
    replied = [t for t in resolved if facts.get(t.number, empty).replies]
    fcr = sum(1 for t in replied if len(facts[t.number].replies) == 1 and not facts[t.number].reopened)
    k.first_contact_resolution = Rate.of_counts(fcr, len(replied))
    k.reopened = Rate.of_counts(sum(1 for t in resolved if facts.get(t.number, empty).reopened), len(resolved))
    k.repeat = Rate.of_counts(sum(1 for t in created if t.number in repeats), len(created))
    k.escalated = Rate.of_counts(sum(1 for t in created if facts.get(t.number, empty).escalated_from), len(created))
    for tier in TIERS:
        handled = [t for t in created if tier == t.tier or tier in facts.get(t.number, empty).tiers]
        up = sum(1 for t in handled if tier in facts.get(t.number, empty).escalated_from)
        if handled:
            k.escalation_by_tier[tier] = Rate.of_counts(up, len(handled))
    if any(facts.get(t.number, empty).sla_started for t in created):
        k.sla = {}
        for kind in SLA_KINDS:
            measured = [t for t in created if kind in facts.get(t.number, empty).sla_started]
            breached = sum(1 for t in measured if kind in facts[t.number].sla_breached)
            if measured:
                k.sla[kind] = Rate(breached, len(measured), 1 - breached / len(measured))
    ratings = [f.rating[1] for t in resolved if (f := facts.get(t.number)) is not None and f.rating is not None]
    if ratings:
        s = Satisfaction(rated=len(ratings), resolved=len(resolved))
        s.average = sum(ratings) / len(ratings)
        s.share_4_5 = sum(1 for r in ratings if r >= 4) / len(ratings)
        s.response_rate = ratio(len(ratings), len(resolved))
        for r in ratings:
            s.distribution[str(r)] += 1
        k.satisfaction = s
    return k


def compute(
    *,
    since: datetime,
    until: datetime,
    by: str,
    tickets: Sequence[TicketRow],
    events: Sequence[EventRow],
    backlog: Sequence[tuple[str, str, int]],
    replies_by_agent: dict[str, int],
    open_by_assignee: dict[str, int],
    calendar: BusinessCalendar,
) -> Report:
    """The report from plain rows (see the module docstring for every definition).

    `tickets`: counted tickets created in [since - 7 days, until) or resolved in [since,
    until); `events`: their report events before `until`; `backlog`: (group value, bucket
    label, count) of open tickets ('' group = none); the two agent maps as read by the store."""
    if by not in DIMENSIONS:
        raise ValueError(f"unknown grouping {by!r}; use {', '.join(DIMENSIONS)}")
    created = [t for t in tickets if _in(t.created_at, since, until)]
    resolved = [t for t in tickets if _in(t.resolved_at, since, until) and t.status in CLOSED_STATUSES]
    stamps = [t.created_at for t in (*created, *resolved)] or [since]
    clock = BusinessClock(calendar, min(min(stamps), since), until)
    facts = _facts(events)
    repeats = _repeats(tickets, since)

    total = _group_kpis(created, resolved, facts, repeats, clock)
    created_in: dict[str, list[TicketRow]] = defaultdict(list)
    resolved_in: dict[str, list[TicketRow]] = defaultdict(list)
    for t in created:
        created_in[group_of(t, by)].append(t)
    for t in resolved:
        resolved_in[group_of(t, by)].append(t)
    names = sorted(created_in.keys() | resolved_in.keys() | {_backlog_group(g, by) for g, _, _ in backlog})
    groups = {
        name: _group_kpis(
            created_in.get(name, []),
            resolved_in.get(name, []),
            facts,
            repeats,
            clock,
        )
        for name in names
    }
    for value, bucket, count in backlog:
        label = bucket if bucket in BACKLOG_LABELS else BACKLOG_LABELS[-1]
        groups[_backlog_group(value, by)].backlog[label] += count
        total.backlog[label] += count
    return Report(
        since=since,
        until=until,
        by=by,
        calendar=calendar.describe(),
        total=total,
        groups=groups,
        agents=_agents(created, resolved, facts, replies_by_agent, open_by_assignee, clock),
        trend=_trend(created, resolved, since, until, clock, calendar),
        top_tags=Counter(tag for t in created for tag in dict.fromkeys(t.tags)).most_common(TOP),
        top_domains=Counter(t.customer_email.rpartition("@")[2].lower() for t in created).most_common(TOP),
    )


def _backlog_group(value: str, by: str) -> str:
    if by == "agent":
        return value or UNASSIGNED
    return value or "(none)"


def _agents(
    created: Sequence[TicketRow],
    resolved: Sequence[TicketRow],
    facts: dict[int, _Facts],
    replies: dict[str, int],
    open_now: dict[str, int],
    clock: BusinessClock,
) -> list[AgentKpis]:
    first: dict[str, list[float]] = defaultdict(list)
    for t in created:
        f = facts.get(t.number)
        if f is None or not f.replies or t.first_response_at is None:
            continue
        agent = str(min(f.replies, key=lambda e: e.at).data.get("agent", "")).lower()
        first[agent].append(clock.seconds(t.created_at, t.first_response_at))
    resolved_by = Counter(t.assignee for t in resolved if t.assignee)
    names = {a for a in replies if a} | {a for a in open_now if a} | set(resolved_by) | {a for a in first if a}
    return [
        AgentKpis(
            agent=name,
            replies=replies.get(name, 0),
            open_now=open_now.get(name, 0),
            resolved=resolved_by.get(name, 0),
            first_reply_business=Durations.of(first.get(name, [])),
        )
        for name in sorted(names)
    ]


def _trend(
    created: Sequence[TicketRow],
    resolved: Sequence[TicketRow],
    since: datetime,
    until: datetime,
    clock: BusinessClock,
    calendar: BusinessCalendar,
) -> list[DayPoint]:
    """One point per local day (the calendar's time zone) of the period."""
    zone = calendar.zone
    days: dict[date, DayPoint] = {}
    day, last = since.astimezone(zone).date(), (until - timedelta(microseconds=1)).astimezone(zone).date()
    while day <= last:
        days[day] = DayPoint(day.isoformat())
        day += timedelta(days=1)
    frt: dict[date, list[float]] = defaultdict(list)
    for t in created:
        d = t.created_at.astimezone(zone).date()
        if d in days:
            days[d].created += 1
            if t.first_response_at is not None:
                frt[d].append(clock.seconds(t.created_at, t.first_response_at))
    for t in resolved:
        if t.resolved_at is not None and (rd := t.resolved_at.astimezone(zone).date()) in days:
            days[rd].resolved += 1
    for d, values in frt.items():
        days[d].first_response_business_median = median(values)
    return list(days.values())


def build_report(session: Session, *, since: datetime, until: datetime, by: str, calendar: BusinessCalendar) -> Report:
    """Read the period's rows (set-based, see store/report_queries.py) and compute the report."""
    if by not in DIMENSIONS:
        raise ValueError(f"unknown grouping {by!r}; use {', '.join(DIMENSIONS)}")
    return compute(
        since=since,
        until=until,
        by=by,
        tickets=rq.period_tickets(session, since, until, REPEAT_WINDOW),
        events=rq.period_events(session, since, until),
        backlog=rq.backlog_by_age(session, until, by, BACKLOG_BUCKETS),
        replies_by_agent=rq.replies_by_agent(session, since, until),
        open_by_assignee=rq.open_by_assignee(session),
        calendar=calendar,
    )


def default_calendar(settings: Any) -> BusinessCalendar:
    """The desk's default business calendar: `[[sla.calendar]]` named default when the
    settings carry SLA settings, else Mon-Fri 09:00-17:00 in `desk.timezone` (policy.py's default)."""
    from maildesk.sla.policy import parse_sla

    sla = getattr(settings, "sla", None)
    if sla is not None and hasattr(sla, "calendar"):
        try:
            return sla.calendar("default")  # type: ignore[no-any-return]
        except KeyError:
            pass
    return parse_sla({}, settings.desk.timezone).calendar("default")


__all__ = [
    "DIMENSIONS",
    "BACKLOG_LABELS",
    "SLA_KINDS",
    "BusinessClock",
    "Durations",
    "Rate",
    "Satisfaction",
    "GroupKpis",
    "AgentKpis",
    "DayPoint",
    "Report",
    "normalise_subject",
    "similar_subjects",
    "median",
    "p90",
    "compute",
    "build_report",
    "default_calendar",
]
