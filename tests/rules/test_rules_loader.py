"""Loading rules: every problem reported at once, with file, line, rule and a useful hint."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from rules_kit import mail

from maildesk.errors import ConfigError
from maildesk.rules.engine import evaluate
from maildesk.rules.loader import load_rules, load_rules_text
from maildesk.rules.model import RulesError

DEFAULTS = Path(__file__).resolve().parents[2] / "maildesk" / "defaults" / "rules.yaml"


def problems(text: str, **known: object) -> list[str]:
    with pytest.raises(RulesError) as info:
        load_rules_text(textwrap.dedent(text), "rules.yaml", **known)  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigError)
    return info.value.messages


def test_example_from_the_issue_message_format() -> None:
    text = """\
    version: 1
    rules:
      - name: vip
        if:
          sendr: boss@example.com
        then:
          - queue: priority
    """
    assert problems(text) == ["rules.yaml:5: rule 'vip': unknown condition field 'sendr'"]


def test_all_errors_collected_with_lines() -> None:
    text = """\
    version: 1
    rules:
      - name: vip
        if:
          all:
            - subject: {contian: urgent}
            - body: {regex: "(unclosed"}
            - customer.vip: {gt: 3}
        then:
          - tier: L4
          - queue: priorty
          - reply: ack_vipp
          - frobnicate: yes
          - assign: {agent: nobody@desk.example}
          - field: {invoice: "{{invoice}}"}
      - name: second
        when: sometimes
        then:
          - notify: {to: "boss@example.com, eve@evil.example", template: vip_alert}
          - assign: {round_robin: L9}
      - name: vip
        then: [{queue: billing}]
    """
    got = problems(
        text,
        known_queues={"priority", "billing"},
        known_templates={"ack_vip", "vip_alert"},
        known_agents={"anna@desk.example"},
        known_groups={"L1", "L2"},
    )
    assert got == [
        "rules.yaml:6: rule 'vip': unknown operator 'contian' for subject (did you mean 'contains'?)",
        "rules.yaml:7: rule 'vip': bad regex '(unclosed': missing ), unterminated subpattern at position 0",
        "rules.yaml:8: rule 'vip': operator 'gt' needs a number field; customer.vip is true/false",
        "rules.yaml:10: rule 'vip': bad tier 'L4'; use one of L1, L2, L3",
        "rules.yaml:11: rule 'vip': unknown queue 'priorty' (did you mean 'priority'?)",
        "rules.yaml:12: rule 'vip': unknown template 'ack_vipp' (did you mean 'ack_vip'?)",
        "rules.yaml:13: rule 'vip': unknown action 'frobnicate'",
        "rules.yaml:14: rule 'vip': unknown agent 'nobody@desk.example'",
        "rules.yaml:17: rule 'second': when must be new, reply or any, not 'sometimes'",
        "rules.yaml:19: rule 'second': notify to 'boss@example.com, eve@evil.example' is not one email address",
        "rules.yaml:20: rule 'second': unknown group 'L9'",
        "rules.yaml:21: rule 'vip': duplicate rule name (first on line 3)",
    ]


def test_placeholder_without_a_named_group_is_an_error() -> None:
    text = """\
    version: 1
    rules:
      - name: inv
        if: {subject: {regex: 'invoice (?P<number>\\d+)'}}
        then:
          - field: {invoice: "{{invoice}}"}
    """
    assert problems(text) == [
        "rules.yaml:6: rule 'inv': placeholder {{invoice}} has no named regex group (?P<invoice>...) "
        "in this rule's conditions; this rule captures number"
    ]


def test_file_level_problems() -> None:
    assert problems("rules: []\n") == ["rules.yaml:1: missing `version: 1`"]
    assert problems("") == ["rules.yaml: the file is empty; expected `version: 1` and `rules:`"]
    assert problems("version: 1\nrule: []\n") == [
        "rules.yaml:1: missing `rules:` list",
        "rules.yaml:2: unknown top-level key 'rule' (did you mean 'rules'?)",
    ]
    assert problems("version: 1\nrules:\n  - name: a\n    then: [{queue: a}]\n  queue: b\n")[0].startswith(
        "rules.yaml:5: YAML syntax:"
    )


def test_yaml_traps_get_hints() -> None:
    text = """\
    version: 1
    business_hours: {timezone: Europe/Berlin, start: 8:00, end: "18:00", holidays: NO}
    rules:
      - name: a
        if: {business_hours: false}
        then: [{queue: a}]
    """
    got = problems(text)
    assert got[0].startswith("rules.yaml:2: start: write the time in quotes")
    assert got[1] == 'rules.yaml:2: holidays: NO reads as true/false in YAML; quote the country code: "NO"'


def test_bad_business_hours_values() -> None:
    text = """\
    version: 1
    business_hours:
      timezone: Mars/Olympus
      days: [mon, funday]
      start: "18:00"
      end: "08:00"
      holidays: XX
      closed: [someday]
    rules: []
    """
    got = problems(text)
    assert got[0] == "rules.yaml:3: unknown time zone 'Mars/Olympus'"
    assert got[1] == "rules.yaml:4: unknown day 'funday'; use mon, tue, wed, thu, fri, sat, sun"
    assert got[2] == "rules.yaml:6: end 08:00 must be after start 18:00"
    assert got[3].startswith("rules.yaml:7: unknown holiday calendar 'XX'")
    assert got[4] == "rules.yaml:8: closed dates must look like 2026-12-24, not 'someday'"


def test_business_hours_condition_needs_the_section() -> None:
    text = "version: 1\nrules:\n  - name: a\n    if: {business_hours: true}\n    then: [{queue: a}]\n"
    assert problems(text) == [
        "rules.yaml:4: rule 'a': condition on business_hours, but the file has no `business_hours:` section"
    ]


def test_rule_shape_problems() -> None:
    text = """\
    version: 1
    rules:
      - name: no actions
        if: {subject: x}
      - queue: billing
        then: [{queue: x}]
      - name: dup keys
        if: {subject: a, subject: b}
        then: [{tags: [has space]}]
        stop: maybe
      - just a string
    """
    assert problems(text) == [
        "rules.yaml:3: rule 'no actions': rule has no actions (`then:`)",
        "rules.yaml:5: rule '#2': rule has no name",
        "rules.yaml:5: rule '#2': unknown rule key 'queue' (conditions go under `if:`, actions under `then:`)",
        "rules.yaml:8: rule 'dup keys': duplicate key 'subject' (first on line 8)",
        "rules.yaml:9: rule 'dup keys': tag 'has space' must be one word (no spaces or commas)",
        "rules.yaml:10: rule 'dup keys': stop must be true or false, not 'maybe'",
        "rules.yaml:11: rule '#4': each rule must be a mapping starting with `name:`",
    ]


def test_closed_vocabularies_in_conditions() -> None:
    text = """\
    version: 1
    rules:
      - name: a
        if: {ticket.status: reopened, ticket.tier: [L1, L5], ticket.queue: billng, ticket.priority: high}
        then: [{priority: whenever}]
    """
    assert problems(text, known_queues={"billing"}) == [
        "rules.yaml:4: rule 'a': unknown status 'reopened' (did you mean 'open'?)",
        "rules.yaml:4: rule 'a': unknown tier 'L5'",
        "rules.yaml:4: rule 'a': unknown queue 'billng' (did you mean 'billing'?)",
        "rules.yaml:5: rule 'a': bad priority 'whenever'; use one of low, normal, high, urgent",
    ]


def test_string_fields_take_the_words_as_written() -> None:
    rs = load_rules_text(
        "version: 1\nrules:\n  - name: y\n    if: {subject: yes, body: 0012}\n    then: [{tags: [t]}]\n"
    )
    assert evaluate(rs, mail(subject="Yes", body="0012")).tags_add == ("t",)


def test_known_sets_accept_valid_names() -> None:
    text = (
        "version: 1\nrules:\n  - name: a\n    then: [{queue: billing}, {reply: ack}, "
        "{assign: {agent: Anna@Desk.example}}, {assign: {least_loaded: L2}}]\n"
    )
    rs = load_rules_text(
        text, known_queues={"billing"}, known_templates={"ack"}, known_agents={"anna@desk.example"}, known_groups={"L2"}
    )
    assert [a.kind for a in rs.rules[0].actions] == ["queue", "reply", "assign", "assign"]


def test_load_rules_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\nrules:\n  - name: a\n    then: [{queue: a}]\n  - name: b\n    then: [{tier: L7}]\n")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert str(info.value) == f"{path}:6: rule 'b': bad tier 'L7'; use one of L1, L2, L3"
    assert (info.value.file, info.value.line, info.value.rule) == (str(path), 6, "b")
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")


def test_the_shipped_example_loads_and_routes() -> None:
    from datetime import UTC, datetime

    from maildesk.rules.model import CustomerFacts, TicketState

    rs = load_rules(
        DEFAULTS,
        known_templates={"vip_alert", "outage_alert", "after_hours", "ask_order_number", "ask_again"},
        known_queues={"general", "priority", "billing", "technical"},
        known_groups={"L2", "billing"},
    )
    assert len(rs.rules) == 13
    billing = evaluate(rs, mail(subject="Rechnung Nr. RE-2026001 falsch"))
    assert (billing.queue, billing.fields["invoice"], billing.replies) == ("billing", "RE-2026001", ())
    vip = evaluate(rs, mail(customer=CustomerFacts(vip=True), subject="Our API is down"))
    assert (vip.queue, vip.tier, vip.priority) == ("technical", "L2", "urgent")
    assert vip.notify == (("teamlead@example.com", "vip_alert"), ("oncall@example.com", "outage_alert"))
    night = evaluate(rs, mail(now=datetime(2026, 11, 22, 23, 0, tzinfo=UTC)))
    assert night.replies == ("after_hours",) and night.queue == "general" and night.ack is None  # one mail
    spam = evaluate(rs, mail(subject="Bitcoin investment", now=datetime(2026, 11, 22, 23, 0, tzinfo=UTC)))
    assert spam.discard and spam.replies == () and spam.matched == ("defaults for new mail", "known spam phrases")
    again = evaluate(
        rs,
        mail(
            event="reply", ticket=TicketState(status="resolved", queue="billing", tier="L1"), body="It is still down!"
        ),
    )
    assert (again.status, again.queue, again.tier, again.priority) == ("open", "technical", "L2", "high")
