"""Parsed view of one raw mail message.

Owns mail-parser (the only module that imports it). Turns raw bytes into a plain,
immutable `ParsedMessage` that the rest of maildesk reads. It never decodes the raw bytes
lossily before parsing, never touches the database and never changes the raw bytes: what
maildesk shows is derived from them and they are kept as they came.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.base64mime
import email.charset
import email.parser
import email.quoprimime
import email.utils
import hashlib
import html as html_lib
import logging
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import mailparser

from maildesk.errors import UnparseableMessage
from maildesk.tnef import is_tnef, unpack_tnef

# mail-parser logs every MIME type it does not render; that is noise, not an error.
logging.getLogger("mailparser").setLevel(logging.ERROR)

_SURROGATE = re.compile("[\udc80-\udcff]")
_MSGID_RE = re.compile(r"<([^<>\s]+)>")
_FILENAME_BAD = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


@dataclass(frozen=True)
class Address:
    """A mailbox: display name and lower-cased address."""

    name: str
    email: str

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "email": self.email}


@dataclass(frozen=True)
class Attachment:
    """One attachment. `filename` is safe to show; it never becomes a path."""

    filename: str
    content_type: str
    payload: bytes
    content_id: str = ""
    disposition: str = ""

    @property
    def size(self) -> int:
        return len(self.payload)

    def to_json(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "content_id": self.content_id,
            "disposition": self.disposition,
            "sha256": hashlib.sha256(self.payload).hexdigest(),
        }


@dataclass(frozen=True)
class ParsedMessage:
    """What maildesk extracts from one message. Header values are unfolded."""

    raw: bytes
    message_id: str  # without angle brackets; synthetic when the mail had none
    message_id_synthetic: bool
    subject: str
    from_: Address | None
    sender: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    text: str
    html: str
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]
    content_type: str = "text/plain"
    extra: dict[str, Any] = field(default_factory=dict)
    # When the mail has more than MAX_PARTS MIME parts, only the bytes before the boundary
    # line of part MAX_PARTS + 1 are parsed (the rest stays in `raw` only): that offset.
    parts_cut: int = 0
    # When `text` was made from HTML longer than MAX_HTML_TEXT_CHARS: the length of the HTML
    # head it was made from (the whole HTML stays in `html` and `raw`).
    html_text_cut: int = 0

    @property
    def structure_bytes(self) -> bytes:
        """The bytes every structural pass reads (parser, bounce reader): `raw`, cut at
        `parts_cut` when the part cap applied."""
        return self.raw[: self.parts_cut] if self.parts_cut else self.raw

    @property
    def parts_capped(self) -> dict[str, int] | None:
        """What the part cap left out, or None when every part was read."""
        if not self.parts_cut:
            return None
        return {"parts_read": MAX_PARTS, "bytes_read": self.parts_cut, "bytes_not_read": len(self.raw) - self.parts_cut}

    @property
    def html_text_capped(self) -> dict[str, int] | None:
        """What the HTML-to-text cap left out, or None when the text covers all the HTML."""
        if not self.html_text_cut:
            return None
        return {"html_chars": len(self.html), "converted_chars": self.html_text_cut}

    def header(self, name: str, default: str = "") -> str:
        """First value of a header (case-insensitive), unfolded."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

    @property
    def raw_sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def recipients(self) -> tuple[Address, ...]:
        return self.to + self.cc

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "message_id_synthetic": self.message_id_synthetic,
            "subject": self.subject,
            "from": self.from_.to_json() if self.from_ else None,
            "sender": self.sender.to_json() if self.sender else None,
            "to": [a.to_json() for a in self.to],
            "cc": [a.to_json() for a in self.cc],
            "reply_to": [a.to_json() for a in self.reply_to],
            "date": self.date.isoformat() if self.date else None,
            "in_reply_to": list(self.in_reply_to),
            "references": list(self.references),
            "headers": [[k, v] for k, v in self.headers],
            "content_type": self.content_type,
            "text": self.text,
            "html": self.html,
            "attachments": [a.to_json() for a in self.attachments],
            "defects": list(self.defects),
            "size": len(self.raw),
            "parts_capped": self.parts_capped,
            **({"tnef": self.extra["tnef"]} if "tnef" in self.extra else {}),
        }


def unfold(value: str) -> str:
    """Remove CR/LF folding and control characters from a header value."""
    if value.isprintable():  # the common case: nothing to remove (tab is not printable)
        return value.strip()
    value = re.sub(r"\r?\n[ \t]*", " ", value)
    return re.sub(r"[\x00-\x08\x0a-\x1f\x7f]", "", value).strip()


def fix_8bit(value: str) -> str:
    """Raw 8-bit header bytes (RFC 6532 UTF-8, or legacy latin-1) come back from the stdlib
    parser as surrogate escapes; turn them into the characters they stand for."""
    if value.isascii() or not _SURROGATE.search(value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


# An RFC 2047 encoded word, as the stdlib's `email.header.ecre` finds it.
_ENCODED_WORD = re.compile(r"=\?([^?]*?)\?([qQbB])\?(.*?)\?=")


def _word_bytes(encoding: str, text: str) -> bytes | None:
    """The octets of one encoded word's text, or None when they cannot be decoded."""
    try:
        if encoding in "bB":
            text = text + "==="[: (4 - len(text) % 4) % 4]
            return email.base64mime.decode(text)
        return email.quoprimime.header_decode(text).encode("latin-1")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


# Labels that real mail uses for a wider charset than they name: tried when the octets are
# not valid in the named one (the bytes of a GBK subject labelled gb2312, Shift_JIS
# labelled ISO-2022-JP, Windows-1252 labelled ISO-8859-1).
_WIDER_CHARSET = {
    "gb2312": "gb18030",
    "eucgb2312_cn": "gb18030",
    "gbk": "gb18030",
    "iso-2022-jp": "cp932",
    "shift_jis": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "big5": "big5hkscs",
    "iso-8859-1": "cp1252",
    "us-ascii": "cp1252",
}


def _codec(charset: str) -> str | None:
    """The Python codec for a MIME charset name (RFC 2231 `*lang` dropped), or None."""
    name = charset.partition("*")[0].strip().lower()
    try:
        codec = email.charset.Charset(name).input_codec or "us-ascii"
        codecs.lookup(codec)
    except (LookupError, UnicodeError, ValueError):
        return None
    return codec


def _decode_octets(codec: str, octets: bytes) -> str:
    """Octets in their charset; a wider charset when they are invalid in it, else U+FFFD."""
    try:
        return octets.decode(codec)
    except UnicodeDecodeError:
        pass
    wider = _WIDER_CHARSET.get(codec)
    if wider:
        try:
            return octets.decode(wider)
        except UnicodeDecodeError:
            pass
    return octets.decode(codec, "replace")


def decode_mime_words(value: str) -> str:
    """Decode RFC 2047 words; tolerate broken encodings without raising.

    Each run of adjacent words in one charset is decoded on its own (a run, not a word,
    because real mail splits one character across words), so a bad word never spoils the
    rest of the header: octets invalid in their charset (and in its wider relative, see
    `_WIDER_CHARSET`) become U+FFFD, and a word in an unknown charset or with broken
    encoded text is kept as its raw text. Folding is unfolded first; whitespace between
    two encoded words is dropped (RFC 2047 section 6.2), all other text is kept as it is.
    """
    value = fix_8bit(value)
    if "=?" not in value:
        return value
    value = re.sub(r"(?:\r?\n[ \t]*)+", " ", value)
    # Tokens: (codec, octets) for a decodable encoded word, (None, text) for anything else.
    tokens: list[tuple[str | None, Any]] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        if match.start() > pos:
            tokens.append((None, value[pos : match.start()]))
        octets = _word_bytes(match.group(2), match.group(3))
        codec = _codec(match.group(1)) if octets is not None else None
        tokens.append((codec, octets) if codec is not None else (None, match.group(0)))
        pos = match.end()
    if pos < len(value):
        tokens.append((None, value[pos:]))
    out: list[str] = []
    run_codec: str | None = None
    run = b""
    for n, (codec, data) in enumerate(tokens):
        if codec is None and data.isspace() and 0 < n < len(tokens) - 1:
            if tokens[n - 1][0] is not None and tokens[n + 1][0] is not None:
                continue  # between two encoded words
        if run and codec != run_codec:
            out.append(_decode_octets(run_codec or "us-ascii", run))
            run = b""
        if codec is None:
            out.append(data)
        else:
            run_codec = codec
            run += data
    if run:
        out.append(_decode_octets(run_codec or "us-ascii", run))
    return "".join(out)


def normalize_message_id(value: str) -> str:
    """Return the first `<id>` in a header value without brackets, or the bare token."""
    value = unfold(value)
    match = _MSGID_RE.search(value)
    if match:
        return match.group(1).strip()
    return value.strip().strip("<>").split()[0] if value.strip() else ""


def message_ids(value: str) -> tuple[str, ...]:
    """All ids in an In-Reply-To or References value, in order, without duplicates."""
    seen: dict[str, None] = {}
    for match in _MSGID_RE.finditer(value or ""):
        seen.setdefault(match.group(1).strip(), None)
    if not seen and value and value.strip() and "@" in value:
        for token in value.split():
            seen.setdefault(token.strip("<>,"), None)
    return tuple(seen)


def safe_filename(name: str, index: int = 0) -> str:
    """An attachment name that shows well and can never act as a path."""
    name = decode_mime_words(name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _FILENAME_BAD.sub("_", name).strip(" .")
    if not name or name in {".", ".."}:
        name = f"attachment-{index + 1}"
    return name[:200]


def _addresses(values: Any) -> tuple[Address, ...]:
    out: list[Address] = []
    for item in values or []:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            name, addr = item
        else:
            name, addr = email.utils.parseaddr(str(item))
        addr = unfold(str(addr or "")).strip().strip("<>").lower()
        if not addr:
            continue
        out.append(Address(unfold(decode_mime_words(str(name or ""))), addr))
    return tuple(out)


# One mailbox with a plain display name: the common case, read without the full parser.
_NAME_CHARS = r'[^"<>,;:()\\@\[\]]'
_ADDR = r'[^<>@\s,;:"()\\\[\]]+@[^<>@\s,;:"()\\\[\]]+'
_SIMPLE_MAILBOX = re.compile(rf'^\s*(?:"({_NAME_CHARS}*)"|({_NAME_CHARS}*?))\s*<({_ADDR})>\s*$|^\s*({_ADDR})\s*$')


def _parse_address_header(raw_values: list[str]) -> tuple[Address, ...]:
    """The mailboxes of an address header (From, Sender, Reply-To, To, Cc).

    The addresses are read from the undecoded value and only display names are decoded
    afterwards (RFC 2047 section 5): an encoded word can never supply an address, so
    `=?utf-8?q?Bob_=3Cceo=40bigcorp.com=3E?= <attacker@example.com>` is attacker@example.com
    with the display name "Bob <ceo@bigcorp.com>".
    """
    if not raw_values:
        return ()
    values = [unfold(v) for v in raw_values]
    if len(values) == 1:
        simple = _SIMPLE_MAILBOX.match(values[0])
        if simple is not None:
            quoted, bare = simple.group(1), simple.group(2)
            name = quoted.strip() if quoted is not None else re.sub(r"[ \t]+", " ", bare or "").strip()
            addr = simple.group(3) or simple.group(4)
            return _addresses([(name, addr)])
    # An encoded word is one atom whatever it encodes (a comma in `B=FCrling,=20Andreas`):
    # stand-ins keep getaddresses from splitting it, and it is put back before decoding.
    words: list[str] = []
    marker = "mdew" + hashlib.sha256("".join(values).encode("utf-8", "surrogatepass")).hexdigest()[:12]

    def stand_in(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"{marker}{len(words) - 1}x"

    values = [_ENCODED_WORD.sub(stand_in, v) for v in values]
    stand_ins = re.compile(rf"{marker}(\d+)x")

    def restore(text: str) -> str:
        return stand_ins.sub(lambda m: words[int(m.group(1))], text) if words else text

    pairs = [(restore(name), restore(addr)) for name, addr in email.utils.getaddresses(values)]
    # An unquoted comma in a display name ("Schmidt, Berta <b@x>") splits it into a bare
    # word and a mailbox: join them back instead of taking the word for an address.
    merged: list[tuple[str, str]] = []
    carry = ""
    for name, addr in pairs:
        if addr and "@" not in addr and not name:
            carry = f"{carry}, {addr}" if carry else addr
            continue
        if carry:
            name = f"{carry}, {name}" if name else carry
            carry = ""
        merged.append((name, addr))
    return _addresses(merged)


class _TextExtractor(HTMLParser):
    _BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._quote = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "head", "title"}:
            self._skip += 1
        elif tag == "blockquote":
            self._quote += 1
            self.parts.append("\n")
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "head", "title"}:
            self._skip = max(0, self._skip - 1)
        elif tag == "blockquote":
            self._quote = max(0, self._quote - 1)
            self.parts.append("\n")
        elif tag in {"p", "div", "tr", "li", "table"}:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._quote:
            data = "\n".join("> " + line if line.strip() else line for line in data.split("\n"))
        self.parts.append(data)


# html.parser costs about a microsecond per character: a 25 MiB HTML body held the worker
# for half a minute (issue 16). Only this much HTML (cut after a tag) becomes text.
MAX_HTML_TEXT_CHARS = 1_000_000


def html_text_cut(html: str) -> int:
    """How much of `html` html_to_text converts: all of it, or the head up to the last `>`
    within MAX_HTML_TEXT_CHARS."""
    if len(html) <= MAX_HTML_TEXT_CHARS:
        return len(html)
    return html.rfind(">", 0, MAX_HTML_TEXT_CHARS) + 1 or MAX_HTML_TEXT_CHARS


def html_to_text(html: str) -> str:
    """Readable plain text from HTML (blockquotes become `>` quotes); over
    MAX_HTML_TEXT_CHARS, from its head only (see html_text_cut)."""
    html = html[: html_text_cut(html)]
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - hostile HTML must not stop parsing
        return re.sub(r"<[^>]+>", " ", html_lib.unescape(html))
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def synthetic_message_id(raw: bytes) -> str:
    """Deterministic id for a message without Message-ID (same bytes, same id)."""
    return f"{hashlib.sha256(raw).hexdigest()[:32]}@synthetic.maildesk"


def _parse_date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(unfold(value))
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _raw_headers(msg: Any) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in msg.raw_items():  # raw: keeps 8-bit bytes as surrogates, fixed below
        out.append((str(key), unfold(decode_mime_words(str(value)))))
    return tuple(out)


_HEADER_LINE = re.compile(rb"^[!-9;-~]+[ \t]*:")
_OBS_COLON = re.compile(rb"^([!-9;-~]+)[ \t]+:", re.MULTILINE)


def _header_start(raw: bytes) -> bytes:
    """The bytes to parse: from the first header line on, obsolete `Name :` syntax fixed.

    Tolerates leading blank lines, an mbox `From ` envelope line and up to three lines of
    junk some gateways put before the headers. Raises UnparseableMessage otherwise. The
    stored raw bytes are never changed; this is only the parser's copy.
    """
    lines = raw.lstrip(b" \t\r\n").split(b"\n", 8)
    for skip, line in enumerate(lines[:4]):
        following = lines[skip + 1] if skip + 1 < len(lines) else b""
        if _HEADER_LINE.match(line) and (
            _HEADER_LINE.match(following) or following[:1] in (b" ", b"\t") or not following.strip()
        ):
            text = b"\n".join(lines[skip:])
            match = re.search(rb"\r?\n\r?\n", text)
            cut = match.start() if match else len(text)
            return _OBS_COLON.sub(rb"\1:", text[:cut]) + text[cut:]
    raise UnparseableMessage("no header block: the message does not start with header fields")


# Work per message must stay bounded (issue 16): the stdlib parser and mail-parser spend
# about 0.1 ms per MIME part, so a 25 MiB mail of 700,000 empty parts held the worker for
# minutes. Parts beyond this many are not parsed (they stay in the raw bytes).
MAX_PARTS = 1000
_BOUNDARY_PARAM = re.compile(rb'boundary\s*=\s*"?([^"\r\n;]{1,200})', re.IGNORECASE)
_DASH_LINE = re.compile(rb"^--([^\r\n]{1,210})", re.MULTILINE)


def parts_cut_offset(raw: bytes, max_parts: int = MAX_PARTS) -> int:
    """The offset of the boundary line that opens part `max_parts + 1`, or 0 when the mail
    has no more parts than that. Linear in the size of `raw`; cheap when it has no `--`."""
    if raw.count(b"\n--") <= max_parts:
        return 0
    boundaries = {m.group(1).strip() for m in _BOUNDARY_PARAM.finditer(raw)}
    if not boundaries:
        return 0
    seen = 0
    for match in _DASH_LINE.finditer(raw):
        line = match.group(1).rstrip()
        if line in boundaries or (line.endswith(b"--") and line[:-2] in boundaries):
            seen += 1
            if seen > max_parts:
                return match.start()
    return 0


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def _mail_parser(body: bytes) -> Any:
    """mail-parser's reading of `body`, as `mailparser.parse_from_bytes` would give it.

    The stdlib parser costs about a microsecond per line even where it only collects lines:
    a 25 MiB single-part mail of short lines held the worker for seconds (issue 16). So for
    a mail that is not multipart/* or message/*, only the header block goes through the
    parser and the body becomes the payload as one string — exactly what the parser would
    have joined from its lines. Anything else (or a header block the parser ends elsewhere,
    seen as a non-empty payload) is parsed whole, as before.
    """
    match = _BLANK_LINE.search(body)
    if match is not None and match.end() < len(body):
        head = email.parser.BytesParser().parsebytes(body[: match.end()])
        if (
            not head.is_multipart()
            and head.get_content_maintype() not in {"multipart", "message"}
            and head.get_payload() == ""
        ):
            head.set_payload(body[match.end() :].decode("ascii", "surrogateescape"))
            return mailparser.MailParser(head)
    return mailparser.parse_from_bytes(body)


def parse_bytes(raw: bytes) -> ParsedMessage:
    """Parse raw bytes. Raises UnparseableMessage when they are not a mail message.

    A mail with more than MAX_PARTS MIME parts is parsed up to the boundary of the part
    after the last one (`ParsedMessage.parts_cut`); `raw` is always the whole message."""
    if not raw or not raw.strip():
        raise UnparseableMessage("empty message")
    cut = parts_cut_offset(raw)
    body = _header_start(raw[:cut] if cut else raw)
    try:
        parsed = _mail_parser(body)
    except Exception as exc:  # noqa: BLE001 - any parser failure means quarantine
        raise UnparseableMessage(f"parser failed: {type(exc).__name__}: {exc}") from exc
    msg = parsed.message
    headers = _raw_headers(msg)
    if not headers:
        raise UnparseableMessage("no header fields")

    def first(name: str) -> str:
        for key, value in headers:
            if key.lower() == name.lower():
                return value
        return ""

    by_name: dict[str, list[str]] = {}
    for key, value in msg.raw_items():
        by_name.setdefault(str(key).lower(), []).append(value)

    def raw_all(name: str) -> list[str]:
        return [fix_8bit(str(v)) for v in by_name.get(name.lower(), ())]

    mid = normalize_message_id(first("Message-ID"))
    synthetic = not mid
    if synthetic:
        mid = synthetic_message_id(raw)
    from_list = _parse_address_header(raw_all("From"))
    sender_list = _parse_address_header(raw_all("Sender"))
    text = "\n".join(t for t in (parsed.text_plain or []) if t).replace("\r\n", "\n")
    html = "\n".join(h for h in (parsed.text_html or []) if h)
    text_cut = 0
    if not text.strip() and html:
        text = html_to_text(html)
        text_cut = html_text_cut(html) if len(html) > MAX_HTML_TEXT_CHARS else 0
    attachments = []
    for index, att in enumerate(parsed.attachments or []):
        payload_raw = att.get("payload") or ""
        if att.get("binary"):
            try:
                payload = base64.b64decode(payload_raw)
            except Exception:  # noqa: BLE001
                payload = payload_raw.encode("utf-8", "surrogateescape")
        else:
            payload = str(payload_raw).encode("utf-8", "surrogateescape")
        attachments.append(
            Attachment(
                filename=safe_filename(str(att.get("filename") or ""), index),
                content_type=str(att.get("mail_content_type") or "application/octet-stream").lower(),
                payload=payload,
                content_id=unfold(str(att.get("content-id") or "")).strip("<>"),
                disposition=unfold(str(att.get("content-disposition") or "")).split(";")[0].lower(),
            )
        )
    defects = tuple(sorted({str(d) for d in (parsed.defects_categories or [])}))
    extra: dict[str, Any] = {}
    if any(is_tnef(a.filename, a.content_type) for a in attachments):
        attachments, text, html, extra["tnef"] = _unpack_tnef_attachments(attachments, text, html)
        if not text.strip() and html:
            text = html_to_text(html)
            text_cut = html_text_cut(html) if len(html) > MAX_HTML_TEXT_CHARS else 0
    return ParsedMessage(
        raw=raw,
        message_id=mid,
        message_id_synthetic=synthetic,
        subject=unfold(decode_mime_words(first("Subject"))),
        from_=from_list[0] if from_list else None,
        sender=sender_list[0] if sender_list else None,
        to=_parse_address_header(raw_all("To")),
        cc=_parse_address_header(raw_all("Cc")),
        reply_to=_parse_address_header(raw_all("Reply-To")),
        date=_parse_date(first("Date")),
        in_reply_to=message_ids(first("In-Reply-To")),
        references=message_ids(" ".join(v for k, v in headers if k.lower() == "references")),
        headers=headers,
        text=text,
        html=html,
        attachments=tuple(attachments),
        defects=defects,
        content_type=(msg.get_content_type() or "text/plain").lower(),
        parts_cut=cut,
        html_text_cut=text_cut,
        extra=extra,
    )


def _unpack_tnef_attachments(
    attachments: list[Attachment], text: str, html: str
) -> tuple[list[Attachment], str, str, list[dict[str, Any]]]:
    """Replace each Outlook `winmail.dat` by the files it holds; its body becomes the mail's
    body when the mail has none. A container that cannot be read (or holds more files than
    MAX_TNEF_FILES, or gave neither a file nor the body) is kept as it came; one that was
    unpacked is dropped (its bytes stay in `raw`).
    Returns the attachments, text, html and one report per container (for `parse` and events)."""
    out: list[Attachment] = []
    reports: list[dict[str, Any]] = []
    for att in attachments:
        if not is_tnef(att.filename, att.content_type):
            out.append(att)
            continue
        content = unpack_tnef(att.payload)
        report: dict[str, Any] = {"container": att.filename, "size": att.size}
        if content.error:
            report.update(kept=True, error=content.error)
            out.append(att)
            reports.append(report)
            continue
        names = []
        for tf in content.files:
            name = safe_filename(tf.name, len(out))
            names.append(name)
            out.append(
                Attachment(
                    filename=name,
                    content_type=(mimetypes.guess_type(name)[0] or "application/octet-stream").lower(),
                    payload=tf.payload,
                    disposition="attachment",
                )
            )
        body = ""
        if not text.strip() and not html.strip():
            if content.html:
                html, body = content.html, "html"
            elif content.text:
                text, body = content.text.replace("\r\n", "\n"), "text"
        kept = bool(content.files_capped) or not (names or body)  # nothing came out: keep it
        if kept:
            out.append(att)
        report.update(files=names, body=body or None, rtf_body=content.has_rtf, kept=kept)
        if content.files_capped:
            report["files_not_unpacked"] = content.files_capped
        reports.append(report)
    return out, text, html, reports
