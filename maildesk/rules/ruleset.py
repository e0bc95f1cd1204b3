"""A loaded, validated rules file: ordered rules, each a condition tree and a list of actions.

Owns the compiled shapes `Action`, `Rule` and `RuleSet` that the loader produces and the
engine runs. Everything is immutable, so one RuleSet can be shared by every worker and swapped
atomically on reload.

Must not: parse YAML (loader.py) or evaluate anything (engine.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from maildesk.rules.conditions import Condition
from maildesk.rules.hours import BusinessHours

ACTIONS = (
    "queue",
    "tier",
    "priority",
    "status",
    "sla",
    "tags",
    "untag",
    "field",
    "assign",
    "reply",
    "ack",
    "ask",
    "notify",
    "escalate",
    "resolve",
    "spam",
    "discard",
)


@dataclass(frozen=True)
class Action:
    """One `then:` entry. `value` is already validated and normalised by the loader:

    queue/tier/priority/status/sla/escalate/spam/discard: str (sla: a policy name or "none");
    tags/untag: tuple[str, ...]; reply: ReplySpec; ack: str (a template) or False (none);
    ask: AskSpec;
    field: tuple[(name, template), ...]; assign: AssignSpec; notify: (address, template);
    resolve: bool. Strings may hold `{{capture}}` placeholders.
    """

    kind: str
    value: Any
    line: int


@dataclass(frozen=True)
class Rule:
    name: str
    line: int
    actions: tuple[Action, ...]
    condition: Condition | None = None  # None: always matches
    when: str = "any"  # new | reply | any
    stop: bool = False
    enabled: bool = True
    description: str = ""


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    business_hours: BusinessHours | None = None
    source: str = "<empty>"
    version: int = 1

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)
