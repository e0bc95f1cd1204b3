"""build_message: headers, injection, encoding, threading, and a round trip through parse_bytes."""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
from datetime import UTC, datetime

import pytest

from maildesk.message import parse_bytes
from maildesk.outbound.compose import MAX_REFERENCES, HeaderInjection, OutgoingMail, build_message, references_chain
from maildesk.outbound.context import sample_context
from maildesk.outbound.render import TemplateRenderer
from maildesk.threading.thread_index import child_thread_index, thread_index_root

NOW = datetime(2025, 3, 5, 9, 30, tzinfo=UTC)


def mail(**changes: object) -> OutgoingMail:
    base = OutgoingMail(
        from_addr="support@example.com",
        from_name="Example Support",
        to=("anna.schmidt@example.org",),
        subject="Re: [#42] Printer on fire",
        text="Hi Anna,\n\nplease unplug it.\n",
        message_id="42.abc123@example.com",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def headers_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def test_plain_message_shape() -> None:
    raw = build_message(mail(), now=NOW)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    head = headers_of(raw).decode()
    assert "From: Example Support <support@example.com>" in head
    assert "Date: Wed, 05 Mar 2025 09:30:00 +0000" in head
    assert "Message-ID: <42.abc123@example.com>" in head
    assert "MIME-Version: 1.0" in head
    assert "Auto-Submitted" not in head and "X-Maildesk-Loop" not in head
    assert "Thread-Index:" in head  # a new conversation gets one
    parsed = parse_bytes(raw)
    assert parsed.text == "Hi Anna,\n\nplease unplug it.\n" and parsed.content_type == "text/plain"


def test_reply_threads_and_round_trips() -> None:
    parent_index = "AQHbjbEqQtAiTAH3dulTgvZnDsy4Vg=="
    refs = ("root@cust.example", "a@x", "b@x")
    raw = build_message(
        mail(
            in_reply_to="<b@x>",
            references=refs,
            thread_index=child_thread_index(parent_index, NOW),
            html="<p>Hi Anna,</p><p>please unplug it.</p>",
            cc=("boss@example.org",),
            reply_to="support+t42@example.com",
            automatic=True,
            loop_value="example.com/42",
        ),
        now=NOW,
    )
    parsed = parse_bytes(raw)
    assert parsed.message_id == "42.abc123@example.com"
    assert parsed.in_reply_to == ("b@x",)
    assert parsed.references == ("root@cust.example", "a@x", "b@x")
    assert parsed.subject == "Re: [#42] Printer on fire"
    assert [a.email for a in parsed.cc] == ["boss@example.org"]
    assert parsed.reply_to[0].email == "support+t42@example.com"
    assert parsed.header("Auto-Submitted") == "auto-replied"
    assert parsed.header("X-Auto-Response-Suppress") == "All"
    assert parsed.header("X-Maildesk-Loop") == "example.com/42"
    assert thread_index_root(parsed.header("Thread-Index")) == thread_index_root(parent_index)
    assert parsed.header("Thread-Topic") == "[#42] Printer on fire"
    assert "unplug" in parsed.text and "<p>Hi Anna,</p>" in parsed.html
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all("MIME-Version" not in p for p in msg.iter_parts())


def test_automatic_without_parent_is_auto_generated() -> None:
    parsed = parse_bytes(build_message(mail(automatic=True), now=NOW))
    assert parsed.header("Auto-Submitted") == "auto-generated"


def test_new_thread_index_is_deterministic_per_message_id() -> None:
    a = parse_bytes(build_message(mail(), now=NOW)).header("Thread-Index")
    b = parse_bytes(build_message(mail(), now=NOW)).header("Thread-Index")
    c = parse_bytes(build_message(mail(message_id="other@example.com"), now=NOW)).header("Thread-Index")
    assert a == b != c and len(base64.b64decode(a)) == 22


def test_references_trimmed_keeping_first_and_latest() -> None:
    refs = tuple(f"m{i}@x" for i in range(40))
    chain = references_chain(refs, "<m40@x>")
    assert len(chain) == MAX_REFERENCES
    assert chain[0] == "m0@x" and chain[-1] == "m40@x" and chain[-2] == "m39@x"
    assert references_chain(("a@x", "b@x", "a@x", "bad id", "<c@x>", "x\r\nBcc: y@z"), "b@x") == ["a@x", "c@x", "b@x"]
    parsed = parse_bytes(build_message(mail(in_reply_to="m40@x", references=refs), now=NOW))
    assert parsed.references[0] == "m0@x" and parsed.references[-1] == "m40@x"
    assert len(parsed.references) == MAX_REFERENCES


def test_crlf_in_customer_name_and_subject_is_unfolded() -> None:
    raw = build_message(
        mail(from_name="Eve\r\nBcc: victim@example.net", subject="Hi\r\nBcc: victim@example.net\r\n\r\nbody"),
        now=NOW,
    )
    head = headers_of(raw)
    assert b"\r\nBcc:" not in head and b"\nBcc:" not in raw
    parsed = parse_bytes(raw)
    assert parsed.subject == "Hi Bcc: victim@example.net body"
    assert parsed.from_ is not None and parsed.from_.email == "support@example.com"
    assert [a.email for a in parsed.to] == ["anna.schmidt@example.org"] and parsed.cc == ()
    assert parsed.header("Bcc") == ""


@pytest.mark.parametrize(
    "bad",
    [
        "anna@example.org\r\nBcc: victim@example.net",
        "anna@example.org\nBcc: victim@example.net",
        "anna@example.org, victim@example.net",
        "anna@example.org;victim@example.net",
        "Anna <anna@example.org>",
        "anna@example.org victim@example.net",
        "no-at-sign",
        "a@b@c.example",
        "",
        "anna@exa mple.org",
        "anna@example.org\u2028",
    ],
)
def test_bad_addresses_raise(bad: str) -> None:
    for field in ("to", "cc", "from_addr", "reply_to"):
        value: object = (bad,) if field in ("to", "cc") else bad
        if field == "reply_to" and not bad:
            continue  # empty reply_to means "none"
        with pytest.raises(HeaderInjection):
            build_message(mail(**{field: value}), now=NOW)


def test_bad_message_id_and_extra_headers_raise() -> None:
    with pytest.raises(HeaderInjection):
        build_message(mail(message_id="x@y>\r\nBcc: v@z"), now=NOW)
    with pytest.raises(HeaderInjection):
        build_message(mail(extra_headers=(("Bcc", "v@z"),)), now=NOW)
    with pytest.raises(HeaderInjection):
        build_message(mail(extra_headers=(("X-Evil\r\nBcc", "v@z"),)), now=NOW)
    parsed = parse_bytes(build_message(mail(extra_headers=(("X-Ticket", "42\r\nBcc: v@z"),)), now=NOW))
    assert parsed.header("X-Ticket") == "42 Bcc: v@z" and parsed.header("Bcc") == ""


def test_no_recipient_and_naive_now_refused() -> None:
    with pytest.raises(HeaderInjection):
        build_message(mail(to=()), now=NOW)
    with pytest.raises(ValueError):
        build_message(mail(), now=datetime(2025, 1, 1))


def test_non_ascii_names_and_subjects_are_rfc2047_encoded() -> None:
    raw = build_message(
        mail(from_name="Jürgen Müller – Support", subject="Re: [#42] Drucker brennt – schnell!"), now=NOW
    )
    head = headers_of(raw)
    assert head.isascii() and b"=?utf-8?" in head
    parsed = parse_bytes(raw)
    assert parsed.subject == "Re: [#42] Drucker brennt – schnell!"
    assert parsed.from_ is not None and parsed.from_.name == "Jürgen Müller – Support"


def test_non_ascii_body_is_quoted_printable_and_lines_short() -> None:
    raw = build_message(mail(text="Grüße " + "x" * 2000 + "\n", html="<p>Grüße</p>"), now=NOW)
    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = parse_bytes(raw)
    assert parsed.text.startswith("Grüße xxx") and "Grüße" in parsed.html


def test_internationalised_addresses() -> None:
    raw = build_message(mail(to=("anna@bücher.example",)), now=NOW)
    assert b"anna@xn--bcher-kva.example" in raw
    raw = build_message(mail(to=("jürgen@example.org",)), now=NOW)  # needs SMTPUTF8
    assert "jürgen@example.org".encode() in raw


def test_attachments_get_safe_names() -> None:
    raw = build_message(
        mail(
            attachments=(
                ("../../etc/passwd", "text/plain", b"root:x"),
                ("report.pdf", "application/pdf", b"%PDF-1.4"),
                ("a.bin", "bogus type\r\nX: y", b"\x00\x01"),
            )
        ),
        now=NOW,
    )
    parsed = parse_bytes(raw)
    assert [a.filename for a in parsed.attachments] == ["passwd", "report.pdf", "a.bin"]
    assert [a.content_type for a in parsed.attachments] == [
        "application/octet-stream",
        "application/pdf",
        "application/octet-stream",
    ]
    assert parsed.attachments[1].payload == b"%PDF-1.4"


def test_rendered_template_into_a_message() -> None:
    ctx = sample_context("de")
    out = TemplateRenderer(None).render("resolved", ctx, locale="de")
    raw = build_message(
        mail(subject=out.subject, text=out.text, html=out.html, in_reply_to="cust-1@example.org", automatic=True),
        now=NOW,
    )
    parsed = parse_bytes(raw)
    assert parsed.subject == "Re: [#42] Printer on fire"
    assert "als gelöst markiert" in parsed.text and "als gelöst markiert" in parsed.html
