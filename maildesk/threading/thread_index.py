"""Outlook `Thread-Index` values (MS-OXOMSG 2.2.1.3, PidTagConversationIndex).

A value is base64 of a 22-byte header followed by one 5-byte response level per reply:

- header: reserved byte 0x01, 40 bits of the UTC FILETIME (its 24 least significant bits
  dropped, big-endian), then a 16-byte GUID whose Data1-3 are big-endian (RFC 4122 order);
- response level: 1 bit DC, 31 bits time delta since the header time (bits 18..48 of the
  delta when DC=0, bits 23..53 when DC=1), 4 random bits, 4 bits of sequence.

Owns building new and child values and extracting the 22-byte root that names a
conversation. Older Outlook builds write the header as the top 48 bits of the FILETIME
(no separate reserved byte); both shapes are read. Pure: time and randomness come in as
arguments or from `secrets`; nothing is looked up here.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from datetime import UTC, datetime

HEADER_LEN = 22
CHILD_LEN = 5
_EPOCH_DIFF_SECONDS = 11_644_473_600  # 1601-01-01 to 1970-01-01
_MAX_LEN = HEADER_LEN + CHILD_LEN * 512


def filetime(now: datetime) -> int:
    """100-ns intervals since 1601-01-01 UTC (naive datetimes are taken as UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    delta = now.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return (micros + _EPOCH_DIFF_SECONDS * 1_000_000) * 10


def _decode(value: str) -> bytes | None:
    text = "".join((value or "").split())
    if not text or len(text) > (_MAX_LEN * 4) // 3 + 8:
        return None
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(data) < HEADER_LEN or (len(data) - HEADER_LEN) % CHILD_LEN or data[0] != 0x01:
        return None
    return data


def _header_filetime(data: bytes) -> int:
    """The (truncated) FILETIME in a header, in either shape."""
    if data[1] == 0x01:  # spec shape: 0x01 + bits 63..24
        return int.from_bytes(data[1:6], "big") << 24
    return int.from_bytes(data[0:6], "big") << 16  # legacy Outlook: bits 63..16


def new_thread_index(now: datetime, guid: bytes | None = None) -> str:
    """A fresh Thread-Index for a new conversation started at `now`."""
    if guid is None:
        guid = uuid.UUID(bytes=secrets.token_bytes(16), version=4).bytes
    if len(guid) != 16:
        raise ValueError("guid must be 16 bytes")
    time_part = (filetime(now) >> 24).to_bytes(5, "big")
    return base64.b64encode(b"\x01" + time_part + guid).decode("ascii")


def child_thread_index(parent: str, now: datetime) -> str:
    """The Thread-Index of a reply to a message whose Thread-Index is `parent`.

    A malformed parent starts a new conversation instead (Outlook does the same).
    """
    data = _decode(parent)
    if data is None:
        return new_thread_index(now)
    delta = max(0, filetime(now) - _header_filetime(data))
    if delta < (1 << 49):
        code, bits = 0, (delta >> 18) & 0x7FFF_FFFF
    else:
        code, bits = 1, (delta >> 23) & 0x7FFF_FFFF
    sequence = (len(data) - HEADER_LEN) // CHILD_LEN
    low = (secrets.randbits(4) << 4) | (sequence & 0x0F)
    block = ((code << 31) | bits).to_bytes(4, "big") + bytes([low])
    return base64.b64encode(data + block).decode("ascii")


def thread_index_root(value: str) -> str | None:
    """Base64 of the 22-byte header (the conversation's key), or None if malformed."""
    data = _decode(value)
    if data is None:
        return None
    return base64.b64encode(data[:HEADER_LEN]).decode("ascii")


def thread_index_depth(value: str) -> int | None:
    """How many response levels follow the header (0 for a new conversation)."""
    data = _decode(value)
    return None if data is None else (len(data) - HEADER_LEN) // CHILD_LEN


def thread_index_time(value: str) -> datetime | None:
    """The conversation start time in the header (to the truncation of the format)."""
    data = _decode(value)
    if data is None:
        return None
    ticks = _header_filetime(data)
    seconds = ticks // 10_000_000 - _EPOCH_DIFF_SECONDS
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
