"""screen_message: every signal, its verdict, its reason, and the order they are read in."""

from __future__ import annotations

from dataclasses import replace

import pytest
from screen_mail import dsn, human_headers, message

from maildesk.message import ParsedMessage
from maildesk.rules.screen import ScreenVerdict, is_automatic, is_out_of_office_subject, screen_message

OWN = frozenset({"support@desk.example", "billing@desk.example"})


def screen(msg: ParsedMessage, **kw: object) -> ScreenVerdict:
    return screen_message(msg, own_addresses=OWN, **kw)  # type: ignore[arg-type]


def test_plain_human_mail() -> None:
    verdict = screen(message(human_headers()))
    assert verdict.verdict == "human"
    assert not is_automatic(verdict)
    assert verdict.to_json()["verdict"] == "human"


@pytest.mark.parametrize("value", ["no", "No", " no ", "no; owner=alice", "no (a person wrote this)"])
def test_auto_submitted_no_is_human(value: str) -> None:
    assert screen(message(human_headers(Auto_Submitted=value))).verdict == "human"


@pytest.mark.parametrize(
    "value", ["auto-replied", "auto-generated", "Auto-Replied", "auto-notified; owner-email=x@y.example", "yes"]
)
def test_auto_submitted_other_values_are_automatic(value: str) -> None:
    verdict = screen(message(human_headers(Auto_Submitted=value)))
    assert verdict.verdict == "auto-reply"
    assert verdict.reason.startswith("Auto-Submitted: ")
    assert value.strip() in verdict.reason
    assert is_automatic(verdict)


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        ("bulk", "list"),
        ("list", "list"),
        ("junk", "auto-reply"),
        ("auto_reply", "auto-reply"),
        ("first-class", "human"),
    ],
)
def test_precedence(value: str, verdict: str) -> None:
    result = screen(message(human_headers(Precedence=value)))
    assert result.verdict == verdict
    if verdict != "human":
        assert result.reason == f"Precedence: {value}"


@pytest.mark.parametrize(
    ("value", "automatic"), [("All", True), ("OOF, AutoReply", True), ("AutoReply", True), ("DR, RN, NRN", False)]
)
def test_x_auto_response_suppress(value: str, automatic: bool) -> None:
    result = screen(message(human_headers(X_Auto_Response_Suppress=value)))
    assert (result.verdict == "auto-reply") is automatic


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("List-Id", "Users of Widgets <users.widgets.example>"),
        ("List-Unsubscribe", "<mailto:leave@lists.example>"),
        ("List-Post", "<mailto:users@lists.example>"),
    ],
)
def test_list_headers(name: str, value: str) -> None:
    result = screen(message({**human_headers(), name: value}))
    assert result.verdict == "list"
    assert result.reason.startswith(f"{name}: ")
    assert is_automatic(result)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Autoreply", "yes"),
        ("X-Autorespond", "Vacation"),
        ("X-Auto-Reply", "1"),
        ("X-AutoReply-From", "alice@customer.example"),
        ("X-Mail-Autoreply", "yes"),
        ("X-FC-MachineGenerated", "true"),
        ("X-POST-MessageClass", "9; Autoresponder"),
    ],
)
def test_vendor_auto_reply_headers(name: str, value: str) -> None:
    result = screen(message({**human_headers(), name: value}))
    assert result.verdict == "auto-reply"
    assert name in result.reason


def test_post_message_class_other_value_is_human() -> None:
    assert screen(message(human_headers(X_POST_MessageClass="1; Normal"))).verdict == "human"


def test_null_return_path() -> None:
    result = screen(message(human_headers(Return_Path="<>")))
    assert result.verdict == "auto-reply"
    assert result.reason == "Return-Path: <> (null sender)"


def test_topmost_return_path_decides() -> None:
    headers = [("Return-Path", "<alice@customer.example>"), ("Return-Path", "<>"), *human_headers().items()]
    assert screen(message(headers)).verdict == "human"


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.example.net",
        "postmaster@example.org",
        "noreply@shop.example",
        "no-reply@shop.example",
        "do-not-reply@bank.example",
        "donotreply@bank.example",
        "no_reply@x.example",
    ],
)
def test_system_and_no_reply_senders(sender: str) -> None:
    result = screen(message(human_headers(From=f"Robot <{sender}>")))
    assert result.verdict == "auto-reply"
    assert sender.lower() in result.reason


def test_reply_in_address_is_not_no_reply() -> None:
    assert screen(message(human_headers(From="Reply Guy <reply@example.com>"))).verdict == "human"
    assert screen(message(human_headers(From="Nora <nora.reply@example.com>"))).verdict == "human"


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: My printer is on fire",
        "Automatic reply: My printer is on fire",
        "Autoreply: Ticket 42",
        "Abwesenheitsnotiz: Ihre Anfrage",
        "Automatische Antwort: Ihre Anfrage",
        "Réponse automatique : votre demande",
        "Absence : votre demande",
        "Respuesta automática: su consulta",
        "Fuori sede",
        "Risposta automatica: richiesta",
        "Automatisch antwoord: uw vraag",
        "Frånvaro",
        "Autosvar: Ärende",
        "Fraværende: sak",
        "Poza biurem: zapytanie",
        "自动回复: 您的问题",
        "自動回覆：您的問題",
        "自動応答: お問い合わせ",
        "Автоответ: ваш запрос",
        "RE: Automatic reply: ticket",
    ],
)
def test_out_of_office_subjects(subject: str) -> None:
    result = screen(message(human_headers(Subject=subject)))
    assert result.verdict == "auto-reply"
    assert result.out_of_office is True
    assert is_out_of_office_subject(subject)


@pytest.mark.parametrize(
    "subject",
    [
        "Absence request for next week",
        "Re: our out-of-office policy",
        "Question about vacation days",
        "Why did I get an automatic reply?",
    ],
)
def test_human_subjects_mentioning_absence_are_human(subject: str) -> None:
    # Only a subject that *starts* with an out-of-office phrase counts.
    assert screen(message(human_headers(Subject=subject))).verdict == "human"


def test_out_of_office_with_auto_submitted_is_flagged_and_names_header() -> None:
    msg = message(
        human_headers(
            Subject="Automatic reply: ticket", Auto_Submitted="auto-replied", In_Reply_To="<t-1@desk.example>"
        )
    )
    result = screen_message(msg, own_addresses=OWN, own_domains=frozenset({"desk.example"}))
    assert result.verdict == "auto-reply"
    assert result.out_of_office is True
    assert result.reason == "Auto-Submitted: auto-replied"
    assert result.original_message_id == "t-1@desk.example"


def test_our_loop_header_is_a_loop() -> None:
    msg = message(human_headers(X_Maildesk_Loop="desk-01"))
    result = screen(msg, loop_value="desk-01")
    assert result.verdict == "loop"
    assert "X-Maildesk-Loop: desk-01" in result.reason


def test_another_instances_loop_header_is_not_our_loop() -> None:
    msg = message(human_headers(X_Maildesk_Loop="other-desk"))
    assert screen(msg, loop_value="desk-01").verdict == "human"


def test_custom_loop_header_name() -> None:
    msg = message(human_headers(X_Loop="desk-01"))
    assert screen(msg, loop_header="X-Loop", loop_value="desk-01").verdict == "loop"


@pytest.mark.parametrize("sender", ["Support <SUPPORT@desk.example>", "billing@desk.example"])
def test_from_our_own_address_is_a_loop(sender: str) -> None:
    result = screen(message(human_headers(From=sender)))
    assert result.verdict == "loop"
    assert "own address" in result.reason


def test_message_id_in_our_domain_is_a_loop() -> None:
    msg = message(human_headers(Message_ID="<reply-99.abc@mail.desk.example>"))
    result = screen_message(msg, own_addresses=OWN, own_domains=frozenset({"mail.desk.example"}))
    assert result.verdict == "loop"
    assert screen(msg).verdict == "human"  # without own_domains it is not recognised


def test_loop_beats_everything() -> None:
    msg = message(human_headers(X_Maildesk_Loop="desk-01", Auto_Submitted="auto-replied", Precedence="bulk"))
    assert screen(msg, loop_value="desk-01").verdict == "loop"


def test_dsn_is_a_bounce_although_return_path_is_empty() -> None:
    result = screen(dsn([("Gone@Example.org", "failed", "5.1.1")]))
    assert result.verdict == "bounce"
    assert result.addresses == ("gone@example.org",)
    assert result.permanent is True
    assert result.original_message_id == "abc123@desk.example"
    assert "5.1.1" in result.reason
    assert is_automatic(result)


def test_delayed_dsn_is_a_bounce_that_is_not_permanent() -> None:
    result = screen(dsn([("slow@example.org", "delayed", "4.4.7")]))
    assert result.verdict == "bounce"
    assert result.permanent is False
    assert result.addresses == ("slow@example.org",)


def test_mixed_dsn_lists_only_permanent_addresses() -> None:
    result = screen(dsn([("gone@example.org", "failed", "5.1.1"), ("slow@example.org", "delayed", "4.4.7")]))
    assert result.permanent is True and result.addresses == ("gone@example.org",)


ARF = """--B
Content-Type: text/plain

This is an email abuse report.

--B
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeFBL/1.0
Version: 1

--B
Content-Type: message/rfc822

From: support@desk.example
Message-ID: <arf-1@desk.example>
Subject: hi

hi
--B--
"""

MDN = """--B
Content-Type: text/plain

Your message was displayed.

--B
Content-Type: message/disposition-notification

Reporting-UA: pc.example; Mailer 1.0
Final-Recipient: rfc822; alice@customer.example
Original-Message-ID: <ack-7@desk.example>
Disposition: manual-action/MDN-sent-manually; displayed

--B--
"""


def test_arf_abuse_report() -> None:
    msg = message(
        human_headers(
            From="fbl@isp.example",
            Content_Type='multipart/report; report-type="feedback-report"; boundary=B',
            MIME_Version="1.0",
        ),
        ARF,
    )
    result = screen(msg)
    assert result.verdict == "auto-reply"
    assert "abuse report" in result.reason


def test_read_receipt() -> None:
    msg = message(
        human_headers(
            Subject="Read: your ticket",
            Content_Type="multipart/report; report-type=disposition-notification; boundary=B",
            MIME_Version="1.0",
        ),
        MDN,
    )
    result = screen(msg)
    assert result.verdict == "auto-reply"
    assert "read receipt" in result.reason
    assert result.original_message_id == "ack-7@desk.example"


def test_list_headers_do_not_hide_an_auto_reply() -> None:
    msg = message(human_headers(List_Id="<l.example>", Auto_Submitted="auto-replied"))
    assert screen(msg).verdict == "auto-reply"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x01\x02garbage",
        b"From: \xff\xfe\r\nSubject: \xc3\x28\r\nContent-Type: multipart/report; report-type=\r\n\r\n--",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
        + b"--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" * 500,
        b"Auto-Submitted: \r\nPrecedence: \xff\r\nReturn-Path: <<<\r\n\r\n",
    ],
)
def test_garbage_never_raises(raw: bytes) -> None:
    msg = replace(message(human_headers()), raw=raw)
    result = screen(msg)
    assert result.verdict in {"human", "auto-reply", "bounce", "list", "loop"}


def test_broken_message_object_yields_a_verdict_not_an_exception() -> None:
    msg = replace(message(human_headers()), headers=None)  # type: ignore[arg-type]
    result = screen(msg)
    assert result.verdict == "auto-reply"
    assert "screening failed" in result.reason
