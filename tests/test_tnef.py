"""Outlook `winmail.dat` (TNEF) attachments are unpacked into their real files (issue 18).

The fixtures are tnefparse's own public samples (tests/fixtures/tnef/README.md)."""

from __future__ import annotations

import struct
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maildesk.message import parse_bytes
from maildesk.services.describe import describe_bytes
from maildesk.store.models import Event, Message
from maildesk.tnef import MAX_TNEF_FILES, is_tnef, unpack_tnef

FIXTURES = Path(__file__).parent / "fixtures" / "tnef"
TWO_FILES = (FIXTURES / "two-files.tnef").read_bytes()
HTML_BODY = (FIXTURES / "body.tnef").read_bytes()
SIGNATURE = b"\x78\x9f\x3e\x22"


def _obj(level: int, name: int, kind: int, data: bytes) -> bytes:
    """One TNEF attribute: level, id, type, length, data, checksum (sum of the data bytes)."""
    return bytes([level]) + struct.pack("<HHI", name, kind, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def _tnef_with(files: list[tuple[bytes, bytes]]) -> bytes:
    """A TNEF stream holding `files` (name, data): attAttachRendData, attAttachTitle, attAttachData."""
    out = SIGNATURE + b"\x01\x00"
    for name, data in files:
        out += _obj(2, 0x9002, 0x0006, b"\x00" * 14) + _obj(2, 0x8010, 0x0001, name + b"\x00")
        out += _obj(2, 0x800F, 0x0006, data)
    return out


def _mail(tnef: bytes, body: str = "Please see the attached files.", filename: str = "winmail.dat") -> bytes:
    m = EmailMessage()
    m["From"] = "Olga Outlook <olga@customer.example>"
    m["To"] = "support@example.com"
    m["Subject"] = "Printer logs"
    m["Message-ID"] = "<tnef-1@customer.example>"
    m.set_content(body)
    m.add_attachment(tnef, maintype="application", subtype="ms-tnef", filename=filename)
    return m.as_bytes()


def test_unpack_gives_the_files_inside() -> None:
    content = unpack_tnef(TWO_FILES)
    assert content.error == ""
    assert [(f.name, len(f.payload)) for f in content.files] == [("AUTHORS", 244), ("README", 893)]
    assert content.text == "" and content.html == ""


def test_unpack_gives_the_html_body() -> None:
    content = unpack_tnef(HTML_BODY)
    assert content.files == () and "THE BILL OF RIGHTS" in content.html


def test_unreadable_tnef_is_an_answer_not_an_exception() -> None:
    assert unpack_tnef(b"not tnef at all").error.startswith("not TNEF")
    assert unpack_tnef(b"").error
    truncated = unpack_tnef(TWO_FILES[:200])
    assert truncated.error or truncated.files == ()  # never raises, whatever the cut


def test_is_tnef_by_type_or_outlook_name() -> None:
    assert is_tnef("winmail.dat", "application/octet-stream")
    assert is_tnef("WINMAIL.DAT", "application/octet-stream")
    assert is_tnef("x.bin", "application/ms-tnef")
    assert not is_tnef("report.pdf", "application/pdf")


def test_parse_replaces_winmail_dat_by_its_files() -> None:
    msg = parse_bytes(_mail(TWO_FILES))
    assert [(a.filename, a.size) for a in msg.attachments] == [("AUTHORS", 244), ("README", 893)]
    assert all(a.disposition == "attachment" for a in msg.attachments)
    assert msg.text.strip() == "Please see the attached files."  # the mail's own body wins
    (report,) = msg.extra["tnef"]
    assert report["files"] == ["AUTHORS", "README"] and report["kept"] is False
    assert msg.to_json()["tnef"] == [report]


def test_tnef_body_is_used_when_the_mail_has_none() -> None:
    msg = parse_bytes(_mail(HTML_BODY, body=""))
    assert "THE BILL OF RIGHTS" in msg.html and "THE BILL OF RIGHTS" in msg.text
    assert msg.attachments == ()  # the container gave its body: nothing opaque left
    assert msg.extra["tnef"][0]["body"] == "html"


def test_names_are_made_safe_never_paths() -> None:
    tnef = _tnef_with([(b"..\\..\\Windows\\evil.exe", b"MZ"), (b"../../etc/passwd", b"root"), (b"", b"x")])
    msg = parse_bytes(_mail(tnef))
    names = [a.filename for a in msg.attachments]
    assert names == ["evil.exe", "passwd", "attachment-3"]
    assert all("/" not in n and "\\" not in n for n in names)
    assert [a.content_type for a in msg.attachments][0] in {"application/x-msdos-program", "application/octet-stream"}


def test_broken_or_empty_container_is_kept_as_it_came() -> None:
    broken = parse_bytes(_mail(b"this is not TNEF", filename="winmail.dat"))
    assert [a.filename for a in broken.attachments] == ["winmail.dat"]
    assert broken.attachments[0].payload == b"this is not TNEF"
    assert broken.extra["tnef"][0]["kept"] is True and broken.extra["tnef"][0]["error"]
    empty = parse_bytes(_mail(SIGNATURE + b"\x01\x00"))  # valid, but holds nothing
    assert [a.filename for a in empty.attachments] == ["winmail.dat"]


def test_files_beyond_the_cap_keep_the_container() -> None:
    tnef = _tnef_with([(f"f{i}.txt".encode(), b"x") for i in range(MAX_TNEF_FILES + 2)])
    msg = parse_bytes(_mail(tnef))
    assert len(msg.attachments) == MAX_TNEF_FILES + 1 and msg.attachments[-1].filename == "winmail.dat"
    assert msg.extra["tnef"][0]["files_not_unpacked"] == 2


def test_parse_shows_what_was_unpacked(settings: Any) -> None:
    data = describe_bytes(_mail(TWO_FILES), settings)
    assert data["tnef"][0]["files"] == ["AUTHORS", "README"]


def test_pipeline_stores_the_real_files(desk: Any) -> None:
    desk.spool.put(_mail(TWO_FILES), "smtp")
    result = desk.process()
    assert result["failed"] == 0 and result["tickets_created"] == 1, result
    with desk.store.reader() as s:
        stored = s.scalars(select(Message).where(Message.direction == "in")).one()
        atts = stored.attachments
        assert sorted((a.filename, a.size) for a in atts) == [("AUTHORS", 244), ("README", 893)]
        assert b'filename="winmail.dat"' in stored.raw  # the raw mail is kept whole, container included
        assert {a.filename: a.data for a in atts}["AUTHORS"] == unpack_tnef(TWO_FILES).files[0].payload
        event = s.scalars(select(Event).where(Event.type == "tnef-unpacked")).one()
        assert event.ticket_number == stored.ticket_number and event.data["files"] == ["AUTHORS", "README"]
