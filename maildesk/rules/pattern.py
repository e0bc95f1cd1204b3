"""Rule regexes on a linear-time engine (RE2, the `google-re2` package).

Owns compiling a `regex:` operand of the rules file and the only import of `re2`. RE2 runs
in time linear in the text, whatever the pattern: a rule such as
`invoice\\s*(?:no\\.?)?\\s*(?P<n>\\d+)` cannot stall the worker on a mail of 16,000 line
breaks (issue 16: Python's `re` took 112 s on one such mail). The price: what RE2 cannot
run in linear time is refused at load time — backreferences (`\\1`, `(?P=name)`),
lookahead and lookbehind (`(?=`, `(?!`, `(?<=`, `(?<!`), possessive and atomic groups,
conditionals. `\\b`, `\\w`, `\\d` and `\\s` are ASCII-only in RE2 (use `\\pL` for any letter);
named groups `(?P<name>...)` and inline flags `(?i)` work as in Python.

It must not: load YAML or know about fields and facts (that is `loader.py` / `conditions.py`).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import re2


class PatternError(ValueError):
    """The pattern cannot be used in a rule; the message says why, for `rules check`."""


class RuleMatch(Protocol):
    def groupdict(self) -> dict[str, str | None]: ...


class RulePattern(Protocol):
    pattern: str
    groupindex: Any

    def search(self, text: str) -> RuleMatch | None: ...


_UNSUPPORTED = (
    (re.compile(r"\\[1-9]|\(\?P=\w+\)"), "backreferences (\\1, (?P=name))"),
    (re.compile(r"\(\?<?[=!]"), "lookahead and lookbehind ((?=, (?!, (?<=, (?<!)"),
    (re.compile(r"\(\?>|[*+?}]\+"), "atomic groups and possessive quantifiers"),
    (re.compile(r"\(\?\("), "conditional groups ((?(1)...))"),
)
# RE2 needs memory in proportion to the pattern's size (a{1000}{1000} is huge): cap it.
_MAX_MEM = 8 << 20


def _options(case_sensitive: bool) -> Any:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.log_errors = False
    options.max_mem = _MAX_MEM
    return options


def compile_rule_regex(word: str, *, case_sensitive: bool) -> RulePattern:
    """Compile a rules-file regex for RE2; raises PatternError with a readable reason."""
    try:
        return re2.compile(word, _options(case_sensitive))  # type: ignore[no-any-return]
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    try:  # a plain syntax error: Python's message is the familiar one, with a position
        re.compile(word)
    except re.error as exc:
        raise PatternError(str(exc)) from None
    for shape, what in _UNSUPPORTED:
        if shape.search(word):
            raise PatternError(
                f"uses {what}, which the rules' regex engine (RE2, linear time) does not support ({detail})"
            )
    raise PatternError(detail)
