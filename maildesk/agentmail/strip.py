"""The agent's new words in a reply to one of our notifications.

Owns `agent_words`: from the decoded body of an agent's mail it keeps what the agent wrote
and drops (a) our own notification, from its marker line (`REPLY_MARKERS`, quoted or not)
down, together with the reply header the mail client put above it (Gmail "On … wrote:",
Outlook "From: … Sent: …" blocks and `____` rules, Apple Mail "On <date>, at <time>, <name>
wrote:", German "Am … schrieb …:" / "Von: … Gesendet: …"); (b) any other quoted history,
signature and mobile footer, as `maildesk.threading.quotes.split_reply` finds them; (c) the
agent's configured signature, matched exactly or with whitespace normalised (HTML mail
rewraps it), with the `-- ` line above it, and anything after it.

Unlike `split_reply` it never keeps a mail that is all quote as "visible": an agent who
sends back our notification without writing anything has written nothing, and nothing of
it may reach the customer. Pure text work: no I/O, no state, no ticket decisions; the
caller decodes transfer encodings first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maildesk.message import html_to_text
from maildesk.threading.quotes import split_reply

# The first line of every notification we send to staff; everything from it down is ours.
REPLY_MARKERS = {
    "en": "-- reply above this line --",
    "de": "-- bitte oberhalb dieser Zeile antworten --",
    "fr": "-- répondre au-dessus de cette ligne --",
    "es": "-- responda encima de esta línea --",
}
_MARKER = re.compile(
    r"^[\s>]*-{2,}\s*(?:reply\s+above\s+this\s+line|bitte\s+oberhalb\s+dieser\s+zeile\s+antworten|r[ée]pondre\s+au-dessus\s+de\s+cette\s+ligne|responda\s+encima\s+de\s+esta\s+l[íi]nea)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_STUB = "> " + REPLY_MARKERS["en"]
_DELIMITER = re.compile(r"^(?:-- ?|--)$")


@dataclass(frozen=True)
class AgentText:
    text: str  # the agent's new words (commands included; `commands.parse_commands` reads them)
    quoted: str  # our notification and any other history the agent's client quoted
    signature: str  # what was removed as signature, sign-off or footer


def marker_line(locale: str = "en") -> str:
    """The marker line to put first in a notification in `locale` (English by default)."""
    return REPLY_MARKERS.get(locale.split("-")[0].split("_")[0].lower(), REPLY_MARKERS["en"])


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ").split("\n")


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n").rstrip()


def _words(line: str) -> list[str]:
    return line.casefold().split()


def _signature_span(lines: list[str], signature: str) -> tuple[int, int] | None:
    """(first, end) of the last line-aligned occurrence of `signature` in `lines`.

    Compared word by word, case-folded, so rewrapped or re-spaced copies match too.
    """
    wanted = _words(signature)
    if not wanted:
        return None
    for first in range(len(lines) - 1, -1, -1):
        if not lines[first].strip() or _words(lines[first])[0] != wanted[0]:
            continue
        got: list[str] = []
        for end in range(first, len(lines)):
            got += _words(lines[end])
            if len(got) >= len(wanted):
                if got == wanted:
                    return first, end + 1
                break
    return None


def _cut_signature(text: str, signature: str) -> tuple[str, str]:
    """(text without the configured signature and what follows it, what was cut)."""
    lines = _lines(text)
    span = _signature_span(lines, signature) if signature.strip() else None
    if span is None:
        return text, ""
    start = span[0]
    above = start
    while above > 0 and not lines[above - 1].strip():
        above -= 1
    if above > 0 and _DELIMITER.match(lines[above - 1].strip()):
        start = above - 1
    return _join(lines[:start]), _join(lines[start:])


def _cut_delimiter(text: str) -> tuple[str, str]:
    """Cut at the first `-- ` line: by convention (RFC 3676) everything below is signature."""
    lines = _lines(text)
    for i, line in enumerate(lines):
        if i > 0 and _DELIMITER.match(line.rstrip("\n")) and line.startswith("--"):
            return _join(lines[:i]), _join(lines[i:])
    return text, ""


def _all_quote(text: str) -> bool:
    """True when `text` has no line of its own: only quotes and reply headers."""
    probe = split_reply("\u2063\n\n" + text)
    return probe.visible.strip() == "\u2063" and not probe.signature and bool(probe.quoted)


def agent_words(text: str, html: str = "", signature: str = "") -> AgentText:
    """Split an agent's mail into their new words, quoted history and removed signature."""
    if not (text or "").strip() and html:
        text = html_to_text(html)
    lines = _lines(text or "")
    ours = ""
    for i, line in enumerate(lines):
        if _MARKER.match(line):
            # split what is above with a quoted stand-in for our notification, so that the
            # reply header the client wrote above it is read as quote, not as signature
            ours, lines = _join(lines[i:]), [*lines[:i], _STUB]
            break
    reply = split_reply(_join(lines))
    visible, quoted, removed = reply.visible, reply.quoted, [reply.signature]
    if ours:
        visible = visible.removesuffix(_STUB).rstrip()
        quoted = quoted.removesuffix(_STUB).rstrip()
    if not quoted and _all_quote(visible):
        visible, quoted = "", visible
    visible, cut = _cut_signature(visible, signature)
    removed.insert(0, cut)
    visible, cut = _cut_delimiter(visible)
    removed.insert(0, cut)
    quoted = "\n".join(part for part in (quoted, ours) if part)
    return AgentText(visible.strip("\n").rstrip(), quoted, "\n".join(part for part in removed if part))
