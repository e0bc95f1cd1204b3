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


def seed_random_history(store: Any, seed: int, tickets: int = 150) -> None:
    """A random history around [SINCE, UNTIL) for the equivalence test: instants to the
    microsecond (some equal), tickets created before, in and after the period, every status,
    spam and merged tickets, reopens and status changes that are not, escalations and tier
    changes, SLA events of known and unknown kinds, surveys answered more than once and with
    ratings that are not 1-5, agent addresses in mixed case, subjects that repeat."""
    import random
    from datetime import timedelta

    rng = random.Random(seed)
    start = SINCE - timedelta(days=12)
    span = int((UNTIL - start).total_seconds()) + 2 * 86400

    def moment(after: datetime | None = None, within: int = span) -> datetime:
        base = after or start
        if after is not None and rng.random() < 0.1:
            return after  # the same instant: ties are broken by the order stored
        return base + timedelta(seconds=rng.randrange(within), microseconds=rng.randrange(1_000_000))

    agents = ["alice@desk.test", "Bob@Desk.test", "carol@desk.test"]
    words = ["printer", "broken", "invoice", "wrong", "login", "fails", "again", "urgent"]
    with store.session() as session:
        customers = [
            Customer(email=f"c{i}@{rng.choice(['x.com', 'Y.org', 'z.net'])}", name=f"c{i}", created_at=start)
            for i in range(12)
        ]
        session.add_all(customers)
        session.flush()
        events: list[Event] = []
        for number in range(1, tickets + 1):
            created = moment()
            status = rng.choice(["new", "open", "pending", "resolved", "closed", "resolved"])
            first_response = moment(created, 5 * 86400) if rng.random() < 0.7 else None
            resolved = moment(first_response or created, 6 * 86400) if status in ("resolved", "closed") else None
            if resolved is None and rng.random() < 0.1:
                resolved = moment(created, 3 * 86400)  # a stale resolved_at on an open ticket: not in R
            subject = " ".join(rng.sample(words, rng.randrange(1, 4)))
            session.add(
                Ticket(
                    number=number,
                    subject=rng.choice(["", "Re: ", "AW: [#3] "]) + subject,
                    status=status,
                    queue=rng.choice(["billing", "tech", "sales"]),
                    tier=rng.choice(["L1", "L1", "L2", "L3"]),
                    priority=rng.choice(["normal", "high"]),
                    assignee=rng.choice([None, *agents]) if status != "new" else None,
                    customer_id=rng.choice(customers).id,
                    tags=rng.choices(["printer", "vip", "invoice", SCRIPT], k=rng.randrange(0, 3)),
                    fields={},
                    spam=rng.random() < 0.05,
                    merged_into=rng.randrange(1, number) if number > 1 and rng.random() < 0.05 else None,
                    created_at=created,
                    updated_at=created,
                    first_response_at=first_response,
                    resolved_at=resolved,
                )
            )

            def event(type_: str, when: datetime, number: int = number, **data: Any) -> None:
                events.append(Event(ticket_number=number, type=type_, data=data, at=when))

            t = created
            for _ in range(rng.randrange(0, 4)):
                t = moment(t, 2 * 86400)
                event("agent-replied", t, **({"agent": rng.choice(agents)} if rng.random() < 0.95 else {}))
            for _ in range(rng.randrange(0, 4)):
                a, b = rng.choice(
                    [("new", "open"), ("open", "pending"), ("pending", "resolved"), ("resolved", "open"),
                     ("closed", "pending"), ("resolved", "closed"), ("open", "resolved")]
                )  # fmt: skip
                event("status", moment(created, 8 * 86400), **{"from": a, "to": b})
            if rng.random() < 0.2:
                a, b = rng.choice([("L1", "L2"), ("L2", "L3"), ("L1", "L3")])
                event("escalated", moment(created, 3 * 86400), **{"from": a, "to": b})
            if rng.random() < 0.1:
                event("tier-changed", moment(created, 3 * 86400), old=rng.choice(["L1", "L2"]), new="L3")
            for kind in rng.sample(["first_response", "next_response", "resolution", "other"], rng.randrange(0, 3)):
                event("sla-started", created, kind=kind)
                if rng.random() < 0.3:
                    event("sla-breached", moment(created, 4 * 86400), kind=kind)
            for _ in range(rng.choice([0, 0, 1, 1, 2])):
                rating = rng.choice([1, 2, 3, 4, 5, 5, "4", 0, 7, "x", None])
                event("survey-answered", moment(resolved or created, 3 * 86400), rating=rating, comment="c")
        session.flush()
        session.add_all(events)
