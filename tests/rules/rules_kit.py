"""Helpers for the rules tests: build inputs and rulesets from short inline YAML."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

from maildesk.rules.engine import evaluate
from maildesk.rules.loader import load_rules_text
from maildesk.rules.model import CustomerFacts, Decision, RuleInput, TicketState
from maildesk.rules.ruleset import RuleSet

# Monday 23 November 2026, 10:00 in Berlin (09:00 UTC): inside business hours.
MONDAY_MORNING = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

HOURS = """\
business_hours: {timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00", holidays: DE}
"""


def mail(**kw: Any) -> RuleInput:
    base: dict[str, Any] = {
        "event": "new",
        "sender": "carol@customer.example",
        "sender_name": "Carol Customer",
        "recipients": ("support@desk.example",),
        "subject": "Question",
        "body": "Hello, I have a question.",
        "customer": CustomerFacts(email="carol@customer.example", domain="customer.example"),
        "now": MONDAY_MORNING,
    }
    base.update(kw)
    return RuleInput(**base)


def reply(ticket: TicketState | None = None, **kw: Any) -> RuleInput:
    return mail(event="reply", ticket=ticket or TicketState(status="open", queue="billing", tier="L1"), **kw)


def ruleset(body: str, *, hours: bool = False, **known: Any) -> RuleSet:
    text = "version: 1\n" + (HOURS if hours else "") + "rules:\n" + textwrap.indent(textwrap.dedent(body), "  ")
    return load_rules_text(text, "rules.yaml", **known)


def one_condition(condition: str, *, hours: bool = False) -> RuleSet:
    """A ruleset with one rule `probe` whose `if:` is the given YAML flow mapping."""
    return ruleset(f"- name: probe\n  if: {condition}\n  then: [{{tags: [hit]}}]\n", hours=hours)


def matches(condition: str, inp: RuleInput, *, hours: bool = False) -> bool:
    decision = evaluate(one_condition(condition, hours=hours), inp)
    assert decision.hits[0].name == "probe"
    assert decision.hits[0].matched == (decision.tags_add == ("hit",))
    return decision.hits[0].matched


def run(body: str, inp: RuleInput, **kw: Any) -> Decision:
    return evaluate(ruleset(body, **kw), inp)
