"""Compiled conditions: a small tree of `All`, `Any`, `Not` and `Test` nodes.

Owns matching one condition against `Facts`: the operators (equals, contains, regex, in,
gt, lt, starts_with, ends_with), case-insensitivity by default, and the collection of regex
(RE2, `pattern.py`) named captures for the rule's actions. `check` returns None when the condition holds and the
node that failed otherwise, so an explanation costs nothing unless someone reads it.

Must not: parse YAML (the loader builds these nodes, regexes compiled once there) or decide
actions.
"""

from __future__ import annotations

from typing import Any

from maildesk.rules.fields import BOOL, INT, Facts, field_kind

OPERATORS = ("equals", "contains", "regex", "in", "gt", "lt", "starts_with", "ends_with")
STRING_ONLY = frozenset({"contains", "regex", "starts_with", "ends_with"})
NUMBER_ONLY = frozenset({"gt", "lt"})

Captures = dict[str, str]


class Condition:
    """Base of the condition tree. `line` is the 1-based line in the rules file."""

    __slots__ = ("line", "_text")

    def __init__(self, line: int) -> None:
        self.line = line
        self._text: str | None = None

    def check(self, facts: Facts, caps: Captures) -> Condition | None:
        raise NotImplementedError

    def describe(self) -> str:
        """The condition as the explanations show it (a tree never changes once loaded,
        and every routed mail's event names the rules' failed conditions: worked out once)."""
        if self._text is None:
            self._text = self._describe()
        return self._text

    def _describe(self) -> str:
        raise NotImplementedError

    def group_names(self) -> set[str]:
        """Named regex groups anywhere below this node (for placeholder validation)."""
        return set()


class All(Condition):
    __slots__ = ("children",)

    def __init__(self, children: tuple[Condition, ...], line: int) -> None:
        super().__init__(line)
        self.children = children

    def check(self, facts: Facts, caps: Captures) -> Condition | None:
        for child in self.children:
            failed = child.check(facts, caps)
            if failed is not None:
                return failed
        return None

    def _describe(self) -> str:
        return "all of (" + "; ".join(c.describe() for c in self.children) + ")"

    def group_names(self) -> set[str]:
        return set().union(*(c.group_names() for c in self.children))


class Any_(Condition):
    """`any:` — holds when one child holds; captures come from the first child that holds."""

    __slots__ = ("children",)

    def __init__(self, children: tuple[Condition, ...], line: int) -> None:
        super().__init__(line)
        self.children = children

    def check(self, facts: Facts, caps: Captures) -> Condition | None:
        for child in self.children:
            scratch: Captures = {}
            if child.check(facts, scratch) is None:
                caps.update(scratch)
                return None
        return self

    def _describe(self) -> str:
        return "any of (" + "; ".join(c.describe() for c in self.children) + ")"

    def group_names(self) -> set[str]:
        return set().union(*(c.group_names() for c in self.children))


class Not(Condition):
    """`not:` — holds when the child fails; a negated match contributes no captures."""

    __slots__ = ("child",)

    def __init__(self, child: Condition, line: int) -> None:
        super().__init__(line)
        self.child = child

    def check(self, facts: Facts, caps: Captures) -> Condition | None:
        return self if self.child.check(facts, {}) is None else None

    def _describe(self) -> str:
        return f"not ({self.child.describe()})"


class Test(Condition):
    """One field compared with one operator. The operand is prepared at load time."""

    __slots__ = ("field", "op", "operand", "case_sensitive", "shown", "_kind")

    def __init__(self, field: str, op: str, operand: Any, *, case_sensitive: bool, line: int, shown: str) -> None:
        super().__init__(line)
        self.field = field
        self.op = op
        self.case_sensitive = case_sensitive
        self.shown = shown
        self._kind = field_kind(field)
        if self._kind not in (BOOL, INT) and not case_sensitive and op != "regex":
            if op == "in":
                operand = frozenset(str(v).lower() for v in operand)
            else:
                operand = str(operand).lower()
        elif op == "in":
            operand = frozenset(operand)
        self.operand = operand

    def check(self, facts: Facts, caps: Captures) -> Condition | None:
        op = self.op
        if op == "regex":
            for value in facts.values(self.field):
                m = self.operand.search(value)
                if m is not None:
                    caps.update({k: v for k, v in m.groupdict().items() if v is not None})
                    return None
            return self
        if self._kind in (BOOL, INT) or self.case_sensitive:
            values = facts.values(self.field)
        else:
            values = facts.lowered(self.field)
        operand = self.operand
        for v in values:  # a loop, not any(genexpr): this is the engine's innermost code
            if op == "equals":
                ok = v == operand
            elif op == "contains":
                ok = operand in v
            elif op == "in":
                ok = v in operand
            elif op == "starts_with":
                ok = v.startswith(operand)
            elif op == "ends_with":
                ok = v.endswith(operand)
            elif op == "gt":
                ok = v > operand
            elif op == "lt":
                ok = v < operand
            else:  # the loader admits only OPERATORS
                raise ValueError(f"unknown operator {op!r}")
            if ok:
                return None
        return self

    def _describe(self) -> str:
        return f"{self.field} {self.op} {self.shown}"

    def group_names(self) -> set[str]:
        if self.op == "regex":  # a RulePattern (rules/pattern.py: RE2, linear time)
            return set(self.operand.groupindex)
        return set()
