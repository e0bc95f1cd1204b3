"""The customer's language from a mail: headers first, then the text (py3langid), only the
desk's locales, and no guess on short or unsure text."""

from __future__ import annotations

import pytest

from maildesk.language import (
    detect_text,
    from_accept_language,
    from_content_language,
    guess_language,
    match_locale,
)

DESK = ("en", "de", "fr", "es")


def test_match_locale_takes_the_region_when_supported_else_the_language() -> None:
    assert match_locale("de-DE", DESK) == "de"
    assert match_locale("DE", DESK) == "de"
    assert match_locale("de-AT", ("en", "de", "de_AT")) == "de_AT"
    assert match_locale("fr_CA", ("en", "fr")) == "fr"
    assert match_locale("it", DESK) == ""
    assert match_locale("", DESK) == "" and match_locale("d e", DESK) == "" and match_locale("*", DESK) == ""


def test_content_language_first_supported_tag() -> None:
    assert from_content_language("de-DE", DESK) == "de"
    assert from_content_language("it, fr", DESK) == "fr"
    assert from_content_language("x-klingon", DESK) == ""


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("es-ES,es;q=0.9,en;q=0.8", "es"),
        ("en;q=0.3, fr;q=0.7, de;q=0.5", "fr"),
        ("it-IT, it;q=0.9, de;q=0.1", "de"),
        ("fr;q=0, en;q=0.2", "en"),  # q=0 means "not this one"
        ("fr;q=abc, es", "es"),  # a broken q is skipped, not an error
        ("it, pt", ""),
        ("", ""),
    ],
)
def test_accept_language_highest_q_among_the_desks_locales(header: str, expected: str) -> None:
    assert from_accept_language(header, DESK) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bonjour, mon imprimante ne fonctionne plus depuis ce matin. Que dois-je faire ?", "fr"),
        ("Guten Tag, mein Drucker funktioniert seit heute Morgen nicht mehr. Was soll ich tun?", "de"),
        ("Hola, mi impresora dejó de funcionar esta mañana. ¿Qué puedo hacer?", "es"),
        ("Hello, my printer stopped working this morning. What should I do?", "en"),
    ],
)
def test_text_detection_on_ordinary_sentences(text: str, expected: str) -> None:
    guess = detect_text(text, DESK)
    assert guess is not None and guess.locale == expected and guess.source == "text"
    assert guess.confidence >= 0.95 and guess.stored_source == "text"


@pytest.mark.parametrize(
    "text",
    [
        "Merci",  # too short: a few letters say nothing
        "ok thanks",
        "Order 12345678 https://shop.example/o/12345678 anna@customer.example",  # no words left
        "",
        "PDF, XLSX, PNG, ZIP, CSV, DOC",  # letters enough, but no language: not sure
    ],
)
def test_short_or_ambiguous_text_gives_no_guess(text: str) -> None:
    assert detect_text(text, DESK) is None


def test_text_detection_stays_within_the_desks_locales() -> None:
    italian = "Buongiorno, la mia stampante non funziona più da stamattina, cosa devo fare?"
    guess = detect_text(italian, DESK)
    assert guess is None or guess.locale in DESK
    assert detect_text("Bonjour, mon imprimante ne fonctionne plus depuis ce matin.", ("en",)) is None


def test_headers_win_over_text_and_content_language_over_accept_language() -> None:
    french = "Bonjour, mon imprimante ne fonctionne plus depuis ce matin. Que dois-je faire ?"
    guess = guess_language(content_language="de", accept_language="es", text=french, supported=DESK)
    assert guess is not None and (guess.locale, guess.source, guess.stored_source) == (
        "de",
        "content-language",
        "header",
    )
    guess = guess_language(content_language="it", accept_language="es;q=0.5", text=french, supported=DESK)
    assert guess is not None and (guess.locale, guess.source) == ("es", "accept-language")
    guess = guess_language(content_language="", accept_language="", text=french, supported=DESK)
    assert guess is not None and (guess.locale, guess.source) == ("fr", "text")
    assert guess_language(content_language="", accept_language="", text="Merci !", supported=DESK) is None


def test_what_a_guess_may_replace() -> None:
    from maildesk.language import LanguageGuess, replaces

    header, text = LanguageGuess("de", "content-language"), LanguageGuess("fr", "text", 0.99)
    assert not replaces("fr", "operator", header) and not replaces("", "operator", text)
    assert replaces("fr", "text", header) and replaces("fr", "header", header) and replaces("", "", header)
    assert not replaces("de", "header", LanguageGuess("de", "accept-language"))  # nothing would change
    assert replaces("", "", text) and not replaces("de", "text", text) and not replaces("de", "header", text)
