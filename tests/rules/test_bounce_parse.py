"""parse_bounce: RFC 3464 reports and the common non-standard text reports."""

from __future__ import annotations

from dataclasses import replace

import pytest
from screen_mail import dsn, human_headers, message

from maildesk.errors import UnparseableMessage
from maildesk.message import parse_bytes
from maildesk.rules.bounce import flufl_scan, may_be_bounce, parse_bounce


def test_rfc3464_permanent_failure() -> None:
    info = parse_bounce(dsn([("Gone@Example.org", "failed", "5.1.1")]))
    assert info is not None
    assert info.format == "rfc3464"
    assert info.addresses == ("gone@example.org",)
    assert info.permanent is True
    assert info.permanent_addresses == ("gone@example.org",)
    assert info.status_codes == ("5.1.1",)
    assert "5.1.1" in info.diagnostic
    assert info.original_message_id == "abc123@desk.example"


def test_rfc3464_delay_is_not_permanent_and_suppresses_nothing() -> None:
    info = parse_bounce(dsn([("slow@example.org", "delayed", "4.4.7")], subject="Delayed Mail (still being retried)"))
    assert info is not None
    assert info.permanent is False
    assert info.addresses == ("slow@example.org",)
    assert info.permanent_addresses == ()


def test_rfc3464_failed_with_transient_status_is_not_permanent() -> None:
    info = parse_bounce(dsn([("full@example.org", "failed", "4.2.2")]))
    assert info is not None
    assert info.permanent is False
    assert info.permanent_addresses == ()


def test_rfc3464_mixed_recipients_only_permanent_ones_are_suppressible() -> None:
    info = parse_bounce(
        dsn(
            [
                ("gone@example.org", "failed", "5.1.1"),
                ("slow@example.net", "delayed", "4.4.1"),
                ("fine@example.com", "delivered", "2.0.0"),
            ]
        )
    )
    assert info is not None
    assert info.permanent is True
    assert info.addresses == ("gone@example.org", "slow@example.net")
    assert info.permanent_addresses == ("gone@example.org",)
    assert set(info.status_codes) == {"5.1.1", "4.4.1", "2.0.0"}


def test_rfc3464_success_report_changes_nothing() -> None:
    info = parse_bounce(dsn([("fine@example.com", "delivered", "2.0.0")], subject="Delivery Status Notification"))
    assert info is not None
    assert info.addresses == ()
    assert info.permanent is False


def test_original_message_id_from_text_rfc822_headers() -> None:
    info = parse_bounce(
        dsn([("gone@example.org", "failed", "5.1.1")], original_id="<hdr-only@desk.example>", original_part="headers")
    )
    assert info is not None and info.original_message_id == "hdr-only@desk.example"


QMAIL = """Hi. This is the qmail-send program at mail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<nobody@example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <support@desk.example>
From: support@desk.example
To: nobody@example.net
Message-ID: <q1@desk.example>
Subject: Ticket

Hello
"""

EXIM = """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  lost@example.com
    SMTP error from remote mail server after RCPT TO:<lost@example.com>:
    550 5.1.1 User unknown

------ This is a copy of the message, including all the headers. ------

From: support@desk.example
To: lost@example.com
Message-ID: <e1@desk.example>
Subject: hi

hi
"""

EXIM_DELAY = """This message was created automatically by mail delivery software.

A message that you sent has not yet been delivered to one or more of its
recipients after more than 24 hours on the queue on mx.example.com.

The address to which the message has not yet been delivered is:

  later@example.com
    host mx.example.com [192.0.2.1]: Connection timed out

No action is required on your part. Delivery attempts will continue for
some time, and this warning may be repeated at intervals if the message
remains undelivered. Eventually the mail delivery software will give up,
and when that happens, the message will be returned to you.
"""

POSTFIX_TEXT = """This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<nouser@example.com>: host mx2.example.com[192.0.2.7] said: 550 5.1.1
    <nouser@example.com>: Recipient address rejected: User unknown (in reply to
    RCPT TO command)
"""

GMAIL = """Delivery to the following recipient failed permanently:

     typo@exmaple.com

Technical details of permanent failure:
DNS Error: Address resolution of exmaple.com. failed: Domain name not found

----- Original message -----

From: support@desk.example
To: typo@exmaple.com
Message-ID: <g1@desk.example>
Subject: Your ticket

body
"""

GMAIL_DELAY = """Delivery to the following recipient has been delayed:

     busy@example.org

Message will be retried for 2 more day(s)
"""

OFFICE365 = """Delivery has failed to these recipients or groups:

someone.gone@contoso.example
The email address you entered couldn't be found. Please check the recipient's email address \
and try to resend the message.

Diagnostic information for administrators:

Generating server: EXCH01.contoso.example

someone.gone@contoso.example
Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'

Original message headers:

From: support@desk.example
Message-ID: <o1@desk.example>
"""

SENDMAIL = """The original message was received at Mon, 3 Jun 2024 10:00:00 GMT

   ----- The following addresses had permanent fatal errors -----
<dead@example.edu>
    (reason: 550 5.1.1 <dead@example.edu>... User unknown)

   ----- Transcript of session follows -----
... while talking to mx.example.edu.:
>>> RCPT To:<dead@example.edu>
<<< 550 5.1.1 <dead@example.edu>... User unknown
"""


@pytest.mark.parametrize(
    ("sender", "subject", "body", "fmt", "address", "permanent", "original"),
    [
        (
            "MAILER-DAEMON@mail.example.net",
            "failure notice",
            QMAIL,
            "qmail",
            "nobody@example.net",
            True,
            "q1@desk.example",
        ),
        (
            "Mail Delivery System <Mailer-Daemon@mx.example.com>",
            "Mail delivery failed: returning message to sender",
            EXIM,
            "exim",
            "lost@example.com",
            True,
            "e1@desk.example",
        ),
        (
            "Mail Delivery System <Mailer-Daemon@mx.example.com>",
            "Warning: message 1abc delayed 24 hours",
            EXIM_DELAY,
            "exim",
            "later@example.com",
            False,
            "",
        ),
        (
            "MAILER-DAEMON@mx.example.com (Mail Delivery System)",
            "Undelivered Mail Returned to Sender",
            POSTFIX_TEXT,
            "postfix",
            "nouser@example.com",
            True,
            "",
        ),
        (
            "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
            "Delivery Status Notification (Failure)",
            GMAIL,
            "gmail",
            "typo@exmaple.com",
            True,
            "g1@desk.example",
        ),
        (
            "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
            "Delivery Status Notification (Delay)",
            GMAIL_DELAY,
            "gmail",
            "busy@example.org",
            False,
            "",
        ),
        (
            "postmaster@contoso.example",
            "Undeliverable: Your ticket",
            OFFICE365,
            "office365",
            "someone.gone@contoso.example",
            True,
            "o1@desk.example",
        ),
        (
            "Mail Delivery Subsystem <MAILER-DAEMON@example.edu>",
            "Returned mail: see transcript for details",
            SENDMAIL,
            "sendmail",
            "dead@example.edu",
            True,
            "",
        ),
    ],
)
def test_text_reports(
    sender: str, subject: str, body: str, fmt: str, address: str, permanent: bool, original: str
) -> None:
    msg = message({"From": sender, "To": "support@desk.example", "Subject": subject, "Return-Path": "<>"}, body)
    info = parse_bounce(msg)
    assert info is not None
    assert info.format == fmt
    assert info.addresses == (address,)
    assert info.permanent is permanent
    assert info.original_message_id == original
    assert info.permanent_addresses == ((address,) if permanent else ())


def test_x_failed_recipients_is_authoritative() -> None:
    msg = message(
        {
            "From": "Mail Delivery System <Mailer-Daemon@mx.example.com>",
            "To": "support@desk.example",
            "Subject": "Mail delivery failed: returning message to sender",
            "X-Failed-Recipients": "Real.Target@example.com",
        },
        EXIM.replace("lost@example.com", "real.target@example.com") + "\nCc: bystander@example.com\n",
    )
    info = parse_bounce(msg)
    assert info is not None and info.addresses == ("real.target@example.com",)


def test_bounce_subject_from_system_without_details_is_still_a_bounce() -> None:
    msg = message(
        {
            "From": "MAILER-DAEMON@example.com",
            "To": "support@desk.example",
            "Subject": "Undelivered Mail Returned to Sender",
        },
        "some text\n",
    )
    info = parse_bounce(msg)
    assert info is not None
    assert info.addresses == () and info.permanent is None and info.format == "unrecognised"


def test_human_mail_mentioning_delivery_failure_is_not_a_bounce() -> None:
    body = "Hi, your courier says: Delivery failed 3 attempts. Could you resend the parcel?\n"
    assert parse_bounce(message(human_headers(Subject="Failed delivery of my parcel"), body)) is None
    assert parse_bounce(message(human_headers(), "Hello, how are you?\n")) is None


@pytest.mark.parametrize(
    "raw",
    [
        b'From: x@y\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="\r\n\r\n--\r\n',
        b"From: MAILER-DAEMON@x\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822;\r\n"
        b"Action: \xff\xfe\r\nStatus: 9.9.9.9\r\n",
        b"From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; boundary=a\r\n\r\n"
        + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 300,
        b"Subject: Undeliverable\r\nFrom: postmaster@x\r\nContent-Type: text/plain; charset=x-nonexistent\r\n\r\n"
        b"\x00\x01\x02 <a@b.c>: 550",
    ],
)
def test_garbage_never_raises(raw: bytes) -> None:
    try:
        msg = parse_bytes(raw)
    except UnparseableMessage:
        # The pipeline quarantines these; screening must still survive the raw bytes.
        msg = replace(message(human_headers()), raw=raw)
    info = parse_bounce(msg)
    assert info is None or isinstance(info.addresses, tuple)
    assert isinstance(flufl_scan(msg), frozenset)


YAHOO = """Message from yahoo.com.
Unable to deliver message to the following address(es).

<gone.user@yahoo.example>:
Remote host said: 554 delivery error: dd This user doesn't have a yahoo.com account [-5] - mta1.mail.example

--- Original message follows.

From: support@desk.example
Message-ID: <y1@desk.example>
Subject: hi
"""


def test_flufl_fallback_for_a_format_without_own_rule() -> None:
    msg = message({"From": "MAILER-DAEMON@yahoo.com", "To": "support@desk.example", "Subject": "Failure Notice"}, YAHOO)
    info = parse_bounce(msg)
    assert info is not None
    assert info.format == "flufl"
    assert info.addresses == ("gone.user@yahoo.example",)
    assert info.permanent is True
    assert info.permanent_addresses == ("gone.user@yahoo.example",)


def test_flufl_is_not_asked_about_mail_without_a_mail_system_signal() -> None:
    # flufl.bounce alone reports a "failure" for some ordinary mail; it only runs behind our gate.
    msg = message(human_headers(Subject="Failure Notice"), YAHOO)
    assert parse_bounce(msg) is None


def test_plain_mail_is_not_parsed_again_but_any_delivery_status_part_is() -> None:
    # The gate in front of the second (stdlib) parse must let through every mail the full
    # reader could call a bounce: a mail-system signal, or a delivery-status part anywhere.
    assert not may_be_bounce(message(human_headers(), "a\n" * 1000))
    assert not may_be_bounce(message(human_headers(Subject="Undeliverable: my parcel"), "Delivery failed.\n"))
    assert may_be_bounce(dsn([("gone@example.org", "failed", "5.1.1")]))
    assert may_be_bounce(message({**human_headers(), "Return-Path": "<>"}))
    nested = message(
        {**human_headers(), "Content-Type": 'multipart/mixed; boundary="M"'},
        "--M\nContent-Type: text/plain\n\nsee below\n\n--M\nContent-Type: Message/Delivery-Status\n\n"
        "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; gone@example.org\nAction: failed\n"
        "Status: 5.1.1\n\n--M--\n",
    )
    assert may_be_bounce(nested)
    info = parse_bounce(nested)
    assert info is not None and info.format == "rfc3464" and info.addresses == ("gone@example.org",)
