"""Builds small inline test messages for the screening tests."""

from __future__ import annotations

from email.header import Header

from maildesk.message import ParsedMessage, parse_bytes


def raw_message(headers: dict[str, str] | list[tuple[str, str]], body: str = "Hello.\n") -> bytes:
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    if not any(k.lower() == "message-id" for k, _ in items):
        items.append(("Message-ID", "<test-1@customer.example>"))
    if not any(k.lower() == "date" for k, _ in items):
        items.append(("Date", "Mon, 03 Jun 2024 10:00:00 +0000"))
    head = "\r\n".join(f"{k}: {_encode(v)}" for k, v in items)
    return (head + "\r\n\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")).encode("utf-8")


def _encode(value: str) -> str:
    """RFC 2047-encode non-ASCII header values, as a real mail client would."""
    if value.isascii():
        return value
    return Header(value, "utf-8").encode()


def message(headers: dict[str, str] | list[tuple[str, str]], body: str = "Hello.\n") -> ParsedMessage:
    return parse_bytes(raw_message(headers, body))


def human_headers(**extra: str) -> dict[str, str]:
    base = {
        "From": "Alice Customer <alice@customer.example>",
        "To": "support@desk.example",
        "Subject": "My printer is on fire",
    }
    base.update({k.replace("_", "-"): v for k, v in extra.items()})
    return base


def dsn(
    recipients: list[tuple[str, str, str]],
    *,
    subject: str = "Undelivered Mail Returned to Sender",
    original_id: str = "<abc123@desk.example>",
    original_part: str = "message/rfc822",
    from_: str = "MAILER-DAEMON@mx.example.net (Mail Delivery System)",
) -> ParsedMessage:
    """An RFC 3464 report; recipients are (address, action, status)."""
    blocks = "\n".join(
        f"Final-Recipient: rfc822; {addr}\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {status.replace('.', '')[:3]} {status} something happened\n"
        for addr, action, status in recipients
    )
    if original_part == "message/rfc822":
        original = (
            "Content-Type: message/rfc822\n\n"
            "From: support@desk.example\nTo: someone@example.org\nSubject: Your ticket\n"
            f"Message-ID: {original_id}\n\nHello\n"
        )
    else:
        original = (
            "Content-Type: text/rfc822-headers\n\n"
            f"From: support@desk.example\nTo: someone@example.org\nMessage-ID: {original_id}\nSubject: x\n"
        )
    body = (
        "This is a MIME-encapsulated message.\n\n"
        "--BOUND\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--BOUND\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\nArrival-Date: Mon, 3 Jun 2024 10:00:00 +0000\n\n"
        f"{blocks}\n"
        f"--BOUND\n{original}\n--BOUND--\n"
    )
    return message(
        {
            "From": from_,
            "To": "support@desk.example",
            "Subject": subject,
            "Return-Path": "<>",
            "Auto-Submitted": "auto-replied",
            "MIME-Version": "1.0",
            "Content-Type": 'multipart/report; report-type=delivery-status; boundary="BOUND"',
        },
        body,
    )
