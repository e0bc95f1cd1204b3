"""Bounce (non-delivery report) parsing.

Owns flufl.bounce (the only module that imports it). Reads a `ParsedMessage`'s raw bytes
with the standard `email` package and answers: is this a delivery report, which
recipients failed, is the failure permanent, and which of our messages does it concern.

Understands RFC 3464 `multipart/report; report-type=delivery-status` (per-recipient
`Action`/`Status`), and the common non-standard text reports (qmail, Exim, Postfix and
Sendmail without DSN, Gmail, Office 365 / Exchange, Lotus-style "Delivery failed"), with
flufl.bounce as a fallback for formats these rules miss.

It must not decide what to do about a bounce (suppress, notify, reopen) and must not touch
the database or the network. Mail is hostile input: every entry point returns None rather
than raising.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from flufl.bounce import all_failures

try:  # flufl.bounce's ordered detector list, so one crashing detector does not stop the others
    from flufl.bounce._scan import _DETECTORS as _FLUFL_DETECTORS
except ImportError:  # pragma: no cover - layout of a future flufl.bounce
    _FLUFL_DETECTORS = []

from maildesk.message import ParsedMessage, normalize_message_id, unfold

_MAX_PARTS = 200
_MAX_DEPTH = 12
_MAX_TEXT = 200_000

_ADDR = r"[A-Za-z0-9._%+\-=/!#$&'*^`{|}~]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+"  # noqa: E501
_ADDR_RE = re.compile(_ADDR)
# Characters an MTA glues before an address (`addr', 'addr', {addr}, /addr): legal in a local
# part, never at its start in a real mailbox of a bounce.
_GLUED = "'`{|}/=~^*&$#!"


def _address(match: re.Match[str]) -> str:
    """A found address, lower-case, without glued quote characters or a trailing dot."""
    return match.group(0).lstrip(_GLUED).lower().rstrip(".")


_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE_RE = re.compile(r"(?:^|[\s:(])([45])\d\d[\s\-]", re.MULTILINE)
_MSGID_LINE_RE = re.compile(r"^Message-ID:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)

SYSTEM_LOCALPARTS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "mdaemon"})

_BOUNCE_SUBJECT_RE = re.compile(
    r"undeliver|undelivered mail|returned mail|return(ed)? to sender|delivery status notification"
    r"|delivery (status )?failure|delivery failed|failed delivery|mail delivery failed|non[- ]?delivery"
    r"|could not (be )?deliver|delivery notification|delivery has failed|delayed mail|delivery delayed"
    r"|warning: could not send|mail system error|unzustellbar|nicht zustellbar|übermittlungsstatus"
    r"|non remis|non distribuable|no se puede entregar|non recapitabile|onbestelbaar",
    re.IGNORECASE,
)

# Text reports: (format name, marker regex, regex whose match starts the address list or None).
_FAILED_BLOCK_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("qmail", re.compile(r"This is the qmail-send program", re.I)),
    ("exim", re.compile(r"This message was created automatically by mail delivery software", re.I)),
    ("postfix", re.compile(r"This is the mail system at host", re.I)),
    ("gmail", re.compile(r"Delivery to the following recipients? (failed permanently|has been delayed)", re.I)),
    ("gmail", re.compile(r"Your message wasn'?t delivered to|Address not found|Message not delivered", re.I)),
    (
        "office365",
        re.compile(
            r"Delivery has failed to these recipients|Your message to \S+ couldn'?t be delivered"
            r"|Delivery is delayed to these recipients",
            re.I,
        ),
    ),
    ("sendmail", re.compile(r"-+ ?The following addresses had (permanent fatal errors|delivery problems)", re.I)),
    ("sendmail", re.compile(r"-+ ?Transcript of session follows", re.I)),
    ("postfix", re.compile(r"This is the Postfix program at host", re.I)),
    (
        "exchange",
        re.compile(
            r"did not reach some or all of the intended recipients"
            r"|The following recipient\(s\) (could not|cannot) be reached",
            re.I,
        ),
    ),
    ("lotus", re.compile(r"^\s*was not delivered to:", re.I | re.M)),
    ("groupwise", re.compile(r"was undeliverable to the following", re.I)),
    ("mdaemon", re.compile(r"had PERMANENT fatal delivery errors|-+ ?Session Transcript", re.I)),
    ("communigate", re.compile(r"^Failed to deliver to\b", re.I | re.M)),
    (
        "courier",
        re.compile(
            r"running the Courier mail server|Your message to the following recipients cannot be delivered", re.I
        ),
    ),
    (
        "generic",
        re.compile(
            r"Delivery failed \d+ attempts?|could not be delivered to one or more recipients"
            r"|A message that you sent could not be delivered|Mail delivery failed",
            re.I,
        ),
    ),
)

_FAILURE_PHRASE = re.compile(
    r"could not be delivered|couldn'?t be delivered|was not delivered|not be delivered|delivery (to \S+ )?failed"
    r"|delivery failure|failed to deliver|permanent failure|undeliverable|delivery failed for|returned to sender",
    re.I,
)
# Mailbox full / over quota: the mailbox exists and may take mail later, whatever the class of
# the code (RFC 3463 X.2.2 is "persistent transient"), so nothing is suppressed for it.
_MAILBOX_FULL_TEXT = re.compile(
    r"mailbox (is )?full|mailbox.{0,20}\bover\b.{0,20}quota|over (the )?(allowed )?quota|quota exceeded"
    r"|exceeded (the |its |his |her )?(storage|quota)|insufficient (system )?storage|mailfolder is over"
    r"|out of storage",
    re.I,
)
_PERMANENT_WORDS = re.compile(
    r"\bpermanent(ly)?\b|does ?n[o']t exist|no such (user|mailbox|recipient|address)|user unknown"
    r"|unknown (user|recipient|mailbox|address)"
    r"|(user|recipient|mailbox|address) not found|not listed in|invalid (recipient|mailbox|address)|mailbox unavailable"
    r"|recipient address rejected|account (has been )?disabled|no mailbox here"
    r"|host or domain name not found|no such domain|domain (name )?not found",
    re.I,
)
_PERMANENT_TEXT = re.compile(
    r"failed permanently|permanent (fatal )?error|this is a permanent error|permanent failure"
    r"|couldn'?t be delivered|could not be delivered|user unknown|does not exist|no such user"
    r"|address not found|unknown user|mailbox unavailable|recipient address rejected|wasn'?t found at"
    r"|delivery failed|unrecoverable error|not going to try again",
    re.I,
)
_TRANSIENT_TEXT = re.compile(
    r"warning only|you do not need to resend|has been delayed|delivery is delayed|will be retried"
    r"|will continue trying|has not yet been delivered|still being retried|no action is required"
    r"|could not send message for past|temporar(il)?y|try again|greylist",
    re.I,
)
# Delay notices: transient whatever codes they quote (unless the text says it failed permanently).
_DELAY_TEXT = re.compile(
    r"warning only|has been delayed|delivery is delayed|has not yet been delivered|will continue trying"
    r"|still being retried|no action is required|delivery attempts will continue",
    re.I,
)
_ORIGINAL_MARKER = re.compile(
    r"^[ \t]*(-+ ?(original message|this is a copy of the message|below this line is a copy)"
    r"|-+ ?Original message ?-+|Original message follows|-+ ?The original message|Original message headers"
    r"|--- Below this line is a copy of the message|-+ ?Returned message ?-+|Original message:)",
    re.I | re.MULTILINE,
)


@dataclass(frozen=True)
class RecipientStatus:
    """One recipient's outcome as reported by the MTA."""

    address: str
    action: str  # failed | delayed | delivered | relayed | expanded | "" (text reports)
    status: str  # enhanced status code such as 5.1.1, or ""
    diagnostic: str
    permanent: bool | None

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action,
            "status": self.status,
            "diagnostic": self.diagnostic,
            "permanent": self.permanent,
        }


@dataclass(frozen=True)
class BounceInfo:
    """What a delivery report says.

    `addresses` are the recipients it reports as not delivered (failed or delayed),
    lower-case. `permanent` is True when at least one recipient failed permanently
    (5.x.x or a permanent text report), False when every reported problem is transient or
    a delay (those must change nothing), None when the report does not say.
    `permanent_addresses` are the ones that may be suppressed.
    """

    addresses: tuple[str, ...]
    permanent: bool | None
    status_codes: tuple[str, ...]
    diagnostic: str
    original_message_id: str
    format: str  # rfc3464 | qmail | exim | postfix | gmail | office365 | sendmail | generic | flufl | unrecognised
    recipients: tuple[RecipientStatus, ...] = ()

    @property
    def permanent_addresses(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients if r.permanent is True)

    def to_json(self) -> dict[str, Any]:
        return {
            "addresses": list(self.addresses),
            "permanent": self.permanent,
            "permanent_addresses": list(self.permanent_addresses),
            "status_codes": list(self.status_codes),
            "diagnostic": self.diagnostic,
            "original_message_id": self.original_message_id,
            "format": self.format,
            "recipients": [r.to_json() for r in self.recipients],
        }


# --------------------------------------------------------------------------- helpers


def to_email_message(msg: ParsedMessage) -> Message | None:
    """The stdlib view of the raw bytes (structure only); None when it cannot be built."""
    try:
        return email.message_from_bytes(msg.structure_bytes, policy=email.policy.compat32)
    except Exception:  # noqa: BLE001 - hostile input
        return None


def iter_parts(root: Message) -> Iterator[Message]:
    """Parts of the report itself: descends into multiparts, never into attached messages."""
    stack: list[tuple[Message, int]] = [(root, 0)]
    seen = 0
    while stack and seen < _MAX_PARTS:
        part, depth = stack.pop(0)
        seen += 1
        yield part
        if depth >= _MAX_DEPTH or part.get_content_maintype() != "multipart":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((p, depth + 1) for p in payload if isinstance(p, Message))


def part_text(part: Message) -> str:
    """Decoded text of a non-multipart part, never raising."""
    try:
        payload = part.get_payload(decode=True)
        if payload is None:
            inner = part.get_payload()
            if isinstance(inner, list):
                return "\n\n".join(_message_fields_text(m) for m in inner if isinstance(m, Message))
            return str(inner or "")[:_MAX_TEXT]
        charset = part.get_content_charset() or "utf-8"
        data = payload if isinstance(payload, bytes) else str(payload).encode("utf-8", "replace")
        try:
            return data[:_MAX_TEXT].decode(charset, "replace")
        except LookupError:
            return data[:_MAX_TEXT].decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - hostile input
        return ""


def _message_fields_text(block: Message) -> str:
    return "\n".join(f"{k}: {v}" for k, v in block.items())


def _clean_address(value: str) -> str:
    value = unfold(value)
    if ";" in value:
        value = value.split(";", 1)[1]
    match = _ADDR_RE.search(value)
    return _address(match) if match else ""


def _status_permanent(status: str, action: str) -> bool | None:
    if action in {"delayed", "delivered", "relayed", "expanded"}:
        return False
    match = _STATUS_RE.search(status)
    if match:
        if (match.group(2), match.group(3)) == ("2", "2"):
            return False  # mailbox full (RFC 3463: persistent transient): never suppress for it
        return match.group(1) == "5" if action in {"failed", ""} else False
    if action == "failed":
        return None
    return None


def _field_blocks(text: str) -> list[dict[str, str]]:
    """RFC 3464 field groups separated by blank lines; continuation lines are folded in."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
            continue
        if line[:1] in (" ", "\t") and last:
            current[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep and name.strip() and " " not in name.strip():
            last = name.strip().lower()
            current[last] = value.strip() if last not in current else current[last]
    if current:
        blocks.append(current)
    return blocks


def _delivery_status_blocks(part: Message) -> list[dict[str, str]]:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and all(isinstance(p, Message) for p in payload):
        blocks = [
            {k.lower(): unfold(str(v)) for k, v in block.items()} for block in payload if isinstance(block, Message)
        ]
        if any("final-recipient" in b or "original-recipient" in b for b in blocks):
            return blocks
    return _field_blocks(part_text(part))


def _original_message_id(root: Message, msg: ParsedMessage, body_text: str) -> str:
    for part in iter_parts(root):
        ctype = part.get_content_type()
        if ctype in {"message/rfc822", "message/global"}:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                mid = normalize_message_id(str(inner[0].get("Message-ID", "") or ""))
                if mid:
                    return mid
            mid = _msgid_in_text(part_text(part))
            if mid:
                return mid
        elif ctype in {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}:
            try:
                headers = HeaderParser(policy=email.policy.compat32).parsestr(part_text(part))
                mid = normalize_message_id(str(headers.get("Message-ID", "") or ""))
            except Exception:  # noqa: BLE001
                mid = ""
            if mid:
                return mid
    marker = _ORIGINAL_MARKER.search(body_text)
    if marker:
        mid = _msgid_in_text(body_text[marker.end() :])
        if mid:
            return mid
    return msg.in_reply_to[0] if msg.in_reply_to else ""


def _msgid_in_text(text: str) -> str:
    match = _MSGID_LINE_RE.search(text)
    return normalize_message_id(match.group(1)) if match else ""


def _report_text(root: Message) -> str:
    """Readable text of the report (text/* parts outside attached messages)."""
    chunks: list[str] = []
    for part in iter_parts(root):
        if part.get_content_maintype() == "text" and part.get_content_type() != "text/rfc822-headers":
            text = part_text(part)
            if part.get_content_subtype() == "html":
                text = re.sub(r"<[^>]+>", " ", text)
            chunks.append(text)
    return "\n".join(chunks)[:_MAX_TEXT]


def _diagnostic_line(text: str) -> str:
    for line in text.split("\n"):
        if _STATUS_RE.search(line) or _SMTP_CODE_RE.search(" " + line + " "):
            return unfold(line)[:300]
    return ""


# --------------------------------------------------------------------------- RFC 3464


def _parse_dsn(root: Message) -> list[RecipientStatus] | None:
    found = False
    recipients: list[RecipientStatus] = []
    for part in iter_parts(root):
        if part.get_content_type() not in {"message/delivery-status", "message/global-delivery-status"}:
            continue
        found = True
        for block in _delivery_status_blocks(part):
            address = _clean_address(block.get("final-recipient", "")) or _clean_address(
                block.get("original-recipient", "")
            )
            if not address:
                continue
            action = block.get("action", "").strip().lower().split()[0:1]
            action_s = action[0] if action else ""
            status = block.get("status", "").strip()
            status_m = _STATUS_RE.search(status)
            status_s = status_m.group(0) if status_m else ""
            diagnostic = block.get("diagnostic-code", "")
            if not status_s:
                diag_m = _STATUS_RE.search(diagnostic)
                status_s = diag_m.group(0) if diag_m else ""
            recipients.append(
                RecipientStatus(
                    address=address,
                    action=action_s,
                    status=status_s,
                    diagnostic=unfold(diagnostic)[:500],
                    permanent=_status_permanent(status_s, action_s),
                )
            )
    return recipients if found else None


# --------------------------------------------------------------------------- text reports


def is_bounce_candidate(msg: ParsedMessage) -> bool:
    """Came from a mail system (gate for text and flufl parsing); a subject alone is not enough."""
    sender = msg.from_.email if msg.from_ else ""
    local = sender.partition("@")[0]
    null_path = any(
        v.replace(" ", "") in {"<>", "<<>>"}
        for v in msg.header_all("Return-Path")[:1] + msg.header_all("X-Envelope-From")[:1]
    )
    auto = msg.header("Auto-Submitted").split(";", 1)[0].strip().lower() not in {"", "no"}
    name = msg.from_.name.lower() if msg.from_ else ""
    return bool(
        local in SYSTEM_LOCALPARTS
        or msg.header("X-Failed-Recipients")
        or "mail delivery" in name
        or "postmaster" in name
        or null_path
        or auto
        or "report-type=delivery-status" in msg.header("Content-Type").lower().replace('"', "").replace(" ", "")
    )


_NOT_FAILURE_LINE = re.compile(r"^\s*(from|sender|reply-to|return-path|message-id|in-reply-to|references)\s*:", re.I)


def _from_mail_system(msg: ParsedMessage) -> bool:
    """Sent by a mail system itself (not merely automatic: an out-of-office reply is too)."""
    sender = msg.from_.email if msg.from_ else ""
    name = msg.from_.name.lower() if msg.from_ else ""
    null_path = any(v.replace(" ", "") in {"<>", "<<>>"} for v in msg.header_all("Return-Path")[:1])
    return bool(
        sender.partition("@")[0] in SYSTEM_LOCALPARTS
        or "mail delivery" in name
        or "postmaster" in name
        or null_path
        or msg.header("X-Failed-Recipients")
    )


def _text_addresses(text: str, start: int, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Addresses reported after a marker, before the copy of the original message;
    `exclude` are the report's own recipients (the sender of the original: us)."""
    tail = text[start:]
    stop = _ORIGINAL_MARKER.search(tail)
    region = tail[: stop.start()] if stop else tail[:4000]
    # Lines of the returned original's headers (From:, To:, ...) are not failures.
    lines = [ln for ln in region.split("\n") if not _NOT_FAILURE_LINE.match(ln)]
    out: list[str] = []
    for match in _ADDR_RE.finditer("\n".join(lines)):
        addr = _address(match)
        local = addr.partition("@")[0]
        if local in SYSTEM_LOCALPARTS or addr in out or addr in exclude:
            continue
        out.append(addr)
    return out[:50]


def _own(msg: ParsedMessage) -> frozenset[str]:
    """The report's own recipients: the original's sender, never a failed recipient."""
    return frozenset(a.email for a in msg.to)


def _parse_text(msg: ParsedMessage, text: str) -> tuple[str, list[str]] | None:
    for name, marker in _FAILED_BLOCK_MARKERS:
        match = marker.search(text)
        if match:
            start = match.start() if name in {"office365", "generic", "exchange", "communigate"} else match.end()
            return name, _text_addresses(text, start, _own(msg))
    return None


def _text_permanence(text: str) -> bool | None:
    """Permanence read from a report's text (before the copy of the original message):
    a delay notice or a full mailbox is transient; then enhanced status codes decide (5.x.x
    permanent, 4.x.x transient); then words ("permanent", "does not exist", "user unknown"
    permanent, "temporary", "retried" transient); then basic SMTP codes."""
    region = text
    stop = _ORIGINAL_MARKER.search(text)
    if stop:
        region = text[: stop.start()]
    permanent_said = re.search(r"failed permanently|permanent (fatal )?error|permanent failure", region, re.I)
    if _DELAY_TEXT.search(region) and not permanent_said:
        return False
    if _MAILBOX_FULL_TEXT.search(region):
        return False
    codes = [m for m in _STATUS_RE.finditer(region) if m.group(1) in "45"]
    if any(m.group(1) == "5" and (m.group(2), m.group(3)) != ("2", "2") for m in codes):
        return True
    if codes:
        return False  # 4.x.x, or X.2.2 (mailbox full) only
    if _PERMANENT_WORDS.search(region):
        return True
    if _TRANSIENT_TEXT.search(region):
        return False
    code = _SMTP_CODE_RE.search(region)
    if code:
        return code.group(1) == "5"
    if _PERMANENT_TEXT.search(region):  # "could not be delivered", "delivery failed": weakest
        return True
    return None


def _flufl(root: Message) -> tuple[set[str], set[str]]:
    """flufl.bounce's (temporary, permanent) failures; its first detector that answers wins.

    Detectors are run one by one (as `all_failures` does) because several of them raise on
    unusual headers, and `all_failures` then aborts the whole scan and logs a traceback.
    """
    temporary: Any = ()
    permanent: Any = ()
    if not _FLUFL_DETECTORS:
        try:
            temporary, permanent = all_failures(root)
        except Exception:  # noqa: BLE001 - a detector crashing on hostile input
            return set(), set()
    for detector_class in _FLUFL_DETECTORS:
        try:
            temporary, permanent = detector_class().process(root)
        except Exception:  # noqa: BLE001 - a detector crashing on hostile input
            continue
        if temporary or permanent:
            break

    def norm(items: Any) -> set[str]:
        out = set()
        for item in items or ():
            value = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            addr = _clean_address(value)
            if addr:
                out.add(addr)
        return out

    return norm(temporary), norm(permanent)


def flufl_scan(msg: ParsedMessage) -> frozenset[str]:
    """flufl.bounce's own verdict: permanently failed recipients (for comparison in benches)."""
    root = to_email_message(msg)
    if root is None:
        return frozenset()
    return frozenset(_flufl(root)[1])


# --------------------------------------------------------------------------- entry point


def parse_bounce(msg: ParsedMessage) -> BounceInfo | None:
    """Parse a delivery report; None when `msg` is not one (or cannot be read)."""
    try:
        return _parse_bounce(msg)
    except Exception:  # noqa: BLE001 - hostile input never raises out of screening
        return None


def may_be_bounce(msg: ParsedMessage) -> bool:
    """False when `parse_bounce` would answer None without reading the structure: no
    delivery-status part can be in the bytes and the mail is no bounce candidate. Reads the
    headers and does one byte search, so plain mail is not parsed a second time (issue 16)."""
    # A delivery-status part (the RFC 3464 path) has these bytes in its Content-Type: the
    # stdlib's content type is the header's literal first token (ASCII case folded only),
    # never a default or a decoded value.
    return is_bounce_candidate(msg) or b"delivery-status" in msg.structure_bytes.lower()


def _parse_bounce(msg: ParsedMessage) -> BounceInfo | None:
    if not may_be_bounce(msg):
        return None
    root = to_email_message(msg)
    if root is None:
        return None
    text = _report_text(root) or msg.text[:_MAX_TEXT]
    dsn = _parse_dsn(root)
    if dsn is not None:
        not_ok = [r for r in dsn if r.action not in {"delivered", "relayed", "expanded"}]
        if not dsn:
            # A delivery-status part without a readable recipient: fall back to the text.
            return _from_text(msg, root, text, fmt_default="rfc3464") or BounceInfo(
                addresses=(),
                permanent=None,
                status_codes=(),
                diagnostic=_diagnostic_line(text),
                original_message_id=_original_message_id(root, msg, text),
                format="rfc3464",
            )
        permanent: bool | None
        if any(r.permanent is True for r in not_ok):
            permanent = True
        elif not_ok and all(r.permanent is None for r in not_ok):
            permanent = _text_permanence(text)
            if permanent is not None:
                not_ok = [RecipientStatus(r.address, r.action, r.status, r.diagnostic, permanent) for r in not_ok]
                dsn = not_ok + [r for r in dsn if r not in not_ok and r.action in {"delivered", "relayed", "expanded"}]
        else:
            permanent = False
        diagnostic = next((r.diagnostic for r in not_ok if r.diagnostic), "") or _diagnostic_line(text)
        return BounceInfo(
            addresses=tuple(dict.fromkeys(r.address for r in not_ok)),
            permanent=permanent,
            status_codes=tuple(dict.fromkeys(r.status for r in dsn if r.status)),
            diagnostic=diagnostic,
            original_message_id=_original_message_id(root, msg, text),
            format="rfc3464",
            recipients=tuple(dsn),
        )
    if not is_bounce_candidate(msg):
        return None
    return _from_text(msg, root, text, fmt_default="unrecognised")


# Formats whose reports only ever announce failures (a delay says so in words or codes).
_FAILURE_FORMATS = frozenset(
    {"qmail", "exim", "sendmail", "office365", "exchange", "lotus", "groupwise", "mdaemon", "communigate", "courier"}
)


def _from_text(msg: ParsedMessage, root: Message, text: str, *, fmt_default: str) -> BounceInfo | None:
    parsed = _parse_text(msg, text)
    fmt = parsed[0] if parsed else fmt_default
    addresses = parsed[1] if parsed else []
    header_failed = [
        a for value in msg.header_all("X-Failed-Recipients") for a in (_clean_address(p) for p in value.split(",")) if a
    ]
    for addr in header_failed:
        if addr not in addresses:
            addresses.insert(0, addr)
    if header_failed:
        # X-Failed-Recipients is authoritative: drop addresses only seen in prose.
        addresses = [a for a in addresses if a in header_failed]
    permanent = _text_permanence(text)
    temporary_f: set[str] = set()
    permanent_f: set[str] = set()
    if not addresses:
        temporary_f, permanent_f = _flufl(root)
        if permanent_f or temporary_f:
            fmt = "flufl" if not parsed else fmt
            addresses = sorted(permanent_f) + sorted(temporary_f - permanent_f)
            if permanent is None:
                permanent = bool(permanent_f)
    subject_says = bool(_BOUNCE_SUBJECT_RE.search(msg.subject or ""))
    if not addresses and (subject_says or (_from_mail_system(msg) and _FAILURE_PHRASE.search(text[:4000]))):
        # A free-text report without a known marker (older MTAs, groupware): the addresses
        # of its text before the copy of the original, but for its own recipients.
        addresses = _text_addresses(text, 0, _own(msg))
        if addresses and not parsed:
            fmt = "text"
    if not parsed and not addresses and not subject_says:
        return None
    if permanent is None and addresses and fmt in _FAILURE_FORMATS:
        permanent = True
    recipients = tuple(
        RecipientStatus(
            address=a,
            action="failed" if permanent else ("delayed" if permanent is False else ""),
            status="",
            diagnostic="",
            permanent=(a in permanent_f) if (permanent_f or temporary_f) and not parsed else permanent,
        )
        for a in addresses
    )
    status = _STATUS_RE.search(text)
    return BounceInfo(
        addresses=tuple(addresses),
        permanent=permanent,
        status_codes=(status.group(0),) if status else (),
        diagnostic=_diagnostic_line(text),
        original_message_id=_original_message_id(root, msg, text),
        format=fmt,
        recipients=recipients,
    )
