"""Every condition field, operator and combinator, against plain inputs."""

from __future__ import annotations

import pytest
from rules_kit import mail, matches, one_condition, reply

from maildesk.rules.engine import evaluate
from maildesk.rules.model import CustomerFacts, TicketState


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{from: carol@customer.example}", True),
        ("{from: CAROL@Customer.Example}", True),  # case-insensitive by default
        ("{from: bob@customer.example}", False),
        ("{from.name: {starts_with: carol}}", True),
        ("{from.name: {ends_with: smith}}", False),
        ("{from.domain: customer.example}", True),
        ("{from.domain: {in: [bigcorp.com, customer.example]}}", True),
        ("{from.domain: [bigcorp.com, acme.org]}", False),  # a list is `in`
        ("{to: support@desk.example}", True),
        ("{recipients: billing@desk.example}", True),  # any of several recipients
        ("{to: sales@desk.example}", False),
        ("{cc: boss@customer.example}", True),
        ("{subject: {contains: URGENT}}", True),
        ("{subject: {equals: 'urgent: server down'}}", True),
        ("{subject: {contains: refund}}", False),
        ("{body: {contains: 'order 12345'}}", True),
        ("{body: {regex: '(?i)unsubscribe'}}", False),
        ("{header.X-Priority: '1'}", True),
        ("{header.x-priority: {in: ['1', '2']}}", True),  # header names ignore case
        ("{header.X-Mailer: {contains: outlook}}", False),
        ("{header.Received: {contains: relay2}}", True),  # repeated header: any value
        ("{has_attachments: true}", True),
        ("{attachment.type: {starts_with: 'image/'}}", True),
        ("{attachment.name: {ends_with: .LOG}}", True),
        ("{attachment.name: {ends_with: .exe}}", False),
        ("{customer.vip: true}", True),
        ("{customer.vip: false}", False),
        ("{customer.tickets: {gt: 2}}", True),
        ("{customer.tickets: {lt: 3}}", False),
        ("{customer.tickets: 3}", True),
        ("{customer.open_tickets: {in: [0, 1]}}", True),
        ("{customer.email: {ends_with: '@customer.example'}}", True),
        ("{customer.domain: customer.example}", True),
        ("{event: new}", True),
    ],
)
def test_fields_and_operators(condition: str, expected: bool) -> None:
    inp = mail(
        subject="Urgent: server down",
        body="Please check order 12345.",
        recipients=("support@desk.example", "billing@desk.example"),
        cc=("boss@customer.example",),
        headers=(("X-Priority", "1"), ("Received", "from relay1"), ("Received", "from relay2")),
        attachments=(("server.LOG", "text/plain"), ("shot.png", "image/png")),
        customer=CustomerFacts(
            email="carol@customer.example", domain="customer.example", vip=True, tickets=3, open_tickets=1
        ),
    )
    assert matches(condition, inp) is expected


def test_no_attachments() -> None:
    assert matches("{has_attachments: false}", mail())
    assert not matches("{attachment.name: {regex: '.*'}}", mail())  # no values: nothing matches


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{ticket.status: resolved}", True),
        ("{ticket.queue: billing}", True),
        ("{ticket.tier: l2}", True),  # tiers are normalised to upper case
        ("{ticket.priority: {in: [high, urgent]}}", True),
        ("{ticket.tags: vip}", True),
        ("{ticket.tags: outage}", False),
        ("{ticket.assignee: anna@desk.example}", True),
    ],
)
def test_ticket_fields(condition: str, expected: bool) -> None:
    ticket = TicketState(
        status="resolved",
        queue="billing",
        tier="L2",
        priority="high",
        tags=("vip", "billing"),
        assignee="anna@desk.example",
    )
    assert matches(condition, reply(ticket)) is expected


def test_ticket_fields_never_match_new_mail() -> None:
    assert not matches("{ticket.status: open}", mail())
    assert matches("{not: {ticket.status: open}}", mail())


def test_case_sensitive_option() -> None:
    inp = mail(subject="ACME order")
    assert matches("{subject: {contains: acme}}", inp)
    assert not matches("{subject: {contains: acme, case_sensitive: true}}", inp)
    assert matches("{subject: {contains: ACME, case_sensitive: true}}", inp)
    assert not matches("{subject: {regex: '^acme', case_sensitive: true}}", inp)
    assert matches("{subject: {regex: '^acme'}}", inp)


def test_several_operators_on_one_field_all_hold() -> None:
    inp = mail(subject="Invoice 2026 overdue")
    assert matches("{subject: {starts_with: invoice, ends_with: overdue}}", inp)
    assert not matches("{subject: {starts_with: invoice, ends_with: paid}}", inp)


def test_combinators() -> None:
    inp = mail(subject="urgent", customer=CustomerFacts(vip=True), body="please unsubscribe me")
    assert matches("{all: [{subject: urgent}, {customer.vip: true}]}", inp)
    assert not matches("{all: [{subject: urgent}, {customer.vip: false}]}", inp)
    assert matches("{any: [{subject: nope}, {customer.vip: true}]}", inp)
    assert not matches("{any: [{subject: nope}, {customer.vip: false}]}", inp)
    assert matches("{not: {subject: nope}}", inp)
    assert not matches("{not: {body: {regex: unsubscribe}}}", inp)
    # a mapping with several keys is all-of; nesting works to any depth
    assert matches("{subject: urgent, customer.vip: true}", inp)
    assert matches(
        "{any: [{not: {customer.vip: true}}, {all: [{subject: urgent}, {not: {from.domain: evil.example}}]}]}", inp
    )


def test_list_under_if_means_all() -> None:
    from rules_kit import ruleset

    rs = ruleset("- name: both\n  if:\n    - subject: urgent\n    - customer.vip: true\n  then: [{tags: [x]}]\n")
    assert evaluate(rs, mail(subject="urgent", customer=CustomerFacts(vip=True))).tags_add == ("x",)
    assert evaluate(rs, mail(subject="urgent")).tags_add == ()


def test_regex_captures_reach_the_hit() -> None:
    rs = one_condition(r"{subject: {regex: 'order\s+(?P<order>\d+)'}}")
    hit = evaluate(rs, mail(subject="Where is Order 4711?")).hits[0]
    assert hit.matched and dict(hit.captures) == {"order": "4711"}
    assert "order='4711'" in hit.why


def test_captures_from_a_negated_or_failed_branch_are_dropped() -> None:
    rs = one_condition(
        r"{any: [{all: [{subject: {regex: '(?P<a>inv\d+)'}}, {customer.vip: true}]}, "
        r"{subject: {regex: '(?P<b>ord\d+)'}}]}"
    )
    hit = evaluate(rs, mail(subject="inv1 ord2")).hits[0]
    assert hit.matched and dict(hit.captures) == {"b": "ord2"}


def test_why_names_the_failing_condition_and_its_line() -> None:
    from rules_kit import ruleset

    rs = ruleset(
        """\
        - name: vip urgent
          if:
            customer.vip: true
            subject: {contains: urgent}
          then: [{queue: priority}]
        """
    )
    hit = evaluate(rs, mail(subject="hello", customer=CustomerFacts(vip=True))).hits[0]
    assert not hit.matched
    assert hit.why == "line 6: subject contains 'urgent' did not hold"


def test_business_hours_condition() -> None:
    from datetime import UTC, datetime

    inside = mail(now=datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    outside = mail(now=datetime(2026, 11, 23, 19, 0, tzinfo=UTC))
    assert matches("{business_hours: true}", inside, hours=True)
    assert not matches("{business_hours: true}", outside, hours=True)
    assert matches("{business_hours: false}", outside, hours=True)
