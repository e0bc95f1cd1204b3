"""Rule regexes run on RE2 (issue 16): linear time, and what RE2 cannot run is refused at load."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from rules_kit import mail, matches

from maildesk.rules.engine import evaluate
from maildesk.rules.loader import load_rules, load_rules_text
from maildesk.rules.model import RulesError
from tests.support.wait import HANG_GUARD_SECONDS

DEFAULTS = Path(__file__).resolve().parents[2] / "maildesk" / "defaults" / "rules.yaml"


def _defaults():  # type: ignore[no-untyped-def]
    return load_rules(
        DEFAULTS,
        known_templates={"vip_alert", "outage_alert", "after_hours", "ask_order_number", "ask_again"},
        known_queues={"general", "priority", "billing", "technical"},
        known_groups={"L2", "billing"},
    )


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        (r"(a)\1", "backreferences"),
        (r"(?P<x>a)(?P=x)", "backreferences"),
        (r"foo(?=bar)", "lookahead and lookbehind"),
        (r"(?<!x)foo", "lookahead and lookbehind"),
        (r"(?>a+)b", "atomic groups"),
    ],
)
def test_what_re2_cannot_run_is_refused_with_file_and_line(pattern: str, what: str) -> None:
    text = f"""\
    version: 1
    rules:
      - name: fine
        if: {{subject: {{regex: 'order \\d+'}}}}
        then: [{{tags: [a]}}]
      - name: bad
        if: {{body: {{regex: '{pattern}'}}}}
        then: [{{tags: [b]}}]
    """
    with pytest.raises(RulesError) as info:
        load_rules_text(textwrap.dedent(text), "rules.yaml")
    (message,) = info.value.messages
    assert message.startswith("rules.yaml:7: rule 'bad': bad regex")
    assert what in message and "RE2" in message


def test_named_groups_inline_flags_and_case_options_still_work() -> None:
    assert matches(r"{subject: {regex: 'order\s+(?P<n>\d+)'}}", mail(subject="ORDER 12"))
    assert not matches(r"{subject: {regex: 'order', case_sensitive: true}}", mail(subject="ORDER 12"))
    assert matches(r"{subject: {regex: '(?i)Order'}}", mail(subject="order"))
    assert matches(r"{body: {regex: '\pL+ café'}}", mail(body="un café"))


def test_shipped_invoice_rule_on_sixteen_thousand_line_breaks_is_fast() -> None:
    """The attack mail: `invoice` and 16,000 line breaks held the worker 112 s on `re`."""
    rs = _defaults()
    body = "invoice" + "\r\n" * 16000 + "x"
    started = time.perf_counter()
    decision = evaluate(rs, mail(subject="invoice" + " " * 20000, body=body * 20))
    assert time.perf_counter() - started < HANG_GUARD_SECONDS
    assert decision.queue == "general"  # no invoice number: not billing


def test_shipped_invoice_rule_still_finds_numbers() -> None:
    rs = _defaults()
    assert evaluate(rs, mail(body="Hello, invoice no. 20261234 is wrong")).fields["invoice"] == "20261234"
    assert evaluate(rs, mail(subject="Rechnung #RE-2026001")).fields["invoice"] == "RE-2026001"
    # across a line break is no longer one phrase
    assert "invoice" not in evaluate(rs, mail(body="invoice\n\n20261234")).fields
