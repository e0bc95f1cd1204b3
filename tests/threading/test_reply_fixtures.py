"""Visible text on the reply kinds of issue 18 (tests/fixtures/replies/README.md): bottom-posted
replies, wrapped non-Latin attributions and HTML sign-offs. Every fixture must split exactly as
its expectation says, and no non-blank line may be lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maildesk.threading.quotes import Reply, split_reply

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "replies"
CASES = [
    (kind.name, name, expected)
    for kind in sorted(p for p in ROOT.iterdir() if p.is_dir())
    for name, expected in json.loads((kind / "expected.json").read_text(encoding="utf-8")).items()
]


def _split(path: Path) -> Reply:
    text = path.read_text(encoding="utf-8")
    return split_reply("", text) if path.suffix == ".html" else split_reply(text)


def _filled(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def test_every_kind_has_fixtures() -> None:
    kinds = {kind for kind, _, _ in CASES}
    assert kinds == {"bottom_posted", "wrapped_attribution", "html_signoff"}
    assert all(sum(k == kind for k, _, _ in CASES) >= 8 for kind in kinds)


@pytest.mark.parametrize(("kind", "name", "expected"), CASES, ids=[f"{k}/{n}" for k, n, _ in CASES])
def test_fixture_splits_as_expected(kind: str, name: str, expected: dict[str, str]) -> None:
    reply = _split(ROOT / kind / name)
    assert reply.visible.strip("\n") == expected["visible"]
    assert _filled(reply.signature) == _filled(expected["signature"])
    quoted = _filled(reply.quoted)
    assert (quoted[0] if quoted else "") == expected["quoted_starts"]
    for line in _filled(expected["signature"]):  # a sign-off is never dropped with the quote
        assert line not in quoted


PLAIN = [(k, n) for k, n, _ in CASES if n.endswith(".txt")]


@pytest.mark.parametrize(("kind", "name"), PLAIN, ids=[f"{k}/{n}" for k, n in PLAIN])
def test_no_line_is_lost(kind: str, name: str) -> None:
    path = ROOT / kind / name
    reply = _split(path)
    source = _filled(path.read_text(encoding="utf-8"))
    assert sorted(_filled("\n".join((reply.visible, reply.quoted, reply.signature)))) == sorted(source)


def test_bidi_marks_stay_in_the_parts() -> None:
    """Decisions read lines without bidi controls; the parts keep them as they came."""
    reply = _split(ROOT / "wrapped_attribution" / "gmail_he.txt")
    assert "\u202b" in reply.quoted and "\u202c" in reply.quoted


def test_one_leading_quoted_line_without_attribution_is_not_a_bottom_post() -> None:
    text = "> Headsets for 3.90 EUR only - now! <\n\nDear customer,\nour offer of the week.\n"
    assert split_reply(text).visible.startswith("> Headsets")


def test_quote_answer_quote_answer_stays_visible_whole() -> None:
    reply = _split(ROOT / "bottom_posted" / "interleaved_control.txt")
    assert reply.quoted == "" and "> Does it happen in private mode too?" in reply.visible


def test_the_first_line_of_a_wrapped_attribution_is_not_left_visible() -> None:
    """The tail of a wrapped attribution may match alone; its first line holds the date."""
    text = "Done, thanks.\n\nпн, 15 янв. 2024 г. в\n10:02, Support Desk <support@example.com>:\n\n> Hello\n"
    reply = split_reply(text)
    assert reply.visible == "Done, thanks." and reply.quoted.startswith("пн, 15 янв. 2024 г. в")
