"""`sanitize.escape_header_text` with a fast path for the common case, for the mail path.

Owns nothing new: `header_text(value) == escape_header_text(value)` for every value (tests
hold the two together). A string that `str.isprintable()` has no line break, control,
format-control or non-space separator character (those are exactly what the slow path
looks at), so only blank runs and the ends remain to be cleaned. The context and the
renderer clean ~20 short strings a mail; most are plain names and subjects.

It must not: change what escape_header_text means (fix it there, then here).
"""

from __future__ import annotations

from maildesk.sanitize import escape_header_text


def header_text(value: object) -> str:
    """`escape_header_text(value)`, without its per-character walk for printable strings."""
    if type(value) is str and value.isprintable():
        # Printable: no tab, no line break, no Cc/Cf/Zl/Zp/Zs other than the ASCII space.
        while "  " in value:
            value = value.replace("  ", " ")
        return value.strip(" ")
    return escape_header_text(value)
