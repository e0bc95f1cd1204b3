"""Agent mail classification: reply, forward, refused, or not agent mail."""

from dataclasses import replace as _replace
from email.headerregistry import Address as HeaderAddress
from email.parser import BytesParser
from email.policy import default

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maildesk.agentmail.classify import (
    AMBIGUOUS,
    BAD_TOKEN,
    DISPLAY_NAME_SPOOF,
    INACTIVE_AGENT,
    NO_TICKET,
    NOT_AN_AGENT,
    OTHER_AGENT,
    REASONS,
    UNAUTHENTICATED,
    AgentDesk,
    AgentEntry,
    AgentForward,
    AgentRefused,
    AgentReply,
    MailFacts,
    NotAgentMail,
    classify,
    collision,
    forwarded_sender,
    may_be_forward_or_commands,
    real_sender,
    spoofed_display_name,
)
from maildesk.agentmail.commands import Command
from maildesk.agentmail.strip import agent_words
from maildesk.threading.tokens import make_agent_address, make_reply_address

SECRET = "s3cret"
ANNA, BOB, OLD = "anna@desk.example.com", "bob@desk.example.com", "old@desk.example.com"
DESK = AgentDesk(
    secret=SECRET,
    agents=(
        AgentEntry(ANNA, True, "Anna Schmidt\nSupport team"),
        AgentEntry(BOB, True),
        AgentEntry(OLD, False),
    ),
    support_addresses=("support@example.com",),
    note_addresses=("notes@example.com",),
)
QUOTE = (
    "\n\nOn Mon, 3 Mar 2025 at 10:15, Maildesk <x@example.com> wrote:\n> -- reply above this line --\n> Printer on fire"
)


def _token(agent: str = ANNA, ticket: int = 42, seq: int = 7, base: str = "support@example.com") -> str:
    return make_agent_address(SECRET, base, ticket, agent, seq)


def _facts(text: str, sender: str = ANNA, to: tuple[str, ...] | None = None, **kw) -> MailFacts:
    return MailFacts(sender=sender, recipients=to if to is not None else (_token(),), text=text, **kw)


# --- replies -------------------------------------------------------------------------------


def test_reply_to_a_notification():
    outcome = classify(_facts("Hi Carl,\n\nthe fix is live.\n\nAnna Schmidt\nSupport team" + QUOTE), DESK)
    assert outcome == AgentReply(
        agent=ANNA,
        ticket=42,
        seq=7,
        commands=(),
        text="Hi Carl,\n\nthe fix is live.",
        note=False,
        errors=(),
        quoted=outcome.quoted if isinstance(outcome, AgentReply) else "",
    )
    assert isinstance(outcome, AgentReply) and "Printer on fire" in outcome.quoted


def test_reply_with_commands_above_text():
    outcome = classify(_facts("#pending\n#tag waiting\n\nCould you send the log?" + QUOTE), DESK)
    assert isinstance(outcome, AgentReply)
    assert [(c.name, c.argument) for c in outcome.commands] == [("pending", ""), ("tag", "waiting")]
    assert outcome.text == "Could you send the log?" and not outcome.note and not outcome.errors


def test_only_commands_sends_nothing():
    outcome = classify(_facts("#resolve" + QUOTE), DESK)
    assert isinstance(outcome, AgentReply)
    assert outcome.commands == (Command("resolve", "", 1),) and outcome.text == ""


def test_note_by_command():
    outcome = classify(_facts("#note\nCalled him." + QUOTE), DESK)
    assert isinstance(outcome, AgentReply) and outcome.note and outcome.text == "Called him."


def test_note_by_note_address_token():
    outcome = classify(_facts("Internal: he is a reseller.", to=(_token(base="notes@example.com"),)), DESK)
    assert isinstance(outcome, AgentReply) and outcome.note and outcome.ticket == 42


def test_malformed_command_rides_along_as_error():
    outcome = classify(_facts("#priority critical\nOn it." + QUOTE), DESK)
    assert isinstance(outcome, AgentReply)
    assert [e.problem for e in outcome.errors] == ["unknown priority; use low|normal|high|urgent"]


def test_customer_command_in_a_reply_is_an_error():
    outcome = classify(_facts("#customer carl@example.org"), DESK)
    assert isinstance(outcome, AgentReply) and outcome.errors and "forwarded" in outcome.errors[0].problem


def test_merge_into_itself_is_an_error():
    outcome = classify(_facts("#merge 42"), DESK)
    assert isinstance(outcome, AgentReply) and outcome.errors[0].problem == "a ticket cannot merge into itself"
    assert classify(_facts("#merge 41"), DESK).errors == ()  # type: ignore[union-attr]


def test_token_among_other_recipients_and_case_and_brackets():
    to = ("carl@example.org", f"<{_token().upper()}>", "support@example.com")
    outcome = classify(_facts("Yes.", sender="Anna@Desk.Example.com", to=to), DESK)
    assert isinstance(outcome, AgentReply) and (outcome.ticket, outcome.seq, outcome.agent) == (42, 7, ANNA)


def test_two_notifications_of_one_ticket_take_the_newest():
    outcome = classify(_facts("Yes.", to=(_token(seq=3), _token(seq=9))), DESK)
    assert isinstance(outcome, AgentReply) and outcome.seq == 9


def test_tokens_for_two_tickets_are_refused():
    outcome = classify(_facts("Yes.", to=(_token(ticket=1), _token(ticket=2))), DESK)
    assert outcome == AgentRefused(AMBIGUOUS, "reply names several tickets (#1, #2)", answer=ANNA)


def test_html_only_reply():
    html = "<p>#close</p><p>Fixed.</p><blockquote>-- reply above this line --<br>Printer on fire</blockquote>"
    outcome = classify(_facts("", html=html), DESK)
    assert isinstance(outcome, AgentReply) and outcome.commands == (Command("close", "", 1),)
    assert "Printer" not in outcome.text


# --- refusals -------------------------------------------------------------------------------


def test_forged_token_is_refused():
    token = _token()
    forged = token.replace("+a42.", "+a43.")
    outcome = classify(_facts("#close", to=(forged,)), DESK)
    assert isinstance(outcome, AgentRefused) and outcome.reason == BAD_TOKEN and outcome.answer == ANNA


def test_token_of_another_agent_is_refused():
    outcome = classify(_facts("#close", sender=BOB, to=(_token(agent=ANNA),)), DESK)
    assert isinstance(outcome, AgentRefused) and outcome.reason == OTHER_AGENT and outcome.answer == BOB


def test_inactive_agent_is_refused_silently():
    outcome = classify(_facts("#close", sender=OLD, to=(_token(agent=OLD),)), DESK)
    assert outcome == AgentRefused(INACTIVE_AGENT, f"{OLD} is not an active agent")


def test_stranger_with_an_agent_token_is_refused_silently():
    outcome = classify(_facts("#close", sender="carl@example.org"), DESK)
    assert isinstance(outcome, AgentRefused) and outcome.reason == NOT_AN_AGENT and outcome.answer == ""


def test_failed_authentication_is_refused():
    outcome = classify(_facts("#close", authenticated=False), DESK)
    assert isinstance(outcome, AgentRefused) and outcome.reason == UNAUTHENTICATED and outcome.answer == ""


SPOOF = (
    b"From: =?utf-8?q?Bob_=3Cceo=40bigcorp.com=3E?= <attacker@example.com>\r\n"
    b"To: support@example.com\r\nSubject: Re: [#42] Printer on fire\r\nMessage-ID: <x1@example.com>\r\n\r\n#resolve\r\n"
)


def test_real_sender_reads_the_addr_spec_not_the_encoded_display_name():
    assert real_sender(SPOOF) == ("Bob <ceo@bigcorp.com>", "attacker@example.com")
    # the standard library's modern parser agrees on the real mailbox
    parsed = BytesParser(policy=default).parsebytes(SPOOF)
    assert isinstance(parsed["From"].addresses[0], HeaderAddress)
    assert parsed["From"].addresses[0].addr_spec == "attacker@example.com"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"From: Anna Schmidt <Anna@Desk.Example.com>", ("Anna Schmidt", "anna@desk.example.com")),
        (b'From: "Schmidt, Anna" <anna@desk.example.com>', ("Schmidt, Anna", "anna@desk.example.com")),
        (b"From: anna@desk.example.com", ("", "anna@desk.example.com")),
        (b"From: =?iso-8859-1?q?J=F6rg?= <joerg@example.com>", ("J\xf6rg", "joerg@example.com")),
        (b"From: a@example.com, b@example.com", ("", "")),
        (b"From: a@example.com\r\nFrom: b@example.com", ("", "")),
        (b"Subject: no from", ("", "")),
        (b"From: undisclosed", ("", "")),
    ],
)
def test_real_sender(header, expected):
    assert real_sender(header + b"\r\n\r\nbody\r\n") == expected


def test_display_name_spoof_with_an_agent_token():
    name, sender = real_sender(SPOOF)
    desk = AgentDesk(SECRET, (AgentEntry("ceo@bigcorp.com"),), ("support@example.com",))
    facts = MailFacts(
        sender=sender,
        display_name=name,
        recipients=(_token(agent="ceo@bigcorp.com"),),
        text="#resolve",
    )
    outcome = classify(facts, desk)
    assert isinstance(outcome, AgentRefused) and outcome.reason == DISPLAY_NAME_SPOOF and outcome.answer == ""
    assert "attacker@example.com" in outcome.detail and "ceo@bigcorp.com" in outcome.detail


def test_display_name_spoof_without_token_sending_commands():
    facts = MailFacts(
        sender="attacker@example.com",
        display_name="Anna <anna@desk.example.com>",
        recipients=("support@example.com",),
        text="#customer victim@example.org\nplease help",
        authenticated=True,
    )
    outcome = classify(facts, DESK)
    assert isinstance(outcome, AgentRefused) and outcome.reason == DISPLAY_NAME_SPOOF


def test_spoofed_display_name_helper():
    assert spoofed_display_name("Bob <ceo@bigcorp.com>", "attacker@example.com") == "ceo@bigcorp.com"
    assert spoofed_display_name("anna@desk.example.com", "Anna@desk.example.com") == ""
    assert spoofed_display_name("Anna Schmidt", "anna@desk.example.com") == ""
    assert spoofed_display_name("", "x@y.z") == ""


def test_reasons_are_listed():
    assert len(set(REASONS)) == len(REASONS) == 8


# --- not agent mail -------------------------------------------------------------------------


def test_customer_mail_to_support_is_not_agent_mail():
    facts = MailFacts(sender="carl@example.org", recipients=("support@example.com",), text="My printer is on fire.")
    assert classify(facts, DESK) == NotAgentMail()


def test_customer_reply_with_customer_token_is_not_agent_mail():
    token = make_reply_address(SECRET, "support@example.com", 42)
    facts = MailFacts(sender="carl@example.org", recipients=(token,), text="#resolve")
    assert classify(facts, DESK) == NotAgentMail()


def test_agent_writing_in_like_a_customer_is_not_agent_mail():
    facts = MailFacts(sender=ANNA, recipients=("support@example.com",), text="Test ticket, please ignore.")
    assert classify(facts, DESK) == NotAgentMail()


def test_mail_not_for_us_is_not_agent_mail():
    assert classify(MailFacts(sender=ANNA, recipients=("someone@else.org",), text="#close"), DESK) == NotAgentMail()


def test_token_shape_on_a_foreign_domain_is_ignored():
    foreign = _token(base="support@other.example")
    assert classify(_facts("#close", to=(foreign,)), DESK) == NotAgentMail()


def test_customer_forwarding_someone_elses_mail_is_not_agent_mail():
    facts = MailFacts(
        sender="carl@example.org",
        subject="Fwd: invoice",
        recipients=("support@example.com",),
        text="See below.\n\n---------- Forwarded message ---------\nFrom: Dora <dora@example.net>\nDate: Mon\n\nHi",
    )
    assert classify(facts, DESK) == NotAgentMail()


# --- forwards -------------------------------------------------------------------------------

GMAIL_FORWARD = """#priority high
Customer called about this too.

---------- Forwarded message ---------
From: Carl Customer <carl@example.org>
Date: Mon, 3 Mar 2025 at 09:00
Subject: Printer on fire
To: Anna Schmidt <anna@desk.example.com>

My printer is on fire.
"""

OUTLOOK_FORWARD = """Please take this one.

________________________________
From: Carl Customer [mailto:carl@example.org]
Sent: Monday, March 3, 2025 9:00 AM
To: Anna Schmidt
Subject: Printer on fire

My printer is on fire.
"""

APPLE_FORWARD_DE = """Bitte übernehmen.

Anfang der weitergeleiteten Nachricht:

Von: Carl Kunde <carl@example.org>
Betreff: Drucker brennt
Datum: 3. März 2025 um 09:00:00 MEZ
An: Anna <anna@desk.example.com>

Mein Drucker brennt.
"""


def _forward(text: str, subject: str = "Fwd: Printer on fire", authenticated: bool | None = True, **kw) -> MailFacts:
    return MailFacts(
        sender=ANNA,
        subject=subject,
        recipients=("support@example.com",),
        text=text,
        authenticated=authenticated,
        **kw,
    )


def test_gmail_forward_takes_the_original_sender():
    outcome = classify(_forward(GMAIL_FORWARD), DESK)
    assert isinstance(outcome, AgentForward)
    assert (outcome.agent, outcome.customer, outcome.found_by) == (ANNA, "carl@example.org", "forwarded-from")
    assert outcome.commands == (Command("priority", "high", 1),)
    assert outcome.text == "Customer called about this too."
    assert "My printer is on fire." in outcome.forwarded and not outcome.errors


def test_outlook_forward():
    outcome = classify(_forward(OUTLOOK_FORWARD, subject="FW: Printer on fire"), DESK)
    assert isinstance(outcome, AgentForward) and outcome.customer == "carl@example.org"
    assert outcome.text == "Please take this one."


def test_apple_mail_forward_in_german():
    outcome = classify(_forward(APPLE_FORWARD_DE, subject="WG: Drucker brennt"), DESK)
    assert isinstance(outcome, AgentForward) and outcome.customer == "carl@example.org"


def test_customer_command_wins_over_the_forwarded_sender():
    outcome = classify(_forward("#customer Dora@Example.net\n\n" + GMAIL_FORWARD.split("\n", 1)[1]), DESK)
    assert isinstance(outcome, AgentForward)
    assert (outcome.customer, outcome.found_by) == ("dora@example.net", "command")
    assert all(c.name != "customer" for c in outcome.commands)


def test_customer_command_alone_opens_a_ticket():
    outcome = classify(
        _forward("#customer dora@example.net\nDora phoned: her invoice is wrong.", subject="Invoice"), DESK
    )
    assert isinstance(outcome, AgentForward) and outcome.customer == "dora@example.net"
    assert outcome.text == "Dora phoned: her invoice is wrong."


def test_attached_original_sender_from_the_caller():
    outcome = classify(_forward("See attached.", forwarded_from="Erin@Example.net"), DESK)
    assert isinstance(outcome, AgentForward) and outcome.customer == "erin@example.net"


def test_reply_header_without_forward_is_not_a_forward():
    text = "Thanks!\n\n________________________________\nFrom: Carl <carl@example.org>\nSent: Monday\n\nold"
    assert classify(_forward(text, subject="RE: Printer"), DESK) == NotAgentMail()


@pytest.mark.parametrize("authenticated", [None, False])
def test_forward_needs_authentication(authenticated):
    outcome = classify(_forward(GMAIL_FORWARD, authenticated=authenticated), DESK)
    assert isinstance(outcome, AgentRefused) and outcome.reason == UNAUTHENTICATED
    assert outcome.answer == ANNA  # the configured address, told why no ticket was opened


def test_forward_without_authentication_when_the_policy_allows():
    desk = AgentDesk(SECRET, DESK.agents, DESK.support_addresses, forward_needs_authentication=False)
    assert isinstance(classify(_forward(GMAIL_FORWARD, authenticated=None), desk), AgentForward)
    outcome = classify(_forward(GMAIL_FORWARD, authenticated=False), desk)
    assert isinstance(outcome, AgentRefused) and outcome.reason == UNAUTHENTICATED


def test_inactive_agent_cannot_forward():
    facts = MailFacts(
        sender=OLD, subject="Fwd: x", recipients=("support@example.com",), text=GMAIL_FORWARD, authenticated=True
    )
    assert classify(facts, DESK) == AgentRefused(INACTIVE_AGENT, f"{OLD} is not an active agent")


def test_commands_without_ticket_or_forward_are_refused_with_an_answer():
    outcome = classify(_forward("#resolve", subject="close it"), DESK)
    assert isinstance(outcome, AgentRefused) and outcome.reason == NO_TICKET and outcome.answer == ANNA


def test_forward_to_one_of_our_own_addresses_is_an_error():
    for address in (BOB, "support@example.com", "notes@example.com"):
        outcome = classify(_forward(f"#customer {address}", subject="x"), DESK)
        assert isinstance(outcome, AgentForward) and outcome.errors, address
        assert "is one of ours" in outcome.errors[0].problem


@pytest.mark.parametrize("command", ["#send", "#merge 7", "#note"])
def test_forward_refuses_ticket_only_commands(command):
    outcome = classify(_forward(f"#customer dora@example.net\n{command}", subject="x"), DESK)
    assert isinstance(outcome, AgentForward) and outcome.errors


def test_forwarded_sender_helper():
    assert forwarded_sender(GMAIL_FORWARD) == "carl@example.org"
    assert forwarded_sender(OUTLOOK_FORWARD) == "carl@example.org"
    assert forwarded_sender(APPLE_FORWARD_DE) == "carl@example.org"
    assert forwarded_sender("-----Original Message-----\nFrom: x@example.org\nSent: now") == "x@example.org"
    assert forwarded_sender("From: the team\nno header here") == ""
    assert forwarded_sender("") == ""


# --- collision ------------------------------------------------------------------------------


def test_collision():
    assert not collision(7, 7)  # nothing new since the notification
    assert not collision(8, 7)
    assert collision(7, 8)  # the customer wrote again, or a colleague answered meanwhile


# --- the split only where it can matter (issue 17) -------------------------------------------

LINES = st.sampled_from(
    [
        "Hello, my printer is on fire.",
        "#resolve",
        "#note",
        "#customer carl@customer.example",
        "Order #12345 never came",
        "#unknown thing",
        "---------- Forwarded message ---------",
        "Begin forwarded message:",
        "From: Carl <carl@customer.example>",
        "> quoted line",
        "On Mon, 3 Mar 2025 at 10:15, Carl <carl@customer.example> wrote:",
        "-- ",
        "Anna Schmidt",
        "Support team",
        "-- reply above this line --",
        "",
        "Thanks, Anna",
    ]
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    lines=st.lists(LINES, max_size=8),
    subject=st.sampled_from(["Printer", "Fwd: Printer", "WG: Drucker", "[ext] FW: x", "Re: Printer"]),
    sender=st.sampled_from([ANNA, BOB, OLD, "carl@customer.example"]),
    html=st.sampled_from(["", "<p>Order &#35;1 <b>late</b></p>", "<p>#resolve</p>"]),
    forwarded_from=st.sampled_from(["", "dora@customer.example"]),
)
def test_mail_without_commands_or_forward_signs_is_classified_the_same_without_the_split(
    lines: list[str], subject: str, sender: str, html: str, forwarded_from: str
) -> None:
    """`classify` on a mail to our address (no token) decides the same whether the preparation
    child split the agent's words or not: the child leaves the split out only when
    `may_be_forward_or_commands` says `_forward` cannot find anything."""
    text = "\n".join(lines)
    facts = MailFacts(
        sender=sender,
        subject=subject,
        recipients=("support@example.com",),
        text=text,
        html=html,
        forwarded_from=forwarded_from,
        authenticated=True,
    )
    split = _replace(facts, words=agent_words(text, html, ""))
    assert classify(facts, DESK) == classify(split, DESK)
    if not may_be_forward_or_commands(text, subject, bool(forwarded_from)):
        assert classify(split, DESK) == NotAgentMail()


def test_what_makes_the_split_needed() -> None:
    assert not may_be_forward_or_commands("My printer is on fire.\n\nThanks", "Printer", False)
    assert may_be_forward_or_commands("#resolve\nDone", "Re: x", False)
    assert may_be_forward_or_commands("Order #12345", "x", False)  # a '#' anywhere: split, to be sure
    assert may_be_forward_or_commands("see below", "Fwd: Printer", False)
    assert may_be_forward_or_commands("Begin forwarded message:\nFrom: c@x", "x", False)
    assert may_be_forward_or_commands("see the attachment", "x", True)
    assert may_be_forward_or_commands("", "x", False)  # HTML only: its text is made from the HTML
