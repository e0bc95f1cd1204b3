"""First-name heuristics and the curated template context."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from maildesk.outbound.context import (
    AgentInput,
    CompanyInput,
    CustomerInput,
    MessageInput,
    TicketInput,
    build_context,
    excerpt,
    guess_first_name,
    normalize_locale,
    sample_context,
)

NOW = datetime(2025, 3, 5, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "address", "expected"),
    [
        ("", "anna.schmidt@x.de", "Anna"),
        ("", "anna_schmidt+shop@x.de", "Anna"),
        ("", "jsmith@x.de", ""),
        ("", "a.schmidt@x.de", ""),
        ("", "info@x.de", ""),
        ("", "no-reply@x.de", ""),
        ("", "customer.service@x.de", ""),
        ("Schmidt, Anna", "", "Anna"),
        ("Dr. Anna Schmidt", "", "Anna"),
        ("Prof. Dr. Hans Meier", "", "Hans"),
        ("ANNA SCHMIDT", "", "Anna"),
        ("anna-lena müller", "", "Anna-Lena"),
        ("SCHMIDT Anna", "", "Anna"),
        ('"Anna Schmidt"', "", "Anna"),
        ("'Jürgen'", "", "Jürgen"),
        ("“Anna Schmidt” (ACME)", "", "Anna"),
        ("Anna Schmidt via LinkedIn", "", "Anna"),
        ("J. Smith", "jsmith@x.de", ""),
        ("Support Team", "", ""),
        ("anna.schmidt@x.de", "anna.schmidt@x.de", "Anna"),
        ("McKenzie O'Neil", "", "McKenzie"),
        ("李雷", "", "李雷"),
        ("Anna\r\nBcc: x@y", "", ""),  # looks like an address once unfolded: no guess
    ],
)
def test_first_name(name: str, address: str, expected: str) -> None:
    assert guess_first_name(name, address) == expected


def test_locale_normalisation() -> None:
    assert normalize_locale("de-AT") == "de_AT"
    assert normalize_locale("../../etc") == "en"
    assert normalize_locale("xx", "de") == "de"


def test_excerpt_cuts_at_a_word() -> None:
    text = "word " * 100
    out = excerpt(text, 42)
    assert out.endswith("…") and len(out) <= 43 and not out[:-1].endswith(" ")
    assert excerpt("short", 42) == "short"


def test_context_formats_times_in_the_readers_zone_and_language() -> None:
    due = datetime(2025, 3, 5, 14, 0, tzinfo=UTC)
    ctx = build_context(
        now=NOW,
        company=CompanyInput("Example Ltd.", "Support@Example.com"),
        customer=CustomerInput(email="anna.schmidt@example.org", locale="de-AT", timezone="Europe/Vienna"),
        ticket=TicketInput(number=7, subject="Fwd: Re: Drucker", first_response_due=due),
    )
    assert ctx["locale"] == "de_AT" and ctx["timezone"] == "Europe/Vienna"
    assert ctx["ticket"]["first_response_due"] == "Mi., 5. März 2025, 15:00 CET"
    assert ctx["ticket"]["first_response_due_in"] == "in 4 Stunden"
    assert ctx["ticket"]["reply_subject"] == "Re: [#7] Drucker"
    assert ctx["ticket"]["tag"] == "[#7]"
    assert ctx["customer"]["first_name"] == "Anna"
    assert ctx["company"]["support_address"] == "support@example.com"
    assert ctx["agent"] is None and ctx["sla"] is None


def test_agent_reader_and_unknown_zone() -> None:
    agent = AgentInput(name="Jonas Weber", email="jonas@example.com", locale="fr", timezone="Mars/Olympus")
    ctx = build_context(
        now=NOW,
        company=CompanyInput("Example", "support@example.com"),
        customer=CustomerInput(email="x@example.org", name="Anna"),
        agent=agent,
        recipient=agent,
        message=MessageInput(text="a " * 300),
        default_timezone="Europe/Berlin",
        excerpt_chars=50,
    )
    assert ctx["recipient"]["first_name"] == "Jonas" and ctx["locale"] == "fr"
    assert ctx["timezone"] == "Europe/Berlin"
    assert len(ctx["message"]["excerpt"]) <= 51


def test_context_holds_only_plain_data() -> None:
    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            assert value is None or isinstance(value, (str, int, bool, datetime)), type(value)
            assert not dataclasses.is_dataclass(value)

    walk(sample_context("en"))


def test_sample_context_reader_depends_on_template() -> None:
    assert sample_context("en", template="ack")["recipient"]["first_name"] == "Anna"
    assert sample_context("en", template="sla_warning")["recipient"]["first_name"] == "Jonas"
    assert sample_context("de", now=NOW - timedelta(days=1))["locale"] == "de"


def test_full_context_key_set_is_pinned() -> None:
    """Every name a template may use, section by section; a template change that needs a new
    one must come with a change here."""
    ctx = sample_context("en", template="ack")
    assert list(ctx) == [
        "locale",
        "timezone",
        "now",
        "now_text",
        "company",
        "customer",
        "recipient",
        "ticket",
        "agent",
        "message",
        "sla",
        "survey",
        "bounce",
        "refusal",
        "followup",
        "notice",
    ]
    person = ["name", "email", "first_name", "display_name"]
    sections = {
        "company": ["name", "support_address", "website", "business_hours", "business_hours_days"],
        "customer": [
            *person,
            "vip",
            "open_tickets",
            "open_ticket_count",
            "past_ticket_count",
            "is_returning",
            "last_satisfaction",
        ],
        "recipient": person,
        "ticket": [
            "number",
            "tag",
            "subject",
            "reply_subject",
            "status",
            "queue",
            "tier",
            "priority",
            "assignee_name",
            "created",
            "created_at",
            "first_response_due",
            "first_response_due_in",
            "first_response_due_at",
            "next_update_due",
            "next_update_due_at",
            "resolution_due",
            "resolution_due_in",
            "resolution_due_at",
            "reopen_days",
            "fields",
            "asked",
            "merged_into",
        ],
        "agent": [*person, "signature"],
        "message": ["text", "excerpt", "sender_name", "sender_email", "received", "attachment_names"],
        "sla": ["kind", "due", "due_in", "due_at", "breached", "breached_ago", "escalate_to"],
        "survey": ["keyword", "scores", "has_links"],
        "bounce": ["address", "reason", "when"],
        "refusal": ["code", "detail", "agent_subject"],
        "followup": ["waiting_since", "waiting_days", "close_after_days"],
        "notice": ["event", "marker", "commands", "by", "note", "history", "attachments"],
    }
    assert {name: list(ctx[name]) for name in sections} == sections
    assert list(ctx["customer"]["open_tickets"][0]) == ["number", "tag", "subject", "status", "created", "ended"]
    assert list(ctx["notice"]["history"][0]) == ["number", "tag", "subject", "status", "created", "ended"]
    assert ctx["notice"]["attachments"] == [{"name": "photo.jpg", "size": "229 KB"}]
    assert list(ctx["ticket"]["fields"][0]) == ["label", "value"]
    assert ctx["survey"]["scores"][0]["score"] == 5 and ctx["survey"]["scores"][0]["reply"] == "RATING 5"
    assert ctx["survey"]["scores"][0]["mailto"].startswith("mailto:support+s42.5-abcdefghij@example.com?subject=")
    assert ctx["ticket"]["asked"] == [{"name": "order_number", "label": "order number"}]
    assert ctx["ticket"]["merged_into"] == {"number": 41, "tag": "[#41]", "subject": "Printer smoking"}


def test_minimal_context_has_every_section_and_only_customer_filled() -> None:
    ctx = build_context(
        now=NOW,
        company=CompanyInput("Example", "support@example.com"),
        customer=CustomerInput(email="Anna.Schmidt@Example.org"),
    )
    assert list(ctx) == list(sample_context("en"))
    assert ctx["recipient"] == {
        "name": "",
        "email": "anna.schmidt@example.org",
        "first_name": "Anna",
        "display_name": "anna.schmidt@example.org",
    }
    assert ctx["customer"]["open_tickets"] == [] and ctx["customer"]["is_returning"] is False
    assert [k for k, v in ctx.items() if v is None] == [
        "ticket",
        "agent",
        "message",
        "sla",
        "survey",
        "bounce",
        "refusal",
        "followup",
        "notice",
    ]


def test_business_hours_in_the_readers_language_and_time_zone() -> None:
    from maildesk.outbound.context import HoursInput, business_hours

    week = ((((9 * 3600, 12 * 3600), (13 * 3600, 17 * 3600)),) * 4) + (((9 * 3600, 15 * 3600),), (), ())
    hours = HoursInput("Europe/Berlin", week)
    winter = datetime(2025, 3, 5, 9, 30, tzinfo=UTC)
    text, rows = business_hours(hours, "fr", "Europe/Paris", winter)
    assert text == "lun.–jeu. 09:00–12:00, 13:00–17:00; ven. 09:00–15:00 (CET)"
    assert rows[1] == {"days": "ven.", "hours": "09:00–15:00"}
    assert business_hours(hours, "de", "Europe/Berlin", winter)[0].startswith("Mo.–Do. 09:00–12:00")
    # A reader in New York reads the same hours in their own zone, with the offset in force that week.
    assert business_hours(hours, "en", "America/New_York", winter)[0].startswith("Mon–Thu 3:00\u202fAM–6:00\u202fAM")
    summer = datetime(2025, 3, 12, 9, 30, tzinfo=UTC)  # New York already on summer time, Berlin not yet
    assert business_hours(hours, "es", "America/New_York", summer)[0].startswith("lun–jue 4:00–7:00")
    assert business_hours(None, "en", "UTC", winter) == ("", [])


def test_sample_context_shows_business_hours_in_its_locale() -> None:
    assert sample_context("es")["company"]["business_hours"] == "lun–vie 9:00–17:00 (CET)"
    assert (
        sample_context("en")["company"]["business_hours"] == "Mon–Fri 9:00\u202fAM–5:00\u202fPM (CET)"
    )  # CLDR's narrow space
