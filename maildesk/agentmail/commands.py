"""The `#commands` on the first lines of an agent's mail.

Owns `parse_commands`: it reads the leading lines of an agent's new words (quotes and
signature already removed, see `strip.py`) and returns the commands as data, the reply
text below them and every error with its line. Also owns `HELP_TEXT` and `refusal_text`,
the words of the mail that answers an agent whose commands were wrong.

Rules: commands stand alone on the first lines (blank lines between them are allowed); the
first other line starts the reply text, and a `#word` further down is just text. A line is
a command line when it starts with `#` followed by a letter; the word is case-insensitive
(phones capitalise the first letter). `#note` makes the whole mail an internal note.
Values are checked here (tier, priority, ticket number, one-word tags, an address for
`#customer`), and so are contradictions (`#resolve` with `#open`, two tiers, `#tag x` with
`#untag x`). Nothing here knows tickets, agents or the database; whether a command fits
the mail it came in (a reply or a forward) is `classify.py`'s question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maildesk.domain import PRIORITIES, TIERS


@dataclass(frozen=True)
class Command:
    name: str  # without '#', lower-case: "resolve", "assign", "tier", …
    argument: str = ""  # normalised: tier upper-case, priority lower-case, address lower-case
    line: int = 0  # 1-based line number in the text the command was read from


@dataclass(frozen=True)
class CommandError:
    line: int  # 1-based; 0 for errors about the mail as a whole
    text: str  # the offending line as written
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.text!r}: {self.problem}" if self.line else self.problem


@dataclass(frozen=True)
class ParsedCommands:
    commands: tuple[Command, ...]
    text: str  # the reply text below the commands (may be empty)
    note: bool  # `#note` was given: the text stays internal
    errors: tuple[CommandError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def named(self, name: str) -> tuple[Command, ...]:
        return tuple(c for c in self.commands if c.name == name)


STATUS_COMMANDS = ("resolve", "close", "pending", "open")
_STATUS_OF = {"resolve": "resolved", "close": "closed", "pending": "pending", "open": "open"}

# name -> (argument spec for the help text, whether an argument is required)
_SPECS: dict[str, tuple[str, bool]] = {
    "note": ("", False),
    "send": ("", False),
    "resolve": ("", False),
    "close": ("", False),
    "pending": ("", False),
    "open": ("", False),
    "assign": ("NAME|EMAIL|me", True),
    "tier": ("|".join(TIERS), True),
    "priority": ("|".join(PRIORITIES), True),
    "escalate": ("REASON", True),
    "tag": ("WORD", True),
    "untag": ("WORD", True),
    "macro": ("NAME", True),
    "merge": ("TICKET", True),
    "customer": ("ADDRESS", True),
}
COMMAND_NAMES = tuple(_SPECS)

# Commands that can appear once per mail (a second one, even with the same value, is refused
# so that what happens never depends on which line wins).
_SINGLE = {"assign", "tier", "priority", "escalate", "merge", "customer", "send"}

HELP_TEXT = (
    "Commands go on the first lines, one per line, above your reply: #note (keep internal) #send (release a held"
    " reply) #resolve #close #pending #open #merge TICKET #customer ADDRESS (when forwarding)\n"
    f"#assign NAME|EMAIL|me #tier {'|'.join(TIERS)} #escalate REASON #priority {'|'.join(PRIORITIES)}"
    " #tag WORD #untag WORD #macro NAME — a mail of only commands sends nothing to the customer."
)

_COMMAND_LINE = re.compile(r"^#([A-Za-z][A-Za-z_-]*)(?:\s+(.*?))?\s*$")
_WORD = re.compile(r"^[\w.:/+-]{1,100}$")
_TICKET = re.compile(r"^#?(\d{1,12})$")
_ADDRESS = re.compile(r"^<?([^\s@<>,;:\"()\[\]]+@[^\s@<>,;:\"()\[\]]+\.[^\s@<>,;:\"()\[\]]+)>?$")
_NAME = re.compile(r"^[^\s#<>,;:\"]+(?: [^\s#<>,;:\"]+){0,4}$")


def _value(name: str, arg: str) -> tuple[str, str]:
    """(normalised argument, problem); problem is '' when the argument is fine."""
    spec, required = _SPECS[name]
    if not required:
        return "", (f"#{name} takes no argument" if arg else "")
    if not arg:
        return "", f"#{name} needs {spec}"
    if name == "tier":
        tier = arg.upper()
        return (tier, "") if tier in TIERS else ("", f"unknown tier; use {spec}")
    if name == "priority":
        priority = arg.lower()
        return (priority, "") if priority in PRIORITIES else ("", f"unknown priority; use {spec}")
    if name == "merge":
        match = _TICKET.match(arg)
        if not match or int(match.group(1)) == 0:
            return "", "#merge needs a ticket number, e.g. #merge 1234"
        return str(int(match.group(1))), ""
    if name in ("tag", "untag", "macro"):
        return (arg, "") if _WORD.match(arg) else ("", f"#{name} takes one word")
    if name == "customer":
        match = _ADDRESS.match(arg)
        return (match.group(1).lower(), "") if match else ("", "#customer needs one email address")
    if name == "assign":
        if arg.lower() == "me":
            return "me", ""
        match = _ADDRESS.match(arg)
        if match:
            return match.group(1).lower(), ""
        return (arg, "") if _NAME.match(arg) else ("", f"#assign needs {spec}")
    return arg, ""  # escalate: free text


def _conflict(seen: dict[str, Command], command: Command) -> str:
    group = "status" if command.name in STATUS_COMMANDS else command.name
    if command.name in ("tag", "untag"):
        group = f"tag:{command.argument.lower()}"
        other = seen.get(group)
        if other is not None and other.name != command.name:
            return f"contradicts #{other.name} on line {other.line}"
        seen[group] = command
        return ""
    if command.name in _SINGLE or command.name in STATUS_COMMANDS:
        other = seen.get(group)
        if other is not None:
            return f"only one {'status command' if group == 'status' else '#' + command.name}; see line {other.line}"
        seen[group] = command
    return ""


def parse_commands(text: str) -> ParsedCommands:
    """Read the commands at the top of `text`; the rest is the reply text."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands: list[Command] = []
    errors: list[CommandError] = []
    seen: dict[str, Command] = {}
    note = False
    body_start = len(lines)
    for index, raw in enumerate(lines):
        line = raw.replace("\xa0", " ").strip()
        if not line:
            continue
        match = _COMMAND_LINE.match(line)
        if not match:
            body_start = index
            break
        name, arg = match.group(1).lower(), (match.group(2) or "").strip()
        number = index + 1
        if name not in _SPECS:
            errors.append(CommandError(number, line, f"unknown command #{name}"))
            continue
        value, problem = _value(name, arg)
        if problem:
            errors.append(CommandError(number, line, problem))
            continue
        if name == "note":
            note = True
            continue
        command = Command(name, value, number)
        problem = _conflict(seen, command)
        if problem:
            errors.append(CommandError(number, line, problem))
            continue
        commands.append(command)
    body = "\n".join(lines[body_start:]).strip("\n").rstrip()
    return ParsedCommands(tuple(commands), body, note, tuple(errors))


def status_of(command: Command) -> str | None:
    """The ticket status a status command asks for (`#resolve` -> "resolved"), else None."""
    return _STATUS_OF.get(command.name)


def refusal_text(errors: tuple[CommandError, ...] | list[CommandError]) -> str:
    """The body of the mail that tells an agent why nothing was done, and how to do it."""
    lines = ["Nothing was changed and nothing was sent to the customer:"]
    lines += [f"  {error}" for error in errors]
    return "\n".join([*lines, "", HELP_TEXT])
