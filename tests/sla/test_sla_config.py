"""SLA configuration on a desk: the shipped default has working policies, and a rule's
`sla: NAME` / `sla: none` picks or removes the policy through the pipeline. Both backends for the desk."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from importlib import resources
from pathlib import Path

from sqlalchemy import select

from maildesk.config import parse_settings
from maildesk.sla.policy import parse_sla
from maildesk.store.models import SlaClock
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk, team_settings

RULES = """
rules:
  - name: partners get gold
    if: {from: {contains: "@partner.example"}}
    then: [{sla: gold}]
  - name: newsletters get none
    if: {subject: {contains: newsletter}}
    then: [{sla: none}]
"""
SLA = """
[[sla.policy]]
name = "standard"
time = "calendar"
first_response = "8h"

[[sla.policy]]
name = "gold"                  # no conditions of its own: only a rule picks it
time = "calendar"
first_response = "30m"
"""


def test_the_shipped_default_has_working_slas() -> None:
    text = resources.files("maildesk").joinpath("defaults", "maildesk.toml").read_text(encoding="utf-8")
    settings = parse_settings(tomllib.loads(text))
    assert [p.name for p in settings.sla.policies] == ["vip", "urgent", "standard"]
    assert settings.sla.calendar("office").holidays == "DE-BY"


def test_a_rule_picks_or_removes_the_sla(tmp_path: Path, database_url: str) -> None:
    settings = team_settings(tmp_path, database_url, RULES)
    d = Desk(replace(settings, sla=parse_sla(tomllib.loads(SLA)["sla"])))
    try:
        gold = d.say(eml(sender="Pat <pat@partner.example>")).ticket_number
        plain = d.say(eml(subject="Help")).ticket_number
        news = d.say(eml(subject="Our newsletter")).ticket_number
        with d.app.store.reader() as s:
            policy = {
                n: {
                    c.kind: (c.policy, c.stopped_at is None)
                    for c in s.scalars(select(SlaClock).where(SlaClock.ticket_number == n))
                }
                for n in (gold, plain, news)
            }  # fmt: skip
        assert policy[gold]["first_response"] == ("gold", True)
        assert policy[plain]["first_response"] == ("standard", True)
        assert policy[news]["first_response"] == ("", False)  # started by the mail, removed by the rule
        assert d.ticket(news).sla_choice == "none"
    finally:
        d.close()
