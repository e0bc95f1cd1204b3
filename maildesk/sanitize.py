"""Cleaning hostile text before maildesk shows or sends it.

Owns nh3 (the only module that imports it). `clean_html` turns any HTML from a message (a
customer's mail, an agent's HTML reply) into a fragment without scripts, styles, event
handlers, frames or forms, whose links cannot reach back to the opener and whose images
cannot phone home. `escape_header_text` makes any value safe to put into one header line.

It must not: decide what to show (callers choose), touch the database, or mark anything as
template-safe (that is the renderer's decision, made only for output of `clean_html`).
"""

from __future__ import annotations

import re
import unicodedata

import nh3

# Tags whose content goes with them (ammonia's default is script and style only).
_DROP_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "form", "noscript", "template", "title"}
)
_TAGS = frozenset(nh3.ALLOWED_TAGS) - {"area", "map"}
_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items() if tag in _TAGS},
    "img": {"src", "alt", "width", "height", "title", "align"},
    "a": {"href", "title", "hreflang"},
    "td": {"colspan", "rowspan", "align", "valign"},
    "th": {"colspan", "rowspan", "align", "valign", "scope"},
}
_URL_SCHEMES = frozenset({"http", "https", "mailto", "tel", "cid", "data"})
_DATA_IMAGE = re.compile(r"^data:image/(png|jpe?g|gif|webp);base64,[A-Za-z0-9+/=\s]*$", re.IGNORECASE)
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")

# C0/C1 controls plus the Unicode line and paragraph separators: none may reach a header.
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\x0b\x0c\x85\u2028\u2029]")
_WHITESPACE = re.compile(r"[ \t]+")


def _filter_attribute(allow_remote_images: bool):  # type: ignore[no-untyped-def]
    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        stripped = value.strip()
        lowered = stripped.lower()
        if tag == "img" and attr == "src":
            if lowered.startswith("cid:") and len(stripped) > 4:
                return stripped
            if _DATA_IMAGE.match(stripped):
                return stripped
            if allow_remote_images and lowered.startswith("https:"):
                return stripped
            return None
        if attr == "href":
            return stripped if lowered.startswith(_LINK_SCHEMES) else None
        return value

    return attribute_filter


# nh3 is linear but a 25 MiB body still took seconds (issue 16): only this much HTML, cut
# after a tag, is cleaned for display (the whole mail stays in the raw bytes).
MAX_CLEAN_HTML_CHARS = 5_000_000


def clean_html(html: str, *, allow_remote_images: bool = False) -> str:
    """A safe HTML fragment from hostile HTML.

    Scripts, styles, frames, objects and forms go with their content; event handlers,
    `style` and unknown attributes go; links keep only http/https/mailto/tel targets and get
    `rel="noopener noreferrer"`; images keep only `cid:` and inline `data:image/…` sources
    (remote https images only when `allow_remote_images`), so opening a mail tells no one.
    Only the first MAX_CLEAN_HTML_CHARS (cut after a tag) are cleaned and kept.
    """
    if not html:
        return ""
    if len(html) > MAX_CLEAN_HTML_CHARS:
        html = html[: html.rfind(">", 0, MAX_CLEAN_HTML_CHARS) + 1 or MAX_CLEAN_HTML_CHARS]
    return nh3.clean(
        html,
        tags=set(_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes={tag: set(attrs) for tag, attrs in _ATTRIBUTES.items()},
        attribute_filter=_filter_attribute(allow_remote_images),
        url_schemes=set(_URL_SCHEMES),
        url_relative="deny",
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def escape_header_text(value: object) -> str:
    """One clean header line from any value: unfolded, without control characters.

    Line breaks of every kind become a space, other control and format-control characters
    (including bidi overrides) are dropped, runs of blanks collapse, the ends are trimmed.
    A printable string (`str.isprintable()`: no line break, control, format-control or
    separator other than the ASCII space) needs only the last two steps: the fast path of
    the ~20 names and subjects every automatic mail cleans.
    """
    if type(value) is str and value.isprintable():
        while "  " in value:
            value = value.replace("  ", " ")
        return value.strip(" ")
    text = _LINE_BREAKS.sub(" ", "" if value is None else str(value))
    text = "".join(
        " " if ch == "\t" else ch for ch in text if ch == "\t" or unicodedata.category(ch) not in {"Cc", "Cf"}
    )
    return _WHITESPACE.sub(" ", text).strip()
