"""Issue 18 through the real pipeline (both backends): the automatic mail a customer gets
(one per incoming mail; `ack-replaced`), `untag:` through the change path, guided
information collection (asked, answered, asked again once, handed to an agent), the asked
fields in agent notifications and `ticket show`, and merge (conversation and notice)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maildesk.services import tickets as ops
from maildesk.services import views
from maildesk.store.models import Suppression, Ticket
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk, team_settings

ORDER = r"order[ \t]{0,3}(?:no\.?|number|#)?[ \t]{0,3}[:#]?[ \t]{0,3}(\d{5,10})"
RULES = f"""
rules:
  - name: closed for the weekend
    when: new
    if: {{subject: {{contains: weekend}}}}
    then: [{{reply: after_hours}}]
  - name: quiet
    when: new
    if: {{subject: {{contains: quiet}}}}
    then: [{{ack: false}}]
  - name: two mails on purpose
    when: new
    if: {{subject: {{contains: survey}}}}
    then: [{{reply: {{template: after_hours, also: true}}}}]
  - name: orders
    when: new
    if: {{subject: {{contains: order}}}}
    then:
      - queue: billing
      - ask:
          fields: {{order_number: '{ORDER}'}}
          template: ask_order_number
          handoff: {{tags: [needs-agent], assign: {{least_loaded: L1}}}}
  - name: answered by hand
    when: reply
    if: {{body: {{contains: "never mind"}}}}
    then: [{{untag: [vip, billing]}}]
"""


@pytest.fixture
def desk(tmp_path: Path, database_url: str) -> Iterator[Desk]:
    d = Desk(team_settings(tmp_path, database_url, RULES))
    yield d
    d.close()


def customer_mail(d: Desk, number: int) -> list[str]:
    return [i.template for i in d.outbox(number, internal=False)]


def say_reply(d: Desk, number: int, body: str, sender: str = "Anna Schmidt <anna@customer.example>") -> Any:
    d.later(minutes=10)
    subject = d.ticket(number).subject
    return d.say(eml(subject=f"Re: [#{number}] {subject}", body=body, sender=sender))


def test_one_automatic_mail_per_customer_mail(desk: Desk) -> None:
    d = desk
    plain = d.say(eml(subject="Printer on fire")).ticket_number
    assert customer_mail(d, plain) == ["ack"] and d.events(plain, "ack-replaced") == []
    weekend = d.say(eml(subject="Broken over the weekend")).ticket_number
    assert customer_mail(d, weekend) == ["after_hours"]  # the rule's reply took the ack's place
    replaced = d.events(weekend, "ack-replaced")[0]
    assert replaced["mails"] == [
        {"template": "after_hours", "kind": "reply", "why": "rule 'closed for the weekend': reply after_hours"}
    ]
    quiet = d.say(eml(subject="quiet please")).ticket_number
    assert customer_mail(d, quiet) == []
    assert "no acknowledgement: rule 'quiet': ack: false" in d.events(quiet, "ack-replaced")[0]["notes"]
    survey = d.say(eml(subject="survey")).ticket_number
    assert sorted(customer_mail(d, survey)) == ["ack", "after_hours"]  # `also: true` asked for two
    # a plain reply from the customer gets no automatic mail at all
    say_reply(d, plain, "Still burning.\n")
    assert customer_mail(d, plain) == ["ack"]


def test_untag_goes_through_the_change_path(desk: Desk) -> None:
    d = desk
    number = d.say(eml(subject="Printer on fire")).ticket_number
    assert number is not None
    with d.app.store.session() as s:
        ops.change_tags(s, number, ["+vip", "+billing", "+keep"], "ann@example.com", d.now)
    say_reply(d, number, "Never mind, it works now.\n")
    assert d.ticket(number).tags == ["keep"]
    routed = d.events(number, "routed")[-1]
    assert routed["changes"]["untag"] == ["vip", "billing"] and routed["decision"]["tags_remove"] == ["vip", "billing"]


def test_guided_collection_answered(desk: Desk) -> None:
    d = desk
    number = d.say(eml(subject="Where is my order?", body="The parcel never came.\n")).ticket_number
    assert number is not None
    t = d.ticket(number)
    assert customer_mail(d, number) == ["ask_order_number"]  # the question instead of the ack
    assert t.ask is not None and t.ask["state"] == "waiting" and t.ask["missing"] == ["order_number"]
    assert "awaiting-info" in t.tags
    assert d.events(number, "ask-sent")[0]["fields"] == ["order_number"]
    say_reply(d, number, "Sure: Order No. 4711234\n\n> old quoted text order 9999999\n")
    t = d.ticket(number)
    assert t.fields["order_number"] == "4711234"  # from the visible text, not the quote
    assert t.ask is not None and t.ask["state"] == "answered" and "awaiting-info" not in t.tags
    assert d.events(number, "field-captured")[0]["fields"] == {"order_number": "4711234"}
    assert customer_mail(d, number) == ["ask_order_number"]  # the answer gets no automatic mail
    # the queue's agents hear of the reply with the field in the notification
    told = [i for i in d.outbox(number, internal=True)]
    assert told and b"order_number: 4711234" in told[-1].raw
    with d.app.store.reader() as s:
        view = views.ticket_view(s, number, d.now)
    assert view["fields"] == {"order_number": "4711234"} and view["asked"]["state"] == "answered"


def test_guided_collection_asks_once_more_then_hands_over(desk: Desk) -> None:
    d = desk
    number = d.say(eml(subject="My order is late", body="Nothing arrived.\n")).ticket_number
    assert number is not None
    say_reply(d, number, "I do not have it here.\n")
    assert customer_mail(d, number) == ["ask_order_number", "ask_again"]
    again = d.outbox(number, internal=False)[-1]
    assert b"order number" in again.raw and b"In-Reply-To:" in again.raw
    assert d.events(number, "ask-again")[0]["missing"] == ["order_number"]
    assert d.ticket(number).ask["asked"] == 2  # type: ignore[index]
    say_reply(d, number, "Still nothing, sorry.\n")
    t = d.ticket(number)
    assert customer_mail(d, number) == ["ask_order_number", "ask_again"]  # not asked a third time
    assert t.ask is not None and t.ask["state"] == "handed-off"
    assert "needs-agent" in t.tags and "awaiting-info" not in t.tags
    assert t.assignee in ("ann@example.com", "bob@example.com")  # least loaded at L1 in billing
    handoff = d.events(number, "ask-handoff")[0]
    assert handoff["missing"] == ["order_number"] and handoff["assign"] == t.assignee
    told = [i for i in d.outbox(number, internal=True) if t.assignee in i.recipients]
    assert told and b"Asked for, not given yet: order_number" in told[-1].raw
    # a later reply changes nothing in the guided state and sends the customer nothing
    say_reply(d, number, "Order 1234567 found it!\n")
    assert customer_mail(d, number) == ["ask_order_number", "ask_again"]
    assert d.ticket(number).ask["state"] == "handed-off"  # type: ignore[index]


def test_a_mail_that_gives_the_field_is_not_asked(desk: Desk) -> None:
    d = desk
    number = d.say(eml(subject="Order problem", body="Order #12345678 arrived broken.\n")).ticket_number
    assert number is not None
    assert customer_mail(d, number) == ["ack"]
    t = d.ticket(number)
    assert t.fields == {"order_number": "12345678"} and t.ask is None and "awaiting-info" not in (t.tags or [])


def test_merge_shows_the_conversation_and_tells_the_customer(desk: Desk) -> None:
    d = desk
    target = d.say(eml(subject="Printer on fire", body="It burns.\n")).ticket_number
    d.later(minutes=5)
    first = d.say(eml(subject="Smoke in room 4", body="There is smoke.\n", sender="Bob <bob@other.example>"))
    source = first.ticket_number
    assert target is not None and source is not None
    with d.app.store.session() as s:
        result = ops.merge(s, target, source, "ann@example.com", d.now, d.app.deps)
    assert result.detail["notice"] == "queued"
    with d.app.store.reader() as s:
        view = views.ticket_view(s, target, d.now)
        assert s.get(Ticket, source).merged_into == target  # type: ignore[union-attr]
    texts = [(m["from_ticket"], m["text"].strip()) for m in view["messages"] if m["direction"] == "in"]
    assert texts == [(None, "It burns."), (source, "There is smoke.")]
    assert view["merged_from"] == [source]
    assert any(e["type"] == "merged-into" and e["from_ticket"] == source for e in view["events"])
    notice = [i for i in d.outbox(source, internal=False) if i.template == "merged"]
    assert len(notice) == 1 and notice[0].recipients == ["bob@other.example"]
    raw = notice[0].raw.decode()
    assert f"In-Reply-To: {first.message_id}" in raw or f"In-Reply-To: <{first.message_id}>" in raw
    assert f"[#{target}]" in raw and "Auto-Submitted: auto-replied" in raw
    # merging again is refused (no second notice)
    with d.app.store.session() as s:
        with pytest.raises(ops.OperationError):
            ops.merge(s, target, source, "ann@example.com", d.now, d.app.deps)
    # the notice is automatic mail: a suppressed address does not get it (the limits hold it)
    third = d.say(eml(subject="More smoke", body="Smoke again.\n", sender="Cy <cy@third.example>")).ticket_number
    assert third is not None
    with d.app.store.session() as s:
        s.add(Suppression(address="cy@third.example", reason="bounced", created_at=d.now))
    with d.app.store.session() as s:
        held = ops.merge(s, target, third, "ann@example.com", d.now, d.app.deps)
    assert held.detail["notice"] == "held"
    assert d.events(third, "automatic-mail-held")
