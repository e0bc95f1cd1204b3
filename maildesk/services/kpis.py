"""The numbers a help desk is run by, computed from the tickets and their events.

Owns the KPI definitions below and their computation: `compute(...)` is pure (plain rows from
`store/report_queries.py` in, a `Report` out); `build_report(session, ...)` reads the rows
and calls it. Must not: build SQL (store/report_queries.py), print or format for a terminal
(commands/report.py), render HTML (maildesk/report/), or read the clock (`until`
is given).

How it stays fast on a million tickets (bench/report_bench.py): instants arrive as integer
POSIX microseconds computed by the database, each ticket's events arrive folded into one
`TicketFacts`, business time comes from a `BusinessClock` prepared once for the period
(exact integer arithmetic, batch form), every ticket's durations and KPI flags are worked out
once and then only counted per group, and the cycle collector is paused while a report is
built. tests/services/test_kpis_equivalence.py holds it to the same JSON as a plain reading
of the definitions below.

## Report definitions

A report covers a period [since, until) (`--since 30d` = the 30 days before `--until`,
default now) and groups tickets by their *current* queue, tier, priority or assignee
(`--by`; "(unassigned)" for none). Spam tickets and tickets merged into another are never
counted. What a ticket's events say is read from its events before `until`. Times are
measured twice, to the microsecond: in calendar time, and in business time on the desk's
default SLA calendar (`[[sla.calendar]]` named `default`; without one, Mon-Fri 09:00-17:00
in `desk.timezone`), e.g. created Friday 16:00, answered Monday 10:00 = 66 h calendar, 2 h
business. Medians are the middle value (the mean of the two middle values for an even
count); p90 is the nearest rank: the value at position ceil(0.9 x n) of the sorted values.
"First"/"latest" event = earliest/latest `at`; events at the same instant count in the
order they were stored.

- **C, created**: tickets whose `created_at` is in the period.
- **R, resolved**: tickets resolved or closed now whose `resolved_at` (their latest
  resolution; closing sets it too, reopening clears it) is in the period - so a ticket
  reopened and still open is not in R.
- **Backlog by age**: tickets open now (new, open, pending) and created before `until`, by
  their age at `until`: under 1 day, 1-3 days, 3-7 days, 7-30 days, 30 days and older (an
  age of exactly 1 day is in 1-3 days, and so on).
- **First response time** (over C): `first_response_at - created_at`, where
  `first_response_at` is the first agent reply mailed to the customer (`agent-replied`).
  Tickets of C without one are counted as `unanswered`.
- **Resolution time** (over R): `resolved_at - created_at`.
- **First contact resolution** (over R): of the tickets of R that got at least one agent
  reply (`agent-replied` events), the share that got exactly one and were never reopened.
- **Reopen rate** (over R): the share of R with at least one reopen: a `status` event whose
  `from` is resolved or closed and whose `to` is new, open or pending.
- **Repeat tickets** (over C): a ticket is a repeat when the same customer opened another
  counted ticket in the 7 days before it (at or after `created_at - 7 days`, strictly
  before `created_at`) with a similar subject. Subjects are normalised (lower case;
  `Re:`/`Fwd:`/`AW:`/`WG:`/`SV:` prefixes and `[#123]` tags removed; every run of
  non-letters-or-digits becomes one space); similar = equal after normalising, or a Jaccard
  similarity of their word sets >= 0.6 (shared words / all words).
- **SLA compliance per target** (over C, per target kind `first_response`,
  `next_response`, `resolution`): measured = tickets with an `sla-started` event of that
  kind (`data.kind`); breached = measured tickets with an `sla-breached` event of that
  kind; compliance = 1 - breached / measured. No `sla-started` event (of any kind) on C:
  "no data".
- **Escalation rate per tier** (over C): for tier T, handled = tickets that were at T at
  some time (current tier, or `from`/`to` of an `escalated` event, or `old`/`new` of a
  `tier-changed` event); escalated = tickets with an `escalated` event whose `from` is T;
  rate = escalated / handled. The overall rate is the share of C with any `escalated` event.
- **Satisfaction** (over R): a ticket's rating is the `rating` of its latest
  `survey-answered` event with a rating of 1-5 (read as a whole number: `"4"` and `4.5`
  are 4; answers with anything else are ignored). Average rating, share of ratings 4-5,
  the count of each rating, and response rate = rated tickets / R. No ratings: "no data".
- **Agents**: per agent, replies = `agent-replied` events in the period by that agent
  (`data.agent`), on any ticket (spam and merged ones too: the work was done); open now =
  counted open tickets assigned to them now; resolved = tickets of R assigned to them;
  first-reply time = median and p90 business first response time of the tickets of C whose
  first `agent-replied` event was theirs (`data.agent` in lower case).
- **Trend** (per local day of the calendar's time zone): tickets of C created that day,
  tickets of R resolved that day, and the median business first response time of the
  answered tickets of C created that day.
- **Top tags** and **top sender domains** (over C): the 10 most frequent ticket tags (a tag
  counted once per ticket) and customer address domains (lower case), by number of
  tickets; equal counts in name order.

Events the report reads and their data: `status` {from, to}, `agent-replied` {agent},
`escalated` {from, to}, `tier-changed` {old, new}, `sla-started` {kind},
`sla-breached` {kind}, `survey-answered` {rating: 1-5, comment?}; all on the ticket.
"""

from __future__ import annotations

import bisect
import gc
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from maildesk.domain import CLOSED_STATUSES, TIERS
from maildesk.sla.calendar import BusinessCalendar
from maildesk.store import Session
from maildesk.store import report_queries as rq
from maildesk.store.report_queries import TicketFacts, TicketRow

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
_US = 1_000_000  # instants are POSIX microseconds (integers) in the computation
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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
    with a running total, in whole microseconds, so `seconds(a, b)` is two binary searches
    and one exact integer difference; it equals `BusinessCalendar.business_time_between`
    to the last bit (tests compare them, to the microsecond), which is used for instants
    outside the prepared days."""

    def __init__(self, calendar: BusinessCalendar, first: datetime, last: datetime) -> None:
        self.calendar = calendar
        self.starts: list[int] = []  # POSIX microseconds
        self.ends: list[int] = []
        self.before: list[int] = []  # business microseconds before each interval
        self.low = self.high = 0
        if calendar.calendar_time:
            return
        zone = calendar.zone
        day = first.astimezone(zone).date() - timedelta(days=1)
        end_day = last.astimezone(zone).date() + timedelta(days=1)
        total = 0
        while day <= end_day:
            if not calendar.is_closed_day(day):
                for span in calendar.week[day.weekday()]:
                    begin, end = _instant_us(calendar, day, span.start), _instant_us(calendar, day, span.end)
                    if end > begin:
                        self.starts.append(begin)
                        self.ends.append(end)
                        self.before.append(total)
                        total += end - begin
            day += timedelta(days=1)
        self.low = _instant_us(calendar, first.astimezone(zone).date(), 0)
        self.high = _instant_us(calendar, end_day, 0)

    def _at(self, t: int) -> int:
        """Business microseconds from the first prepared interval to `t`."""
        i = bisect.bisect_right(self.starts, t) - 1
        if i < 0:
            return 0
        end = self.ends[i]
        return self.before[i] + (t if t < end else end) - self.starts[i]

    def seconds(self, a: datetime, b: datetime) -> float:
        return self.span_us(_us(a), _us(b))

    def span_us(self, a: int, b: int) -> float:
        """Business seconds between two instants given as POSIX microseconds (the store's form)."""
        if self.calendar.calendar_time:
            return (b - a) / _US
        if not self.starts or a < self.low or b > self.high:
            first, second = _EPOCH + timedelta(microseconds=a), _EPOCH + timedelta(microseconds=b)
            return self.calendar.business_time_between(first, second).total_seconds()
        return (self._at(b) - self._at(a)) / _US

    def spans_us(self, pairs: Iterable[tuple[int, int]]) -> list[float]:
        """`span_us` of many (a, b) pairs at once: the same values, with the binary searches
        and look-ups inlined (the report asks this for every ticket of the period)."""
        if self.calendar.calendar_time or not self.starts:
            return [self.span_us(a, b) for a, b in pairs]
        starts, ends, before, low, high = self.starts, self.ends, self.before, self.low, self.high
        find = bisect.bisect_right
        out: list[float] = []
        append = out.append
        for a, b in pairs:
            if a < low or b > high:
                append(self.span_us(a, b))
                continue
            i = find(starts, b) - 1
            if i < 0:
                at_b = 0
            else:
                end = ends[i]
                at_b = before[i] + (b if b < end else end) - starts[i]
            i = find(starts, a) - 1
            if i < 0:
                at_a = 0
            else:
                end = ends[i]
                at_a = before[i] + (a if a < end else end) - starts[i]
            append((at_b - at_a) / _US)
        return out


def _instant_us(calendar: BusinessCalendar, day: date, seconds: int) -> int:
    return round(_instant(calendar, day, seconds) * _US)


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
        """`median` and `p90` of `values`, sorting them once."""
        if not values:
            return cls()
        ordered = sorted(values)
        n = len(ordered)
        middle = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2  # as statistics.median
        return cls(n, float(middle), float(ordered[max(1, math.ceil(0.9 * n)) - 1]))


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


def _us(at: datetime) -> int:
    """An aware instant as POSIX microseconds (the store's form)."""
    return (at - _EPOCH) // timedelta(microseconds=1)


_NO_FACTS = TicketFacts()


def group_of(ticket: TicketRow, by: str) -> str:
    if by == "agent":
        return ticket.assignee or UNASSIGNED
    return str(getattr(ticket, by)) or "(none)"


def _rating(value: Any) -> int | None:
    try:
        rating = int(value)
    except (TypeError, ValueError):
        return None
    return rating if 1 <= rating <= 5 else None


def _latest_rating(values: Sequence[Any]) -> int | None:
    """The rating of the latest answer with a valid one (values are oldest first)."""
    for value in reversed(values):
        rating = _rating(value)
        if rating is not None:
            return rating
    return None


def _repeats(tickets: Sequence[TicketRow], since: int) -> set[int]:
    """Numbers of the tickets created at or after `since` that repeat an earlier one (7 days, similar subject)."""
    by_customer: dict[int, list[TicketRow]] = defaultdict(list)
    for t in tickets:
        by_customer[t.customer_id].append(t)
    window = REPEAT_WINDOW // timedelta(microseconds=1)
    out: set[int] = set()
    for rows in by_customer.values():
        if len(rows) < 2:
            continue
        rows.sort(key=lambda t: (t.created, t.number))
        for i, t in enumerate(rows):
            if t.created < since:
                continue
            for earlier in rows[:i]:
                if t.created - window <= earlier.created < t.created and similar_subjects(earlier.subject, t.subject):
                    out.add(t.number)
                    break
    return out


@dataclass(slots=True)
class _Created:
    """What the report needs of one ticket created in the period, worked out once."""

    group: str
    frt_business: float | None
    frt_calendar: float | None
    key: tuple[int, ...]  # (escalated, tiers handled, tiers escalated from, sla any, started, breached, repeat)


@dataclass(slots=True)
class _Resolved:
    """What the report needs of one ticket resolved in the period, worked out once."""

    group: str
    res_business: float
    res_calendar: float
    key: tuple[int, ...]  # (replied, first contact resolution, reopened, rating or 0)


def _bits(values: Iterable[str], names: Sequence[str]) -> int:
    return sum(1 << i for i, name in enumerate(names) if name in values)


def _created_facts(
    created: Sequence[TicketRow],
    by: str,
    facts: Mapping[int, TicketFacts],
    repeats: set[int],
    clock: BusinessClock,
) -> list[_Created]:
    answered = [(t.created, t.first_response) for t in created if t.first_response is not None]
    business = iter(clock.spans_us(answered))  # type: ignore[arg-type]
    tier_bits: dict[frozenset[str], int] = {}
    kind_bits: dict[frozenset[str], int] = {}

    def tiers(values: frozenset[str]) -> int:
        bits = tier_bits.get(values)
        if bits is None:
            bits = tier_bits[values] = _bits(values, TIERS)
        return bits

    def kinds(values: frozenset[str]) -> int:
        bits = kind_bits.get(values)
        if bits is None:
            bits = kind_bits[values] = _bits(values, SLA_KINDS)
        return bits

    own_tier = {tier: 1 << i for i, tier in enumerate(TIERS)}
    out = []
    for t in created:
        f = facts.get(t.number, _NO_FACTS)
        key = (
            int(f.escalated),
            tiers(f.tiers) | own_tier.get(t.tier, 0),
            tiers(f.escalated_from),
            int(f.sla_any),
            kinds(f.sla_started),
            kinds(f.sla_breached),
            int(t.number in repeats),
        )
        if t.first_response is None:
            out.append(_Created(group_of(t, by), None, None, key))
        else:
            out.append(_Created(group_of(t, by), next(business), (t.first_response - t.created) / _US, key))
    return out


def _resolved_facts(
    resolved: Sequence[TicketRow],
    by: str,
    facts: Mapping[int, TicketFacts],
    ratings: Mapping[int, int],
    clock: BusinessClock,
) -> list[_Resolved]:
    business = clock.spans_us([(t.created, t.resolved) for t in resolved])  # type: ignore[misc]
    out = []
    for t, b in zip(resolved, business, strict=True):
        f = facts.get(t.number, _NO_FACTS)
        key = (int(f.replies > 0), int(f.replies == 1 and not f.reopened), int(f.reopened), ratings.get(t.number, 0))
        out.append(_Resolved(group_of(t, by), b, (t.resolved - t.created) / _US, key))  # type: ignore[operator]
    return out


def _group_kpis(created: Sequence[_Created], resolved: Sequence[_Resolved]) -> GroupKpis:
    k = GroupKpis(created=len(created), resolved=len(resolved))
    frt_b = [c.frt_business for c in created if c.frt_business is not None]
    frt_c = [c.frt_calendar for c in created if c.frt_calendar is not None]
    k.unanswered = len(created) - len(frt_c)
    k.first_response_business, k.first_response_calendar = Durations.of(frt_b), Durations.of(frt_c)
    k.resolution_business = Durations.of([r.res_business for r in resolved])
    k.resolution_calendar = Durations.of([r.res_calendar for r in resolved])
    ends = Counter(r.key for r in resolved)
    replied = sum(n for key, n in ends.items() if key[0])
    k.first_contact_resolution = Rate.of_counts(sum(n for key, n in ends.items() if key[1]), replied)
    k.reopened = Rate.of_counts(sum(n for key, n in ends.items() if key[2]), len(resolved))
    starts = Counter(c.key for c in created)
    k.repeat = Rate.of_counts(sum(n for key, n in starts.items() if key[6]), len(created))
    k.escalated = Rate.of_counts(sum(n for key, n in starts.items() if key[0]), len(created))
    for i, tier in enumerate(TIERS):
        bit = 1 << i
        handled = sum(n for key, n in starts.items() if key[1] & bit)
        up = sum(n for key, n in starts.items() if key[1] & bit and key[2] & bit)
        if handled:
            k.escalation_by_tier[tier] = Rate.of_counts(up, handled)
    if any(key[3] for key in starts):
        k.sla = {}
        for i, kind in enumerate(SLA_KINDS):
            bit = 1 << i
            measured = sum(n for key, n in starts.items() if key[4] & bit)
            breached = sum(n for key, n in starts.items() if key[4] & bit and key[5] & bit)
            if measured:
                k.sla[kind] = Rate(breached, measured, 1 - breached / measured)
    rated = [(key[3], n) for key, n in ends.items() if key[3]]
    if rated:
        count = sum(n for _, n in rated)
        s = Satisfaction(rated=count, resolved=len(resolved))
        s.average = sum(r * n for r, n in rated) / count
        s.share_4_5 = sum(n for r, n in rated if r >= 4) / count
        s.response_rate = ratio(count, len(resolved))
        for r, n in rated:
            s.distribution[str(r)] += n
        k.satisfaction = s
    return k


def _top(counts: Counter[str]) -> list[tuple[str, int]]:
    """The TOP most frequent, ties by name."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]


def compute(
    *,
    since: datetime,
    until: datetime,
    by: str,
    tickets: Sequence[TicketRow],
    facts: Mapping[int, TicketFacts],
    backlog: Sequence[tuple[str, str, int]],
    replies_by_agent: dict[str, int],
    open_by_assignee: dict[str, int],
    calendar: BusinessCalendar,
) -> Report:
    """The report from plain rows (see the module docstring for every definition).

    `tickets`: counted tickets created in [since - 7 days, until) or resolved in [since,
    until); `facts`: what the events before `until` say about those created or resolved in
    the period; `backlog`: (group value, bucket label, count) of open tickets ('' group =
    none); the two agent maps as read by the store."""
    if by not in DIMENSIONS:
        raise ValueError(f"unknown grouping {by!r}; use {', '.join(DIMENSIONS)}")
    lo, hi = _us(since), _us(until)
    created = [t for t in tickets if lo <= t.created < hi]
    resolved = [t for t in tickets if t.resolved is not None and lo <= t.resolved < hi and t.status in CLOSED_STATUSES]
    first = min((t.created for t in (*created, *resolved)), default=lo)
    clock = BusinessClock(calendar, _EPOCH + timedelta(microseconds=min(first, lo)), until)
    ratings = {n: rating for n, f in facts.items() if f.ratings and (rating := _latest_rating(f.ratings)) is not None}
    repeats = _repeats(tickets, lo)
    created_facts = _created_facts(created, by, facts, repeats, clock)
    resolved_facts = _resolved_facts(resolved, by, facts, ratings, clock)

    total = _group_kpis(created_facts, resolved_facts)
    created_in: dict[str, list[_Created]] = defaultdict(list)
    resolved_in: dict[str, list[_Resolved]] = defaultdict(list)
    for c in created_facts:
        created_in[c.group].append(c)
    for done in resolved_facts:
        resolved_in[done.group].append(done)
    names = sorted(created_in.keys() | resolved_in.keys() | {_backlog_group(g, by) for g, _, _ in backlog})
    groups = {name: _group_kpis(created_in.get(name, []), resolved_in.get(name, [])) for name in names}
    for value, bucket, count in backlog:
        label = bucket if bucket in BACKLOG_LABELS else BACKLOG_LABELS[-1]
        groups[_backlog_group(value, by)].backlog[label] += count
        total.backlog[label] += count
    tags: Counter[str] = Counter(tag for t in created for tag in dict.fromkeys(t.tags))
    return Report(
        since=since,
        until=until,
        by=by,
        calendar=calendar.describe(),
        total=total,
        groups=groups,
        agents=_agents(created, created_facts, resolved, facts, replies_by_agent, open_by_assignee),
        trend=_trend(created, created_facts, resolved, since, until, calendar),
        top_tags=_top(tags),
        top_domains=_top(Counter(t.customer_email.rpartition("@")[2].lower() for t in created)),
    )


def _backlog_group(value: str, by: str) -> str:
    if by == "agent":
        return value or UNASSIGNED
    return value or "(none)"


def _agents(
    created: Sequence[TicketRow],
    created_facts: Sequence[_Created],
    resolved: Sequence[TicketRow],
    facts: Mapping[int, TicketFacts],
    replies: dict[str, int],
    open_now: dict[str, int],
) -> list[AgentKpis]:
    first: dict[str, list[float]] = defaultdict(list)
    for t, c in zip(created, created_facts, strict=True):
        f = facts.get(t.number)
        if f is None or not f.replies or f.first_agent is None or c.frt_business is None:
            continue
        first[f.first_agent.lower()].append(c.frt_business)
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
    created_facts: Sequence[_Created],
    resolved: Sequence[TicketRow],
    since: datetime,
    until: datetime,
    calendar: BusinessCalendar,
) -> list[DayPoint]:
    """One point per local day (the calendar's time zone) of the period; an instant's day is
    found by binary search over the days' first moments."""
    zone = calendar.zone
    days: list[DayPoint] = []
    starts: list[int] = []
    day, last = since.astimezone(zone).date(), (until - timedelta(microseconds=1)).astimezone(zone).date()
    while day <= last:
        days.append(DayPoint(day.isoformat()))
        starts.append(_instant_us(calendar, day, 0))
        day += timedelta(days=1)
    starts.append(_instant_us(calendar, day, 0))

    def index(us: int) -> int | None:
        i = bisect.bisect_right(starts, us) - 1
        return i if 0 <= i < len(days) else None

    frt: dict[int, list[float]] = defaultdict(list)
    for t, c in zip(created, created_facts, strict=True):
        if (i := index(t.created)) is not None:
            days[i].created += 1
            if c.frt_business is not None:
                frt[i].append(c.frt_business)
    for t in resolved:
        if t.resolved is not None and (i := index(t.resolved)) is not None:
            days[i].resolved += 1
    for i, values in frt.items():
        days[i].first_response_business_median = median(values)
    return days


def build_report(session: Session, *, since: datetime, until: datetime, by: str, calendar: BusinessCalendar) -> Report:
    """Read the period's rows (set-based, see store/report_queries.py) and compute the report."""
    if by not in DIMENSIONS:
        raise ValueError(f"unknown grouping {by!r}; use {', '.join(DIMENSIONS)}")
    with _collector_paused():
        return _build(session, since=since, until=until, by=by, calendar=calendar)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cycle collector off while a report is built: the rows of a big period are ~10^5
    small objects without cycles, which reference counting frees; a collection pass over
    them every few thousand allocations costs a quarter of the computing time."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _build(session: Session, *, since: datetime, until: datetime, by: str, calendar: BusinessCalendar) -> Report:
    open_now = rq.open_now(session, until, by, BACKLOG_BUCKETS)
    return compute(
        since=since,
        until=until,
        by=by,
        tickets=rq.period_tickets(session, since, until, REPEAT_WINDOW),
        facts=rq.period_facts(session, since, until, TIERS, SLA_KINDS),
        backlog=open_now.backlog,
        replies_by_agent=rq.replies_by_agent(session, since, until),
        open_by_assignee=open_now.by_assignee,
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
