"""The optimised report (`kpis.build_report`: instants as integers computed in SQL, per-ticket
facts folded from one events read, a prepared business clock) gives exactly the report of
a straightforward reference (tests/support/kpis_reference.py: ORM rows, each definition
applied literally, the exact calendar) on random seeded histories, on SQLite and PostgreSQL:
the same JSON, to the last bit of every float."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from maildesk.services import kpis
from maildesk.sla.calendar import BusinessCalendar, parse_spans
from maildesk.store.db import Store
from tests.support.kpis_reference import reference_report
from tests.support.report_history import SINCE, UNTIL, seed_random_history


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    s.migrate()
    yield s
    s.dispose()


def _json(report: kpis.Report) -> str:
    return json.dumps(report.to_dict(), sort_keys=True, indent=1, default=str)


CALENDARS = {
    "default": BusinessCalendar(),
    "berlin-lunch-holidays": BusinessCalendar(
        timezone="Europe/Berlin", week=(parse_spans("08:00-12:00, 13:00-17:30"),) * 5 + ((), ()), holidays="DE"
    ),
    "calendar-time": BusinessCalendar(calendar_time=True),
}


@pytest.mark.parametrize("seed", [1, 2])
def test_the_optimised_report_equals_the_reference(store: Store, seed: int) -> None:
    seed_random_history(store, seed)
    checked = 0
    with store.reader() as session:
        for name, calendar in CALENDARS.items():
            for by in kpis.DIMENSIONS:
                fast = kpis.build_report(session, since=SINCE, until=UNTIL, by=by, calendar=calendar)
                slow = reference_report(session, since=SINCE, until=UNTIL, by=by, calendar=calendar)
                assert _json(fast) == _json(slow), (name, by)
                checked += 1
        total = kpis.build_report(session, since=SINCE, until=UNTIL, by="queue", calendar=BusinessCalendar()).total
    assert checked == len(CALENDARS) * len(kpis.DIMENSIONS)
    # the history exercises what it is meant to (not an empty report that trivially agrees)
    assert total.created > 30 and total.resolved > 10 and total.reopened.count > 0 and total.repeat.count > 0
    assert total.satisfaction is not None and total.sla is not None and total.escalated.count > 0
