"""The resolution notice and the satisfaction survey through the real pipeline (App.process,
fixed clock): the notice on every route to `resolved` (CLI action, a rule, the SLA
auto-resolve; `#resolve` by mail and the CLI over SMTP are in tests/e2e/test_survey_daemon.py),
answers by link and by reply, what must not count (agents, strangers, forged tokens, late
answers, automatic replies) and what must not reopen. SQLite, with the main flow on both
backends."""

from __future__ import annotations

import email
import re
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import select

from maildesk.config import Settings
from maildesk.services import kpis
from maildesk.services import survey as sv
from maildesk.services import tickets as ops
from maildesk.sla.calendar import BusinessCalendar
from maildesk.sla.policy import parse_sla
from maildesk.store.models import Message, OutboxItem
from maildesk.threading.tokens import make_survey_address, parse_survey_address, survey_token_shape
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk, team_settings

AGENTS = [
    {"email": "ann@example.com", "name": "Ann", "tiers": ["L1"], "queues": []},
    {"email": "lead@example.com", "name": "Lea Lead", "tiers": ["L3"], "queues": []},
]
CUSTOMER = "anna@customer.example"


class SurveyDesk(Desk):
    def mail(self, raw: bytes) -> Message:
        """Spool and process one mail; the newest inbound row (of any kind)."""
        self.app.spool.put(raw, "test")
        stats = self.app.process()
        assert stats["failed"] == 0 and stats["quarantined"] == 0, stats
        with self.app.store.reader() as s:
            row = s.scalars(select(Message).where(Message.direction == "in").order_by(Message.id.desc())).first()
            assert row is not None
            return row

    def new(self, subject: str = "Printer on fire") -> tuple[int, str]:
        mid = f"<{re.sub(r'[^a-z0-9]+', '-', subject.lower())}@customer.example>"
        row = self.say(eml(subject=subject, message_id=mid))
        assert row.ticket_number is not None
        return row.ticket_number, mid.strip("<>")

    def resolve(self, number: int, by: str = "ann@example.com") -> None:
        with self.app.store.session() as s:
            ops.resolve(s, number, by, self.now)

    def sent(self, template: str, number: int | None = None) -> list[OutboxItem]:
        return [o for o in self.outbox(number) if o.template == template]

    def notice(self, number: int) -> EmailMessage:
        (row,) = self.sent("resolved", number)
        msg = email.message_from_bytes(row.raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    def rated(self, since_days: int = 60) -> Any:
        with self.app.store.reader() as s:
            report = kpis.build_report(
                s,
                since=self.now - timedelta(days=since_days),
                until=self.now + timedelta(days=1),
                by="queue",
                calendar=BusinessCalendar(),
            )
        return report.total.satisfaction


def _body(msg: EmailMessage, kind: str = "plain") -> str:
    part = msg.get_body((kind,))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def links(msg: EmailMessage) -> dict[int, tuple[str, str, str]]:
    """Rating -> (address, subject, body) of the notice's mailto links, as a client reads them."""
    found = {}
    for url in re.findall(r"<(mailto:[^>\s]+)>", _body(msg)):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        address = unquote(parts.path)
        shape = survey_token_shape(address)
        assert shape is not None
        found[shape[2]] = (address, query["subject"][0], query["body"][0])
    return found


def click(msg: EmailMessage, rating: int, comment: str = "", sender: str = f"Anna Schmidt <{CUSTOMER}>") -> bytes:
    """What a mail client sends for a mailto link: To, Subject and body from the URL."""
    address, subject, body = links(msg)[rating]
    return eml(sender=sender, to=address, subject=subject, body=body + comment)


def answer(msg: EmailMessage, body: str, sender: str = f"Anna Schmidt <{CUSTOMER}>", extra: str = "") -> bytes:
    """A reply to the notice (its Reply-To, threaded under its Message-ID, quoting it)."""
    quoted = "\n".join("> " + line for line in _body(msg).splitlines()[:5])
    head = f"In-Reply-To: {msg['Message-ID']}\nReferences: {msg['Message-ID']}" + (f"\n{extra}" if extra else "")
    return eml(
        sender=sender,
        to=msg["Reply-To"].addresses[0].addr_spec,
        subject=f"Re: {msg['Subject']}",
        body=f"{body}\n\nOn Mon, 23 Nov 2026 at 10:00, Example Support <support@example.com> wrote:\n{quoted}\n",
        extra=head,
    )


def make(
    tmp_path: Path,
    database_url: str,
    rules: str | None = None,
    *,
    sla: str = "",
    limits: dict[str, int] | None = None,
    **survey: Any,
) -> SurveyDesk:
    settings: Settings = team_settings(tmp_path, database_url, rules, agents=AGENTS, queues=[])
    if sla:
        settings = replace(settings, sla=parse_sla(tomllib.loads(sla)["sla"]))
    if limits:
        settings = replace(settings, limits=replace(settings.limits, **limits))
    if survey:
        settings = replace(settings, survey=replace(settings.survey, **survey))
    d = SurveyDesk(settings)
    d.app.sync_agents()
    return d


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[SurveyDesk]:
    d = make(tmp_path, f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}")
    yield d
    d.close()


# Reading ratings ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "rating", "comment"),
    [
        ("4", 4, ""),
        ("4/5", 4, ""),
        ("  5 - great, thanks!\n\nReally fast.", 5, "great, thanks!\nReally fast."),
        ("RATING 3", 3, ""),
        ("Rating: 2 too slow", 2, "too slow"),
        ("4/5 thanks", 4, "thanks"),
        ("1.", 1, ""),
        ("\n\n5!\n", 5, ""),
    ],
)
def test_a_rating_line_is_read_with_its_comment(text: str, rating: int, comment: str) -> None:
    assert sv.parse_rating(text) == sv.Rating(rating, comment)


@pytest.mark.parametrize(
    "text", ["5 minutes later it broke again", "3.5", "5:30 pm is fine", "6", "0", "It broke again", "", "45"]
)
def test_other_first_lines_are_not_ratings(text: str) -> None:
    assert sv.parse_rating(text) is None


def test_survey_tokens_are_bound_to_ticket_rating_and_customer() -> None:
    token = make_survey_address("s3cret", "support+x@example.com", 42, 5, "Anna@Customer.example")
    assert re.fullmatch(r"support\+s42\.5-[a-z2-7]{10}@example\.com", token)
    assert parse_survey_address("s3cret", token, "anna@customer.example") == (42, 5)
    assert parse_survey_address("s3cret", token, "ann@example.com") is None  # anyone else
    assert parse_survey_address("other", token, "anna@customer.example") is None
    assert parse_survey_address("s3cret", token.replace("s42.5", "s42.1"), "anna@customer.example") is None
    assert parse_survey_address("s3cret", token.replace("s42.", "s43."), "anna@customer.example") is None
    assert survey_token_shape(token) == ("support@example.com", 42, 5)


# The notice --------------------------------------------------------------------------------
def test_cli_resolve_sends_the_threaded_notice_with_signed_links_and_a_link_answer_counts(
    tmp_path: Path, database_url: str
) -> None:
    d = make(tmp_path, database_url)
    try:
        number, mid = d.new()
        d.resolve(number)
        msg = d.notice(number)
        assert msg["In-Reply-To"].strip("<>") == mid and mid in str(msg["References"])
        assert msg["To"].addresses[0].addr_spec == CUSTOMER and msg["Auto-Submitted"] == "auto-replied"
        assert f"[#{number}]" in msg["Subject"]
        found = links(msg)
        assert sorted(found) == [1, 2, 3, 4, 5]
        for rating, (address, subject, body) in found.items():
            assert parse_survey_address(d.app.settings.secret, address, CUSTOMER) == (number, rating)
            assert f"[#{number}]" in subject and body.strip() == f"RATING {rating}"
        assert 'href="mailto:support+s' in _body(msg, "html")
        assert [e["delivery"] for e in d.events(number, "survey-sent")] == ["inline"]
        row = d.mail(click(msg, 4, "Quick and kind."))
        assert (row.kind, row.ticket_number) == ("survey", number)
        (got,) = d.events(number, "survey-answered")
        assert got["rating"] == 4 and got["comment"] == "Quick and kind." and got["via"] == "link"
        assert d.ticket(number).status == "resolved"  # never reopened
        assert d.sent("ack", number) and not d.sent("survey_low", number)
        rated = d.rated()
        assert rated is not None and rated.rated == 1 and rated.average == 4
    finally:
        d.close()


def test_a_reply_with_a_number_counts_and_does_not_reopen_a_later_real_reply_does(desk: SurveyDesk) -> None:
    number, _ = desk.new()
    desk.resolve(number)
    msg = desk.notice(number)
    before = len(desk.outbox())
    row = desk.mail(answer(msg, "5 - great, thank you!\nThe printer works."))
    assert (row.kind, row.ticket_number) == ("survey", number)
    (got,) = desk.events(number, "survey-answered")
    assert (got["rating"], got["via"]) == (5, "reply")
    assert got["comment"] == "great, thank you!\nThe printer works."
    assert desk.ticket(number).status == "resolved"
    assert len(desk.outbox()) == before  # no ack, no agent notification for an answer
    desk.later(hours=2)
    desk.mail(answer(msg, "2 - on second thought it is on fire again"))
    assert [e["rating"] for e in desk.events(number, "survey-answered")] == [5, 2]
    assert desk.events(number, "survey-answered")[-1]["previous"] == 5
    rated = desk.rated()
    assert rated is not None and rated.rated == 1 and rated.average == 2  # the latest answer counts
    desk.later(hours=1)
    real = desk.mail(answer(msg, "It is on fire AGAIN. Please call me."))
    assert (real.kind, real.ticket_number) == ("customer", number)
    assert desk.ticket(number).status == "open"
    assert desk.events(number, "reopened")


def test_separate_delivery_and_switching_the_notice_off(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}"
    d = make(tmp_path, url, delivery="separate")
    try:
        number, _ = d.new()
        d.resolve(number)
        (notice,) = d.sent("resolved", number)
        (survey,) = d.sent("survey", number)
        assert "mailto:" not in notice.raw.decode() and "mailto:support+s" in survey.raw.decode()
        assert [e["delivery"] for e in d.events(number, "survey-sent")] == ["separate"]
        with d.app.store.session() as s:
            ops.reopen(s, number, "ann@example.com", d.now)
        d.later(minutes=5)
        d.resolve(number)  # a second resolution: a second notice
        assert len(d.sent("resolved", number)) == 2
    finally:
        d.close()
    off = make(tmp_path / "off", f"sqlite:///{tmp_path / 'off.db'}", notice=False, enabled=False)
    try:
        number, _ = off.new()
        off.resolve(number)
        assert off.sent("resolved", number) == [] and off.sent("survey", number) == []
    finally:
        off.close()


def test_a_rule_that_resolves_sends_the_notice(tmp_path: Path) -> None:
    rules = """
rules:
  - name: thanks it works
    when: reply
    if: {body: {regex: '(?i)^\\s*thanks.*works'}}
    then: [{resolve: true}]
"""
    d = make(tmp_path, f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}", rules)
    try:
        number, mid = d.new()
        d.say(eml(subject="Re: Printer on fire", body="Thanks, it works now!\n", extra=f"In-Reply-To: <{mid}>"))
        assert d.ticket(number).status == "resolved"
        msg = d.notice(number)
        assert links(msg) and d.events(number, "survey-sent")
    finally:
        d.close()


def test_the_sla_auto_resolve_sends_the_notice(tmp_path: Path) -> None:
    sla = """
[[sla.policy]]
name = "standard"
time = "calendar"
first_response = "1h"
followup_after = "1d"
resolve_after = "3d"
"""
    d = make(tmp_path, f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}", sla=sla)
    try:
        number, _ = d.new()
        with d.app.store.session() as s:
            ops.reply(s, d.app.deps, number, "Have you tried turning it off?", "ann@example.com", d.now)
        d.app.sla_sweep(d.now + timedelta(days=1, minutes=1))
        assert d.sent("resolved", number) == []
        d.app.sla_sweep(d.now + timedelta(days=3, minutes=1))
        assert d.ticket(number).status == "resolved"
        msg = d.notice(number)
        assert len(links(msg)) == 5
    finally:
        d.close()


def test_the_notice_obeys_the_automatic_mail_limits(tmp_path: Path) -> None:
    d = make(tmp_path, f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}", limits={"per_recipient_hour": 1})
    try:
        number, _ = d.new()  # the acknowledgement uses the hour's one automatic mail
        d.resolve(number)
        (row,) = d.sent("resolved", number)
        assert row.state == "held"
        assert d.events(number, "survey-sent") == []  # a held survey was never offered
    finally:
        d.close()


# What does not count -----------------------------------------------------------------------
def test_an_agent_clicking_or_replying_is_refused_and_recorded(desk: SurveyDesk) -> None:
    number, _ = desk.new()
    desk.resolve(number)
    msg = desk.notice(number)
    row = desk.mail(click(msg, 5, sender="Ann <ann@example.com>"))
    assert (row.kind, row.ticket_number) == ("survey", None)
    desk.mail(answer(msg, "5", sender="Ann <ann@example.com>"))
    refused = desk.events(number, "survey-refused")
    assert [(e["reason"], e["via"], e["sender"]) for e in refused] == [
        ("agent", "link", "ann@example.com"),
        ("agent", "reply", "ann@example.com"),
    ]
    assert desk.events(number, "survey-answered") == [] and desk.rated() is None
    assert desk.ticket(number).status == "resolved"
    assert not [o for o in desk.outbox() if o.template == "refused_reply"]  # no how-to for a click


def test_a_stranger_and_a_forged_or_mismatched_token_are_refused(desk: SurveyDesk) -> None:
    number, _ = desk.new()
    desk.resolve(number)
    msg = desk.notice(number)
    desk.mail(click(msg, 5, sender="Mallory <mallory@evil.example>"))
    desk.mail(answer(msg, "1 - awful", sender="Mallory <mallory@evil.example>"))
    assert [(e["reason"], e["via"]) for e in desk.events(number, "survey-refused")] == [
        ("not-the-customer", "link"),
        ("not-the-customer", "reply"),
    ]
    address, subject, body = links(msg)[5]
    mismatched = address.replace(f"+s{number}.5-", f"+s{number}.1-")  # the 5 link's signature on a 1
    forged = re.sub(r"-[a-z2-7]{10}@", "-aaaaaaaaaa@", address)
    for token in (mismatched, forged):
        row = desk.mail(eml(sender=f"Anna <{CUSTOMER}>", to=token, subject=subject, body=body))
        assert (row.kind, row.ticket_number) == ("survey", None)
    bad = desk.events(None, "survey-refused")
    assert [(e["reason"], e["claimed_ticket"], e["rating"]) for e in bad] == [
        ("bad-signature", number, 1),
        ("bad-signature", number, 5),
    ]
    assert desk.events(number, "survey-answered") == [] and desk.ticket(number).status == "resolved"
    assert not desk.sent("survey_low") and desk.rated() is None


def test_answers_after_the_window_are_late_and_not_counted(desk: SurveyDesk) -> None:
    number, _ = desk.new()
    desk.resolve(number)
    msg = desk.notice(number)
    desk.later(days=29)
    row = desk.mail(click(msg, 1, "far too late"))
    assert (row.kind, row.ticket_number) == ("survey", number)
    (late,) = desk.events(number, "survey-late")
    assert late["rating"] == 1 and late["comment"] == "far too late"
    assert desk.events(number, "survey-answered") == [] and not desk.sent("survey_low")
    assert desk.rated(since_days=60) is None
    assert desk.ticket(number).status == "resolved"


def test_an_auto_reply_to_the_notice_is_screened_not_counted(desk: SurveyDesk) -> None:
    number, _ = desk.new()
    desk.resolve(number)
    msg = desk.notice(number)
    desk.mail(answer(msg, "5", extra="Auto-Submitted: auto-replied"))
    assert desk.events(number, "survey-answered") == [] and desk.events(number, "survey-refused") == []
    assert desk.ticket(number).status == "resolved"


# A low rating; hostile answers -------------------------------------------------------------
def test_a_low_rating_thanks_the_customer_and_tells_the_assignee_and_the_lead(desk: SurveyDesk) -> None:
    number, _ = desk.new()
    with desk.app.store.session() as s:
        ops.assign(s, number, "ann@example.com", "lead@example.com", desk.now)
    desk.resolve(number, by="lead@example.com")
    msg = desk.notice(number)
    hostile = "Nobody called.\r\nBcc: victim@example.org\r\nSubject: pwned"
    desk.mail(click(msg, 1, hostile))
    (got,) = desk.events(number, "survey-answered")
    assert got["rating"] == 1 and "Bcc: victim@example.org" in got["comment"]  # kept as text
    (thanks,) = desk.sent("survey_low", number)
    assert thanks.recipients == [CUSTOMER]
    low = email.message_from_bytes(thanks.raw, policy=policy.default)
    assert "what went wrong" in _body(low) and low["In-Reply-To"]
    told = [o for o in desk.outbox(number, internal=True) if o.template == "agent_notification"]
    low_notes = [o for o in told if b"rated" in o.raw]
    assert sorted(r for o in low_notes for r in o.recipients) == ["ann@example.com", "lead@example.com"]
    for row in [thanks, *low_notes]:
        parsed = email.message_from_bytes(row.raw, policy=policy.default)
        assert "victim" not in str(parsed["Bcc"] or "") and "pwned" not in str(parsed["Subject"])
        assert "victim@example.org" not in row.recipients
    assert "Nobody called." in _body(email.message_from_bytes(low_notes[0].raw, policy=policy.default))


def test_an_html_answer_is_sanitised_and_its_comment_is_plain_text(desk: SurveyDesk) -> None:
    number, _ = desk.new()
    desk.resolve(number)
    address, subject, _ = links(desk.notice(number))[3]
    html = (
        "<html><body><p>RATING 3</p><p>Okay <b>but</b> slow"
        "<script>alert(1)</script><img src=x onerror=alert(2)></p></body></html>"
    )
    raw = (
        f"From: Anna <{CUSTOMER}>\r\nTo: {address}\r\nSubject: {subject}\r\n"
        "Message-ID: <html-answer@customer.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n" + html
    ).encode()
    row = desk.mail(raw)
    (got,) = desk.events(number, "survey-answered")
    assert got["rating"] == 3 and "Okay" in got["comment"] and "slow" in got["comment"]
    assert "<" not in got["comment"] and "alert" not in got["comment"]
    assert "<script" not in (row.html or "") and "onerror" not in (row.html or "")


def test_survey_settings_are_read_and_checked() -> None:
    from maildesk.config import parse_settings
    from maildesk.errors import ConfigError

    base = {"desk": {"secret_env": ""}}
    got = parse_settings({**base, "survey": {"delivery": "separate", "window_days": 7, "notice": False}}).survey
    assert (got.delivery, got.window_days, got.notice, got.enabled, got.low_rating) == ("separate", 7, False, True, 2)
    for bad, words in (
        ({"delivery": "web"}, "survey.delivery"),
        ({"low_rating": 5}, "survey.low_rating"),
        ({"keyword": "RATE IT"}, "survey.keyword"),
        ({"window": 3}, "unknown key"),
        ({"notice": "yes"}, "true or false"),
    ):
        with pytest.raises(ConfigError, match=words):
            parse_settings({**base, "survey": bad})
