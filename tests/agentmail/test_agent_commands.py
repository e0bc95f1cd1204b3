"""`#commands` on the first lines of an agent's mail."""

import pytest

from maildesk.agentmail.commands import (
    COMMAND_NAMES,
    HELP_TEXT,
    Command,
    CommandError,
    parse_commands,
    refusal_text,
    status_of,
)


def _only(text: str) -> Command:
    parsed = parse_commands(text)
    assert parsed.ok, parsed.errors
    assert len(parsed.commands) == 1
    return parsed.commands[0]


def test_plain_reply_has_no_commands():
    parsed = parse_commands("Hi Bob,\n\nthe fix is live.\n")
    assert parsed.commands == () and parsed.errors == () and not parsed.note
    assert parsed.text == "Hi Bob,\n\nthe fix is live."


def test_empty_text():
    parsed = parse_commands("")
    assert parsed == parse_commands("\n \n") and parsed.commands == () and parsed.text == "" and parsed.ok


def test_commands_above_reply_text():
    parsed = parse_commands("#pending\n#tag waiting-on-customer\n\nHi Bob,\nplease send the log.\n")
    assert [(c.name, c.argument, c.line) for c in parsed.commands] == [
        ("pending", "", 1),
        ("tag", "waiting-on-customer", 2),
    ]
    assert parsed.text == "Hi Bob,\nplease send the log."
    assert parsed.ok and not parsed.note


def test_blank_lines_between_commands_and_leading_blank_lines():
    parsed = parse_commands("\n\n#resolve\n\n\n#priority high\n\nDone.")
    assert [c.name for c in parsed.commands] == ["resolve", "priority"]
    assert [c.line for c in parsed.commands] == [3, 6]
    assert parsed.text == "Done."


def test_a_mail_of_only_commands_has_no_text():
    parsed = parse_commands("#close\n#untag vip\n")
    assert parsed.text == "" and [c.name for c in parsed.commands] == ["close", "untag"]


def test_commands_below_text_are_just_text():
    parsed = parse_commands("Thanks!\n#resolve\n")
    assert parsed.commands == () and parsed.ok
    assert parsed.text == "Thanks!\n#resolve"


def test_first_text_line_ends_the_command_block():
    parsed = parse_commands("#open\nHello\n#close")
    assert [c.name for c in parsed.commands] == ["open"]
    assert parsed.text == "Hello\n#close"


@pytest.mark.parametrize("line", ["# Summary", "#42 is the same problem", "## notes", "#", "#-1"])
def test_hash_without_a_letter_is_text(line):
    parsed = parse_commands(f"{line}\nmore")
    assert parsed.commands == () and parsed.ok and parsed.text == f"{line}\nmore"


def test_note_turns_the_mail_into_a_note():
    parsed = parse_commands("#note\nCalled the customer, they will retry tonight.")
    assert parsed.note and parsed.commands == () and parsed.ok
    assert parsed.text == "Called the customer, they will retry tonight."


def test_note_with_commands():
    parsed = parse_commands("#assign me\n#note\n#tier L2\nNeeds a database person.")
    assert parsed.note
    assert [(c.name, c.argument) for c in parsed.commands] == [("assign", "me"), ("tier", "L2")]


@pytest.mark.parametrize("name", ["resolve", "close", "pending", "open", "send"])
def test_commands_without_argument(name):
    assert _only(f"#{name}") == Command(name, "", 1)


@pytest.mark.parametrize("name", ["resolve", "close", "pending", "open", "send", "note"])
def test_commands_without_argument_refuse_one(name):
    parsed = parse_commands(f"#{name} now please")
    assert parsed.errors == (CommandError(1, f"#{name} now please", f"#{name} takes no argument"),)
    assert parsed.commands == () and not parsed.note


def test_status_of():
    assert [status_of(Command(n)) for n in ("resolve", "close", "pending", "open", "tag")] == [
        "resolved",
        "closed",
        "pending",
        "open",
        None,
    ]


def test_command_words_are_case_insensitive():
    parsed = parse_commands("#Resolve\n#PRIORITY Urgent\n#Tier l3")
    assert [(c.name, c.argument) for c in parsed.commands] == [("resolve", ""), ("priority", "urgent"), ("tier", "L3")]


def test_surrounding_spaces_and_nbsp():
    assert _only("   #tag\xa0billing   ") == Command("tag", "billing", 1)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("me", "me"),
        ("ME", "me"),
        ("anna@desk.example.com", "anna@desk.example.com"),
        ("<Anna@Desk.Example.com>", "anna@desk.example.com"),
        ("anna", "anna"),
        ("Anna Schmidt", "Anna Schmidt"),
    ],
)
def test_assign(arg, expected):
    assert _only(f"#assign {arg}") == Command("assign", expected, 1)


@pytest.mark.parametrize("arg", ["", "a, b", "<x@y.z> and more", "one two three four five six"])
def test_assign_refuses_malformed(arg):
    parsed = parse_commands(f"#assign {arg}".rstrip())
    assert not parsed.ok and parsed.commands == ()
    assert "#assign needs NAME|EMAIL|me" in parsed.errors[0].problem


@pytest.mark.parametrize("tier", ["L1", "L2", "L3", "l2"])
def test_tier_values(tier):
    assert _only(f"#tier {tier}").argument == tier.upper()


@pytest.mark.parametrize("arg", ["L4", "2", "", "L1 L2"])
def test_tier_refuses_unknown(arg):
    parsed = parse_commands(f"#tier {arg}".rstrip())
    assert not parsed.ok and parsed.commands == ()


@pytest.mark.parametrize("priority", ["low", "normal", "high", "urgent", "HIGH"])
def test_priority_values(priority):
    assert _only(f"#priority {priority}").argument == priority.lower()


@pytest.mark.parametrize("arg", ["critical", "", "very high"])
def test_priority_refuses_unknown(arg):
    parsed = parse_commands(f"#priority {arg}".rstrip())
    assert not parsed.ok and parsed.commands == ()
    if arg:
        assert parsed.errors[0].problem == "unknown priority; use low|normal|high|urgent"
    else:
        assert parsed.errors[0].problem == "#priority needs low|normal|high|urgent"


def test_escalate_takes_a_free_text_reason():
    assert _only("#escalate customer says prod is down, needs L2").argument == "customer says prod is down, needs L2"
    parsed = parse_commands("#escalate")
    assert parsed.errors == (CommandError(1, "#escalate", "#escalate needs REASON"),)


@pytest.mark.parametrize(("arg", "number"), [("17", "17"), ("#17", "17"), ("0017", "17")])
def test_merge(arg, number):
    assert _only(f"#merge {arg}") == Command("merge", number, 1)


@pytest.mark.parametrize("arg", ["", "abc", "17 18", "-3", "0", "1.5", "1234567890123"])
def test_merge_refuses_non_numbers(arg):
    parsed = parse_commands(f"#merge {arg}".rstrip())
    assert not parsed.ok and parsed.commands == ()


@pytest.mark.parametrize("name", ["tag", "untag", "macro"])
def test_one_word_arguments(name):
    assert _only(f"#{name} refund-request_2").argument == "refund-request_2"
    parsed = parse_commands(f"#{name} two words")
    assert parsed.errors == (CommandError(1, f"#{name} two words", f"#{name} takes one word"),)
    parsed = parse_commands(f"#{name}")
    assert not parsed.ok


def test_several_tags_are_fine():
    parsed = parse_commands("#tag a\n#tag b\n#untag c")
    assert [(c.name, c.argument) for c in parsed.commands] == [("tag", "a"), ("tag", "b"), ("untag", "c")]


def test_customer_address():
    assert _only("#customer Bob@Example.org").argument == "bob@example.org"
    assert _only("#customer <bob@example.org>").argument == "bob@example.org"
    for bad in ("#customer", "#customer bob", "#customer bob@example.org alice@example.org"):
        assert not parse_commands(bad).ok


def test_unknown_command_is_an_error_with_its_line():
    parsed = parse_commands("#resolve\n#frobnicate now\nHi")
    assert parsed.errors == (CommandError(2, "#frobnicate now", "unknown command #frobnicate"),)
    assert [c.name for c in parsed.commands] == ["resolve"]  # the caller refuses the whole mail
    assert not parsed.ok
    assert parsed.text == "Hi"


def test_contradicting_status_commands():
    parsed = parse_commands("#resolve\n#open")
    assert parsed.errors == (CommandError(2, "#open", "only one status command; see line 1"),)


@pytest.mark.parametrize(
    "text", ["#tier L2\n#tier L3", "#priority low\n#priority low", "#assign me\n#assign anna", "#merge 4\n#merge 5"]
)
def test_single_valued_commands_once(text):
    parsed = parse_commands(text)
    assert len(parsed.errors) == 1 and parsed.errors[0].line == 2 and "only one #" in parsed.errors[0].problem


def test_tag_and_untag_of_the_same_tag_contradict():
    parsed = parse_commands("#tag vip\n#untag VIP")
    assert parsed.errors == (CommandError(2, "#untag VIP", "contradicts #tag on line 1"),)


def test_error_str():
    assert str(CommandError(2, "#x", "unknown command #x")) == "line 2: '#x': unknown command #x"
    assert str(CommandError(0, "", "whole mail")) == "whole mail"


def test_help_text_lists_every_command_in_two_lines():
    assert len(HELP_TEXT.splitlines()) == 2
    for name in COMMAND_NAMES:
        assert f"#{name}" in HELP_TEXT
    assert "L1|L2|L3" in HELP_TEXT and "low|normal|high|urgent" in HELP_TEXT


def test_refusal_text_names_each_error_then_the_help():
    parsed = parse_commands("#frob\n#tier L9")
    body = refusal_text(parsed.errors)
    assert body.startswith("Nothing was changed and nothing was sent to the customer:\n")
    assert "line 1: '#frob': unknown command #frob" in body
    assert "line 2: '#tier L9': unknown tier; use L1|L2|L3" in body
    assert body.endswith(HELP_TEXT)


def test_crlf_line_endings():
    parsed = parse_commands("#resolve\r\n\r\nThanks\r\n")
    assert [c.name for c in parsed.commands] == ["resolve"] and parsed.text == "Thanks"
