"""Which automatic mail a customer gets (issue 18): one answer per incoming mail — a rule's
`reply:` or `ask:` question takes the acknowledgement's place, `ack: false|TEMPLATE`,
`also: true` for more; `untag:`; the `ask:` syntax and the capture patterns; every
problem with file:line."""

from __future__ import annotations

import textwrap

import pytest
from rules_kit import mail, reply, run

from maildesk.rules.engine import capture_fields, diff_decisions, evaluate
from maildesk.rules.loader import load_rules_text
from maildesk.rules.model import AssignSpec, RulesError, TicketState

ORDER = r"order[ \t]{0,3}(?:no\.?|number|#)?[ \t]{0,3}[:#]?[ \t]{0,3}(\d{5,10})"


def sent(d: object) -> list[tuple[str, str]]:
    return [(m.template, m.kind) for m in d.mails]  # type: ignore[attr-defined]


def test_reply_replaces_the_acknowledgement_on_a_new_ticket_only() -> None:
    body = "- name: closed\n  then: [{reply: after_hours}]\n"
    d = run(body, mail())
    assert sent(d) == [("after_hours", "reply")] and d.ack is None and d.replies == ("after_hours",)
    assert any("acknowledgement replaced by after_hours" in n for n in d.notes)
    assert "rule 'closed'" in d.mails[0].why
    assert sent(run(body, reply())) == [("after_hours", "reply")]  # a reply has no ack to replace
    assert sent(run("- name: x\n  if: {subject: nope}\n  then: [{reply: a}]\n", reply())) == []


def test_ack_false_ack_template_and_also() -> None:
    d = run("- name: quiet\n  then: [{ack: false}]\n", mail())
    assert d.mails == () and d.ack is None and d.notes == ("no acknowledgement: rule 'quiet': ack: false",)
    d = run("- name: vip\n  then: [{ack: ack_vip}]\n", mail())
    assert sent(d) == [("ack_vip", "ack")] and d.ack == "ack_vip"
    d = run("- name: two\n  then: [{reply: {template: survey_invite, also: true}}]\n", mail())
    assert sent(d) == [("ack", "ack"), ("survey_invite", "also")]
    d = run("- name: two\n  then: [{reply: after_hours}, {reply: {template: b, also: true}}, {ack: false}]\n", mail())
    assert sent(d) == [("after_hours", "reply"), ("b", "also")]
    assert sent(run("- name: r\n  then: [{ack: false}]\n", reply())) == []  # ack: only matters for new tickets
    # spam or discard: nothing at all goes out, whatever the rules asked for
    d = run("- name: j\n  then: [{reply: {template: b, also: true}}, {spam: true}]\n", mail())
    assert d.mails == () and d.ack is None and "suppressed" in d.notes[-1]


def test_untag_and_tags_later_rule_wins() -> None:
    d = run("- name: a\n  then: [{tags: [x, y]}]\n- name: b\n  then: [{untag: [x, waiting]}]\n", mail())
    assert d.tags_add == ("y",) and d.tags_remove == ("x", "waiting")
    d = run("- name: a\n  then: [{untag: [x]}]\n- name: b\n  then: [{tags: [x]}]\n", mail())
    assert d.tags_add == ("x",) and d.tags_remove == ()
    d = run(
        "- name: answered\n  if: {ticket.tags: awaiting-info}\n  then: [{untag: [awaiting-info]}]\n",
        reply(TicketState(tags=("awaiting-info",))),
    )
    assert d.tags_remove == ("awaiting-info",) and d.hits[0].actions == ("tags-=awaiting-info",)
    old = run("- name: a\n  then: [{tags: [x]}]\n", mail())
    assert "untag: +awaiting-info" in diff_decisions(old, d)


ASK = f"""\
- name: closed
  then: [{{reply: after_hours}}]
- name: orders
  if: {{subject: {{contains: order}}}}
  then:
    - ask:
        fields: {{order_number: '{ORDER}'}}
        template: ask_order_number
        handoff: {{tags: [needs-agent, orders], assign: {{least_loaded: L1}}}}
"""


def test_ask_is_the_one_mail_and_lists_what_is_missing() -> None:
    d = run(ASK, mail(subject="My order", body="It never came."))
    assert sent(d) == [("ask_order_number", "ask")]
    assert d.ask is not None and d.ask_missing == ("order_number",) and d.ask_rule == "orders"
    assert d.ask.again == "ask_again" and d.ask.handoff_tags == ("needs-agent", "orders")
    assert d.ask.handoff_assign == AssignSpec("least_loaded", group="L1")
    assert any("reply after_hours not sent" in n for n in d.notes)
    # the mail already gives the number: no question, the field is filled, the other answer goes out
    d = run(ASK, mail(subject="My order", body="Order number: 1234567 never came."))
    assert sent(d) == [("after_hours", "reply")] and dict(d.fields) == {"order_number": "1234567"}
    assert d.ask is None and d.ask_missing == ()
    assert d.to_json()["mails"] == [
        {"template": "after_hours", "kind": "reply", "why": "rule 'closed': reply after_hours"}
    ]


def test_capture_fields_group_rules() -> None:
    fields = [("order_number", ORDER), ("whole", r"REF-\d+"), ("named", r"ticket (?P<named>\w+) (\d+)")]
    text = "Hi, my ORDER #  98765 and REF-42, ticket abc 7"
    assert capture_fields(fields, text) == {"order_number": "98765", "whole": "REF-42", "named": "abc"}
    assert capture_fields(fields, "nothing here") == {}
    hostile = "order no " + "9" * 10 + "\n" * 20000
    assert capture_fields([("order_number", ORDER)], hostile) == {"order_number": "9" * 10}


def problems(body: str, **known: object) -> list[str]:
    text = "version: 1\nrules:\n" + textwrap.indent(textwrap.dedent(body), "  ")
    with pytest.raises(RulesError) as info:
        load_rules_text(text, "rules.yaml", **known)  # type: ignore[arg-type]
    return info.value.messages


def test_syntax_errors_name_file_and_line() -> None:
    assert problems("- name: a\n  then: [{reply: {template: x, also: maybe}}]\n") == [
        "rules.yaml:4: rule 'a': also must be true or false, not 'maybe'"
    ]
    assert problems("- name: a\n  then:\n    - reply: {tmpl: x}\n") == [
        "rules.yaml:5: rule 'a': unknown reply key 'tmpl'; use template and also (did you mean 'template'?)"
    ]
    assert problems("- name: a\n  then: [{ack: nope}]\n", known_templates={"ack", "ask_again"}) == [
        "rules.yaml:4: rule 'a': unknown template 'nope'"
    ]
    assert problems("- name: a\n  then: [{untag: [two words]}]\n") == [
        "rules.yaml:4: rule 'a': tag 'two words' must be one word (no spaces or commas)"
    ]
    got = problems(
        """\
        - name: a
          then:
            - ask:
                fields: {order: '(?<=x)y+', "bad name": 'x'}
                template: ask_order_number
                handof: {}
        """
    )
    assert got[0].startswith("rules.yaml:6: rule 'a': bad capture pattern for order '(?<=x)y+': uses lookahead")
    assert got[1] == "rules.yaml:6: rule 'a': field name 'bad name' must be a word (letters, digits, _ . -)"
    assert got[2] == (
        "rules.yaml:8: rule 'a': unknown ask key 'handof'; "
        "use fields, template, again, handoff (did you mean 'handoff'?)"
    )
    assert problems("- name: a\n  then: [{ask: {template: t}}]\n") == [
        "rules.yaml:4: rule 'a': ask needs `fields:` and `template:`"
    ]
    known = {"ask_order_number"}  # ask_again is the default `again:` and must exist too
    assert problems(
        "- name: a\n  then: [{ask: {fields: {n: 'x'}, template: ask_order_number}}]\n", known_templates=known
    ) == ["rules.yaml:4: rule 'a': unknown template 'ask_again'"]


def test_the_shipped_rules_answer_after_hours_with_one_mail() -> None:
    from pathlib import Path

    from rules_kit import MONDAY_MORNING

    from maildesk.rules.loader import load_rules

    shipped = load_rules(Path(__file__).resolve().parents[2] / "maildesk" / "defaults" / "rules.yaml")
    night = MONDAY_MORNING.replace(hour=22)
    d = evaluate(shipped, mail(now=night, subject="Printer on fire"))
    assert sent(d) == [("after_hours", "reply")]  # was: ack and after_hours
    d = evaluate(shipped, mail(now=night, subject="Where is my order?", body="It never came."))
    assert sent(d) == [("ask_order_number", "ask")] and d.ask_missing == ("order_number",)
    d = evaluate(shipped, mail(subject="Order 4711", body="Bestellnummer: 20261234, the parcel is late."))
    assert sent(d) == [("ack", "ack")] and d.fields["order_number"] == "20261234"
