"""The reply splitter stays linear on hostile bodies and caps what it splits (issue 16)."""

from __future__ import annotations

import time

import pytest

from maildesk.threading.quotes import MAX_SPLIT_CHARS, split_reply
from tests.support.wait import HANG_GUARD_SECONDS

HOSTILE = {
    "blank lines": "hi\n" + "\n" * 40000 + "x",
    "signature delimiters": "hi\n" + "--\n" * 40000,
    "sign-offs": "hi\n" + "thanks\n" * 40000,
    "name lines": "hi\n" + "-Bob\n" * 40000,
    "rules": "hi\n" + "________\n" * 40000,
    "outlook headers": "hi\n" + "From: a\n" * 40000,
    "attribution look-alikes": "hi\n" + "On 1 Jan 2024 bob@x.com wrote something\n" * 10000,
    "digit lines before an address": "hi\n" + ("1 " * 150 + "<a@b.example>:\n") * 5000,
    "long whitespace run": "thanks" + " " * 400000 + "x",
    "many short lines": "a\n" * (MAX_SPLIT_CHARS // 2),
    "short lines that end like attributions": "a:\n" * (MAX_SPLIT_CHARS // 3),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_body_splits_quickly(name: str) -> None:
    text = HOSTILE[name]
    started = time.perf_counter()
    reply = split_reply(text)
    assert time.perf_counter() - started < HANG_GUARD_SECONDS, name
    # nothing is dropped: every non-blank line is in one of the parts
    kept = sum(part.count("\n") + 1 for part in (reply.visible, reply.quoted, reply.signature) if part)
    assert kept >= sum(1 for line in text.split("\n") if line.strip()) or reply.capped


def test_over_the_cap_only_the_head_is_split_and_the_rest_is_quoted_history() -> None:
    head = "Hello, my printer is on fire.\n\nOn Mon, 1 Jan 2024, Bob <b@x.example> wrote:\n> old\n"
    tail = "> older line\n" * (MAX_SPLIT_CHARS // 10)
    reply = split_reply(head + tail)
    assert reply.capped == len(head + tail)
    assert reply.visible == "Hello, my printer is on fire."
    assert reply.quoted.startswith("On Mon, 1 Jan 2024") and reply.quoted.endswith("> older line")


def test_under_the_cap_nothing_is_marked() -> None:
    assert split_reply("Hi\n\n-- \nBob").capped == 0
