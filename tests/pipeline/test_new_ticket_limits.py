"""Per-sender and per-domain limits on new tickets (issue 16), on the real pipeline
(App.process, SQLite and PostgreSQL): mail beyond a limit is stored without a ticket and
without an acknowledgement, with a `new-ticket-held` event; known customers are never held
by the domain limit of strangers; replies to existing tickets are never held; `status`
counts what was held."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from maildesk.clock import utcnow
from maildesk.config import ConfigError, Settings, parse_settings
from maildesk.rules.limits import NewTicketCounts, NewTicketPolicy, check_new_ticket, hold_kind
from maildesk.store.models import Event, Message, Ticket
from tests.commands.admin.conftest import make_runner, write_config
from tests.conftest import make_settings
from tests.support.mailgen import eml
from tests.support.outbox_kit import Clock, outbox_rows, wire


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(
        tmp_path, database_url, limits={"new_tickets_per_sender_hour": 3, "new_tickets_per_domain_hour": 4}
    )


@pytest.fixture
def wired(desk: Any) -> Any:
    clock = Clock()
    wire(desk, clock)
    desk.clock_for_test = clock
    return desk


def _mail(desk: Any, sender: str, subject: str, extra: str = "") -> str:
    mid = "<" + subject.replace(" ", ".") + "@x.example>"
    desk.spool.put(eml(sender=sender, subject=subject, message_id=mid, extra=extra), "smtp", None)
    result = desk.process()
    assert result["failed"] == 0 and result["quarantined"] == 0, result
    return mid


def _tickets_of(desk: Any, sender: str) -> int:
    with desk.store.reader() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.sender == sender, Message.ticket_number.is_not(None))
            )
            or 0
        )


def _stored(desk: Any, sender: str) -> int:
    with desk.store.reader() as s:
        return int(s.scalar(select(func.count()).select_from(Message).where(Message.sender == sender)) or 0)


def _acks(desk: Any, recipient: str) -> int:
    return sum(1 for row in outbox_rows(desk) if row.template == "ack" and row.recipients == [recipient])


def _held_events(desk: Any) -> list[dict[str, Any]]:
    with desk.store.reader() as s:
        return [e.data for e in s.scalars(select(Event).where(Event.type == "new-ticket-held").order_by(Event.id))]


def test_one_sender_flooding_gets_three_tickets_and_the_rest_stored_without_ticket_or_ack(wired: Any) -> None:
    for i in range(6):
        _mail(wired, "bot@flood.example", f"flood {i}")
    assert _stored(wired, "bot@flood.example") == 6  # nothing lost
    assert _tickets_of(wired, "bot@flood.example") == 3
    assert _acks(wired, "bot@flood.example") == 3
    held = _held_events(wired)
    assert len(held) == 3 and {e["limit"] for e in held} == {"new_tickets_per_sender_hour"}
    assert held[0]["reason"] == "sender bot@flood.example opened 3 new tickets in the last hour (limit 3)"
    with wired.store.reader() as s:  # each held message carries its event
        without = s.scalars(select(Message.id).where(Message.ticket_number.is_(None))).all()
        assert sorted(without) == sorted(
            s.scalars(select(Event.message_pk).where(Event.type == "new-ticket-held")).all()
        )
    wired.clock_for_test.advance(3601)  # the window moves on
    _mail(wired, "bot@flood.example", "an hour later")
    assert _tickets_of(wired, "bot@flood.example") == 4


def test_a_reply_to_an_existing_ticket_is_never_held(wired: Any) -> None:
    first = _mail(wired, "bot@flood.example", "flood 0")
    for i in range(1, 4):
        _mail(wired, "bot@flood.example", f"flood {i}")
    _mail(wired, "bot@flood.example", "Re flood 0", extra=f"In-Reply-To: {first}\nReferences: {first}")
    with wired.store.reader() as s:
        reply = s.scalars(select(Message).where(Message.message_id == "Re.flood.0@x.example")).one()
        assert reply.ticket_number is not None
    assert len(_held_events(wired)) == 1  # only "flood 3"


def test_rotating_strangers_at_one_domain_never_hold_a_known_customer(wired: Any) -> None:
    _mail(wired, "Anna <anna@customer.example>", "first problem")
    wired.clock_for_test.advance(2 * 3600)  # Anna is a customer from before the last hour
    for i in range(7):
        _mail(wired, f"bot{i}@customer.example", f"stranger {i}")
    with wired.store.reader() as s:
        tickets = s.scalar(select(func.count()).select_from(Ticket))
    assert tickets == 1 + 4  # Anna's, then four strangers (per-domain limit 4)
    assert [e["limit"] for e in _held_events(wired)] == ["new_tickets_per_domain_hour"] * 3
    assert sum(_stored(wired, f"bot{i}@customer.example") for i in range(7)) == 7
    _mail(wired, "Anna <anna@customer.example>", "second problem")
    assert _tickets_of(wired, "anna@customer.example") == 2 and _acks(wired, "anna@customer.example") == 2
    _mail(wired, "carl@other.example", "another domain")  # other domains are not affected
    assert _tickets_of(wired, "carl@other.example") == 1


def test_status_counts_mail_held_by_the_new_ticket_limits(wired: Any, tmp_path: Path) -> None:
    wired.clock_for_test.now = utcnow()  # `status` looks back from the real clock
    for i in range(5):
        _mail(wired, "bot@flood.example", f"flood {i}")
    data = json.loads(make_runner(write_config(wired, tmp_path))("status", "--json").output)
    assert data["held"]["last_day"] == {"new_tickets_per_sender_hour": 2}


def test_zero_means_no_limit(tmp_path: Path, database_url: str) -> None:
    from maildesk.app import App

    settings = make_settings(
        tmp_path, database_url, limits={"new_tickets_per_sender_hour": 0, "new_tickets_per_domain_hour": 0}
    )
    desk = App(settings)
    desk.migrate()
    try:
        for i in range(25):
            desk.spool.put(eml(sender="many@flood.example", subject=f"n {i}"), "smtp")
        assert desk.process()["tickets_created"] == 25
    finally:
        desk.worker.close()
        desk.store.dispose()


def test_defaults_and_validation(tmp_path: Path) -> None:
    base: dict[str, Any] = {"desk": {"support_addresses": ["support@example.com"], "data_dir": str(tmp_path)}}
    limits = parse_settings(base, source="<test>", base_dir=str(tmp_path)).limits
    assert (limits.new_tickets_per_sender_hour, limits.new_tickets_per_domain_hour) == (20, 200)
    with pytest.raises(ConfigError, match="new_tickets_per_sender_hour"):
        parse_settings({**base, "limits": {"new_tickets_per_sender_hour": -1}}, source="<test>", base_dir=str(tmp_path))


def test_check_new_ticket_decisions() -> None:
    policy = NewTicketPolicy(per_sender_hour=2, per_domain_hour=5)
    assert check_new_ticket(policy, NewTicketCounts(1, 4, known=False), sender="a@x.example").allowed
    sender = check_new_ticket(policy, NewTicketCounts(2, 0, known=True), sender="a@x.example")
    assert not sender.allowed and hold_kind(sender.reason) == "new_tickets_per_sender_hour"
    domain = check_new_ticket(policy, NewTicketCounts(0, 5, known=False), sender="a@x.example")
    assert not domain.allowed and hold_kind(domain.reason) == "new_tickets_per_domain_hour"
    assert check_new_ticket(policy, NewTicketCounts(0, 50, known=True), sender="a@x.example").allowed  # known
    assert check_new_ticket(NewTicketPolicy(0, 0), NewTicketCounts(99, 999, known=False), sender="a@x.example").allowed
