"""Agent mail through the real pipeline (App.process, both backends): replies, notes,
commands, refusals, the collision hold and its release, macros, forwards and the how-to."""

from __future__ import annotations

import email
from collections.abc import Iterator
from dataclasses import replace
from email import policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.store.models import Event, Message, OutboxItem
from maildesk.threading.tokens import make_agent_address
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk, team_settings

AGENTS: list[dict[str, Any]] = [
    {"email": "ann@example.com", "name": "Ann Agent", "tiers": ["L1"], "signature": "Ann Agent\nExample Support"},
    {"email": "bob@example.com", "name": "Bob", "tiers": ["L2"]},
    {"email": "old@example.com", "name": "Old", "active": False},
]


class AgentDesk(Desk):
    def customer(self, body: str = "Hello,\n\nmy printer is on fire.\n", **kw: Any) -> Message:
        return self.say(eml(body=body, **kw))

    def token(self, ticket: int, agent: str = "ann@example.com", seq: int | None = None) -> str:
        if seq is None:
            seq = self.latest(ticket)
        return make_agent_address(self.app.settings.secret, "support@example.com", ticket, agent, seq)

    def latest(self, ticket: int) -> int:
        with self.app.store.reader() as s:
            ids = s.scalars(select(Message.id).where(Message.ticket_number == ticket)).all()
            return max(ids)

    def agent(self, raw: bytes) -> Message:
        self.app.spool.put(raw, "test")
        stats = self.app.process()
        assert stats["failed"] == 0 and stats["quarantined"] == 0, stats
        with self.app.store.reader() as s:
            row = s.scalars(select(Message).where(Message.direction == "in").order_by(Message.id.desc())).first()
            assert row is not None
            return row

    def all_events(self, number: int | None) -> list[str]:
        with self.app.store.reader() as s:
            return [e.type for e in s.scalars(select(Event).where(Event.ticket_number == number).order_by(Event.id))]

    def sent(self, template: str) -> list[OutboxItem]:
        return [o for o in self.outbox() if o.template == template]


@pytest.fixture
def desk(tmp_path: Path, database_url: str) -> Iterator[AgentDesk]:
    settings = team_settings(tmp_path, database_url, None, agents=AGENTS, queues=[])
    settings = replace(settings, desk=replace(settings.desk, agent_forward_needs_dkim=False))
    d = AgentDesk(settings)
    d.app.sync_agents()
    yield d
    d.close()


def reply(to: str, body: str, sender: str = "Ann Agent <ann@example.com>", **kw: Any) -> bytes:
    return eml(sender=sender, to=to, subject="Re: [#1] Printer on fire", body=body, **kw)


QUOTED = (
    "\n\nOn Mon, 23 Nov 2026 at 10:00, Support <support@example.com> wrote:\n"
    "> -- reply above this line --\n> Anna wrote:\n> my printer is on fire\n"
)


def test_reply_goes_to_the_customer_threaded_and_is_never_customer_mail(desk: AgentDesk) -> None:
    first = desk.customer(extra="Cc: carl@customer.example")
    n = first.ticket_number
    assert n is not None
    row = desk.agent(reply(desk.token(n), "Please unplug it now.\n\n-- \nAnn Agent\nExample Support" + QUOTED))
    assert (row.kind, row.ticket_number, row.internal) == ("agent-reply", n, False)
    assert row.visible_text == "Please unplug it now."
    out = desk.sent("agent_reply")
    assert len(out) == 1
    mail = email.message_from_bytes(out[0].raw, policy=policy.default)
    assert set(out[0].recipients) == {"anna@customer.example", "carl@customer.example"}
    assert "Ann Agent" in str(mail["From"]) and "support@example.com" in str(mail["From"])
    assert mail["In-Reply-To"].strip("<>") == first.message_id
    body = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert (
        "Please unplug it now." in body and "reply above this line" not in body and "my printer is on fire" not in body
    )
    t = desk.ticket(n)
    assert t.status == "pending" and t.first_response_at is not None
    with desk.app.store.reader() as s:
        customers = s.scalars(select(Message).where(Message.kind == "customer", Message.direction == "in")).all()
        assert [m.id for m in customers] == [first.id]
    assert "ack" not in [o.template for o in desk.outbox() if o.id > out[0].id]
    assert "agent-replied" in desk.all_events(n)


def test_note_stays_internal_and_commands_change_the_ticket(desk: AgentDesk) -> None:
    n = desk.customer().ticket_number
    assert n is not None
    before = len(desk.outbox())
    row = desk.agent(reply(desk.token(n), "#note\n10% discount, don't tell her." + QUOTED))
    assert (row.kind, row.internal) == ("agent-note", True)
    assert "note-added" in desk.all_events(n)
    assert len(desk.outbox()) == before  # nothing to the customer
    desk.agent(reply(desk.token(n), "#priority urgent\n#tier L2\n#tag vip\n#assign bob\n" + QUOTED))
    t = desk.ticket(n)
    assert (t.priority, t.tier, t.tags, t.assignee) == ("urgent", "L2", ["vip"], "bob@example.com")
    assert len(desk.sent("agent_reply")) == 0
    desk.agent(reply(desk.token(n), "#untag vip\n#assign me\n#escalate needs the printer team\n#resolve"))
    t = desk.ticket(n)
    assert (t.tags, t.assignee, t.tier, t.status) == ([], "ann@example.com", "L3", "resolved")
    desk.agent(reply(desk.token(n), "#open"))
    assert desk.ticket(n).status == "open"
    desk.agent(reply(desk.token(n), "#pending"))
    assert desk.ticket(n).status == "pending"
    desk.agent(reply(desk.token(n), "#close"))
    assert desk.ticket(n).status == "closed"
    assert len(desk.sent("agent_reply")) == 0


def test_commands_plus_text_and_merge(desk: AgentDesk) -> None:
    a = desk.customer().ticket_number
    b = desk.customer(subject="Another printer").ticket_number
    assert a is not None and b is not None
    desk.agent(reply(desk.token(a), "#resolve\n\nIt is fixed now."))
    assert desk.ticket(a).status == "resolved"
    assert len(desk.sent("agent_reply")) == 1
    desk.agent(reply(desk.token(b), f"#merge {a}"))
    assert desk.ticket(b).merged_into == a


def test_unknown_command_changes_nothing_and_answers_the_agent(desk: AgentDesk) -> None:
    n = desk.customer().ticket_number
    assert n is not None
    desk.agent(reply(desk.token(n), "#resolve\n#frobnicate\nDone."))
    assert desk.ticket(n).status == "new"
    assert desk.sent("agent_reply") == []
    refusals = desk.sent("refused_reply")
    assert [r.recipients for r in refusals] == [["ann@example.com"]]
    assert b"#frobnicate" in refusals[0].raw and b"#assign" in refusals[0].raw
    desk.agent(reply(desk.token(n), "#assign nobody-we-know"))
    assert desk.ticket(n).assignee is None
    assert len(desk.sent("refused_reply")) == 2


def test_forged_and_stolen_tokens_are_refused_and_recorded(desk: AgentDesk) -> None:
    n = desk.customer().ticket_number
    assert n is not None
    good = desk.token(n)
    bad = good.replace(good.split("-")[-1][:4], "aaaa")
    desk.agent(reply(bad, "#resolve\nForged."))
    desk.agent(reply(good, "#resolve\nWrong sender.", sender="Mallory <mallory@evil.example>"))
    desk.agent(reply(good, "#resolve\nSpoof.", sender="=?utf-8?q?ann=40example=2Ecom?= <mallory@evil.example>"))
    desk.agent(reply(desk.token(n, agent="old@example.com"), "#resolve\nGone.", sender="old@example.com"))
    assert desk.ticket(n).status == "new"
    assert desk.sent("agent_reply") == []
    with desk.app.store.reader() as s:
        reasons = [e.data["reason"] for e in s.scalars(select(Event).where(Event.type == "agent-mail-refused"))]
        assert reasons == ["bad-token", "sender-not-an-agent", "display-name-spoof", "inactive-agent"]
        customer_mail = s.scalars(select(Message).where(Message.kind == "customer")).all()
        assert len(customer_mail) == 1
    # only the configured agent address ever hears of it, never mallory
    assert all(r.recipients == ["ann@example.com"] for r in desk.sent("refused_reply"))


def test_collision_hold_and_release(desk: AgentDesk) -> None:
    n = desk.customer().ticket_number
    assert n is not None
    old = desk.token(n)
    desk.customer(body="Also the scanner smokes.", subject="Re: [#1] Printer on fire")
    held = desk.agent(reply(old, "Unplug the printer."))
    assert held.internal and desk.sent("agent_reply") == []
    notices = desk.sent("agent_reply_held")
    assert len(notices) == 1 and b"scanner smokes" in notices[0].raw
    fresh = email.message_from_bytes(notices[0].raw, policy=policy.default)["Reply-To"]
    desk.agent(reply(str(fresh), "#send" + QUOTED))
    out = desk.sent("agent_reply")
    assert len(out) == 1 and b"Unplug the printer." in out[0].raw
    assert "agent-reply-released" in desk.all_events(n)


def test_macro_by_mail(desk: AgentDesk) -> None:
    n = desk.customer().ticket_number
    assert n is not None
    desk.agent(reply(desk.token(n), "#macro thanks"))
    out = desk.sent("agent_reply")
    assert len(out) == 1 and b"Printer on fire" in out[0].raw and b"Anna" in out[0].raw


def test_forward_opens_a_ticket_for_the_customer_and_plain_agent_mail_gets_a_how_to(
    desk: AgentDesk, tmp_path: Path
) -> None:
    body = (
        "#customer zoe@customer.example\n#priority high\n\n---------- Forwarded message ---------\n"
        "From: Zoe <zoe@customer.example>\n\nMy order never came.\n"
    )
    row = desk.agent(eml(sender="ann@example.com", subject="Fwd: Order missing", body=body))
    assert row.ticket_number is not None and row.kind == "agent-note"
    t = desk.ticket(row.ticket_number)
    assert (t.customer.email, t.priority, t.subject) == ("zoe@customer.example", "high", "Order missing")
    assert "ticket-opened-by-agent" in desk.all_events(t.number)
    assert desk.sent("ack") == []
    plain = desk.agent(eml(sender="ann@example.com", subject="lunch?", body="Anyone for lunch?"))
    assert plain.ticket_number is None
    assert desk.sent("ack") == []
    assert [r.recipients for r in desk.sent("refused_reply")] == [["ann@example.com"]]
