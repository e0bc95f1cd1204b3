"""Outlook TNEF (`winmail.dat`, application/ms-tnef) unpacking.

Owns tnefparse (the only module that imports it). Outlook wraps a message's attachments
(and often its body) in one opaque `winmail.dat`; `unpack_tnef` turns its bytes into the
files it holds and the body it carries. It knows nothing about the rest of the mail: the
caller (`message.parse_bytes`) decides where the files and the body go.

Mail is hostile: names are returned as they came (the caller makes them safe, they never
become paths), the number of files is capped, and any failure of the decoder is an answer
(`TnefContent.error`), never an exception.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tnefparse.tnef import TNEF

# tnefparse logs every attribute it does not know; that is noise, not an error.
logging.getLogger("tnefparse").setLevel(logging.ERROR)

TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
MAX_TNEF_FILES = 100


@dataclass(frozen=True)
class TnefFile:
    name: str  # as stored in the TNEF (long file name when there is one); not yet safe
    payload: bytes


@dataclass(frozen=True)
class TnefContent:
    files: tuple[TnefFile, ...] = ()
    text: str = ""  # the plain-text body, when the TNEF carries one
    html: str = ""  # the HTML body, when the TNEF carries one
    has_rtf: bool = False  # an RTF body (not converted: maildesk has no RTF reader)
    error: str = ""  # why it could not be read; then nothing else is set
    files_capped: int = 0  # files beyond MAX_TNEF_FILES (left in the kept original)


def is_tnef(filename: str, content_type: str) -> bool:
    """The attachment is a TNEF container: by type, or by Outlook's name for it."""
    return content_type.lower() in TNEF_TYPES or filename.strip().lower() == "winmail.dat"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.replace("\x00", "").strip() if isinstance(value, str) else ""


def unpack_tnef(data: bytes) -> TnefContent:
    """The files and body inside TNEF bytes; `error` says why when they cannot be read."""
    if not data.startswith(b"\x78\x9f\x3e\x22"):  # TNEF's signature (0x223E9F78, little-endian)
        return TnefContent(error="not TNEF (no TNEF signature)")
    try:
        tnef = TNEF(data)
        files: list[TnefFile] = []
        attachments = list(tnef.attachments or [])
        for att in attachments[:MAX_TNEF_FILES]:
            payload = att.data
            if not isinstance(payload, bytes):  # an embedded message object: not a file
                continue
            try:
                name = att.long_filename()
            except Exception:  # noqa: BLE001 - a broken name attribute
                name = ""
            files.append(TnefFile(name=_text(name) or _text(att.name), payload=payload))
        text = _text(getattr(tnef, "body", None))
        html = _text(getattr(tnef, "htmlbody", None))
        has_rtf = bool(getattr(tnef, "_rtfbody", None))
    except Exception as exc:  # noqa: BLE001 - hostile input: an answer, not an exception
        return TnefContent(error=f"{type(exc).__name__}: {str(exc)[:200]}")
    return TnefContent(
        files=tuple(files),
        text=text,
        html=html,
        has_rtf=has_rtf,
        files_capped=max(0, len(attachments) - MAX_TNEF_FILES),
    )
