"""Reading one message for `maildesk inject` (an MTA pipe), within the size limit.

Owns the read and its bound: the same `smtp.max_message_size` as the SMTP intake, so no
source takes a mail SMTP would refuse (issue 16: a 42 MB mail through `inject` kept the
worker busy for minutes). Never reads more than the limit plus one byte.
It must not: spool (the command does, after this), touch the database or parse the mail.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

from maildesk.errors import MaildeskError


class MessageTooLarge(MaildeskError):
    """The message is over the size limit: a permanent refusal, not a temporary one."""


def read_bounded(stream: BinaryIO, limit: int, name: str = "message") -> bytes:
    """Everything from `stream`, or MessageTooLarge when it holds more than `limit` bytes
    (limit 0: no limit)."""
    if limit <= 0:
        return stream.read()
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise MessageTooLarge(f"{name} is larger than smtp.max_message_size ({limit} bytes)")
    return data


def read_message(file: str, limit: int) -> bytes:
    """The message in `file` (`-`: standard input), bounded by `limit`. OSError passes through."""
    if file == "-":
        return read_bounded(sys.stdin.buffer, limit, "the message on standard input")
    with Path(file).open("rb") as stream:
        return read_bounded(stream, limit, file)
