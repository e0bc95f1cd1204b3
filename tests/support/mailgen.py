"""Generated test mail (the project's own fixtures; never copied from the corpus)."""

from __future__ import annotations

import secrets


def eml(
    *,
    subject: str = "Printer on fire",
    sender: str = "Anna Schmidt <anna@customer.example>",
    to: str = "support@example.com",
    body: str = "Hello,\n\nmy printer is on fire.\n\nAnna\n",
    message_id: str | None = None,
    extra: str = "",
) -> bytes:
    """A small, valid customer mail (CRLF line endings)."""
    mid = message_id if message_id is not None else f"<{secrets.token_hex(8)}@customer.example>"
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", "Date: Sun, 22 Nov 2026 10:00:00 +0000"]
    if mid:
        lines.append(f"Message-ID: {mid}")
    if extra:
        lines.extend(extra.strip("\n").split("\n"))
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")).encode("utf-8")
