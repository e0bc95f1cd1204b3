"""rule_input_from_message: a parsed mail becomes plain rule facts."""

from __future__ import annotations

from datetime import UTC, datetime

from maildesk.message import parse_bytes
from maildesk.rules.engine import evaluate
from maildesk.rules.inputs import rule_input_from_message
from maildesk.rules.loader import load_rules_text

RAW = (
    b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen@BigCorp.com>\r\n"
    b"To: Support <support@desk.example>\r\n"
    b"Cc: finance@bigcorp.com\r\n"
    b"Subject: Invoice 20261234 wrong\r\n"
    b"X-Priority: 1\r\n"
    b"Message-ID: <a1@bigcorp.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease fix the amount.\r\n"
    b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=inv.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
)


def test_parsed_message_to_rule_input() -> None:
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    inp = rule_input_from_message(parse_bytes(RAW), event="new", now=now)
    assert inp.sender == "juergen@bigcorp.com" and inp.sender_name == "Jürgen Müller"
    assert inp.recipients == ("support@desk.example",) and inp.cc == ("finance@bigcorp.com",)
    assert inp.attachments == (("inv.pdf", "application/pdf"),)
    assert inp.customer.domain == "bigcorp.com" and inp.now == now
    rs = load_rules_text(
        "version: 1\nrules:\n  - name: b\n"
        "    if: {from.domain: bigcorp.com, header.x-priority: '1', attachment.type: application/pdf,"
        " subject: {regex: 'invoice (?P<n>\\d+)'}, body: {contains: amount}}\n    then: [{field: {invoice: '{{n}}'}}]\n"
    )
    assert evaluate(rs, inp).fields == {"invoice": "20261234"}
