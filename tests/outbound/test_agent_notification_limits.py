"""Notifications to active agents have their own hourly cap (`limits.per_agent_hour`) and
never use up the ticket's or the customer's automatic-mail budget: a busy ticket neither
silences its agent nor, through its notifications, the customer's acknowledgements."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from maildesk.store import outbox_queries as oq
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk, team_settings

AGENTS: list[dict[str, Any]] = [{"email": "ann@example.com", "name": "Ann Lee", "tiers": ["L1"], "queues": ["billing"]}]
QUEUES: list[dict[str, Any]] = [{"name": "billing", "address": "billing@example.com"}]
CUSTOMER = "Anna Schmidt <anna@customer.example>"


@pytest.fixture
def make_desk(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Desk]]:
    made: list[Desk] = []

    def make(**limits: int) -> Desk:
        settings = team_settings(tmp_path, database_url, None, agents=AGENTS, queues=QUEUES)
        settings = replace(settings, limits=replace(settings.limits, **limits))
        d = Desk(settings)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def _conversation(d: Desk, replies: int) -> int:
    first = d.say(eml(sender=CUSTOMER, to="billing@example.com", subject="Invoice wrong", message_id="<m0@c.example>"))
    number = first.ticket_number
    assert number is not None
    for i in range(1, replies + 1):
        d.later(minutes=2)
        d.say(
            eml(
                sender=CUSTOMER,
                to="billing@example.com",
                subject=f"Re: [#{number}] Invoice wrong",
                message_id=f"<m{i}@c.example>",
                body=f"one more detail, number {i}",
            )
        )
    return number


def _to_ann(d: Desk, number: int) -> list[Any]:
    return [row for row in d.outbox(number, internal=True) if row.recipients == ["ann@example.com"]]


def test_a_busy_ticket_keeps_notifying_its_agent_and_spares_the_customers_budget(make_desk: Any) -> None:
    d = make_desk()  # per_recipient_hour 5, per_ticket_day 10: once the notifications' limits too
    number = _conversation(d, replies=11)
    rows = _to_ann(d, number)
    assert len(rows) == 12 and {row.state for row in rows} == {"queued"}
    with d.app.store.reader() as s:
        ticket_day = oq.automatic_counts(s, recipient="anna@customer.example", ticket_number=number, now=d.now)[2]
    customer_auto = [row for row in d.outbox(number, internal=False) if row.automatic]
    assert ticket_day == len(customer_auto) == 1  # the acknowledgement only; notifications are not on the ticket


def test_the_agent_cap_holds_and_says_why(make_desk: Any) -> None:
    d = make_desk(per_agent_hour=3)
    number = _conversation(d, replies=4)
    rows = _to_ann(d, number)
    assert [row.state for row in rows] == ["queued"] * 3 + ["held"] * 2
    assert rows[-1].last_error.startswith("agent ann@example.com got 3 notifications in the last hour (limit 3)")
