"""The cheaper template context (issue 17): same values as the plain implementations, and
nothing remembered for one reader, customer, locale or zone reaches another."""

from __future__ import annotations

import random
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel import Locale
from babel.dates import format_skeleton, format_time

from maildesk import sanitize
from maildesk.outbound import context as C
from maildesk.outbound.context import (
    CompanyInput,
    CustomerInput,
    HoursInput,
    MessageInput,
    TicketInput,
    build_context,
    business_hours,
    excerpt,
    format_when,
)
from maildesk.outbound.render import TemplateRenderer
from maildesk.sanitize import escape_header_text

NOW = datetime(2025, 3, 5, 9, 30, 12, 345678, tzinfo=UTC)


# -- the plain implementations, as they were before the memos ------------------------------


def plain_format_when(value: datetime | None, locale: str, tz: str) -> str:
    if value is None:
        return ""
    local = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(C.zone(tz))
    date_part = format_skeleton("yMMMEd", local, locale=locale)
    time_part = format_time(local, "short", locale=locale)
    pattern = str(Locale.parse(locale).datetime_formats.get("medium", "{1} {0}"))
    return f"{pattern.replace('{1}', date_part).replace('{0}', time_part)} {local.tzname() or ''}".strip()


def plain_excerpt(text: str, limit: int) -> str:
    text = re.sub(r"[ \t]+", " ", re.sub(r"\n{3,}", "\n\n", (text or "").replace("\r\n", "\n"))).strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,.;:\n") + "…"


# -- escape_header_text ---------------------------------------------------------------------------

_ALPHABET = (
    "aZé ßё中😀  \t\r\n\x0b\x0c\x1f\x7f\x85\xa0\u1680\u2003\u200b\u200e"
    "\u2028\u2029\u202e\u3000\ufeff\ud800\ue000,.<>@\"'"
)


def _escape_header_text_slowly(value: object) -> str:
    """escape_header_text without its fast path for printable strings (the reference)."""
    text = sanitize._LINE_BREAKS.sub(" ", "" if value is None else str(value))
    text = "".join(
        " " if ch == "\t" else ch for ch in text if ch == "\t" or unicodedata.category(ch) not in {"Cc", "Cf"}
    )
    return sanitize._WHITESPACE.sub(" ", text).strip()


def test_the_fast_path_of_escape_header_text_changes_nothing() -> None:
    rng = random.Random(17)
    samples: list[object] = [None, 42, 3.5, "", " ", "  Anna   Schmidt  ", "Re: [#1]\r\n Bcc: x@y", "a\u202eb", b"x"]
    samples += ["".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 40))) for _ in range(3000)]
    for value in samples:
        assert escape_header_text(value) == _escape_header_text_slowly(value), repr(value)


# -- format_when ---------------------------------------------------------------------------

LOCALES = ["en", "en_GB", "de", "de_AT", "fr", "fr_CA", "es", "ja", "ar", "he", "zh_Hant_TW", "sr_Latn", "fa", "th"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham"]
VALUES = [
    NOW,
    datetime(2025, 3, 30, 0, 59, 59, tzinfo=UTC),  # Berlin: just before the clocks go forward
    datetime(2025, 3, 30, 1, 0, 0, tzinfo=UTC),
    datetime(2025, 10, 26, 0, 30, tzinfo=UTC),  # the hour Berlin has twice
    datetime(2025, 10, 26, 1, 30, tzinfo=UTC),
    datetime(2024, 12, 31, 23, 59, tzinfo=UTC),
    datetime(2025, 3, 5, 9, 30),  # naive: read as UTC
]


@pytest.mark.parametrize("locale", LOCALES)
def test_format_when_is_the_plain_babel_formatting(locale: str) -> None:
    for tz in ZONES:
        for value in VALUES:
            assert format_when(value, locale, tz) == plain_format_when(value, locale, tz), (value, locale, tz)
            assert format_when(value, locale, tz) == plain_format_when(value, locale, tz)  # remembered


def test_format_when_memo_keeps_locales_and_zones_apart() -> None:
    C._WHEN_MEMO.clear()
    berlin = NOW.astimezone(C.zone("Europe/Berlin"))  # the same instant, another tzinfo
    seen = {
        (locale, tz): format_when(value, locale, tz)
        for value in (NOW, berlin)
        for locale in ("en", "de")
        for tz in ("UTC", "America/New_York")
    }
    assert seen[("en", "UTC")] == "Wed, Mar 5, 2025, 9:30\u202fAM UTC"
    assert seen[("de", "UTC")] == "Mi., 5. März 2025, 09:30 UTC"
    assert seen[("en", "America/New_York")] == "Wed, Mar 5, 2025, 4:30\u202fAM EST"
    assert seen[("de", "America/New_York")] == "Mi., 5. März 2025, 04:30 EST"
    assert len(set(seen.values())) == 4
    # A naive value is UTC, a later instant is another value.
    assert format_when(NOW.replace(tzinfo=None), "en", "UTC") == seen[("en", "UTC")]
    assert format_when(NOW + timedelta(minutes=1), "en", "UTC") == "Wed, Mar 5, 2025, 9:31\u202fAM UTC"


def test_format_when_memo_is_bounded() -> None:
    C._WHEN_MEMO.clear()
    for minute in range(C._MEMO_LIMIT + 10):
        format_when(NOW + timedelta(minutes=minute), "en", "UTC")
    assert 0 < len(C._WHEN_MEMO) <= C._MEMO_LIMIT


def test_format_when_one_entry_per_local_minute_is_still_the_plain_formatting() -> None:
    """The memo keys on the local minute (and offset) when the text shows no seconds: every
    instant, second and microsecond, reads as babel writes it, in zones with offsets of
    minutes and seconds (Monrovia, until 1972), across both clock changes, naive or aware."""
    C._WHEN_MEMO.clear()
    rng = random.Random(17)
    zones = [*ZONES, "America/St_Johns", "Africa/Monrovia", "Asia/Kathmandu"]
    instants = [
        datetime(2025, 10, 26, 0, 59, 59, 999999, tzinfo=UTC),  # Berlin 02:59:59 CEST
        datetime(2025, 10, 26, 1, 0, 0, 1, tzinfo=UTC),  # Berlin 02:00:00 CET: that hour again
        datetime(2025, 10, 26, 0, 30, 1, tzinfo=UTC),  # 02:30 CEST and, an hour later,
        datetime(2025, 10, 26, 1, 30, 59, tzinfo=UTC),  # 02:30 CET: one local minute, two offsets
    ]
    base = datetime(2026, 3, 29, tzinfo=UTC)
    instants += [
        base + timedelta(seconds=rng.randint(-3 * 10**9, 10**8), microseconds=rng.randint(0, 10**6 - 1))
        for _ in range(3000)
    ]
    for i, value in enumerate(instants):
        value = value.replace(tzinfo=None) if i % 4 == 3 else value
        locale, tz = rng.choice(LOCALES), rng.choice(zones)
        assert format_when(value, locale, tz) == plain_format_when(value, locale, tz), (value, locale, tz)
    # Within one minute: one entry serves every second of it.
    C._WHEN_MEMO.clear()
    minute = NOW.replace(second=0, microsecond=0)
    texts = {format_when(minute + timedelta(seconds=s, microseconds=7 * s), "de", "Europe/Berlin") for s in range(60)}
    assert texts == {plain_format_when(minute, "de", "Europe/Berlin")} and len(C._WHEN_MEMO) == 1
    twice = [format_when(v, "en", "Europe/Berlin") for v in instants[2:4]]
    assert twice[0] != twice[1] and twice[0].endswith("CEST") and twice[1].endswith("CET")


def test_format_when_with_seconds_in_the_pattern_keys_on_the_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    """A locale whose time pattern showed seconds would get one entry per instant."""
    monkeypatch.setitem(C._SHOWS_SECONDS, "en", True)
    C._WHEN_MEMO.clear()
    for s in range(5):
        format_when(NOW + timedelta(seconds=s), "en", "UTC")
    assert len(C._WHEN_MEMO) == 5
    assert C._shows_seconds("de") is False  # CLDR's short times: hours and minutes


# -- excerpt -------------------------------------------------------------------------------


def test_excerpt_of_the_head_is_the_excerpt_of_the_whole() -> None:
    rng = random.Random(4)
    pieces = ["word", "Wörter", " ", "  ", "\t", "\n", "\n\n\n\n", "\r\n", "\r\n\r\n\r\n", ",", ".", "\r", "x" * 30]
    for _ in range(1500):
        limit = rng.choice([5, 40, 120, 400])
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 1400)))
        assert excerpt(text, limit) == plain_excerpt(text, limit), (text, limit)
    # a long run of blanks right where the head is cut
    for limit in (40, 400):
        head = 2 * limit + 256
        for shift in range(-3, 4):
            text = "a " * ((head + shift) // 2) + "\r\n" * 5 + " \t " * 50 + "tail " * 300
            assert excerpt(text, limit) == plain_excerpt(text, limit)
            text = "\n" * (head + shift) + "b" * 10
            assert excerpt(text, limit) == plain_excerpt(text, limit)


# -- business hours ------------------------------------------------------------------------

HOURS = HoursInput("Europe/Berlin", ((((9 * 3600, 17 * 3600),),) * 5) + ((), ()))


def test_business_hours_memo_per_reader_and_week() -> None:
    C._HOURS_MEMO.clear()
    de = business_hours(HOURS, "de", "Europe/Berlin", NOW)
    en = business_hours(HOURS, "en", "America/New_York", NOW)
    assert de[0] == "Mo.–Fr. 09:00–17:00 (CET)"
    assert en[0] == "Mon–Fri 3:00\u202fAM–11:00\u202fAM (EST)"
    # The week after New York moved its clocks (Berlin has not yet): another offset.
    assert business_hours(HOURS, "en", "America/New_York", NOW + timedelta(days=7))[0] == (
        "Mon–Fri 4:00\u202fAM–12:00\u202fPM (EDT)"
    )
    # Remembered values are handed out as fresh lists and dicts.
    de[1][0]["days"] = "changed"
    de[1].append({"days": "x", "hours": "y"})
    again = business_hours(HOURS, "de", "Europe/Berlin", NOW + timedelta(days=1))
    assert again == ("Mo.–Fr. 09:00–17:00 (CET)", [{"days": "Mo.–Fr.", "hours": "09:00–17:00"}])


# -- one session, two customers ------------------------------------------------------------


def _context(customer: CustomerInput, number: int, subject: str) -> dict[str, object]:
    return build_context(
        now=NOW,
        company=CompanyInput("Example Ltd.", "support@example.com", hours=HOURS),
        customer=customer,
        ticket=TicketInput(number, subject, created_at=NOW, first_response_due=NOW + timedelta(hours=2)),
        message=MessageInput("hello " * 400, customer.name, customer.email, received_at=NOW),
        default_locale="en",
        default_timezone="UTC",
    )


def test_two_customers_in_one_session_get_their_own_values() -> None:
    anna = CustomerInput("anna.schmidt@example.de", "Schmidt, Anna", locale="de", timezone="Europe/Berlin")
    bob = CustomerInput("BOB@example.com", "Bob  Jones", locale="en", timezone="America/New_York")
    a1, b1, a2 = _context(anna, 1, "Drucker"), _context(bob, 2, "Printer"), _context(anna, 3, "Toner")
    assert a1["customer"]["first_name"] == "Anna" and b1["customer"]["first_name"] == "Bob"  # type: ignore[index]
    assert b1["customer"]["name"] == "Bob Jones" and b1["customer"]["email"] == "bob@example.com"  # type: ignore[index]
    assert a1["recipient"] == {
        "name": "Schmidt, Anna",
        "email": "anna.schmidt@example.de",
        "first_name": "Anna",
        "display_name": "Schmidt, Anna",
    }
    assert b1["recipient"]["name"] == "Bob Jones"  # type: ignore[index]
    assert a1["now_text"] == "Mi., 5. März 2025, 10:30 CET"
    assert b1["now_text"] == "Wed, Mar 5, 2025, 4:30\u202fAM EST"
    assert a1["ticket"]["first_response_due"] == "Mi., 5. März 2025, 12:30 CET"  # type: ignore[index]
    assert b1["ticket"]["first_response_due"] == "Wed, Mar 5, 2025, 6:30\u202fAM EST"  # type: ignore[index]
    assert a1["message"]["received"] == a1["now_text"] and b1["message"]["received"] == b1["now_text"]  # type: ignore[index]
    assert a1["company"]["business_hours"] == "Mo.–Fr. 09:00–17:00 (CET)"  # type: ignore[index]
    assert b1["company"]["business_hours"] == "Mon–Fri 3:00\u202fAM–11:00\u202fAM (EST)"  # type: ignore[index]
    assert a1["company"]["business_hours_days"] is not a2["company"]["business_hours_days"]  # type: ignore[index]
    assert (a1["ticket"]["tag"], a2["ticket"]["tag"], b1["ticket"]["tag"]) == ("[#1]", "[#3]", "[#2]")  # type: ignore[index]
    assert a2["ticket"]["subject"] == "Toner" and b1["ticket"]["subject"] == "Printer"  # type: ignore[index]
    assert a1["message"]["excerpt"] == plain_excerpt("hello " * 400, 400)  # type: ignore[index]


def test_an_agent_reader_is_not_the_customer() -> None:
    anna = CustomerInput("anna.schmidt@example.de", "Schmidt, Anna", locale="de", timezone="Europe/Berlin")
    ctx = build_context(
        now=NOW,
        company=CompanyInput("Ex", "support@example.com"),
        customer=anna,
        recipient=C.AgentInput("Jonas Weber", "jonas@example.com", locale="fr"),
    )
    assert ctx["recipient"]["name"] == "Jonas Weber" and ctx["customer"]["name"] == "Schmidt, Anna"
    assert ctx["locale"] == "fr" and ctx["now_text"] == "mer. 5 mars 2025, 09:30 UTC"


# -- the renderer's remembered look-ups ----------------------------------------------------


def test_renderer_chains_are_remembered_per_locale_and_queue(tmp_path: Path) -> None:
    renderer = TemplateRenderer(tmp_path, default_locale="en")
    for locale, queue in [("de_AT", "billing"), ("de_AT", None), ("fr", "billing"), ("en", None), ("de_AT", "../x")]:
        site, builtin = renderer._chains(locale, queue)
        assert (site, builtin) == renderer._make_chains(locale, queue)
        site.append(tmp_path)  # callers get their own lists
        assert renderer._chains(locale, queue) == renderer._make_chains(locale, queue)
    assert renderer._chains("de", "billing")[0][:2] == [tmp_path / "billing" / "de", tmp_path / "de"]
    assert renderer._chains("fr", None)[0][0] == tmp_path / "fr"


def test_renderer_two_locales_in_one_renderer(tmp_path: Path) -> None:
    renderer = TemplateRenderer(tmp_path, default_locale="en")
    anna = CustomerInput("anna.schmidt@example.de", "Schmidt, Anna", locale="de", timezone="Europe/Berlin")
    bob = CustomerInput("bob.jones@example.com", "Bob Jones", locale="en", timezone="America/New_York")
    out = {}
    for who, number in ((anna, 1), (bob, 2), (anna, 3)):
        ctx = _context(who, number, "Printer")
        out[number] = renderer.render("ack", ctx, locale=str(ctx["locale"]), queue="general")
    assert out[1].locale == out[3].locale == "de" and out[2].locale == "en"
    assert "Anna" in out[1].text and "Bob" in out[2].text and "Bob" not in out[3].text
    assert "[#1]" in out[1].subject and "[#2]" in out[2].subject and "[#3]" in out[3].subject
    assert "12:30 CET" in out[1].text and "6:30\u202fAM EST" in out[2].text


def test_a_changed_site_template_is_reloaded_after_the_recheck_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import maildesk.outbound.render as R

    clock = [1000.0]
    monkeypatch.setattr(R._time, "monotonic", lambda: clock[0])
    (tmp_path / "en").mkdir()
    template = tmp_path / "en" / "note.txt.j2"
    template.write_text("Subject: one {{ ticket.tag }}\n\nfirst\n", encoding="utf-8")
    renderer = TemplateRenderer(tmp_path, default_locale="en")
    ctx = _context(CustomerInput("bob.jones@example.com", "Bob Jones"), 7, "Printer")
    assert renderer.render("note", ctx, locale="en").subject == "one [#7]"
    template.write_text("Subject: two {{ ticket.tag }}\n\nsecond\n", encoding="utf-8")
    stamp = template.stat().st_mtime + 5
    import os

    os.utime(template, (stamp, stamp))  # a different mtime even on coarse file systems
    clock[0] += R.SITE_RECHECK_SECONDS / 2
    assert renderer.render("note", ctx, locale="en").subject == "one [#7]"  # still remembered as fresh
    clock[0] += R.SITE_RECHECK_SECONDS
    rendered = renderer.render("note", ctx, locale="en")
    assert (rendered.subject, rendered.text) == ("two [#7]", "second\n")


def test_normalize_locale_memo_keeps_defaults_apart() -> None:
    assert C.normalize_locale("xx-unknown", "de") == "de"
    assert C.normalize_locale("xx-unknown", "fr") == "fr"
    assert C.normalize_locale("de-AT", "fr") == "de_AT"
    assert C.normalize_locale("", "es") == "es"


def test_support_address_answers_per_candidates_and_settings(tmp_path: Path) -> None:
    from dataclasses import replace

    from maildesk.config import parse_settings
    from maildesk.outbound.mailer import Mailer

    def settings(addresses: list[str]):  # type: ignore[no-untyped-def]
        raw = {"desk": {"data_dir": str(tmp_path), "support_addresses": addresses, "secret_env": ""}}
        return replace(parse_settings(raw, base_dir=str(tmp_path)), secret="s")

    mailer = Mailer(settings(["help@example.com", "billing@example.com"]))
    assert mailer.support_address(["Billing+x@Example.com"]) == "billing@example.com"
    assert mailer.support_address(["someone@else.org", "help@example.com"]) == "help@example.com"
    assert mailer.support_address(["someone@else.org"]) == "help@example.com"
    assert mailer.support_address([]) == "help@example.com"
    assert mailer.support_address(["Billing+x@Example.com"]) == "billing@example.com"  # remembered
    mailer.settings = settings(["desk@example.net"])  # other settings: nothing carried over
    assert mailer.support_address(["Billing+x@Example.com"]) == "desk@example.net"
    assert mailer.support_address(["desk+t@example.net"]) == "desk@example.net"
