"""Bounce recognition on the kinds of issue 18 (tests/fixtures/bounces/README.md): free-text
reports of older MTAs and groupware, addresses glued to quotes, permanence from codes and words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maildesk.message import ParsedMessage, parse_bytes
from maildesk.rules.bounce import parse_bounce
from maildesk.rules.screen import screen_message

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
CASES = [
    (kind.name, name, expected)
    for kind in sorted(p for p in ROOT.iterdir() if p.is_dir())
    for name, expected in json.loads((kind / "expected.json").read_text(encoding="utf-8")).items()
]
OWN = frozenset({"support@desk.example"})


def _mail(
    text: str, sender: str = "MAILER-DAEMON@mx.dest.example", subject: str = "Undeliverable mail"
) -> ParsedMessage:
    head = f"From: {sender}\r\nTo: support@desk.example\r\nSubject: {subject}\r\nMessage-ID: <r1@mx.dest.example>\r\n"
    return parse_bytes((head + "\r\n" + text.replace("\n", "\r\n")).encode())


def test_every_kind_has_fixtures() -> None:
    kinds = {kind for kind, _, _ in CASES}
    assert kinds == {"free_text", "glued_address", "permanence"}
    assert all(sum(k == kind for k, _, _ in CASES) >= 8 for kind in kinds)


@pytest.mark.parametrize(("kind", "name", "expected"), CASES, ids=[f"{k}/{n}" for k, n, _ in CASES])
def test_fixture_is_read_as_expected(kind: str, name: str, expected: dict) -> None:
    msg = parse_bytes((ROOT / kind / name).read_bytes())
    verdict = screen_message(msg, own_addresses=OWN)
    info = parse_bounce(msg)
    assert verdict.verdict == "bounce", verdict.reason
    assert info is not None
    assert sorted(info.addresses) == sorted(expected["addresses"])
    assert info.permanent is expected["permanent"]
    # the screen hands on only permanently failed addresses for suppression
    assert set(verdict.addresses) == (set(expected["addresses"]) if expected["permanent"] else set(info.addresses))


@pytest.mark.parametrize(
    ("written", "address"),
    [
        ("`kate@dest.example'", "kate@dest.example"),
        ("'luke@dest.example'", "luke@dest.example"),
        ('"mia@dest.example"', "mia@dest.example"),
        ("<'nina@dest.example'>:", "nina@dest.example"),
        ("{otto@dest.example}", "otto@dest.example"),
        ("RCPT TO:<pia@dest.example>550", "pia@dest.example"),
    ],
)
def test_glued_characters_are_not_part_of_the_address(written: str, address: str) -> None:
    info = parse_bounce(_mail(f"Delivery failed for the following recipient:\n\n  {written}\n  user unknown\n"))
    assert info is not None and info.addresses == (address,)


@pytest.mark.parametrize(
    ("text", "permanent"),
    [
        ("550 5.1.1 user unknown; the server may be temporarily unavailable", True),
        ("451 4.3.0 temporary local problem", False),
        ("552 5.2.2 mailbox full. This is a permanent error.", False),
        ("the recipient has been permanently disabled", True),
        ("the mailbox does not exist", True),
        ("the recipient's mailbox is full", False),
        ("421 try again later", False),
        ("550 requested action not taken", True),
    ],
)
def test_permanence_from_codes_and_words(text: str, permanent: bool) -> None:
    info = parse_bounce(_mail(f"Your message to rob@dest.example could not be delivered.\n{text}\n"))
    assert info is not None and info.addresses == ("rob@dest.example",)
    assert info.permanent is permanent


def test_own_address_in_the_report_is_not_a_failure() -> None:
    text = "Your message from support@desk.example to sue@dest.example was not delivered.\nuser unknown\n"
    info = parse_bounce(_mail(text))
    assert info is not None and info.addresses == ("sue@dest.example",)


def test_human_mail_with_failure_words_is_still_not_a_bounce() -> None:
    raw = _mail("My order could not be delivered, the parcel was returned to sender.\n", sender="ann@customer.example")
    assert parse_bounce(raw) is None
    assert screen_message(raw, own_addresses=OWN).verdict == "human"


def test_out_of_office_with_failure_words_is_not_a_bounce() -> None:
    text = "I am away until Monday. Mail to me will not be delivered; write to deputy@corp.example.\n"
    msg = parse_bytes(
        b"From: Vera <vera@corp.example>\r\nTo: support@desk.example\r\nSubject: Away\r\n"
        b"Auto-Submitted: auto-replied\r\n\r\n" + text.encode()
    )
    assert parse_bounce(msg) is None
    assert screen_message(msg, own_addresses=OWN).verdict == "auto-reply"
