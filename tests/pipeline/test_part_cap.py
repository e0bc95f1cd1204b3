"""A mail with thousands of MIME parts (issue 16): only the first `MAX_PARTS` are parsed,
the rest stays in the raw bytes, the cap is recorded as an event and shown by `parse`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from maildesk.message import MAX_PARTS, parse_bytes
from maildesk.services.describe import describe_bytes
from maildesk.store.models import Event, Message

HEAD = b"From: Many <many@customer.example>\r\nTo: support@example.com\r\nSubject: many parts\r\n"


def _parts(n: int) -> bytes:
    part = (
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="f.bin"\r\n\r\nx\r\n'
    )
    return HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + part * n + b"--b--\r\n"


def test_parts_beyond_the_cap_are_left_in_the_raw_bytes() -> None:
    raw = _parts(MAX_PARTS + 500)
    msg = parse_bytes(raw)
    assert msg.raw == raw and msg.parts_capped is not None
    assert len(msg.attachments) == MAX_PARTS
    assert msg.parts_capped["bytes_read"] + msg.parts_capped["bytes_not_read"] == len(raw)
    assert raw[msg.parts_cut :].startswith(b"--b\r\n")


def test_a_mail_within_the_cap_is_parsed_whole() -> None:
    msg = parse_bytes(_parts(MAX_PARTS - 1))
    assert msg.parts_capped is None and len(msg.attachments) == MAX_PARTS - 1
    # many `--` lines that are not boundaries never cut a plain text mail
    text = parse_bytes(HEAD + b"\r\n" + b"--b\r\n-- \r\n" * (MAX_PARTS * 2))
    assert text.parts_capped is None and text.text.count("--b") == MAX_PARTS * 2


def test_parse_shows_the_cap(settings: Any) -> None:
    data = describe_bytes(_parts(MAX_PARTS + 1), settings)
    assert data["parts_capped"]["parts_read"] == MAX_PARTS
    assert describe_bytes(_parts(3), settings)["parts_capped"] is None


def test_the_pipeline_stores_the_whole_mail_and_records_the_cap(desk: Any) -> None:
    raw = _parts(MAX_PARTS + 10)
    desk.spool.put(raw, "smtp")
    result = desk.process()
    assert result["failed"] == 0 and result["tickets_created"] == 1, result
    with desk.store.reader() as s:
        stored = s.scalars(select(Message).where(Message.direction == "in")).one()
        assert stored.raw == raw
        event = s.scalars(select(Event).where(Event.type == "parts-capped")).one()
        assert event.ticket_number == stored.ticket_number and event.data["parts_read"] == MAX_PARTS
