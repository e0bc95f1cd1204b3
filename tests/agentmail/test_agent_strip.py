"""The agent's new words: our notification, quotes and the agent's signature removed."""

import json
import os
from pathlib import Path

import pytest

from maildesk.agentmail.strip import REPLY_MARKERS, agent_words, marker_line

TOKEN = "support+a42.7-abcdefghij@example.com"
SIGNATURE = "Anna Schmidt\nSupport team, Example Ltd."

NOTIFICATION = """-- reply above this line --
Ticket #42 - Printer on fire
New message from Bob Customer <bob@example.org>:

My printer is on fire, please help.

Reply to answer the customer; start with #note to keep it internal."""


def _quote(text: str, prefix: str = "> ") -> str:
    return "\n".join((prefix + line).rstrip() for line in text.split("\n"))


def test_marker_lines():
    assert marker_line() == REPLY_MARKERS["en"] == "-- reply above this line --"
    assert marker_line("de-DE") == marker_line("de_AT") == REPLY_MARKERS["de"]
    assert marker_line("fr_CA") == REPLY_MARKERS["fr"] and marker_line("es") == REPLY_MARKERS["es"]
    assert marker_line("it") == REPLY_MARKERS["en"]


def test_gmail_reply_with_commands_and_signature():
    body = (
        "#pending\n"
        "Hi Bob,\n\ncan you send a photo of the label?\n\n"
        "--\xa0\nAnna Schmidt\nSupport team, Example Ltd.\n\n"
        f"On Mon, 3 Mar 2025 at 10:15, Maildesk <{TOKEN}> wrote:\n\n" + _quote(NOTIFICATION) + "\n"
    )
    words = agent_words(body, signature=SIGNATURE)
    assert words.text == "#pending\nHi Bob,\n\ncan you send a photo of the label?"
    assert "My printer is on fire" in words.quoted and "On Mon, 3 Mar 2025" in words.quoted
    assert "Anna Schmidt" in words.signature


def test_gmail_attribution_wrapped_over_two_lines():
    body = (
        "Thanks Bob, the replacement is on its way.\n\n"
        "On Mon, Mar 3, 2025 at 10:15 AM Maildesk <\n"
        f"{TOKEN}> wrote:\n\n" + _quote(NOTIFICATION)
    )
    assert agent_words(body).text == "Thanks Bob, the replacement is on its way."


def test_gmail_german():
    body = (
        "Hallo Bob,\n\nder Techniker kommt morgen.\n\n"
        f"Am Mo., 3. März 2025 um 10:15 Uhr schrieb Maildesk <{TOKEN}>:\n\n" + _quote(NOTIFICATION)
    )
    assert agent_words(body).text == "Hallo Bob,\n\nder Techniker kommt morgen."


def test_outlook_header_block_with_rule():
    body = (
        "Hi Bob,\r\n\r\nwe have shipped a new printer.\r\n\r\n"
        "________________________________\r\n"
        f"From: Maildesk <{TOKEN}>\r\n"
        "Sent: Monday, March 3, 2025 10:15 AM\r\n"
        "To: Anna Schmidt <anna@desk.example.com>\r\n"
        "Subject: [#42] Printer on fire\r\n\r\n" + NOTIFICATION.replace("\n", "\r\n")
    )
    words = agent_words(body)
    assert words.text == "Hi Bob,\n\nwe have shipped a new printer."
    assert "From: Maildesk" in words.quoted and "Printer on fire" in words.quoted


def test_outlook_german_header_block_without_rule():
    body = (
        "Hallo Bob,\n\nwir schicken einen neuen Drucker.\n\n"
        f"Von: Maildesk <{TOKEN}>\n"
        "Gesendet: Montag, 3. März 2025 10:15\n"
        "An: Anna Schmidt <anna@desk.example.com>\n"
        "Betreff: [#42] Drucker brennt\n\n"
        + NOTIFICATION.replace("reply above this line", "bitte oberhalb dieser Zeile antworten")
    )
    assert agent_words(body).text == "Hallo Bob,\n\nwir schicken einen neuen Drucker."


@pytest.mark.parametrize("locale", ["fr", "es"])
def test_french_and_spanish_markers_cut_the_notification(locale: str) -> None:
    from maildesk.agentmail.strip import marker_line

    marker = marker_line(locale).strip("- ")
    body = "Merci, c'est réglé.\n\n> " + NOTIFICATION.replace("reply above this line", marker).replace("\n", "\n> ")
    words = agent_words(body)
    assert words.text == "Merci, c'est réglé." and marker in words.quoted


def test_outlook_original_message_separator():
    body = (
        "#resolve\n\n-----Original Message-----\n"
        f"From: Maildesk [mailto:{TOKEN}]\nSent: Monday, March 3, 2025 10:15 AM\nSubject: [#42] Printer on fire\n\n"
        + NOTIFICATION
    )
    assert agent_words(body).text == "#resolve"


def test_apple_mail_attribution():
    body = (
        "#note\nCalled him, he will retry tonight.\n\n"
        f"On 3 Mar 2025, at 10:15, Maildesk <{TOKEN}> wrote:\n\n" + _quote(NOTIFICATION) + "\n"
    )
    assert agent_words(body).text == "#note\nCalled him, he will retry tonight."


def test_ios_mail_quoted_attribution_and_mobile_footer():
    body = "Done, closing.\n\nSent from my iPhone\n\n" + _quote(
        f"On Mar 3, 2025, at 10:15 AM, Maildesk <{TOKEN}> wrote:\n\n" + NOTIFICATION
    )
    words = agent_words(body)
    assert words.text == "Done, closing."
    assert "Sent from my iPhone" in words.signature


def test_apple_mail_german():
    body = f"Erledigt.\n\nAm 03.03.2025 um 10:15 schrieb Maildesk <{TOKEN}>:\n\n" + _quote(NOTIFICATION)
    assert agent_words(body).text == "Erledigt."


def test_unquoted_marker_with_an_unknown_client_header():
    body = "Looking into it.\n\nMaildesk ha escrito algo:\n" + NOTIFICATION
    words = agent_words(body)
    assert words.text.startswith("Looking into it.")
    assert "printer is on fire" not in words.text
    assert words.quoted.startswith("-- reply above this line --")


def test_marker_in_html_only_mail():
    html = (
        "<div>#close</div><div>Fixed by the update.</div><br>"
        "<div>On Mon, 3 Mar 2025 at 10:15, Maildesk wrote:</div>"
        "<blockquote><p>-- reply above this line --</p><p>My printer is on fire, please help.</p></blockquote>"
    )
    words = agent_words("", html=html)
    assert "#close" in words.text and "Fixed by the update." in words.text
    assert "printer is on fire" not in words.text


def test_nothing_written_means_no_words():
    body = f"On Mon, 3 Mar 2025 at 10:15, Maildesk <{TOKEN}> wrote:\n\n" + _quote(NOTIFICATION)
    words = agent_words(body)
    assert words.text == "" and "printer is on fire" in words.quoted


def test_only_quotes_without_marker_means_no_words():
    words = agent_words(_quote("Some old message\nwith two lines"))
    assert words.text == "" and "Some old message" in words.quoted


def test_a_short_reply_is_kept():
    assert agent_words("Thanks!").text == "Thanks!"
    assert agent_words("#resolve").text == "#resolve"


def test_configured_signature_exact():
    body = f"Hi Bob,\n\nall set.\n\n{SIGNATURE}\n"
    words = agent_words(body, signature=SIGNATURE)
    assert words.text == "Hi Bob,\n\nall set."
    assert words.signature.startswith("Anna Schmidt")


def test_configured_signature_rewrapped_and_respaced():
    body = "Hi Bob,\n\nall set.\n\nAnna   Schmidt Support team,\nExample   Ltd.\n"
    assert agent_words(body, signature=SIGNATURE).text == "Hi Bob,\n\nall set."
    body = "Hi Bob,\n\nall set.\n\nanna schmidt\n\nSUPPORT TEAM, example ltd.\n"
    assert agent_words(body, signature=SIGNATURE).text == "Hi Bob,\n\nall set."


def test_configured_signature_with_delimiter_and_disclaimer_below():
    disclaimer = "\n".join(f"Confidential line {i} of a very long legal disclaimer text." for i in range(15))
    body = f"Hi Bob,\n\nall set.\n\n-- \n{SIGNATURE}\n\n{disclaimer}\n"
    words = agent_words(body, signature=SIGNATURE)
    assert words.text == "Hi Bob,\n\nall set."
    assert "Confidential line 14" in words.signature


def test_configured_signature_in_crlf_and_nbsp():
    body = "Hi Bob,\r\n\r\nall set.\r\n\r\nAnna\xa0Schmidt\r\nSupport team, Example Ltd.\r\n"
    assert agent_words(body, signature=SIGNATURE.replace("\n", "\r\n")).text == "Hi Bob,\n\nall set."


def test_signature_not_present_changes_nothing():
    body = "Hi Bob,\n\nAnna from accounting will call you.\n"
    assert agent_words(body, signature=SIGNATURE).text == "Hi Bob,\n\nAnna from accounting will call you."


def test_partial_signature_is_not_removed():
    body = "Hi Bob,\n\nAnna Schmidt will call you.\n"
    assert agent_words(body, signature=SIGNATURE).text == body.strip()


def test_long_delimited_signature_is_cut():
    long_signature = "\n".join(f"Line {i} of a long signature" for i in range(20))
    body = f"Hi Bob,\n\nall set.\n\n-- \n{long_signature}\n"
    words = agent_words(body)
    assert words.text == "Hi Bob,\n\nall set."
    assert "Line 19" in words.signature


# --- real replies from the shared corpus (read at test time, never copied) --------------


def _corpus() -> Path | None:
    for candidate in (
        os.environ.get("MAILDESK_CORPUS", ""),
        str(Path(__file__).resolve().parents[2].parent / "shared" / "corpus"),
        "/work/shared/corpus",
    ):
        if candidate and (Path(candidate) / "INDEX.md").is_file():
            return Path(candidate)
    return None


CORPUS = _corpus()


def _require_corpus() -> Path:
    if CORPUS is None:  # a missing corpus is a failure, never a skip (as in the fuzz test)
        pytest.fail("the shared corpus is missing: set MAILDESK_CORPUS to its folder", pytrace=False)
    return CORPUS


needs_corpus = pytest.mark.usefixtures("corpus_required")


@pytest.fixture
def corpus_required() -> Path:
    return _require_corpus()


@needs_corpus
@pytest.mark.parametrize(
    ("source", "name", "first", "absent"),
    [
        ("email-reply-parser", "email_gmail.txt", "This is a test for inbox replying", "Steven Scott"),
        ("email-reply-parser", "email_iPhone.txt", None, "Sent from my iPhone"),
        ("mail-parser-reply", "email_2_2.txt", "Outlook with a reply directly above line", "CRM Comments"),
        ("mail-parser-reply", "multiline_on_de.txt", None, "schrieb"),
        ("mail-parser-reply", "email_1_3.txt", None, "Russell Brown wrote"),
    ],
)
def test_real_replies(source, name, first, absent):
    assert CORPUS is not None
    text = (CORPUS / source / "emails" / name).read_text(encoding="utf-8", errors="replace")
    words = agent_words(text)
    assert words.text
    if first:
        assert words.text.startswith(first)
    assert absent not in words.text


@needs_corpus
def test_corpus_visible_texts_never_grow():
    """On every reply fixture, the agent's words are a prefix-part of what split_reply shows."""
    assert CORPUS is not None
    expected = json.loads((CORPUS / "email-reply-parser" / "expected.json").read_text(encoding="utf-8"))
    assert expected  # the reference file is there; its model is not ours, so only shape is checked
    for path in sorted((CORPUS / "email-reply-parser" / "emails").glob("*.txt")):
        words = agent_words(path.read_text(encoding="utf-8", errors="replace"))
        assert "reply above this line" not in words.text
        assert not any(line.startswith(">") for line in words.text.splitlines()[:1]), path.name
