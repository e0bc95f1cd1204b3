"""DKIM signing of outgoing messages.

Owns dkimpy for signing (`agentmail.sender_auth` verifies incoming mail with it). `sign`
prepends a DKIM-Signature header (rsa-sha256, relaxed/relaxed) to finished message bytes.

It must not: change the message it signs, read key files or settings (the caller passes the
key), or verify incoming mail.
"""

from __future__ import annotations

import dkim as dkimpy

from maildesk.errors import MaildeskError

SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Cc",
    b"Reply-To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"In-Reply-To",
    b"References",
    b"MIME-Version",
    b"Content-Type",
    b"Auto-Submitted",
)


class DkimError(MaildeskError):
    """The message could not be signed (bad key, selector or domain)."""


def sign(message_bytes: bytes, *, selector: str, domain: str, key_pem: bytes | str) -> bytes:
    """`message_bytes` with a DKIM-Signature header in front."""
    key = key_pem.encode("ascii") if isinstance(key_pem, str) else key_pem
    present = {
        line.split(b":", 1)[0].strip().lower()
        for line in message_bytes.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    }
    headers = [h for h in SIGNED_HEADERS if h.lower() in present]
    try:
        signature = dkimpy.sign(
            message_bytes,
            selector.encode("ascii"),
            domain.encode("ascii"),
            key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=headers,
        )
    except (dkimpy.DKIMException, ValueError, UnicodeError) as exc:
        raise DkimError(f"DKIM signing failed: {exc}") from exc
    return signature + message_bytes
