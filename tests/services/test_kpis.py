"""The KPIs (`maildesk.services.kpis`) on a seeded history whose every figure is known by
hand (tests/support/report_history.py), read through the real queries on SQLite and
PostgreSQL; and the small definitions (subjects, percentiles, the fast business clock)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maildesk.services import kpis
from maildesk.sla.calendar import BusinessCalendar, parse_spans
from maildesk.store.db import Store
from tests.support.report_history import SINCE, UNTIL, seed_history

H = 3600.0


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    s.migrate()
    yield s
    s.dispose()


def _report(store: Store, by: str = "queue") -> kpis.Report:
    seed_history(store)
    with store.reader() as session:
        return kpis.build_report(session, since=SINCE, until=UNTIL, by=by, calendar=BusinessCalendar())


def test_every_kpi_of_the_seeded_history(store: Store) -> None:
    r = _report(store)
    t = r.total
    assert (t.created, t.resolved, t.unanswered) == (4, 2, 1)
    assert t.backlog == {"<1d": 0, "1-3d": 0, "3-7d": 2, "7-30d": 0, ">=30d": 1}
    # first response: T1 Fri 16:00 -> Mon 10:00 is 2 h business / 66 h calendar; T2 1 h; T3 4 h
    assert (t.first_response_business.median, t.first_response_business.p90) == (2 * H, 4 * H)
    assert (t.first_response_calendar.median, t.first_response_calendar.p90) == (4 * H, 66 * H)
    # resolution: T1 4 h business / 68 h calendar; T2 (Tue 09:00 -> Wed 12:00) 11 h / 27 h
    assert (t.resolution_business.median, t.resolution_business.p90) == (7.5 * H, 11 * H)
    assert (t.resolution_calendar.median, t.resolution_calendar.p90) == (47.5 * H, 68 * H)
    assert (t.first_contact_resolution.count, t.first_contact_resolution.of) == (1, 2)
    assert (t.reopened.count, t.reopened.of) == (1, 2)
    assert (t.repeat.count, t.repeat.of) == (1, 4)  # T1 repeats T3: same customer, similar subject, 2 days
    assert (t.escalated.count, t.escalated.of) == (1, 4)
    assert {k: (v.count, v.of) for k, v in t.escalation_by_tier.items()} == {"L1": (1, 4), "L2": (0, 1)}
    assert t.sla is not None and {k: (v.count, v.of, v.rate) for k, v in t.sla.items()} == {
        "first_response": (1, 2, 0.5)
    }
    s = t.satisfaction
    assert s is not None
    assert (s.rated, s.average, s.share_4_5, s.response_rate) == (2, 3.0, 0.5, 1.0)
    assert s.distribution == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 1}
    assert set(r.groups) == {"billing", "tech"}
    billing, tech = r.groups["billing"], r.groups["tech"]
    assert (billing.created, billing.resolved, billing.backlog_total) == (2, 2, 0)
    assert (tech.created, tech.resolved, tech.backlog_total) == (2, 0, 3)
    assert tech.satisfaction is None and billing.sla is None  # no data
    agents = {a.agent: a for a in r.agents}
    assert set(agents) == {"alice@desk.test", "bob@desk.test"}
    alice, bob = agents["alice@desk.test"], agents["bob@desk.test"]
    assert (alice.replies, alice.open_now, alice.resolved, alice.first_reply_business.median) == (2, 1, 1, 3 * H)
    assert (bob.replies, bob.open_now, bob.resolved, bob.first_reply_business.median) == (2, 0, 1, 1 * H)
    assert dict(r.top_tags) == {"printer": 2, "<script>alert(1)</script>": 1}
    assert dict(r.top_domains) == {"x.com": 2, "y.org": 2}
    assert [p.created for p in r.trend] == [1, 1, 1, 1, 0, 0, 0]  # Tue..Mon, local days
    assert [p.resolved for p in r.trend] == [0, 1, 0, 0, 0, 0, 1]


def test_grouped_by_agent_and_tier(store: Store) -> None:
    r = _report(store, "agent")
    assert set(r.groups) == {"alice@desk.test", "bob@desk.test", "(unassigned)"}
    assert r.groups["(unassigned)"].backlog_total == 2 and r.groups["alice@desk.test"].created == 2
    with store.reader() as session:
        tiers = kpis.build_report(session, since=SINCE, until=UNTIL, by="tier", calendar=BusinessCalendar())
    assert {k: v.created for k, v in tiers.groups.items()} == {"L1": 3, "L2": 1}


def test_no_sla_or_survey_events_is_no_data(store: Store) -> None:
    with store.reader() as session:
        r = kpis.build_report(session, since=SINCE, until=UNTIL, by="queue", calendar=BusinessCalendar())
    assert r.total.created == 0 and r.total.sla is None and r.total.satisfaction is None
    assert r.total.first_response_business.median is None


def test_subjects_and_percentiles() -> None:
    assert kpis.normalise_subject("Re: AW: [#12] Printer  broken!") == "printer broken"
    assert kpis.similar_subjects("Printer broken", "RE: printer is broken")  # 2/3
    assert not kpis.similar_subjects("Printer broken", "Invoice wrong")
    assert kpis.p90([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == 9 and kpis.p90([5]) == 5
    assert kpis.median([1, 2, 3, 10]) == 2.5


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York"])
def test_the_fast_business_clock_agrees_with_the_calendar(zone: str) -> None:
    """Across nights, weekends, a lunch break, holidays and both daylight-saving changes, to the microsecond."""
    week = (parse_spans("08:00-12:00, 13:00-17:30"),) * 5 + (parse_spans("02:30-04:00"), ())
    calendar = BusinessCalendar(timezone=zone, week=week, holidays="DE")
    first, last = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)
    clock = kpis.BusinessClock(calendar, first, last)
    rng = random.Random(7)
    span = int((last - first).total_seconds())
    for _ in range(400):
        a = first + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(1_000_000))
        b = a + timedelta(seconds=rng.randrange(20 * 86400), microseconds=rng.randrange(1_000_000))
        assert clock.seconds(a, b) == calendar.business_time_between(a, b).total_seconds()


def test_an_unknown_grouping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown grouping"):
        kpis.compute(
            since=SINCE,
            until=UNTIL,
            by="colour",
            tickets=[],
            facts={},
            backlog=[],
            replies_by_agent={},
            open_by_assignee={},
            calendar=BusinessCalendar(),
        )
