"""A straightforward reference for the report (the README's definitions, read literally).

It reads every counted ticket and every event through plain ORM queries and applies each
definition of `maildesk.services.kpis` one by one in Python, with the exact business
calendar (`BusinessCalendar.business_time_between`, no prepared intervals). It shares only
the report's shape (dataclasses) and the tiny definitions (subject similarity, median, p90)
with the optimised code, so tests/services/test_kpis_equivalence.py can demand the same
JSON from both on a random history. Slow on purpose: test sizes only.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maildesk.domain import CLOSED_STATUSES, OPEN_STATUSES, TIERS
from maildesk.services import kpis
from maildesk.sla.calendar import BusinessCalendar
from maildesk.store.models import Customer, Event, Ticket


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class _T:
    number: int
    created_at: datetime
    status: str
    queue: str
    tier: str
    priority: str
    assignee: str | None
    customer_id: int
    email: str
    subject: str
    tags: list[str]
    first_response_at: datetime | None
    resolved_at: datetime | None
    events: list[tuple[int, str, datetime, dict[str, Any]]] = field(default_factory=list)


def _durations(values: list[float]) -> kpis.Durations:
    """Median (statistics.median) and nearest-rank p90, literally."""
    if not values:
        return kpis.Durations()
    ordered = sorted(values)
    rank = math.ceil(0.9 * len(ordered))
    return kpis.Durations(len(values), float(statistics.median(values)), float(ordered[max(rank, 1) - 1]))


def _rating(value: Any) -> int | None:
    try:
        rating = int(value)
    except (TypeError, ValueError):
        return None
    return rating if 1 <= rating <= 5 else None


def _group(t: _T, by: str) -> str:
    if by == "agent":
        return t.assignee or kpis.UNASSIGNED
    return str(getattr(t, by)) or "(none)"


def _facts(t: _T, until: datetime) -> dict[str, Any]:
    evs = sorted((e for e in t.events if e[2] < until), key=lambda e: (e[2], e[0]))
    replies = [e for e in evs if e[1] == "agent-replied"]
    reopened = any(
        e[1] == "status" and e[3].get("from") in CLOSED_STATUSES and e[3].get("to") in OPEN_STATUSES for e in evs
    )
    escalations = [e for e in evs if e[1] == "escalated"]
    tiers = {t.tier}
    for e in escalations:
        tiers |= {str(e[3].get(k)) for k in ("from", "to") if e[3].get(k)}
    for e in evs:
        if e[1] == "tier-changed":
            tiers |= {str(e[3].get(k)) for k in ("old", "new") if e[3].get(k)}
    ratings = [(e[2], e[0], r) for e in evs if e[1] == "survey-answered" and (r := _rating(e[3].get("rating")))]
    return {
        "replies": len(replies),
        "first_agent": str(replies[0][3].get("agent", "")).lower() if replies else None,
        "reopened": reopened,
        "escalated": bool(escalations),
        "escalated_from": {str(e[3].get("from", "")) for e in escalations},
        "tiers": tiers,
        "sla_started": {str(e[3].get("kind", "")) for e in evs if e[1] == "sla-started"},
        "sla_breached": {str(e[3].get("kind", "")) for e in evs if e[1] == "sla-breached"},
        "rating": max(ratings)[2] if ratings else None,
    }


def _similar_earlier(t: _T, tickets: list[_T]) -> bool:
    return any(
        o.customer_id == t.customer_id
        and o.number != t.number
        and t.created_at - kpis.REPEAT_WINDOW <= o.created_at < t.created_at
        for o in tickets
        if kpis.similar_subjects(o.subject, t.subject)
    )


def _group_kpis(
    created: list[_T], resolved: list[_T], facts: dict[int, dict[str, Any]], repeats: set[int], cal: BusinessCalendar
) -> kpis.GroupKpis:
    def business(a: datetime, b: datetime) -> float:
        return cal.business_time_between(a, b).total_seconds()

    k = kpis.GroupKpis(created=len(created), resolved=len(resolved))
    answered = [t for t in created if t.first_response_at is not None]
    k.unanswered = len(created) - len(answered)
    k.first_response_business = _durations([business(t.created_at, t.first_response_at) for t in answered])  # type: ignore[arg-type]
    k.first_response_calendar = _durations(
        [(t.first_response_at - t.created_at).total_seconds() for t in answered]  # type: ignore[operator]
    )
    k.resolution_business = _durations([business(t.created_at, t.resolved_at) for t in resolved])  # type: ignore[arg-type]
    k.resolution_calendar = _durations([(t.resolved_at - t.created_at).total_seconds() for t in resolved])  # type: ignore[operator]
    replied = [t for t in resolved if facts[t.number]["replies"] > 0]
    fcr = [t for t in replied if facts[t.number]["replies"] == 1 and not facts[t.number]["reopened"]]
    k.first_contact_resolution = kpis.Rate.of_counts(len(fcr), len(replied))
    k.reopened = kpis.Rate.of_counts(sum(facts[t.number]["reopened"] for t in resolved), len(resolved))
    k.repeat = kpis.Rate.of_counts(sum(t.number in repeats for t in created), len(created))
    k.escalated = kpis.Rate.of_counts(sum(facts[t.number]["escalated"] for t in created), len(created))
    for tier in TIERS:
        handled = [t for t in created if tier in facts[t.number]["tiers"]]
        if handled:
            up = sum(tier in facts[t.number]["escalated_from"] for t in handled)
            k.escalation_by_tier[tier] = kpis.Rate.of_counts(up, len(handled))
    if any(facts[t.number]["sla_started"] for t in created):
        k.sla = {}
        for kind in kpis.SLA_KINDS:
            measured = [t for t in created if kind in facts[t.number]["sla_started"]]
            if measured:
                breached = sum(kind in facts[t.number]["sla_breached"] for t in measured)
                k.sla[kind] = kpis.Rate(breached, len(measured), 1 - breached / len(measured))
    ratings = [facts[t.number]["rating"] for t in resolved if facts[t.number]["rating"] is not None]
    if ratings:
        s = kpis.Satisfaction(rated=len(ratings), resolved=len(resolved))
        s.average = sum(ratings) / len(ratings)
        s.share_4_5 = sum(r >= 4 for r in ratings) / len(ratings)
        s.response_rate = len(ratings) / len(resolved)
        for r in ratings:
            s.distribution[str(r)] += 1
        k.satisfaction = s
    return k


def _bucket(age: timedelta) -> str:
    for label, bound in kpis.BACKLOG_BUCKETS:
        if age < bound:
            return label
    return kpis.BACKLOG_LABELS[-1]


def _top(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: kpis.TOP]


def reference_report(
    session: Session, *, since: datetime, until: datetime, by: str, calendar: BusinessCalendar
) -> kpis.Report:
    tickets: dict[int, _T] = {}
    for t, email in session.execute(select(Ticket, Customer.email).join(Customer)).all():
        if t.spam or t.merged_into is not None:
            continue
        tickets[t.number] = _T(
            t.number,
            _utc(t.created_at),  # type: ignore[arg-type]
            t.status,
            t.queue or "default",
            t.tier or "",
            t.priority or "",
            t.assignee,
            t.customer_id,
            email or "",
            t.subject or "",
            [str(x) for x in (t.tags or [])],
            _utc(t.first_response_at),
            _utc(t.resolved_at),
        )
    replies: Counter[str] = Counter()  # agent replies of the period on any ticket: the agent did the work
    for e in session.scalars(select(Event).order_by(Event.id)):
        at = _utc(e.at)
        if e.ticket_number in tickets:
            tickets[e.ticket_number].events.append((e.id, e.type, at, e.data or {}))  # type: ignore[arg-type]
        if e.type == "agent-replied" and since <= at < until:  # type: ignore[operator]
            replies[str((e.data or {}).get("agent") or "")] += 1
    everyone = sorted(tickets.values(), key=lambda t: t.number)
    created = [t for t in everyone if since <= t.created_at < until]
    resolved = [t for t in everyone if t.status in CLOSED_STATUSES and t.resolved_at and since <= t.resolved_at < until]
    facts = {t.number: _facts(t, until) for t in everyone}
    repeats = {t.number for t in created if _similar_earlier(t, everyone)}
    total = _group_kpis(created, resolved, facts, repeats, calendar)
    open_now = [t for t in everyone if t.status in OPEN_STATUSES and t.created_at < until]
    names = sorted({_group(t, by) for t in (*created, *resolved, *open_now)})
    groups = {
        n: _group_kpis(
            [t for t in created if _group(t, by) == n],
            [t for t in resolved if _group(t, by) == n],
            facts,
            repeats,
            calendar,
        )
        for n in names
    }
    for t in open_now:
        label = _bucket(until - t.created_at)
        total.backlog[label] += 1
        groups[_group(t, by)].backlog[label] += 1

    open_by: Counter[str] = Counter(t.assignee or "" for t in everyone if t.status in OPEN_STATUSES)
    first: dict[str, list[float]] = defaultdict(list)
    for t in created:
        agent = facts[t.number]["first_agent"]
        if agent is not None and t.first_response_at is not None:
            first[agent].append(calendar.business_time_between(t.created_at, t.first_response_at).total_seconds())
    resolved_by = Counter(t.assignee for t in resolved if t.assignee)
    agent_names = {a for a in replies if a} | {a for a in open_by if a} | set(resolved_by) | {a for a in first if a}
    agents = [
        kpis.AgentKpis(a, replies[a], open_by[a], resolved_by[a], _durations(first.get(a, [])))
        for a in sorted(agent_names)
    ]

    zone = calendar.zone
    days: dict[date, kpis.DayPoint] = {}
    day, last = since.astimezone(zone).date(), (until - timedelta(microseconds=1)).astimezone(zone).date()
    while day <= last:
        days[day] = kpis.DayPoint(day.isoformat())
        day += timedelta(days=1)
    frt: dict[date, list[float]] = defaultdict(list)
    for t in created:
        d = t.created_at.astimezone(zone).date()
        if d in days:
            days[d].created += 1
            if t.first_response_at is not None:
                frt[d].append(calendar.business_time_between(t.created_at, t.first_response_at).total_seconds())
    for t in resolved:
        rd = t.resolved_at.astimezone(zone).date()  # type: ignore[union-attr]
        if rd in days:
            days[rd].resolved += 1
    for d, values in frt.items():
        days[d].first_response_business_median = float(statistics.median(values))

    tags: Counter[str] = Counter(tag for t in created for tag in set(t.tags))
    domains: Counter[str] = Counter(t.email.rpartition("@")[2].lower() for t in created)
    return kpis.Report(
        since=since,
        until=until,
        by=by,
        calendar=calendar.describe(),
        total=total,
        groups=groups,
        agents=agents,
        trend=list(days.values()),
        top_tags=_top(tags),
        top_domains=_top(domains),
    )
