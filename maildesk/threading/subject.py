"""Subject lines: reply/forward prefixes, list tags and our ticket tag.

Owns the text rules for subjects: `normalize_subject` (compare two subjects), the ticket tag
(`format_tag`, `find_tag`) and the stable subject of our outgoing replies (`reply_subject`).
Pure string work: it must not look anything up, know about tickets beyond their number, or
import a database, mail or template library.
"""

from __future__ import annotations

import re
from functools import lru_cache

from maildesk.domain import SUBJECT_TAG_FORMAT, subject_tag

# Reply and forward prefixes seen in the wild, by language. Matched case-insensitively and
# only when followed by a colon (ASCII or full-width), optionally with a counter such as
# "RE[2]:", "Re(3):" or "Re^2:".
_PREFIX_WORDS: tuple[str, ...] = (
    # English and generic
    "re",
    "fwd",
    "fw",
    "fwrd",
    "forward",
    # German
    "aw",
    "wg",
    "antw",
    "antwort",
    "wtrlt",
    "weitergeleitet",
    # Dutch
    "doorst",
    "doorgestuurd",
    # Scandinavian / Finnish
    "sv",
    "vs",
    "vb",
    "vl",
    "fs",
    "vast",
    "vid",
    "videresend",
    "vs",
    "ynt",
    # Italian
    "r",
    "rif",
    "i",
    "inoltro",
    "inoltrato",
    # French
    "tr",
    "réf",
    "ref",
    "rép",
    "rép",
    "transf",
    "fwd",
    # Spanish / Portuguese
    "rv",
    "res",
    "enc",
    "encaminhado",
    "reenviado",
    # Polish / Czech / Slovak / Slovenian / Croatian
    "odp",
    "pd",
    "fwd",
    "odg",
    "posl",
    "přeposlat",
    # Turkish, Hungarian, Vietnamese, Icelandic, Lithuanian, Latvian, Estonian
    "ynt",
    "ilt",
    "vá",
    "tl",
    "sv",
    "atb",
    "pārs",
    "vs",
    "edasi",
    # Greek
    "απ",
    "σχετ",
    "πρθ",
    # Cyrillic
    "ответ",
    "отв",
    "на",
    "пер",
    "переслать",
    "пересл",
    "fw",
    # Hebrew / Arabic
    "השב",
    "הועבר",
    "رد",
    "تحويل",
    # Chinese, Japanese, Korean
    "回复",
    "答复",
    "回覆",
    "答覆",
    "转发",
    "轉發",
    "转寄",
    "轉寄",
    "返信",
    "転送",
    "答",
    "复",
    "回",
    "답장",
    "전달",
)

_COLON = r"[:：]"
_COUNTER = r"(?:\s*(?:\[\d+\]|\(\d+\)|\^\d+))?"
_PREFIX_RE = re.compile(
    r"^\s*(?:"
    + "|".join(sorted({re.escape(w) for w in _PREFIX_WORDS}, key=len, reverse=True))
    + r")"
    + _COUNTER
    + r"\s*"
    + _COLON
    + r"\s*",
    re.IGNORECASE,
)
_LIST_TAG_RE = re.compile(r"^\s*\[[^\[\]]{1,60}\]\s*")
_RT_STYLE_TAG_RE = re.compile(r"#\s*\d+")
_SPACE_RE = re.compile(r"\s+")

DEFAULT_TAG_FORMAT = SUBJECT_TAG_FORMAT


def format_tag(tag_format: str, number: int) -> str:
    """The ticket tag for `number`, e.g. `[#42]` for the format `[#{number}]`."""
    return subject_tag(number, tag_format)


@lru_cache(maxsize=32)
def _tag_regex(tag_format: str) -> re.Pattern[str]:
    if tag_format.count("{number}") != 1:
        raise ValueError(f"tag format {tag_format!r} must contain {{number}} exactly once")
    before, after = tag_format.split("{number}")
    pattern = re.escape(before) + r"(\d{1,12})" + (re.escape(after) if after else r"(?!\d)")
    if before and before[0].isalnum():
        pattern = r"(?<![\w])" + pattern
    return re.compile(pattern, re.IGNORECASE)


def find_tag(tag_format: str, subject: str) -> int | None:
    """The ticket number of the first tag anywhere in `subject`, or None."""
    match = _tag_regex(tag_format).search(subject or "")
    return int(match.group(1)) if match else None


def _strip_tag(tag_format: str, subject: str) -> str:
    return _tag_regex(tag_format).sub(" ", subject)


def strip_prefixes(subject: str, tag_format: str | None = None) -> str:
    """Remove leading reply/forward prefixes and list tags, keeping case and our tag."""
    text = _SPACE_RE.sub(" ", subject or "").strip()
    while True:
        match = _PREFIX_RE.match(text)
        if match:
            text = text[match.end() :]
            continue
        tag = _LIST_TAG_RE.match(text)
        if tag and not _is_ticket_tag(tag.group(0), tag_format):
            text = text[tag.end() :]
            continue
        return text.strip()


def _is_ticket_tag(text: str, tag_format: str | None) -> bool:
    if tag_format and find_tag(tag_format, text) is not None:
        return True
    return bool(_RT_STYLE_TAG_RE.search(text))


def normalize_subject(subject: str, tag_format: str | None = None) -> str:
    """Subject reduced for comparison: no prefixes or list tags, spaces collapsed, casefolded.

    Our ticket tag (any bracket holding `#<digits>`, or `tag_format` when given) is kept.
    """
    return _SPACE_RE.sub(" ", strip_prefixes(subject, tag_format)).strip().casefold()


def reply_subject(original_subject: str, tag_format: str, number: int) -> str:
    """Stable subject for our outgoing mail: `Re: [#42] Printer on fire` (tag once, one Re:)."""
    text = strip_prefixes(original_subject, tag_format)
    text = _SPACE_RE.sub(" ", _strip_tag(tag_format, text)).strip()
    text = strip_prefixes(text, tag_format)  # "[#42] Re: x" had its prefix behind the tag
    tag = format_tag(tag_format, number)
    return f"Re: {tag} {text}".rstrip()
