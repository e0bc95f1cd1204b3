"""Composing outgoing messages: headers and MIME structure.

Owns the bytes maildesk sends: `build_message` turns an `OutgoingMail` into RFC 5322 bytes
with CRLF line ends. The common mail (ASCII addresses, text and HTML, no attachments) is
written directly: headers preformatted and folded at 78 columns (never over 998), unfolded
and RFC 2047-encoded (`=?utf-8?b?…?=`) where they carry non-ASCII text, a long word or
`=?`, bodies in 7bit or quoted-printable (`binascii.b2a_qp`) — about 20 times cheaper than
the standard library's header registry. Mail with attachments or addresses that need IDNA
or SMTPUTF8 goes through `email.message.EmailMessage` (`build_message_stdlib`); both say the
same thing (tests/outbound/test_compose_equivalence.py parses them back and compares).
Display names and subjects are unfolded and RFC 2047-encoded; an address carrying CR/LF, a second
address or anything that is not one plain addr-spec is refused with `HeaderInjection`;
threading headers (In-Reply-To, References, Thread-Index) are set so replies thread in Gmail
and Outlook; automatic mail is marked (Auto-Submitted and our loop header).

It must not: decide who gets mail or whether to send it, sign Message-IDs (the caller passes
an id), render templates, read the clock (`now` is passed in) or send anything.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage

from maildesk.message import safe_filename
from maildesk.sanitize import escape_header_text
from maildesk.threading.thread_index import new_thread_index

LOOP_HEADER = "X-Maildesk-Loop"
MAX_REFERENCES = 20  # first id + the latest 19: enough for every client, short enough for every server

# A conservative addr-spec: dot-atom local part (UTF-8 letters allowed), dotted domain.
_LOCAL_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+)*$"
)
_DOMAIN_RE = re.compile(
    r"^([A-Za-z0-9\u0080-\U0010ffff]([A-Za-z0-9\u0080-\U0010ffff-]{0,61}[A-Za-z0-9\u0080-\U0010ffff])?\.)*[A-Za-z0-9\u0080-\U0010ffff]([A-Za-z0-9\u0080-\U0010ffff-]{0,61}[A-Za-z0-9\u0080-\U0010ffff])?$|^\[[0-9A-Fa-f:.]+\]$"
)
_MSGID_RE = re.compile(r"^[!-;=?-~]+@[!-;=?-Z^-~]+$")  # printable ASCII without <, >, space, [, ]
_HEADER_NAME_RE = re.compile(r"^[!-9;-~]{1,76}$")
_CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
# Headers build_message owns; extra_headers may not set them.
_RESERVED = frozenset(
    h.lower()
    for h in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Sender",
        "Subject",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "Auto-Submitted",
        "Thread-Index",
        "Return-Path",
        "DKIM-Signature",
        LOOP_HEADER,
    )
)


class HeaderInjection(ValueError):
    """A value would have written a header of its own or a second recipient."""


@dataclass(frozen=True, kw_only=True)
class OutgoingMail:
    from_addr: str
    from_name: str = ""
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    reply_to: str = ""
    subject: str
    text: str
    html: str | None = None
    message_id: str  # without brackets; the caller passes a signed id
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    thread_index: str = ""  # empty: a new conversation gets one here; a reply needs the caller's
    automatic: bool = False  # Auto-Submitted: auto-replied (with in_reply_to) or auto-generated
    loop_value: str = ""  # value of X-Maildesk-Loop, our mark to recognise our own mail
    extra_headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[tuple[str, str, bytes], ...] = ()  # (filename, content type, payload)


def check_address(value: str, field: str = "address") -> str:
    """The address itself when it is exactly one plain addr-spec, else HeaderInjection."""
    if not isinstance(value, str) or not value:
        raise HeaderInjection(f"{field}: empty address")
    if any(unicode_break in value for unicode_break in ("\r", "\n", "\x00", "\u2028", "\u2029", "\x85")):
        raise HeaderInjection(f"{field}: line break in address {value!r}")
    if re.search(r"[\x00-\x20\x7f,;<>()\"\\\[\]:]", value.split("@")[0] if value.count("@") == 1 else value):
        raise HeaderInjection(f"{field}: not a single plain address: {value!r}")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or value.count("@") != 1:
        raise HeaderInjection(f"{field}: not a single plain address: {value!r}")
    if len(value) > 254 or not _LOCAL_RE.match(local) or not _DOMAIN_RE.match(domain):
        raise HeaderInjection(f"{field}: not a valid address: {value!r}")
    return value


def _msgid(value: str) -> str | None:
    value = (value or "").strip().strip("<>").strip()
    return value if value and len(value) <= 250 and _MSGID_RE.match(value) else None


def references_chain(
    references: tuple[str, ...] | list[str], in_reply_to: str, limit: int = MAX_REFERENCES
) -> list[str]:
    """References for a reply: the parent's chain plus the parent, deduplicated, trimmed.

    Invalid ids are dropped (they come from hostile mail). When longer than `limit`, the
    first id (the conversation root) and the latest `limit - 1` are kept.
    """
    ids: dict[str, None] = {}
    for value in [*references, in_reply_to]:
        mid = _msgid(value)
        if mid:
            ids.pop(mid, None)  # a repeated id moves to its latest position
            ids[mid] = None
    chain = list(ids)
    if len(chain) > limit:
        chain = chain[:1] + chain[-(limit - 1) :]
    return chain


def _needs_smtputf8(addresses: list[str]) -> bool:
    return any(not a.rpartition("@")[0].isascii() for a in addresses)


def _address(name: str, addr: str) -> Address:
    local, _, domain = addr.rpartition("@")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise HeaderInjection(f"not a valid domain: {domain!r}") from exc
    return Address(display_name=escape_header_text(name), username=local, domain=domain)


def build_message(mail: OutgoingMail, *, now: datetime) -> bytes:
    """RFC 5322 bytes with CRLF line ends for `mail`, dated `now` (timezone-aware).

    Raises HeaderInjection for a bad address, message id or extra header name.
    """
    if mail.attachments or not all(
        a.isascii() for a in (mail.from_addr, *mail.to, *mail.cc, mail.reply_to) if isinstance(a, str)
    ):
        return build_message_stdlib(mail, now=now)
    return _build_direct(mail, now=now)


def _checked(mail: OutgoingMail, now: datetime) -> tuple[str, list[str], list[str], str, str]:
    """The addresses and Message-ID of `mail`, each checked (HeaderInjection otherwise), for
    both composers: (from, to, cc, reply_to, message_id)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    from_addr = check_address(mail.from_addr, "from")
    to = [check_address(a, "to") for a in mail.to]
    cc = [check_address(a, "cc") for a in mail.cc]
    reply_to = check_address(mail.reply_to, "reply_to") if mail.reply_to else ""
    if not to:
        raise HeaderInjection("to: no recipient")
    message_id = _msgid(mail.message_id)
    if message_id is None:
        raise HeaderInjection(f"message_id: not a valid id: {mail.message_id!r}")
    return from_addr, to, cc, reply_to, message_id


def build_message_stdlib(mail: OutgoingMail, *, now: datetime) -> bytes:
    """`build_message` through the standard library's `EmailMessage` (attachments, IDNA, SMTPUTF8)."""
    from_addr, to, cc, reply_to, message_id = _checked(mail, now)

    policy = email.policy.SMTPUTF8 if _needs_smtputf8([from_addr, *to, *cc, reply_to]) else email.policy.SMTP
    msg = EmailMessage(policy=policy)
    msg["From"] = _address(mail.from_name, from_addr)
    msg["To"] = [_address("", a) for a in to]
    if cc:
        msg["Cc"] = [_address("", a) for a in cc]
    if reply_to:
        msg["Reply-To"] = _address("", reply_to)
    msg["Subject"] = escape_header_text(mail.subject)
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = f"<{message_id}>"
    parent = _threading_headers(msg, mail, message_id, now)
    _marks(msg, mail, auto_replied=bool(parent))
    msg["MIME-Version"] = "1.0"
    _bodies(msg, mail)
    return msg.as_bytes(policy=policy)


def _threading_headers(msg: EmailMessage, mail: OutgoingMail, message_id: str, now: datetime) -> str | None:
    """In-Reply-To, References, Thread-Index and Thread-Topic; returns the parent's id (None: not a reply)."""
    parent = _msgid(mail.in_reply_to) if mail.in_reply_to else None
    if parent:
        msg["In-Reply-To"] = f"<{parent}>"
    chain = references_chain(mail.references, parent or "")
    if chain:
        msg["References"] = " ".join(f"<{mid}>" for mid in chain)
    thread_index = escape_header_text(mail.thread_index)
    if not thread_index and not parent:
        guid = hashlib.sha256(message_id.encode("utf-8")).digest()[:16]
        thread_index = new_thread_index(now, guid)
    if thread_index and re.fullmatch(r"[A-Za-z0-9+/=]{20,400}", thread_index):
        msg["Thread-Index"] = thread_index
        topic = escape_header_text(mail.subject)
        msg["Thread-Topic"] = re.sub(r"^(\s*(re|aw|fwd?|wg)\s*:\s*)+", "", topic, flags=re.IGNORECASE) or topic
    return parent


def _marks(msg: EmailMessage, mail: OutgoingMail, *, auto_replied: bool) -> None:
    """Auto-Submitted for automatic mail, our loop header, and the caller's extra headers (never ours)."""
    if mail.automatic:
        msg["Auto-Submitted"] = "auto-replied" if auto_replied else "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
    if mail.loop_value:
        msg[LOOP_HEADER] = escape_header_text(mail.loop_value)
    for name, value in mail.extra_headers:
        if not _HEADER_NAME_RE.match(name) or name.lower() in _RESERVED:
            raise HeaderInjection(f"extra header name not allowed: {name!r}")
        msg[name] = escape_header_text(value)


def _bodies(msg: EmailMessage, mail: OutgoingMail) -> None:
    """The text part, the HTML alternative and the attachments (never as text, multipart or message types)."""
    text = _body(mail.text)
    msg.set_content(text, subtype="plain", charset="utf-8", cte=_cte(text))
    if mail.html is not None:
        html = _body(mail.html)
        msg.add_alternative(html, subtype="html", charset="utf-8", cte=_cte(html))
    for index, (filename, content_type, payload) in enumerate(mail.attachments):
        ctype = content_type.lower().strip() if _CONTENT_TYPE_RE.match(content_type.lower().strip()) else ""
        maintype, _, subtype = (ctype or "application/octet-stream").partition("/")
        if maintype in {"text", "multipart", "message"}:
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=safe_filename(filename, index))
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]


def _body(value: str) -> str:
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def _cte(text: str) -> str:
    """7bit for short-lined ASCII; quoted-printable otherwise (never 8bit: relays may lack 8BITMIME)."""
    if text.isascii() and all(len(line) <= 900 for line in text.split("\n")):
        return "7bit"
    return "quoted-printable"


# -- the direct writer ------------------------------------------------------------------

_MAX_LINE = 78  # RFC 5322 SHOULD; a single word may run to _HARD_LINE
_HARD_LINE = 998
_LONG_WORD = 900
_ATEXT_PHRASE_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*$")
_BOUNDARY_PREFIX = "=_md_"  # "=_" never occurs in quoted-printable text


def _encoded_words(value: str, first_room: int) -> list[str]:
    """`value` as `=?utf-8?b?…?=` words of whole characters: the first fits `first_room`
    columns (at least one character), the others a continuation line."""
    words: list[str] = []
    room = first_room
    chunk = bytearray()
    limit = max((room - 12) // 4 * 3, 3)
    for ch in value:
        data = ch.encode("utf-8", "surrogatepass")
        if chunk and len(chunk) + len(data) > limit:
            words.append("=?utf-8?b?" + base64.b64encode(chunk).decode("ascii") + "?=")
            chunk = bytearray()
            limit = 45  # " " + 12 + 60 base64 characters: 73 columns, a word of 72 (<= 75)
        chunk += data
    if chunk or not words:
        words.append("=?utf-8?b?" + base64.b64encode(chunk).decode("ascii") + "?=")
    return words


def _fold(name: str, words: list[str], sep: str = " ") -> str:
    """`Name: w1 w2 …` folded before a word that would pass 78 columns (CRLF + space)."""
    lines: list[str] = []
    line = name + ":"
    first = True
    for word in words:
        if not first and len(line) + len(sep) + len(word) > _MAX_LINE:
            lines.append(line + sep.rstrip())
            line = " " + word
        else:
            line += (sep if not first else " ") + word
        first = False
    lines.append(line)
    return "\r\n".join(lines)


def _needs_encoding(value: str) -> bool:
    return not value.isascii() or "=?" in value or any(len(w) > _LONG_WORD for w in value.split(" "))


def _unstructured(name: str, value: str) -> str:
    """An unstructured header from one clean line (escape_header_text's output)."""
    if _needs_encoding(value):
        return _fold(name, _encoded_words(value, _MAX_LINE - len(name) - 2))
    return _fold(name, value.split(" ")) if value else name + ": "


def _phrase(name: str) -> list[str]:
    """A display name as phrase words: atoms as they are, a quoted string, or encoded words."""
    if not name:
        return []
    if not _needs_encoding(name):
        if _ATEXT_PHRASE_RE.match(name) and "  " not in name:
            return name.split(" ")
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(quoted) <= _MAX_LINE - 20:
            return [quoted]
    return _encoded_words(name, _MAX_LINE - 12)


def _address_header(name: str, display: str, addr: str) -> str:
    return _fold(name, [*_phrase(display), f"<{addr}>"] if display else [addr])


def _body_part(text: str, subtype: str) -> tuple[str, bytes]:
    """(headers, encoded body with CRLF) of one text part."""
    cte = _cte(text)
    if cte == "7bit":
        payload = text.replace("\n", "\r\n").encode("ascii")
    else:
        payload = binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}'
    return head, payload


def _build_direct(mail: OutgoingMail, *, now: datetime) -> bytes:
    """`build_message` for ASCII addresses without attachments, headers written directly."""
    from_addr, to, cc, reply_to, message_id = _checked(mail, now)
    subject = escape_header_text(mail.subject)
    head = [
        _address_header("From", escape_header_text(mail.from_name), from_addr),
        _fold("To", [a + "," for a in to[:-1]] + [to[-1]]),
    ]
    if cc:
        head.append(_fold("Cc", [a + "," for a in cc[:-1]] + [cc[-1]]))
    if reply_to:
        head.append(_fold("Reply-To", [reply_to]))
    head.append(_unstructured("Subject", subject))
    head.append("Date: " + email.utils.format_datetime(now))
    head.append(f"Message-ID: <{message_id}>")
    parent = _msgid(mail.in_reply_to) if mail.in_reply_to else None
    if parent:
        head.append(f"In-Reply-To: <{parent}>")
    chain = references_chain(mail.references, parent or "")
    if chain:
        head.append(_fold("References", [f"<{mid}>" for mid in chain]))
    thread_index = escape_header_text(mail.thread_index)
    if not thread_index and not parent:
        thread_index = new_thread_index(now, hashlib.sha256(message_id.encode("utf-8")).digest()[:16])
    if thread_index and re.fullmatch(r"[A-Za-z0-9+/=]{20,400}", thread_index):
        head.append(_fold("Thread-Index", [thread_index]))
        topic = re.sub(r"^(\s*(re|aw|fwd?|wg)\s*:\s*)+", "", subject, flags=re.IGNORECASE) or subject
        head.append(_unstructured("Thread-Topic", topic))
    if mail.automatic:
        head.append("Auto-Submitted: " + ("auto-replied" if parent else "auto-generated"))
        head.append("X-Auto-Response-Suppress: All")
    if mail.loop_value:
        head.append(_unstructured(LOOP_HEADER, escape_header_text(mail.loop_value)))
    for name, value in mail.extra_headers:
        if not _HEADER_NAME_RE.match(name) or name.lower() in _RESERVED:
            raise HeaderInjection(f"extra header name not allowed: {name!r}")
        head.append(_unstructured(name, escape_header_text(value)))
    head.append("MIME-Version: 1.0")
    text_head, text_body = _body_part(_body(mail.text), "plain")
    if mail.html is None:
        head.append(text_head)
        return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + text_body
    html_head, html_body = _body_part(_body(mail.html), "html")
    boundary = _BOUNDARY_PREFIX + hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:24]
    while boundary.encode("ascii") in text_body or boundary.encode("ascii") in html_body:
        boundary += "_"
    head.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"')
    mark = f"--{boundary}\r\n".encode("ascii")
    return b"".join(
        (
            ("\r\n".join(head) + "\r\n\r\n").encode("ascii"),
            mark,
            (text_head + "\r\n\r\n").encode("ascii"),
            text_body,
            b"\r\n",
            mark,
            (html_head + "\r\n\r\n").encode("ascii"),
            html_body,
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )
