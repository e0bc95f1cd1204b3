"""Evaluate a `RuleSet` against one `RuleInput` and combine the actions into a `Decision`.

Owns rule order and `stop`, the `when:` event filter, `{{capture}}` substitution, how actions
combine (later queue/tier/priority/status/assign/spam/discard override earlier ones; tags,
notifications and escalation notes accumulate, `untag` after `tags` removes and the other
way round; fields merge by name; resolve is sticky), escalation through tiers, the pure
assignment strategies and `diff_decisions` for `maildesk rules replay`.

Which automatic mail the customer gets (`Decision.mails`, each with the reason): one mail
answers one incoming mail — an `ask:` question for fields the mail does not give (captured
with `capture_fields`), else the last plain `reply:`, else on a new ticket the
acknowledgement (`ack: false` drops it, `ack: TEMPLATE` changes it); `reply: {template: T,
also: true}` is the explicit way to send more.

Rule of safety: when the final decision marks the mail spam or discard, automatic mails are
dropped (and the decision's `notes` say so) so a rule can never answer junk.

Must not: touch the store, send mail, render templates or read the clock. Same input, same
decision — which is what makes replay and `explain` trustworthy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from maildesk.domain import TIERS, Tier
from maildesk.rules.fields import Facts
from maildesk.rules.model import AskSpec, AssignSpec, AutoMail, Decision, Escalation, ReplySpec, RuleHit, RuleInput
from maildesk.rules.pattern import RulePattern, compile_rule_regex
from maildesk.rules.ruleset import Action, RuleSet

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]+")
CAPTURE_MAX = 200  # characters of one capture put into a field, tag, note or reason


def next_tier(tier: str) -> str:
    """L1 → L2 → L3; L3 stays L3 (see `escalate_tier` for the explanation)."""
    return escalate_tier(tier)[0]


def escalate_tier(tier: str) -> tuple[str, str]:
    """The next tier and a sentence saying what happened (including "already at L3")."""
    tier = tier.upper()
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; tiers are {', '.join(TIERS)}")
    current = Tier(tier)
    if current.is_top:
        return tier, f"already at {tier}, the top tier; stays {tier}"
    new = current.next.value
    return new, f"{tier} -> {new}"


def pick_round_robin(members: Sequence[str], last_assigned: str | None) -> str:
    """The member after the last one assigned (wrapping); the first when unknown."""
    if not members:
        raise ValueError("cannot assign round-robin from an empty group")
    if last_assigned is not None:
        lowered = [m.lower() for m in members]
        if last_assigned.lower() in lowered:
            return members[(lowered.index(last_assigned.lower()) + 1) % len(members)]
    return members[0]


def pick_least_loaded(loads: Mapping[str, int]) -> str:
    """The member with the fewest open tickets; ties go to the alphabetically first."""
    if not loads:
        raise ValueError("cannot assign least-loaded from an empty group")
    return min(loads, key=lambda member: (loads[member], member.lower(), member))


def clean_capture(value: str) -> str:
    """Captured text comes from hostile mail: one line, no control characters, bounded."""
    return _UNSAFE.sub(" ", value).strip()[:CAPTURE_MAX]


def fill(template: str, captures: Mapping[str, str]) -> str:
    """Replace `{{name}}` with a cleaned capture; a group that did not take part gives ""."""
    if "{{" not in template:
        return template
    return _PLACEHOLDER.sub(lambda m: clean_capture(captures.get(m[1], "")), template)


@lru_cache(maxsize=512)
def _capture_pattern(source: str) -> RulePattern:
    return compile_rule_regex(source, case_sensitive=False)


def capture_fields(fields: Sequence[tuple[str, str]], text: str) -> dict[str, str]:
    """The `ask:` fields found in `text`: {name: value} for each pattern that matches. The
    value is the group named like the field, else the first group, else the whole match
    (cleaned: one line, bounded); an empty value counts as not found."""
    found: dict[str, str] = {}
    for name, source in fields:
        match: Any = _capture_pattern(source).search(text or "")
        if match is None:
            continue
        named = match.groupdict()
        if name in named:
            raw = named[name]
        elif match.re.groups:
            raw = next((g for g in match.groups() if g), None)
        else:
            raw = match.group(0)
        value = clean_capture(raw or "")
        if value:
            found[name] = value
    return found


@dataclass
class _Draft:
    """The decision being built while the rules run."""

    start_tier: str
    queue: str | None = None
    tier: str | None = None
    priority: str | None = None
    status: str | None = None
    sla: str | None = None
    tags: dict[str, None] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    assign: AssignSpec | None = None
    tags_remove: dict[str, None] = field(default_factory=dict)
    ack: str | None = "ack"
    ack_why: str = "a new ticket is acknowledged"
    main: AutoMail | None = None  # the one answer a rule's `reply:` chose (replaces the ack)
    extras: dict[str, AutoMail] = field(default_factory=dict)  # `reply: {template: T, also: true}`
    ask: AskSpec | None = None
    ask_rule: str = ""
    notify: dict[tuple[str, str], None] = field(default_factory=dict)
    escalate: list[str] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    resolve: bool = False
    spam: str | None = None
    discard: str | None = None
    notes: list[str] = field(default_factory=list)

    def apply(self, action: Action, caps: Mapping[str, str], rule: str) -> str:
        kind, value = action.kind, action.value
        if kind in ("queue", "tier", "priority", "status", "sla"):
            setattr(self, kind, value)
            return f"{kind}={value}"
        if kind in ("tags", "untag"):
            names = [fill(t, caps).replace(" ", "-").replace(",", "-") for t in value]
            names = [t for t in names if t]
            for t in names:  # the later rule wins: untag after tags removes, tags after untag adds
                (self.tags if kind == "untag" else self.tags_remove).pop(t, None)
            (self.tags if kind == "tags" else self.tags_remove).update(dict.fromkeys(names))
            return ("tags+=" if kind == "tags" else "tags-=") + ",".join(names)
        if kind == "field":
            done = []
            for name, template in value:
                self.fields[name] = fill(template, caps)
                done.append(f"{name}={self.fields[name]!r}")
            return "field " + " ".join(done)
        if kind == "assign":
            self.assign = value
            return f"assign={value}"
        if kind == "reply":
            spec: ReplySpec = value
            if spec.also:
                self.extras[spec.template] = AutoMail(
                    spec.template, f"rule {rule!r}: reply {spec.template} (also: sent in addition)", kind="also"
                )
                return f"reply {spec.template} (also)"
            if self.main is not None and self.main.template != spec.template:
                self.notes.append(
                    f"rule {rule!r}: reply {spec.template} replaces {self.main.why.split(':')[0]}'s "
                    f"reply {self.main.template} (one automatic mail; add `also: true` to send both)"
                )
            self.main = AutoMail(spec.template, f"rule {rule!r}: reply {spec.template}")
            return f"reply {spec.template}"
        if kind == "ack":
            self.ack = value or None
            self.ack_why = f"rule {rule!r}: ack: {value if value else 'false'}"
            return f"ack {value}" if value else "ack: none"
        if kind == "ask":
            self.ask, self.ask_rule = value, rule
            return f"ask for {', '.join(value.names)} with {value.template}"
        if kind == "notify":
            self.notify[value] = None
            return f"notify {value[0]} with {value[1]}"
        if kind == "escalate":
            current = self.tier or self.start_tier
            self.tier, what = escalate_tier(current)
            note = fill(value, caps) or f"escalated by rule {rule!r}"
            self.escalate.append(note)
            self.escalations.append(Escalation(rule, current, self.tier, what, note))
            if self.tier == current:
                self.notes.append(f"rule {rule!r}: escalate: {what}")
            return f"escalate {what}: {note}"
        if kind == "resolve":
            self.resolve = True
            return "resolve"
        if kind in ("spam", "discard"):
            reason = fill(value, caps)
            setattr(self, kind, reason)
            return f"{kind}: {reason}"
        raise ValueError(f"unknown action {kind!r}")  # the loader admits only known actions

    def mails(self, event: str, body: str) -> tuple[tuple[AutoMail, ...], tuple[str, ...], list[str]]:
        """(the automatic mails in order, the ask's missing fields, notes saying why).

        At most one mail answers the customer's mail: the ask question, else a rule's
        `reply:`, else (new ticket) the acknowledgement; `also: true` replies come on top."""
        notes: list[str] = []
        missing: tuple[str, ...] = ()
        main = self.main
        if self.ask is not None:
            found = capture_fields(self.ask.fields, body)
            for name, value in found.items():
                self.fields.setdefault(name, value)
            missing = tuple(n for n in self.ask.names if n not in found)
            if not missing:
                notes.append(f"rule {self.ask_rule!r}: ask: the mail already gives {', '.join(found)}; no question")
            else:
                if main is not None:
                    notes.append(
                        f"reply {main.template} not sent: {self.ask.template} (rule {self.ask_rule!r} asks for "
                        f"{', '.join(missing)}) is the one answer to this mail"
                    )
                main = AutoMail(self.ask.template, f"rule {self.ask_rule!r}: asks for {', '.join(missing)}", kind="ask")
        out: list[AutoMail] = []
        if event == "new":
            if main is not None and main.template == self.ack and main.kind == "reply":
                out.append(AutoMail(main.template, main.why, kind="ack"))  # `reply: ack` is the acknowledgement
            elif main is not None:
                out.append(main)
                notes.append(f"acknowledgement replaced by {main.template} ({main.why})")
            elif self.ack is not None:
                out.append(AutoMail(self.ack, self.ack_why, kind="ack"))
            else:
                notes.append(f"no acknowledgement: {self.ack_why}")
        elif main is not None:
            out.append(main)
        for extra in self.extras.values():
            if all(m.template != extra.template for m in out):
                out.append(extra)
        return tuple(out), missing, notes

    def finish(self, hits: list[RuleHit], event: str = "new", body: str = "") -> Decision:
        mails, missing, notes = self.mails(event, body)
        if mails and (self.spam is not None or self.discard is not None):
            why = "discard" if self.discard is not None else "spam"
            self.notes.append(f"automatic mail {', '.join(m.template for m in mails)} suppressed: mail marked {why}")
            mails, missing = (), ()
        else:
            self.notes.extend(notes)
        ack = next((m.template for m in mails if m.kind == "ack"), None)
        return Decision(
            queue=self.queue,
            tier=self.tier,
            priority=self.priority,
            status=self.status,
            sla=self.sla,
            tags_add=tuple(self.tags),
            tags_remove=tuple(self.tags_remove),
            fields=dict(self.fields),
            assign=self.assign,
            replies=tuple(m.template for m in mails if m.kind in ("reply", "also")),
            notify=tuple(self.notify),
            escalate=tuple(self.escalate),
            escalations=tuple(self.escalations),
            resolve=self.resolve,
            spam=self.spam,
            discard=self.discard,
            hits=tuple(hits),
            notes=tuple(self.notes),
            ack=ack,
            mails=mails,
            ask=self.ask if missing else None,
            ask_rule=self.ask_rule if missing else "",
            ask_missing=missing,
        )


def evaluate(ruleset: RuleSet, inp: RuleInput) -> Decision:
    """Run the rules in order; `stop: true` on a matching rule ends the run."""
    facts = Facts(inp, ruleset.business_hours)
    draft = _Draft(start_tier=inp.ticket.tier if inp.ticket is not None and inp.ticket.tier in TIERS else "L1")
    hits: list[RuleHit] = []
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        if rule.when != "any" and rule.when != inp.event:
            hits.append(RuleHit(rule.name, False, rule.line, skipped=f"only for {rule.when} mail, this is {inp.event}"))
            continue
        caps: dict[str, str] = {}
        failed = None if rule.condition is None else rule.condition.check(facts, caps)
        if failed is not None:
            hits.append(RuleHit(rule.name, False, rule.line, failed=failed))
            continue
        done = tuple(draft.apply(action, caps, rule.name) for action in rule.actions)
        hits.append(RuleHit(rule.name, True, rule.line, actions=done, captures=caps))
        if rule.stop:
            break
    return draft.finish(hits, inp.event, inp.body)


def _show(value: object) -> str:
    if value is None or value == () or value == "":
        return "(none)"
    if isinstance(value, tuple):
        return ", ".join(str(v) if not isinstance(v, tuple) else " ".join(map(str, v)) for v in value)
    return str(value)


def diff_decisions(old: Decision, new: Decision) -> list[str]:
    """Readable differences, e.g. `queue: billing -> sales`; empty when they agree."""
    lines: list[str] = []
    for name in ("queue", "tier", "priority", "status", "sla", "assign", "resolve", "spam", "discard", "ack"):
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            lines.append(f"{name}: {_show(before)} -> {_show(after)}")
    for name in ("tags_add", "tags_remove", "replies", "notify", "escalate"):
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            gone = [_show((v,)) for v in before if v not in after]
            came = [_show((v,)) for v in after if v not in before]
            parts = [f"+{v}" for v in came] + [f"-{v}" for v in gone]
            label = {"tags_add": "tags", "tags_remove": "untag"}.get(name, name)
            lines.append(f"{label}: " + (" ".join(parts) if parts else f"{_show(before)} -> {_show(after)}"))
    for key in sorted(set(old.fields) | set(new.fields)):
        before_f, after_f = old.fields.get(key), new.fields.get(key)
        if before_f != after_f:
            lines.append(f"field {key}: {_show(before_f)} -> {_show(after_f)}")
    if old.matched != new.matched:
        gone = [n for n in old.matched if n not in new.matched]
        came = [n for n in new.matched if n not in old.matched]
        parts = [f"+{n!r}" for n in came] + [f"-{n!r}" for n in gone]
        lines.append("rules matched: " + (" ".join(parts) if parts else f"order {old.matched} -> {new.matched}"))
    return lines
