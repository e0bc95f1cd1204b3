"""Load and validate a rules file into a `RuleSet`, reporting every problem with its line.

Format choice: YAML. Admins edit this file by hand, often under pressure; YAML reads like a
list of rules, allows comments next to each rule, and needs no quoting for most values. Its
traps are handled here: we walk PyYAML's composed node graph (`SafeLoader`, no Python tags)
instead of the constructed dicts, so every node keeps its line (`start_mark`) and every error
reads `rules.yaml:12: rule 'vip': unknown condition field 'sendr'`. Duplicate keys (which
plain PyYAML silently merges) are errors; string fields take the scalar's source text, so
`subject: yes` means the word "yes", not True; unquoted times (`8:00` is the number 480 in YAML 1.1)
and `holidays: NO` (Norway read as False) get a hint to quote them.

All problems are collected and raised together in one `RulesError`; regexes are compiled
once here. `known_*` sets, when given, check template, queue, agent and group names.

Must not: evaluate rules, read the clock, or read any file other than the one it is given.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from maildesk.domain import PRIORITIES, STATUSES, TIERS
from maildesk.rules.conditions import NUMBER_ONLY, OPERATORS, STRING_ONLY, All, Any_, Condition, Not, Test
from maildesk.rules.fields import BOOL, BUSINESS_HOURS, FIELD_NAMES, INT, STR, field_kind
from maildesk.rules.hours import DAY_NAMES, BusinessHours, holiday_calendar
from maildesk.rules.model import AskSpec, AssignSpec, ReplySpec, RuleProblem, RulesError
from maildesk.rules.pattern import PatternError, compile_rule_regex
from maildesk.rules.ruleset import ACTIONS, Action, Rule, RuleSet

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
SLA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ADDRESS = re.compile(r"^[^\s@<>,;\"]+@[^\s@<>,;\"]+\.[^\s@<>,;\"]+$")
TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
TOP_KEYS = ("version", "business_hours", "rules")
RULE_KEYS = ("name", "description", "when", "if", "then", "stop", "enabled")
HOURS_KEYS = ("timezone", "days", "start", "end", "holidays", "closed")
WHEN = ("new", "reply", "any")
COMBINATORS = ("all", "any", "not")
YAML_TRUE = frozenset({"true", "yes", "on", "y"})
# libyaml's parser keeps the same node marks (lines) and is ~10x faster on big files
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_rules(
    path: str | Path,
    *,
    known_templates: set[str] | None = None,
    known_queues: set[str] | None = None,
    known_agents: set[str] | None = None,
    known_groups: set[str] | None = None,
) -> RuleSet:
    """Read and compile a rules file; raises `RulesError` listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([RuleProblem(str(path), 0, "", f"cannot read rules file: {exc}")]) from None
    return load_rules_text(
        text,
        str(path),
        known_templates=known_templates,
        known_queues=known_queues,
        known_agents=known_agents,
        known_groups=known_groups,
    )


def load_rules_text(
    text: str,
    filename: str = "<string>",
    *,
    known_templates: set[str] | None = None,
    known_queues: set[str] | None = None,
    known_agents: set[str] | None = None,
    known_groups: set[str] | None = None,
) -> RuleSet:
    """Compile rules from text; `filename` only labels the error messages."""
    known = _Known(
        templates=known_templates,
        queues=known_queues,
        agents=None if known_agents is None else {a.lower() for a in known_agents},
        groups=known_groups,
    )
    return _Loader(filename, known).load(text)


@dataclass(frozen=True)
class _Known:
    templates: set[str] | None
    queues: set[str] | None
    agents: set[str] | None
    groups: set[str] | None


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"{node.value!r}"


class _Loader:
    def __init__(self, filename: str, known: _Known) -> None:
        self.filename = filename
        self.known = known
        self.problems: list[RuleProblem] = []
        self.rule = ""  # name of the rule being read, for messages
        self.yaml: Any = None  # a SafeLoader (C-accelerated when libyaml is present)

    # -- reporting -------------------------------------------------------------------------
    def err(self, node: Node | None, problem: str) -> None:
        line = 0 if node is None else _line(node)
        self.problems.append(RuleProblem(self.filename, line, self.rule, problem))

    # -- node helpers ----------------------------------------------------------------------
    def pairs(self, node: MappingNode) -> list[tuple[str, Node, Node]]:
        out: list[tuple[str, Node, Node]] = []
        seen: dict[str, int] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                self.err(knode, "a key must be a plain word")
                continue
            key = str(knode.value)
            if key in seen:
                self.err(knode, f"duplicate key {key!r} (first on line {seen[key]})")
                continue
            seen[key] = _line(knode)
            out.append((key, knode, vnode))
        return out

    def value(self, node: Node) -> Any:
        assert self.yaml is not None
        return self.yaml.construct_object(node, deep=True)

    def text(self, node: Node, what: str, *, allow_empty: bool = False) -> str | None:
        """A string taken from the scalar's source text (so `yes` stays "yes")."""
        if not isinstance(node, ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.err(node, f"{what} must be a text value, not {_kind(node) if node.value else 'empty'}")
            return None
        value = str(node.value).strip()
        if not value and not allow_empty:
            self.err(node, f"{what} must not be empty")
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
            return str(node.value).lower() in YAML_TRUE
        self.err(node, f"{what} must be true or false, not {_kind(node)}")
        return None

    def integer(self, node: Node, what: str) -> int | None:
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:int":
            value = self.value(node)
            if isinstance(value, int):
                return value
        self.err(node, f"{what} must be a whole number, not {_kind(node)}")
        return None

    def text_list(self, node: Node, what: str) -> list[tuple[str, Node]]:
        items = node.value if isinstance(node, SequenceNode) else [node]
        out: list[tuple[str, Node]] = []
        for item in items:
            value = self.text(item, what)
            if value is not None:
                out.append((value, item))
        return out

    # -- top level -------------------------------------------------------------------------
    def load(self, text: str) -> RuleSet:
        self.yaml = _SAFE_LOADER(text)
        try:
            try:
                root = self.yaml.get_single_node()
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                line = 0 if mark is None else mark.line + 1
                raise RulesError([RuleProblem(self.filename, line, "", f"YAML syntax: {exc.problem or exc}")]) from None
            except yaml.YAMLError as exc:
                raise RulesError([RuleProblem(self.filename, 0, "", f"YAML syntax: {exc}")]) from None
            ruleset = self.top(root)
        finally:
            self.yaml.dispose()
            self.yaml = None
        if self.problems or ruleset is None:
            raise RulesError(
                sorted(self.problems, key=lambda p: p.line) or [RuleProblem(self.filename, 0, "", "no rules")]
            )
        return ruleset

    def top(self, root: Node | None) -> RuleSet | None:
        if root is None:
            self.err(None, "the file is empty; expected `version: 1` and `rules:`")
            return None
        if not isinstance(root, MappingNode):
            self.err(root, "the file must be a mapping with `version:` and `rules:`")
            return None
        items = {key: (knode, vnode) for key, knode, vnode in self.pairs(root)}
        for key, (knode, _) in items.items():
            if key not in TOP_KEYS:
                self.err(knode, f"unknown top-level key {key!r}{_hint(key, TOP_KEYS)}")
        version = 1
        if "version" not in items:
            self.err(root, "missing `version: 1`")
        else:
            got = self.integer(items["version"][1], "version")
            if got is not None and got != 1:
                self.err(items["version"][1], f"unsupported version {got}; this maildesk reads version 1")
        hours = self.business_hours(items["business_hours"][1]) if "business_hours" in items else None
        rules: list[Rule] = []
        if "rules" not in items:
            self.err(root, "missing `rules:` list")
        else:
            rules = self.rules(items["rules"][1], has_hours="business_hours" in items)
        return RuleSet(rules=tuple(rules), business_hours=hours, source=self.filename, version=version)

    def business_hours(self, node: Node) -> BusinessHours | None:
        if not isinstance(node, MappingNode):
            self.err(node, 'business_hours must be a mapping like {timezone: Europe/Berlin, start: "08:00", ...}')
            return None
        items = {key: vnode for key, knode, vnode in self.pairs(node)}
        ok = True
        for knode, _ in node.value:
            if isinstance(knode, ScalarNode) and knode.value not in HOURS_KEYS:
                self.err(knode, f"unknown business_hours key {knode.value!r}{_hint(str(knode.value), HOURS_KEYS)}")
                ok = False
        zone = "UTC"
        if "timezone" not in items:
            self.err(node, "business_hours needs a timezone, e.g. Europe/Berlin")
            ok = False
        else:
            zone = self.text(items["timezone"], "timezone") or ""
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                self.err(items["timezone"], f"unknown time zone {zone!r}")
                ok = False
        days = frozenset(range(5))
        if "days" in items:
            picked: set[int] = set()
            for day, dnode in self.text_list(items["days"], "a day"):
                if day.lower()[:3] in DAY_NAMES and len(day) >= 3:
                    picked.add(DAY_NAMES.index(day.lower()[:3]))
                else:
                    self.err(dnode, f"unknown day {day!r}; use mon, tue, wed, thu, fri, sat, sun")
                    ok = False
            days = frozenset(picked)
        start = self.clock(items.get("start"), "start", time(9, 0))
        end = self.clock(items.get("end"), "end", time(17, 0))
        if start is None or end is None:
            ok = False
        elif start >= end:
            self.err(items.get("end", node), f"end {end:%H:%M} must be after start {start:%H:%M}")
            ok = False
        code, calendar = "", None
        if "holidays" in items:
            hnode = items["holidays"]
            if isinstance(hnode, ScalarNode) and hnode.tag == "tag:yaml.org,2002:bool":
                self.err(
                    hnode,
                    f'holidays: {hnode.value} reads as true/false in YAML; quote the country code: "{hnode.value}"',
                )
                ok = False
            else:
                code = self.text(hnode, "holidays") or ""
                try:
                    calendar = holiday_calendar(code) if code else None
                except ValueError as exc:
                    self.err(hnode, f"unknown holiday calendar {code!r}: {exc}")
                    ok = False
        closed: set[date] = set()
        if "closed" in items:
            cnode = items["closed"]
            for item in cnode.value if isinstance(cnode, SequenceNode) else [cnode]:
                value = self.value(item) if isinstance(item, ScalarNode) else None
                if isinstance(value, str):
                    try:
                        value = date.fromisoformat(value.strip())
                    except ValueError:
                        value = None
                if isinstance(value, date):
                    closed.add(value)
                else:
                    self.err(item, f"closed dates must look like 2026-12-24, not {_kind(item)}")
                    ok = False
        if not ok or start is None or end is None:
            return None
        return BusinessHours(zone, days, start, end, code, frozenset(closed), calendar)

    def clock(self, node: Node | None, what: str, default: time) -> time | None:
        if node is None:
            return default
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:int":
            self.err(
                node, f'{what}: write the time in quotes, e.g. "{node.value}" (unquoted, YAML reads it as a number)'
            )
            return None
        value = self.text(node, what)
        m = TIME.match(value or "")
        if m is None:
            if value is not None:
                self.err(node, f'{what} must be a time like "08:00", not {value!r}')
            return None
        return time(int(m[1]), int(m[2]))

    # -- rules -----------------------------------------------------------------------------
    def rules(self, node: Node, *, has_hours: bool) -> list[Rule]:
        if not isinstance(node, SequenceNode):
            self.err(node, "rules must be a list of rules, each starting with `- name: ...`")
            return []
        out: list[Rule] = []
        names: dict[str, int] = {}
        for index, rnode in enumerate(node.value, start=1):
            self.rule = f"#{index}"
            rule = self.one_rule(rnode, has_hours=has_hours)
            if rule is None:
                continue
            if rule.name in names:
                self.err(rnode, f"duplicate rule name (first on line {names[rule.name]})")
            names.setdefault(rule.name, rule.line)
            out.append(rule)
        self.rule = ""
        return out

    def one_rule(self, node: Node, *, has_hours: bool) -> Rule | None:
        if not isinstance(node, MappingNode):
            self.err(node, "each rule must be a mapping starting with `name:`")
            return None
        items = {key: (knode, vnode) for key, knode, vnode in self.pairs(node)}
        if "name" in items:
            name = self.text(items["name"][1], "name")
            if name is not None:
                self.rule = name
        else:
            self.err(node, "rule has no name")
        for key, (knode, _) in items.items():
            if key not in RULE_KEYS:
                hint = (
                    " (conditions go under `if:`, actions under `then:`)" if key in ACTIONS or field_kind(key) else ""
                )
                self.err(knode, f"unknown rule key {key!r}{_hint(key, RULE_KEYS) or hint}")
        when = "any"
        if "when" in items:
            got = self.text(items["when"][1], "when")
            if got is not None and got.lower() not in WHEN:
                self.err(items["when"][1], f"when must be new, reply or any, not {got!r}")
            elif got is not None:
                when = got.lower()
        condition = None
        before = len(self.problems)
        if "if" in items:
            condition = self.condition(items["if"][1], has_hours=has_hours)
        # a broken condition hides its regex groups: do not also blame the placeholders
        groups = condition.group_names() if condition is not None else None if len(self.problems) > before else set()
        actions: list[Action] = []
        if "then" not in items:
            self.err(node, "rule has no actions (`then:`)")
        else:
            actions = self.actions(items["then"][1], groups)
        stop = False
        if "stop" in items:
            stop = bool(self.boolean(items["stop"][1], "stop"))
        enabled = True
        if "enabled" in items:
            got_enabled = self.boolean(items["enabled"][1], "enabled")
            enabled = True if got_enabled is None else got_enabled
        description = ""
        if "description" in items:
            description = self.text(items["description"][1], "description", allow_empty=True) or ""
        return Rule(
            name=self.rule,
            line=_line(node),
            actions=tuple(actions),
            condition=condition,
            when=when,
            stop=stop,
            enabled=enabled,
            description=description,
        )

    # -- conditions ------------------------------------------------------------------------
    def condition(self, node: Node, *, has_hours: bool) -> Condition | None:
        """A mapping (all of its keys) or a list (all of its items)."""
        parts: list[Condition | None]
        if isinstance(node, MappingNode):
            if not node.value:
                self.err(node, "empty condition")
                return None
            parts = [self.condition_item(k, kn, vn, has_hours=has_hours) for k, kn, vn in self.pairs(node)]
        elif isinstance(node, SequenceNode):
            if not node.value:
                self.err(node, "empty condition list")
                return None
            parts = [self.condition(item, has_hours=has_hours) for item in node.value]
        else:
            self.err(node, f"a condition must be a mapping like `subject: {{contains: refund}}`, not {_kind(node)}")
            return None
        good = [p for p in parts if p is not None]
        if len(good) != len(parts):
            return None
        return good[0] if len(good) == 1 else All(tuple(good), _line(node))

    def condition_item(self, key: str, knode: Node, vnode: Node, *, has_hours: bool) -> Condition | None:
        line = _line(knode)
        if key in ("all", "any"):
            if not isinstance(vnode, SequenceNode) or not vnode.value:
                self.err(vnode, f"`{key}:` takes a non-empty list of conditions")
                return None
            children = [self.condition(item, has_hours=has_hours) for item in vnode.value]
            if any(c is None for c in children):
                return None
            kids = tuple(c for c in children if c is not None)
            return All(kids, line) if key == "all" else Any_(kids, line)
        if key == "not":
            child = self.condition(vnode, has_hours=has_hours)
            return None if child is None else Not(child, line)
        kind = field_kind(key)
        if kind is None:
            self.err(knode, f"unknown condition field {key!r}{_hint(key, (*FIELD_NAMES, *COMBINATORS))}")
            return None
        if key == BUSINESS_HOURS and not has_hours:
            self.err(knode, "condition on business_hours, but the file has no `business_hours:` section")
            return None
        if isinstance(vnode, MappingNode):
            return self.operators(key, kind, vnode, line)
        if isinstance(vnode, SequenceNode):
            return self.test(key, kind, "in", vnode, line, case_sensitive=False)
        return self.test(key, kind, "equals", vnode, line, case_sensitive=False)

    def operators(self, key: str, kind: str, node: MappingNode, line: int) -> Condition | None:
        items = self.pairs(node)
        case_sensitive = False
        for op, _, vnode in items:
            if op == "case_sensitive":
                case_sensitive = bool(self.boolean(vnode, "case_sensitive"))
        tests: list[Condition | None] = []
        for op, knode, vnode in items:
            if op == "case_sensitive":
                continue
            if op not in OPERATORS:
                self.err(knode, f"unknown operator {op!r} for {key}{_hint(op, OPERATORS)}")
                tests.append(None)
                continue
            tests.append(self.test(key, kind, op, vnode, _line(knode), case_sensitive=case_sensitive))
        if not tests:
            self.err(node, f"no operator for {key}; use one of {', '.join(OPERATORS)}")
            return None
        good = [t for t in tests if t is not None]
        if len(good) != len(tests):
            return None
        return good[0] if len(good) == 1 else All(tuple(good), line)

    def test(self, key: str, kind: str, op: str, node: Node, line: int, *, case_sensitive: bool) -> Condition | None:
        if kind != STR and op in STRING_ONLY:
            self.err(
                node, f"operator {op!r} needs a text field; {key} is {'true/false' if kind == BOOL else 'a number'}"
            )
            return None
        if kind != INT and op in NUMBER_ONLY:
            self.err(node, f"operator {op!r} needs a number field; {key} is {'true/false' if kind == BOOL else 'text'}")
            return None
        if kind == BOOL:
            if op != "equals":
                self.err(node, f"{key} is true/false; compare it as `{key}: true`")
                return None
            flag = self.boolean(node, key)
            return (
                None if flag is None else Test(key, op, flag, case_sensitive=True, line=line, shown=str(flag).lower())
            )
        if kind == INT:
            if op == "in":
                if not isinstance(node, SequenceNode):
                    self.err(node, f"`in` takes a list, not {_kind(node)}")
                    return None
                numbers = [self.integer(item, key) for item in node.value]
                if any(n is None for n in numbers):
                    return None
                return Test(key, op, tuple(numbers), case_sensitive=True, line=line, shown=str(numbers))
            number = self.integer(node, key)
            return None if number is None else Test(key, op, number, case_sensitive=True, line=line, shown=str(number))
        if op == "in":
            if not isinstance(node, SequenceNode):
                self.err(node, f"`in` takes a list, not {_kind(node)}")
                return None
            words = self.text_list(node, f"a value for {key}")
            if len(words) != len(node.value):
                return None
            if not all(self.closed_value(key, word, wnode) for word, wnode in words):
                return None
            values = tuple(self.normal(key, w) for w, _ in words)
            return Test(key, op, values, case_sensitive=case_sensitive, line=line, shown=str(list(values)))
        word = self.text(node, f"the value for {key} {op}")
        if word is None:
            return None
        if op == "regex":
            try:
                rx = compile_rule_regex(word, case_sensitive=case_sensitive)
            except PatternError as exc:
                self.err(node, f"bad regex {word!r}: {exc}")
                return None
            return Test(key, op, rx, case_sensitive=case_sensitive, line=line, shown=f"/{word}/")
        if op == "equals" and not self.closed_value(key, word, node):
            return None
        word = self.normal(key, word) if op == "equals" else word
        return Test(key, op, word, case_sensitive=case_sensitive, line=line, shown=repr(word))

    def normal(self, key: str, word: str) -> str:
        return word.upper() if key == "ticket.tier" else word

    def closed_value(self, key: str, word: str, node: Node) -> bool:
        """Fields with a fixed vocabulary reject values that could never match."""
        vocab: Iterable[str] | None = {
            "ticket.tier": TIERS,
            "ticket.status": STATUSES,
            "ticket.priority": PRIORITIES,
            "event": ("new", "reply"),
            "ticket.queue": self.known.queues,
        }.get(key)
        if vocab is None:
            return True
        if key == "ticket.tier":
            word = word.upper()
        vocab = tuple(vocab)
        if word in vocab or word.lower() in vocab:
            return True
        what = "queue" if key == "ticket.queue" else key.split(".")[-1]
        self.err(node, f"unknown {what} {word!r}{_hint(word, vocab)}")
        return False

    # -- actions ---------------------------------------------------------------------------
    def actions(self, node: Node, groups: set[str] | None) -> list[Action]:
        entries: list[tuple[str, Node, Node]] = []
        if isinstance(node, MappingNode):
            entries = self.pairs(node)
        elif isinstance(node, SequenceNode):
            for item in node.value:
                if isinstance(item, MappingNode) and item.value:
                    entries.extend(self.pairs(item))
                elif isinstance(item, ScalarNode) and item.value in ("resolve",):
                    entries.append(
                        (
                            str(item.value),
                            item,
                            ScalarNode("tag:yaml.org,2002:bool", "true", item.start_mark, item.end_mark),
                        )
                    )
                else:
                    self.err(item, f"an action must look like `- queue: billing`, not {_kind(item)}")
        else:
            self.err(node, "then: must be a list of actions like `- queue: billing`")
        if not entries and isinstance(node, MappingNode | SequenceNode):
            self.err(node, "rule has no actions (`then:` is empty)")
        out: list[Action] = []
        for kind, knode, vnode in entries:
            if kind not in ACTIONS:
                self.err(knode, f"unknown action {kind!r}{_hint(kind, ACTIONS)}")
                continue
            value = getattr(self, f"act_{kind}")(vnode)
            if value is None:
                continue
            if groups is not None:
                self.placeholders(value, vnode, groups)
            out.append(Action(kind, value, _line(knode)))
        return out

    def placeholders(self, value: Any, node: Node, groups: set[str]) -> None:
        strings: list[str] = []
        if isinstance(value, str):
            strings = [value]
        elif isinstance(value, tuple):
            for item in value:
                strings.extend(s for s in (item if isinstance(item, tuple) else (item,)) if isinstance(s, str))
        for text in strings:
            for name in PLACEHOLDER.findall(text):
                if name not in groups:
                    have = f"; this rule captures {', '.join(sorted(groups))}" if groups else ""
                    self.err(
                        node,
                        f"placeholder {{{{{name}}}}} has no named regex group (?P<{name}>...) "
                        f"in this rule's conditions{have}",
                    )

    def vocab(self, node: Node, what: str, choices: Iterable[str], *, upper: bool = False) -> str | None:
        word = self.text(node, what)
        if word is None:
            return None
        word = word.upper() if upper else word.lower()
        choices = tuple(choices)
        if word not in choices:
            self.err(node, f"bad {what} {word!r}; use one of {', '.join(choices)}")
            return None
        return word

    def known_name(self, node: Node, word: str | None, what: str, known: set[str] | None) -> str | None:
        if word is None:
            return None
        if known is not None and word not in known and word.lower() not in known:
            hint = "" if what == "agent" else _hint(word, known)  # a similar address is a different person
            self.err(node, f"unknown {what} {word!r}{hint}")
            return None
        return word

    def act_queue(self, node: Node) -> str | None:
        return self.known_name(node, self.text(node, "queue"), "queue", self.known.queues)

    def act_tier(self, node: Node) -> str | None:
        return self.vocab(node, "tier", TIERS, upper=True)

    def act_priority(self, node: Node) -> str | None:
        return self.vocab(node, "priority", PRIORITIES)

    def act_sla(self, node: Node) -> str | None:
        """`sla: NAME` picks the SLA policy named in [[sla.policy]]; `sla: none` removes the SLA."""
        name = self.text(node, "sla")
        if name is None:
            return None
        if name.lower() == "none":
            return "none"
        if not SLA_NAME.match(name):
            self.err(node, f"bad sla {name!r}: a policy name (letters, digits, _ . -) or none")
            return None
        return name

    def act_status(self, node: Node) -> str | None:
        return self.vocab(node, "status", STATUSES)

    def act_tags(self, node: Node) -> tuple[str, ...] | None:
        tags = self.text_list(node, "a tag")
        for tag, tnode in tags:
            if any(ch.isspace() for ch in tag) or "," in tag:
                self.err(tnode, f"tag {tag!r} must be one word (no spaces or commas)")
                return None
        return tuple(t for t, _ in tags) or None

    def act_field(self, node: Node) -> tuple[tuple[str, str], ...] | None:
        if not isinstance(node, MappingNode) or not node.value:
            self.err(node, 'field takes a mapping like {invoice: "{{invoice}}"}')
            return None
        out: list[tuple[str, str]] = []
        for name, knode, vnode in self.pairs(node):
            if not FIELD_NAME.match(name):
                self.err(knode, f"field name {name!r} must be a word (letters, digits, _ . -)")
                continue
            value = self.text(vnode, f"field {name}", allow_empty=True)
            if value is not None:
                out.append((name, value))
        return tuple(out) or None

    def act_assign(self, node: Node) -> AssignSpec | None:
        if isinstance(node, ScalarNode):
            agent = self.text(node, "assign")
            if agent is None:
                return None
            if "@" not in agent:
                self.err(node, "assign takes {agent: a@b}, {round_robin: group} or {least_loaded: group}")
                return None
            return self.assign_agent(node, agent)
        if not isinstance(node, MappingNode) or len(node.value) != 1:
            self.err(node, "assign takes exactly one of {agent: a@b}, {round_robin: group}, {least_loaded: group}")
            return None
        ((how, knode, vnode),) = self.pairs(node)
        word = self.text(vnode, f"assign {how}")
        if word is None:
            return None
        if how == "agent":
            return self.assign_agent(vnode, word)
        if how in ("round_robin", "least_loaded"):
            group = self.known_name(vnode, word, "group", self.known.groups)
            return None if group is None else AssignSpec(strategy=how, group=group)
        self.err(
            knode,
            f"unknown assign strategy {how!r}; use agent, round_robin or least_loaded"
            f"{_hint(how, ('agent', 'round_robin', 'least_loaded'))}",
        )
        return None

    def assign_agent(self, node: Node, agent: str) -> AssignSpec | None:
        if not ADDRESS.match(agent):
            self.err(node, f"agent {agent!r} is not an email address")
            return None
        if self.known_name(node, agent.lower(), "agent", self.known.agents) is None:
            return None
        return AssignSpec(strategy="agent", agent=agent.lower())

    def template(self, node: Node, what: str) -> str | None:
        return self.known_name(node, self.text(node, what), "template", self.known.templates)

    def act_reply(self, node: Node) -> ReplySpec | None:
        """`reply: T` (instead of the acknowledgement on a new ticket; one automatic mail) or
        `reply: {template: T, also: true}` (in addition to the other automatic mail)."""
        if isinstance(node, ScalarNode):
            name = self.template(node, "reply template")
            return None if name is None else ReplySpec(name)
        if not isinstance(node, MappingNode):
            self.err(node, "reply takes a template name or {template: NAME, also: true}")
            return None
        items = {key: (knode, vnode) for key, knode, vnode in self.pairs(node)}
        for key, (knode, _) in items.items():
            if key not in ("template", "also"):
                self.err(knode, f"unknown reply key {key!r}; use template and also{_hint(key, ('template', 'also'))}")
                return None
        if "template" not in items:
            self.err(node, "reply needs `template:`")
            return None
        name = self.template(items["template"][1], "reply template")
        also = self.boolean(items["also"][1], "also") if "also" in items else False
        return None if name is None or also is None else ReplySpec(name, also)

    def act_ack(self, node: Node) -> str | bool | None:
        """`ack: false` (no acknowledgement), `ack: TEMPLATE` (acknowledge with it), `ack: true`."""
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
            return "ack" if str(node.value).lower() in YAML_TRUE else False
        return self.template(node, "ack template")

    def act_untag(self, node: Node) -> tuple[str, ...] | None:
        return self.act_tags(node)

    def act_ask(self, node: Node) -> AskSpec | None:
        """`ask: {fields: {name: 'capture regex'}, template: T, again: T2, handoff: {tags: [..], assign: ..}}`."""
        keys = ("fields", "template", "again", "handoff")
        if not isinstance(node, MappingNode):
            self.err(node, "ask takes {fields: {name: 'capture regex'}, template: NAME}")
            return None
        items = {key: (knode, vnode) for key, knode, vnode in self.pairs(node)}
        ok = True
        for key, (knode, _) in items.items():
            if key not in keys:
                self.err(knode, f"unknown ask key {key!r}; use {', '.join(keys)}{_hint(key, keys)}")
                ok = False
        if "fields" not in items or "template" not in items:
            self.err(node, "ask needs `fields:` and `template:`")
            return None
        fnode = items["fields"][1]
        fields: list[tuple[str, str]] = []
        if not isinstance(fnode, MappingNode) or not fnode.value:
            self.err(fnode, "ask fields take a mapping like {order_number: 'order[ #:]{0,3}(\\d{5,10})'}")
            ok = False
        else:
            for name, knode, vnode in self.pairs(fnode):
                if not FIELD_NAME.match(name):
                    self.err(knode, f"field name {name!r} must be a word (letters, digits, _ . -)")
                    ok = False
                    continue
                source = self.text(vnode, f"the capture pattern for {name}")
                if source is None:
                    ok = False
                    continue
                try:
                    compile_rule_regex(source, case_sensitive=False)
                except PatternError as exc:
                    self.err(vnode, f"bad capture pattern for {name} {source!r}: {exc}")
                    ok = False
                    continue
                fields.append((name, source))
        template = self.template(items["template"][1], "ask template")
        again = self.template(items["again"][1], "ask again template") if "again" in items else "ask_again"
        if "again" not in items:
            again = self.known_name(node, "ask_again", "template", self.known.templates)
        tags: tuple[str, ...] = ("needs-agent",)
        assign: AssignSpec | None = None
        if "handoff" in items:
            hnode = items["handoff"][1]
            if not isinstance(hnode, MappingNode):
                self.err(hnode, "handoff takes {tags: [needs-agent], assign: {least_loaded: L1}}")
                return None
            for key, knode, vnode in self.pairs(hnode):
                if key == "tags":
                    got = self.act_tags(vnode)
                    tags = got if got is not None else ()
                    ok = ok and got is not None
                elif key == "assign":
                    assign = self.act_assign(vnode)
                    ok = ok and assign is not None
                else:
                    self.err(knode, f"unknown handoff key {key!r}; use tags and assign{_hint(key, ('tags', 'assign'))}")
                    ok = False
        if not ok or template is None or again is None:
            return None
        return AskSpec(tuple(fields), template, again, tags, assign)

    def act_notify(self, node: Node) -> tuple[str, str] | None:
        if not isinstance(node, MappingNode):
            self.err(node, "notify takes {to: someone@example.com, template: name}")
            return None
        items = {key: (knode, vnode) for key, knode, vnode in self.pairs(node)}
        for key, (knode, _) in items.items():
            if key not in ("to", "template"):
                self.err(knode, f"unknown notify key {key!r}; use to and template")
        if "to" not in items or "template" not in items:
            self.err(node, "notify needs both `to:` and `template:`")
            return None
        to = self.text(items["to"][1], "notify to")
        if to is not None and not ADDRESS.match(to):
            self.err(items["to"][1], f"notify to {to!r} is not one email address")
            to = None
        template = self.known_name(
            items["template"][1], self.text(items["template"][1], "notify template"), "template", self.known.templates
        )
        return None if to is None or template is None else (to, template)

    def act_escalate(self, node: Node) -> str | None:
        if isinstance(node, MappingNode):
            items = {key: (knode, vnode) for key, knode, vnode in self.pairs(node)}
            for key, (knode, _) in items.items():
                if key != "note":
                    self.err(knode, f"unknown escalate key {key!r}; use note")
            return self.text(items["note"][1], "escalate note", allow_empty=True) if "note" in items else ""
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
            if str(node.value).lower() not in YAML_TRUE:
                self.err(node, "escalate: false does nothing; remove the action")
                return None
            return ""
        return self.text(node, "escalate note", allow_empty=True)

    def act_resolve(self, node: Node) -> bool | None:
        flag = self.boolean(node, "resolve")
        if flag is False:
            self.err(node, "resolve: false does nothing; remove the action")
            return None
        return flag

    def reason(self, node: Node, what: str) -> str | None:
        if (
            isinstance(node, ScalarNode)
            and node.tag == "tag:yaml.org,2002:bool"
            and str(node.value).lower() in YAML_TRUE
        ):
            return f"rule {self.rule!r}"
        return self.text(node, f"{what} reason")

    def act_spam(self, node: Node) -> str | None:
        return self.reason(node, "spam")

    def act_discard(self, node: Node) -> str | None:
        return self.reason(node, "discard")
