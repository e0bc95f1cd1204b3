"""Every action, how actions combine, rule order and stop, captures into fields, escalation."""

from __future__ import annotations

import pytest
from rules_kit import mail, reply, ruleset, run

from maildesk.rules.engine import (
    diff_decisions,
    escalate_tier,
    evaluate,
    next_tier,
    pick_least_loaded,
    pick_round_robin,
)
from maildesk.rules.model import AssignSpec, CustomerFacts, Decision, TicketState

EVERY_ACTION = """\
- name: everything
  if: {subject: {regex: 'invoice (?P<invoice>\\d+)'}}
  then:
    - queue: billing
    - tier: L2
    - priority: high
    - status: pending
    - tags: [vip, "inv-{{invoice}}"]
    - field: {invoice: "{{invoice}}", source: "mail"}
    - assign: {agent: Anna@Desk.example}
    - reply: ack_vip
    - notify: {to: boss@desk.example, template: vip_alert}
    - escalate: {note: "VIP, skip L1 ({{invoice}})"}
    - resolve: true
"""


def test_every_action_lands_in_the_decision() -> None:
    d = run(EVERY_ACTION, mail(subject="Invoice 4711 is wrong"))
    assert (d.queue, d.tier, d.priority, d.status) == ("billing", "L3", "high", "pending")  # tier L2, then escalated
    assert d.tags_add == ("vip", "inv-4711")
    assert dict(d.fields) == {"invoice": "4711", "source": "mail"}
    assert d.assign == AssignSpec(strategy="agent", agent="anna@desk.example")
    assert d.replies == ("ack_vip",) and d.ack is None  # a new ticket's reply takes the ack's place
    assert [(m.template, m.kind) for m in d.mails] == [("ack_vip", "reply")]
    assert d.notify == (("boss@desk.example", "vip_alert"),)
    assert d.escalate == ("VIP, skip L1 (4711)",)
    assert d.resolve is True
    assert d.spam is None and d.discard is None
    assert d.hits[0].actions[0] == "queue=billing"
    assert "escalate L2 -> L3: VIP, skip L1 (4711)" in d.hits[0].actions


def test_no_match_means_no_change() -> None:
    d = run(EVERY_ACTION, mail(subject="hello"))
    assert d == Decision(hits=d.hits, ack="ack", mails=d.mails)  # a new ticket: the acknowledgement
    assert [(m.template, m.kind) for m in d.mails] == [("ack", "ack")]
    assert [h.matched for h in d.hits] == [False]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("{assign: {round_robin: L1}}", AssignSpec(strategy="round_robin", group="L1")),
        ("{assign: {least_loaded: L2}}", AssignSpec(strategy="least_loaded", group="L2")),
        ("{assign: anna@desk.example}", AssignSpec(strategy="agent", agent="anna@desk.example")),
    ],
)
def test_assign_strategies(action: str, expected: AssignSpec) -> None:
    assert run(f"- name: a\n  then: [{action}]\n", mail()).assign == expected


def test_spam_and_discard_and_replies_are_suppressed() -> None:
    body = """\
    - name: greet
      then: [{reply: ack}]
    - name: junk
      if: {subject: {contains: casino}}
      then: [{spam: "casino spam"}]
    """
    d = run(body, mail(subject="Best casino"))
    assert d.spam == "casino spam" and d.replies == () and d.mails == () and d.ack is None
    assert d.notes == ("automatic mail ack suppressed: mail marked spam",)
    assert run(body, mail(subject="hello")).ack == "ack"  # `reply: ack` is the acknowledgement itself
    d = run("- name: drop\n  then: [{discard: true}, {reply: ack}]\n", mail())
    assert d.discard == "rule 'drop'" and d.replies == () and d.mails == ()


def test_later_rules_override_and_accumulate() -> None:
    body = """\
    - name: first
      then: [{queue: general}, {priority: low}, {tags: [a]}, {field: {x: "1", y: "1"}}, {reply: one}, \
{assign: {round_robin: L1}}]
    - name: second
      then: [{queue: billing}, {tags: [b, a]}, {field: {y: "2"}}, {reply: two}, {reply: one}]
    """
    d = run(body, mail())
    assert d.queue == "billing" and d.priority == "low"
    assert d.tags_add == ("a", "b")
    assert dict(d.fields) == {"x": "1", "y": "2"}
    assert d.replies == ("one",)  # one answer per mail: the last plain reply wins
    assert any("replaces" in n and "add `also: true`" in n for n in d.notes)
    assert d.assign == AssignSpec(strategy="round_robin", group="L1")
    assert d.matched == ("first", "second")


def test_stop_ends_evaluation_only_when_the_rule_matches() -> None:
    body = """\
    - name: vip
      if: {customer.vip: true}
      then: [{queue: priority}]
      stop: true
    - name: billing
      if: {subject: {contains: invoice}}
      then: [{queue: billing}]
    """
    vip = run(body, mail(subject="invoice", customer=CustomerFacts(vip=True)))
    assert vip.queue == "priority" and [h.name for h in vip.hits] == ["vip"]
    normal = run(body, mail(subject="invoice"))
    assert normal.queue == "billing" and [(h.name, h.matched) for h in normal.hits] == [
        ("vip", False),
        ("billing", True),
    ]


def test_rule_order_decides() -> None:
    a = "- name: a\n  then: [{queue: one}]\n"
    b = "- name: b\n  then: [{queue: two}]\n"
    assert run(a + b, mail()).queue == "two"
    assert run(b + a, mail()).queue == "one"


def test_when_filters_by_event_and_explains() -> None:
    body = """\
    - name: only new
      when: new
      then: [{tags: [new]}]
    - name: only replies
      when: reply
      then: [{tags: [reply]}]
    - name: both
      then: [{tags: [both]}]
    """
    assert run(body, mail()).tags_add == ("new", "both")
    d = run(body, reply())
    assert d.tags_add == ("reply", "both")
    assert d.hits[0].why == "only for new mail, this is reply"


def test_disabled_rule_is_not_evaluated() -> None:
    d = run("- name: off\n  enabled: false\n  then: [{queue: x}]\n", mail())
    assert d.queue is None and d.hits == ()


def test_captures_into_fields_from_body_with_missing_group_empty() -> None:
    body = r"""
    - name: invoice
      if:
        any:
          - subject: {regex: 'invoice\s*#?(?P<invoice>\d{4,})'}
          - body: {regex: 'invoice\s*(?:no\.?|#)\s*(?P<invoice>\d{4,})'}
          - subject: {contains: refund}
      then: [{queue: billing}, {field: {invoice: "{{invoice}}", note: "inv {{ invoice }}!"}}]
    """
    d = run(body, mail(subject="Question about my bill", body="See Invoice No. 98765 attached"))
    assert dict(d.fields) == {"invoice": "98765", "note": "inv 98765!"}
    d = run(body, mail(subject="refund please"))
    assert d.queue == "billing" and dict(d.fields) == {"invoice": "", "note": "inv !"}


def test_captures_keep_the_original_case() -> None:
    d = run(
        "- name: c\n  if: {subject: {regex: 'ref (?P<ref>\\w+)'}}\n  then: [{field: {ref: '{{ref}}'}}]\n",
        mail(subject="REF AbC123"),
    )
    assert d.fields["ref"] == "AbC123"


def test_reply_is_rerouted_and_reopened() -> None:
    body = """\
    - name: reopen
      when: reply
      if: {ticket.status: [resolved, closed]}
      then: [{status: open}, {tags: [reopened]}]
    - name: outage in reply
      when: reply
      if: {body: {regex: '\\b(?P<symptom>still down|outage)\\b'}, ticket.queue: billing}
      then: [{queue: technical}, {escalate: {note: "customer says {{symptom}}"}}]
    """
    ticket = TicketState(status="resolved", queue="billing", tier="L1")
    d = run(body, reply(ticket, body="The site is STILL DOWN for us."))
    assert (d.status, d.queue, d.tier) == ("open", "technical", "L2")
    assert d.tags_add == ("reopened",) and d.escalate == ("customer says STILL DOWN",)
    quiet = run(body, reply(TicketState(status="open", queue="billing"), body="thanks"))
    assert quiet.matched == () and quiet.queue is None


def test_escalation_steps_from_the_ticket_tier_and_l3_stays() -> None:
    body = "- name: up\n  then: [{escalate: first}, {escalate: {note: second}}, {escalate: true}]\n"
    d = run(body, reply(TicketState(tier="L1")))
    assert d.tier == "L3"
    assert d.escalate == ("first", "second", "escalated by rule 'up'")
    assert d.notes == ("rule 'up': escalate: already at L3, the top tier; stays L3",)
    assert "already at L3" in d.hits[0].actions[2]
    assert run(body, mail()).tier == "L3"  # new mail starts at L1


def test_next_tier_and_escalate_tier() -> None:
    assert next_tier("L1") == "L2" and next_tier("l2") == "L3" and next_tier("L3") == "L3"
    assert escalate_tier("L3") == ("L3", "already at L3, the top tier; stays L3")
    with pytest.raises(ValueError):
        next_tier("L9")


def test_pick_round_robin() -> None:
    members = ["anna@x", "bob@x", "cem@x"]
    assert pick_round_robin(members, None) == "anna@x"
    assert pick_round_robin(members, "anna@x") == "bob@x"
    assert pick_round_robin(members, "CEM@x") == "anna@x"  # wraps, ignores case
    assert pick_round_robin(members, "gone@x") == "anna@x"  # last one left the group
    with pytest.raises(ValueError):
        pick_round_robin([], None)


def test_pick_least_loaded_ties_alphabetical() -> None:
    assert pick_least_loaded({"cem@x": 1, "bob@x": 3, "anna@x": 1}) == "anna@x"
    assert pick_least_loaded({"bob@x": 0, "anna@x": 2}) == "bob@x"
    with pytest.raises(ValueError):
        pick_least_loaded({})


def test_diff_decisions_reads_like_a_changelog() -> None:
    old_rules = ruleset("- name: billing\n  then: [{queue: billing}, {tags: [a]}, {field: {inv: '1'}}]\n")
    new_rules = ruleset("- name: sales\n  then: [{queue: sales}, {tags: [b]}, {priority: high}, {reply: ack}]\n")
    old, new = evaluate(old_rules, mail()), evaluate(new_rules, mail())
    assert diff_decisions(old, new) == [
        "queue: billing -> sales",
        "priority: (none) -> high",
        "tags: +b -a",
        "field inv: 1 -> (none)",
        "rules matched: +'sales' -'billing'",
    ]
    assert diff_decisions(old, old) == []


def test_evaluation_is_deterministic_and_json_ready() -> None:
    import json

    rs = ruleset(EVERY_ACTION)
    inp = mail(subject="invoice 1234")
    assert evaluate(rs, inp) == evaluate(rs, inp)
    data = json.loads(json.dumps(evaluate(rs, inp).to_json()))
    assert data["queue"] == "billing" and data["hits"][0]["captures"] == {"invoice": "1234"}


def test_hostile_captures_are_flattened_and_bounded() -> None:
    body = r"""
    - name: grab
      if: {body: {regex: 'ref:(?P<ref>[\s\S]*)$'}}
      then: [{field: {ref: "{{ref}}"}}, {tags: ["ref-{{ref}}"]}, {escalate: "ref {{ref}}"}]
    """
    d = run(body, mail(body="ref: evil\r\nBcc: victim@example.com\x00" + "x" * 500))
    assert "\r" not in d.fields["ref"] and "\n" not in d.fields["ref"] and "\x00" not in d.fields["ref"]
    assert d.fields["ref"].startswith("evil Bcc: victim@example.com x") and len(d.fields["ref"]) == 200
    assert d.tags_add[0].startswith("ref-evil-Bcc:-victim@example.com") and " " not in d.tags_add[0]
    assert "\n" not in d.escalate[0]
