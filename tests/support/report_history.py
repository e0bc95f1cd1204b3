"""A seeded ticket history whose every KPI is known by hand (tests/services/test_kpis.py
lists them), written straight into the tables as the change path would have left them.

The period is Tue 2026-11-03 00:00 to Tue 2026-11-10 00:00 UTC; business time is the
default calendar, Mon-Fri 09:00-17:00 UTC. Subjects and tags carry a `<script>` so every
output can be checked for escaping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from maildesk.store.models import Customer, Event, Ticket

SINCE = datetime(2026, 11, 3, tzinfo=UTC)
UNTIL = datetime(2026, 11, 10, tzinfo=UTC)
SCRIPT = "<script>alert(1)</script>"


def at(day: int, hour: int, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def seed_history(store: Any) -> None:
    with store.session() as session:
        customers = {
            email: Customer(email=email, name=email.split("@")[0], created_at=at(1, 0, 10))
            for email in ("a@x.com", "b@y.org", "c@y.org", "d@z.net")
        }
        session.add_all(customers.values())
        session.flush()

        def ticket(number: int, email: str, subject: str, created: datetime, **kw: Any) -> None:
            values: dict[str, Any] = dict(
                number=number,
                subject=subject,
                status="open",
                queue="billing",
                tier="L1",
                priority="normal",
                customer_id=customers[email].id,
                tags=[],
                fields={},
                created_at=created,
                updated_at=created,
            )
            values.update(kw)
            session.add(Ticket(**values))

        def event(number: int, type_: str, when: datetime, **data: Any) -> None:
            session.add(Event(ticket_number=number, type=type_, data=data, at=when))

        # T1: Friday 16:00 -> answered Monday 10:00 (2 h business, 66 h calendar), resolved Monday 12:00
        ticket(
            1,
            "a@x.com",
            "Re: printer is broken",
            at(6, 16),
            status="resolved",
            assignee="alice@desk.test",
            first_response_at=at(9, 10),
            resolved_at=at(9, 12),
            tags=["printer"],
        )
        event(1, "agent-replied", at(9, 10), agent="alice@desk.test")
        event(1, "status", at(9, 12), **{"from": "pending", "to": "resolved"})
        event(1, "survey-answered", at(9, 15), rating=5, comment="great")
        # T2: answered after 1 h, resolved, reopened, answered again, resolved again; rated 1
        ticket(
            2,
            "b@y.org",
            "Invoice wrong",
            at(3, 9),
            status="resolved",
            assignee="bob@desk.test",
            first_response_at=at(3, 10),
            resolved_at=at(4, 12),
        )
        event(2, "agent-replied", at(3, 10), agent="bob@desk.test")
        event(2, "status", at(3, 11), **{"from": "pending", "to": "resolved"})
        event(2, "status", at(4, 9), **{"from": "resolved", "to": "open"})
        event(2, "agent-replied", at(4, 10), agent="bob@desk.test")
        event(2, "status", at(4, 12), **{"from": "pending", "to": "resolved"})
        event(2, "survey-answered", at(4, 13), rating=1)
        # T3: escalated L1 -> L2, answered after 4 h, first-response SLA breached, still open
        ticket(
            3,
            "a@x.com",
            "Printer broken",
            at(4, 9),
            queue="tech",
            tier="L2",
            assignee="alice@desk.test",
            first_response_at=at(4, 13),
            tags=[SCRIPT, "printer"],
        )
        event(3, "escalated", at(4, 11), **{"from": "L1", "to": "L2"})
        event(3, "agent-replied", at(4, 13), agent="alice@desk.test")
        event(3, "sla-started", at(4, 9), kind="first_response")
        event(3, "sla-breached", at(4, 12), kind="first_response")
        # T4: unanswered, SLA met so far, new
        ticket(4, "c@y.org", f"Question {SCRIPT}", at(5, 10), queue="tech", status="new")
        event(4, "sla-started", at(5, 10), kind="first_response")
        # T5: old backlog; T6: spam (never counted); T7: merged (never counted)
        ticket(5, "d@z.net", "Old problem", at(1, 10, 10), queue="tech")
        ticket(6, "d@z.net", "Cheap pills", at(5, 10), queue="tech", spam=True)
        ticket(7, "d@z.net", "Dup", at(5, 11), status="closed", merged_into=4, resolved_at=at(5, 12))
