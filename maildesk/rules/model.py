"""Plain data in and out of the rules engine: what a rule sees, what the engine decides.

Owns `RuleInput` (facts about one incoming mail, built by the pipeline), `Decision` (the
combined result of all rules), `RuleHit` (the explanation of one rule), `AssignSpec`, the
load-error types and the rule events vocabulary (tiers, priorities and statuses live in
`maildesk.domain`).

Must not: touch the database, the network, the clock or the file system. Everything here is
frozen data, so a decision can be stored as an event and replayed later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from maildesk.errors import ConfigError

if TYPE_CHECKING:
    from maildesk.rules.conditions import Condition

EVENTS = ("new", "reply")
ASSIGN_STRATEGIES = ("agent", "round_robin", "least_loaded")


@dataclass(frozen=True)
class CustomerFacts:
    """What the desk already knows about the sender (looked up by the pipeline)."""

    email: str = ""
    domain: str = ""
    vip: bool = False
    tickets: int = 0  # earlier tickets, any state
    open_tickets: int = 0


@dataclass(frozen=True)
class TicketState:
    """The ticket a reply threads into (None for a new conversation)."""

    status: str = "open"
    queue: str = ""
    tier: str = "L1"
    priority: str = "normal"
    tags: tuple[str, ...] = ()
    assignee: str = ""


@dataclass(frozen=True)
class RuleInput:
    """One incoming mail as the rules see it. Addresses are bare `local@domain` strings."""

    event: str  # "new" | "reply"
    sender: str
    sender_name: str = ""
    recipients: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str = ""
    body: str = ""  # visible text (quotes stripped)
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[tuple[str, str], ...] = ()  # (filename, content_type)
    customer: CustomerFacts = field(default_factory=CustomerFacts)
    ticket: TicketState | None = None
    now: datetime = datetime(1970, 1, 1)  # always pass the real clock's value


@dataclass(frozen=True)
class AssignSpec:
    """Who should own the ticket: one agent, or a strategy over a group.

    The pipeline resolves a strategy with `pick_round_robin` / `pick_least_loaded`
    (in `maildesk.rules.engine`) from data it reads in the store.
    """

    strategy: str  # "agent" | "round_robin" | "least_loaded"
    agent: str = ""
    group: str = ""

    def __str__(self) -> str:
        return self.agent if self.strategy == "agent" else f"{self.strategy}({self.group})"


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One evaluated rule: did it match, why (not), and what it did.

    `why` is built on demand from the failing condition, so evaluating 500 rules does not
    format 500 explanations nobody reads.
    """

    name: str
    matched: bool
    line: int
    actions: tuple[str, ...] = ()
    captures: Mapping[str, str] = field(default_factory=dict)
    failed: Condition | None = None
    skipped: str = ""  # reason the rule was not tested at all (event filter)

    @property
    def why(self) -> str:
        if self.skipped:
            return self.skipped
        if self.matched:
            caps = ", ".join(f"{k}={v!r}" for k, v in self.captures.items())
            return "all conditions held" + (f"; captured {caps}" if caps else "")
        if self.failed is None:
            return "no match"
        return f"line {self.failed.line}: {self.failed.describe()} did not hold"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "matched": self.matched,
            "line": self.line,
            "why": self.why,
            "actions": list(self.actions),
            "captures": dict(self.captures),
        }


@dataclass(frozen=True)
class ReplySpec:
    """`reply: TEMPLATE` (the one automatic answer to this mail: on a new ticket it takes the
    acknowledgement's place) or `reply: {template: T, also: true}` (sent in addition)."""

    template: str
    also: bool = False

    def __str__(self) -> str:
        return f"{self.template} (also)" if self.also else self.template


@dataclass(frozen=True)
class AskSpec:
    """`ask:` — guided information collection. `fields` are (name, capture pattern source);
    the pattern's first group (or the group named like the field, or the whole match) is the
    value. `template` asks for them, `again` asks once more for what is still missing, then
    the ticket is handed to an agent: `handoff_tags` added, `handoff_assign` when given."""

    fields: tuple[tuple[str, str], ...]
    template: str
    again: str = "ask_again"
    handoff_tags: tuple[str, ...] = ("needs-agent",)
    handoff_assign: AssignSpec | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    def to_json(self) -> dict[str, object]:
        return {
            "fields": dict(self.fields),
            "template": self.template,
            "again": self.again,
            "handoff": {
                "tags": list(self.handoff_tags),
                "assign": None if self.handoff_assign is None else str(self.handoff_assign),
            },
        }


@dataclass(frozen=True)
class AutoMail:
    """One automatic mail to the customer the decision will send, and why."""

    template: str
    why: str
    kind: str = "reply"  # ack | reply | also (an extra `also: true` reply) | ask | ask-again

    def to_json(self) -> dict[str, str]:
        return {"template": self.template, "kind": self.kind, "why": self.why}


@dataclass(frozen=True)
class Escalation:
    """One `escalate` step as data: which rule, from which tier to which (equal when the
    ticket was already at the top), the sentence saying so and the hand-off note."""

    rule: str
    from_tier: str
    to_tier: str
    what: str  # "L1 -> L2" or "already at L3, the top tier; stays L3"
    note: str


@dataclass(frozen=True)
class Decision:
    """The combined result after all rules ran; None/empty means "no change".

    `tier` already includes every `escalate` step (applied in rule order from the ticket's
    tier); `escalate` holds the handoff notes, one per step, to record and show to agents, and
    `escalations` the same steps as data (what the route stage applies; `hits[].actions`
    are display strings for events and explain, never parsed back).
    """

    queue: str | None = None
    tier: str | None = None
    priority: str | None = None
    status: str | None = None
    sla: str | None = None  # `sla: NAME` (a policy) or "none" (no SLA); None: chosen by the policies' conditions
    tags_add: tuple[str, ...] = ()
    tags_remove: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)
    assign: AssignSpec | None = None
    replies: tuple[str, ...] = ()  # the rules' reply templates that will be sent (not ack, not ask)
    notify: tuple[tuple[str, str], ...] = ()
    escalate: tuple[str, ...] = ()
    escalations: tuple[Escalation, ...] = ()
    resolve: bool = False
    spam: str | None = None
    discard: str | None = None
    hits: tuple[RuleHit, ...] = ()
    notes: tuple[str, ...] = ()  # engine remarks: "already at L3", "auto-replies suppressed"
    ack: str | None = None  # the acknowledgement template sent for a new ticket (None: none)
    mails: tuple[AutoMail, ...] = ()  # every automatic mail to the customer, in order, with why
    ask: AskSpec | None = None  # a rule asks for fields (only those still missing are asked)
    ask_rule: str = ""
    ask_missing: tuple[str, ...] = ()  # fields the mail itself did not answer

    @property
    def matched(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hits if h.matched)

    def to_json(self) -> dict[str, object]:
        return {
            "queue": self.queue,
            "tier": self.tier,
            "priority": self.priority,
            "status": self.status,
            "sla": self.sla,
            "tags_add": list(self.tags_add),
            "tags_remove": list(self.tags_remove),
            "fields": dict(self.fields),
            "assign": None if self.assign is None else str(self.assign),
            "replies": list(self.replies),
            "notify": [list(n) for n in self.notify],
            "escalate": list(self.escalate),
            "resolve": self.resolve,
            "spam": self.spam,
            "discard": self.discard,
            "hits": [h.to_json() for h in self.hits],
            "notes": list(self.notes),
            "ack": self.ack,
            "mails": [m.to_json() for m in self.mails],
            "ask": None
            if self.ask is None
            else {**self.ask.to_json(), "rule": self.ask_rule, "missing": list(self.ask_missing)},
        }


@dataclass(frozen=True)
class RuleProblem:
    """One thing wrong in a rules file, located precisely."""

    file: str
    line: int  # 1-based; 0 when unknown
    rule: str  # rule name, or "" for file-level problems
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" rule {self.rule!r}:" if self.rule else ""
        return f"{where}:{who} {self.problem}"


class RulesError(ConfigError):
    """A rules file could not be loaded; carries every problem found, not just the first.

    `file`, `line`, `rule` and `problem` describe the first problem; `problems` has them all.
    """

    def __init__(self, problems: list[RuleProblem] | tuple[RuleProblem, ...]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0] if self.problems else RuleProblem("<rules>", 0, "", "unknown problem")
        self.file, self.line, self.rule, self.problem = first.file, first.line, first.rule, first.problem
        super().__init__("\n".join(str(p) for p in self.problems) or str(first))

    @property
    def messages(self) -> list[str]:
        return [str(p) for p in self.problems]
