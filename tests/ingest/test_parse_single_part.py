"""parse_bytes reads a single-part mail's body without the stdlib parser's per-line pass
(issue 16), and gets exactly what mail-parser gets from the whole parse."""

from __future__ import annotations

import time

import mailparser
import pytest

from maildesk.message import _mail_parser, parse_bytes
from tests.support.wait import HANG_GUARD_SECONDS

HEAD = b"From: A <a@customer.example>\r\nTo: support@example.com\r\nSubject: hi\r\nMessage-ID: <x@y>\r\n"

CASES = {
    "plain crlf": HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n\r\n> quoted\r\n",
    "plain lf": (HEAD + b"Content-Type: text/plain\r\n\r\nHello\n\nbye\n").replace(b"\r\n", b"\n"),
    "no content type": HEAD + b"\r\nHello \xc3\xa9 \xff raw 8-bit\r\n",
    "quoted-printable": HEAD + b"Content-Type: text/plain; charset=latin-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 soft=\r\nbreak\r\n",
    "base64": HEAD + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29ybGQ=\r\n",
    "html": HEAD + b"Content-Type: text/html\r\n\r\n<p>Hi <b>there</b></p>\r\n",
    "attachment": HEAD + b"Content-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; "
    b"filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n",
    "folded header": HEAD + b"X-Long: one\r\n two\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
    "junk line in the header block": HEAD + b"not a header line\r\nX-After: 1\r\n\r\nbody\r\n",
    "header block only": HEAD + b"Content-Type: text/plain\r\n\r\n",
    "bare cr endings": HEAD + b"Content-Type: text/plain\r\n\r\nline\rline\r\r\n",
    "message/rfc822": HEAD + b"Content-Type: message/rfc822\r\n\r\nFrom: b@c\r\nSubject: inner\r\n\r\ninner body\r\n",
    "multipart": HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
    b"part\r\n--b--\r\n",
}


def _view(parsed: mailparser.MailParser) -> tuple[object, ...]:
    return (
        parsed.text_plain,
        parsed.text_html,
        [(a["payload"], a["binary"], a["mail_content_type"]) for a in parsed.attachments],
        sorted(parsed.defects_categories),
        parsed.message.items(),
        parsed.message.get_payload() if not parsed.message.is_multipart() else None,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_reading_as_the_whole_parse(name: str) -> None:
    body = CASES[name]
    assert _view(_mail_parser(body)) == _view(mailparser.parse_from_bytes(body))


def test_a_mail_of_millions_of_short_lines_parses_in_a_second_or_two() -> None:
    raw = HEAD + b"Content-Type: text/plain\r\n\r\n" + b"a\r\n" * 4_000_000
    started = time.perf_counter()
    msg = parse_bytes(raw)
    assert time.perf_counter() - started < HANG_GUARD_SECONDS  # the per-line parse took ~50 s
    assert msg.text.count("\n") >= 3_999_999


def test_huge_html_becomes_text_from_its_head_and_the_cap_is_recorded() -> None:
    from maildesk.message import MAX_HTML_TEXT_CHARS
    from maildesk.sanitize import MAX_CLEAN_HTML_CHARS, clean_html

    unit = "<div><p>quoted <b>text</b></p></div>\r\n"
    html = unit * (MAX_CLEAN_HTML_CHARS // len(unit) + 10)
    started = time.perf_counter()
    msg = parse_bytes(HEAD + b"Content-Type: text/html\r\n\r\n" + html.encode())
    cleaned = clean_html(msg.html)
    assert time.perf_counter() - started < HANG_GUARD_SECONDS
    assert msg.html_text_capped == {"html_chars": len(msg.html), "converted_chars": MAX_HTML_TEXT_CHARS}
    assert msg.text.startswith("quoted text") and "<" not in msg.text
    assert 0 < len(cleaned) <= MAX_CLEAN_HTML_CHARS and cleaned.startswith("<div><p>quoted <b>text</b></p></div>")
    small = parse_bytes(HEAD + b"Content-Type: text/html\r\n\r\n" + unit.encode())
    assert small.html_text_capped is None and small.text == "quoted text"
