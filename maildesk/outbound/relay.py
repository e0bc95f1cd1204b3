"""Handing finished mail to the smart host (SMTP relay), or to a local Maildir.

Owns smtplib and the meaning of the relay's answers: `deliver` returns a `DeliveryResult`
that says whether the mail went, and if not whether trying again can help. Connection
problems, timeouts, TLS and AUTH failures, 4xx answers and a refused MAIL FROM are
temporary (they are about our set-up or the relay's state, not this mail: retrying after
the operator fixes it must work). Only a 5xx answer to RCPT TO or DATA is permanent. With
no relay configured, mail is written to a Maildir folder (the zero-setup default), which
an operator can read with any mail client.

It must not: touch the database, decide retries or backoff (that is `sender.py`), or change
the bytes it is given (beyond the Return-Path / X-Envelope-To lines a Maildir copy gets).
"""

from __future__ import annotations

import hashlib
import mailbox
import os
import smtplib
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from maildesk.config import OutboundSettings
from maildesk.sanitize import escape_header_text
from maildesk.spool.fsio import syncfs, write_all

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    permanent: bool = False
    code: int = 0
    message: str = ""
    # recipients the relay refused while it accepted others: address -> (code, text)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    # recipients refused permanently at RCPT TO (safe to suppress)
    permanent_recipients: tuple[str, ...] = ()


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return escape_header_text(value)[:500]


def _answer(code: int, text: bytes | str) -> str:
    return f"{code} {_text(text)}".strip()


def maildir_name(raw: bytes, recipients: Sequence[str]) -> str:
    """The Maildir file name of one outbox row's copy: derived from its exact bytes (which
    carry the Message-ID derived from the row's idempotency key) and its recipients, so a
    second delivery of the same row finds the first."""
    digest = hashlib.sha256(raw)
    digest.update("\0".join(recipients).encode("utf-8", "surrogateescape"))
    return f"maildesk-{digest.hexdigest()[:40]}"


def deliver_maildir(raw: bytes, sender: str, recipients: Sequence[str], folder: Path) -> DeliveryResult:
    """Write one copy into the Maildir `folder` (created when missing), exactly once: a
    group of one for `deliver_maildir_many`.

    The file name comes from `maildir_name`: a row delivered again after a crash (found in
    `sending` when its lease ran out) finds its copy, in new/ or read into cur/, and leaves
    no second one (issue 16)."""
    return deliver_maildir_many([(raw, sender, recipients)], folder)[0]


def _envelope(sender: str, recipients: Sequence[str]) -> bytes:
    return (
        f"Return-Path: <{escape_header_text(sender)}>\r\nX-Envelope-To: {escape_header_text(', '.join(recipients))}\r\n"
    ).encode()


def deliver_maildir_many(mails: Sequence[tuple[bytes, str, Sequence[str]]], folder: Path) -> list[DeliveryResult]:
    """`deliver_maildir` for a group of `(raw, sender, recipients)`, one result each, in
    order: the same names and the same exactly-once rule, but the copies are all written in
    tmp/ first and made durable by one syncfs(2) (a single journal commit, where an fsync
    per file commits it once per file; an fsync each when syncfs is missing or fails), and
    only then linked into new/. A copy that cannot be written or synced fails alone."""
    results: list[DeliveryResult | None] = [None] * len(mails)
    try:
        mailbox.Maildir(str(folder), create=True).close()
    except OSError as exc:
        return [DeliveryResult(False, False, 0, f"cannot write to Maildir {folder}: {exc}") for _ in mails]
    written: list[tuple[int, Path, str, int]] = []  # (index, tmp path, name, open descriptor)
    names: set[str] = set()
    suffix = f"{os.getpid()}.{threading.get_ident()}"
    try:
        # Copies a mail client has read (moved to cur/, NAME or NAME:2,FLAGS): one listing
        # for the group. A copy still in new/ makes the link below fail: found all the same.
        try:
            with os.scandir(folder / "cur") as entries:
                read = {entry.name.partition(":")[0] for entry in entries}
        except FileNotFoundError:  # as deliver_maildir: a Maildir without cur/ has nothing read
            read = set()
        for i, (raw, sender, recipients) in enumerate(mails):
            name = maildir_name(raw, recipients)
            if name in names or name in read:
                results[i] = DeliveryResult(True, False, 250, f"already in {folder} as {name}")
                continue
            tmp = folder / "tmp" / f"{name}.{suffix}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            except OSError as exc:
                results[i] = DeliveryResult(False, False, 0, f"cannot write to Maildir {folder}: {exc}")
                continue
            written.append((i, tmp, name, fd))
            names.add(name)
            try:
                write_all(fd, _envelope(sender, recipients) + raw)
            except OSError as exc:
                results[i] = DeliveryResult(False, False, 0, f"cannot write to Maildir {folder}: {exc}")
        pending = [w for w in written if results[w[0]] is None]
        if pending and not (len(pending) > 1 and syncfs(pending[0][3])):
            for i, _tmp, _name, fd in pending:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    results[i] = DeliveryResult(False, False, 0, f"cannot write to Maildir {folder}: {exc}")
        for i, tmp, name, _fd in written:
            if results[i] is not None:
                continue
            try:
                os.link(tmp, folder / "new" / name)
            except FileExistsError:
                results[i] = DeliveryResult(True, False, 250, f"already in {folder} as {name}")
            except OSError as exc:
                results[i] = DeliveryResult(False, False, 0, f"cannot write to Maildir {folder}: {exc}")
            else:
                results[i] = DeliveryResult(True, False, 250, f"written to {folder} as {name}")
    finally:
        for _i, tmp, _name, fd in written:
            os.close(fd)
            tmp.unlink(missing_ok=True)
    return [r if r is not None else DeliveryResult(False, False, 0, "not delivered") for r in results]


def tls_context() -> ssl.SSLContext:
    """The system's trust store; certificates and host names are always verified.

    Building one costs tens of milliseconds: long-lived callers make it once and pass it in.
    """
    return ssl.create_default_context()


def _connect(
    settings: OutboundSettings, timeout: float, local_hostname: str | None, context: ssl.SSLContext | None
) -> smtplib.SMTP:
    if settings.security == "none":
        return smtplib.SMTP(settings.relay_host, settings.relay_port, local_hostname=local_hostname, timeout=timeout)
    tls = context or tls_context()
    if settings.security == "ssl":
        return smtplib.SMTP_SSL(
            settings.relay_host, settings.relay_port, local_hostname=local_hostname, timeout=timeout, context=tls
        )
    smtp = smtplib.SMTP(settings.relay_host, settings.relay_port, local_hostname=local_hostname, timeout=timeout)
    try:
        smtp.ehlo()
        smtp.starttls(context=tls)
        smtp.ehlo()
    except BaseException:
        smtp.close()
        raise
    return smtp


def deliver_smtp(
    raw: bytes,
    sender: str,
    recipients: Sequence[str],
    settings: OutboundSettings,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    local_hostname: str | None = None,
    context: ssl.SSLContext | None = None,
) -> DeliveryResult:
    """One SMTP transaction with the relay in `settings` (`context`: TLS trust, default the system's)."""
    smtp: smtplib.SMTP | None = None
    head = raw.split(b"\r\n\r\n", 1)[0]
    utf8 = not head.isascii() or not all(a.isascii() for a in (sender, *recipients))
    options = ["SMTPUTF8"] if utf8 else []
    try:
        smtp = _connect(settings, timeout, local_hostname, context)
        if settings.username:
            smtp.login(settings.username, settings.password)
        refused = smtp.sendmail(sender, list(recipients), raw, mail_options=options)
    except (TimeoutError, smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        return _failure(exc, settings)
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
    if refused:
        answers, permanent, detail = _answers(refused)
        return DeliveryResult(True, False, 250, f"accepted; some recipients refused: {detail}", answers, permanent)
    return DeliveryResult(True, False, 250, "accepted by relay")


def _answers(
    refused: dict[str, tuple[int, bytes]],
) -> tuple[dict[str, tuple[int, str]], tuple[str, ...], str]:
    """The relay's answers per refused recipient, the permanently refused ones, and a one-line summary."""
    answers = {r: (int(c), _text(t)) for r, (c, t) in refused.items()}
    permanent = tuple(r for r, (c, _) in answers.items() if c >= 500)
    detail = "; ".join(f"{r}: {_answer(c, t)}" for r, (c, t) in answers.items())
    return answers, permanent, detail


def _failure(exc: BaseException, settings: OutboundSettings) -> DeliveryResult:
    """What a failed SMTP transaction means: only 5xx to RCPT TO (all of them) or DATA is permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        answers, permanent, detail = _answers(exc.recipients)
        all_permanent = len(permanent) == len(answers)
        code = max(c for c, _ in answers.values()) if answers else 0
        return DeliveryResult(False, all_permanent, code, f"recipients refused: {detail}", answers, permanent)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return DeliveryResult(False, False, exc.smtp_code, f"sender refused: {_answer(exc.smtp_code, exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPDataError):
        return DeliveryResult(
            False, exc.smtp_code >= 500, exc.smtp_code, f"data refused: {_answer(exc.smtp_code, exc.smtp_error)}"
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryResult(
            False, False, exc.smtp_code, f"relay login failed: {_answer(exc.smtp_code, exc.smtp_error)}"
        )
    if isinstance(exc, smtplib.SMTPResponseException):  # HELO, STARTTLS, RSET: the relay's state, not this mail
        return DeliveryResult(False, False, exc.smtp_code, f"relay answered {_answer(exc.smtp_code, exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryResult(False, False, 0, f"relay lacks a needed extension: {_text(str(exc))}")
    return DeliveryResult(
        False,
        False,
        0,
        f"cannot reach relay {settings.relay_host}:{settings.relay_port}: {type(exc).__name__}: {_text(str(exc))}",
    )


def deliver(
    raw: bytes,
    sender: str,
    recipients: Sequence[str],
    settings: OutboundSettings,
    *,
    maildir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
) -> DeliveryResult:
    """Send through the relay, or into `maildir` when no relay_host is configured."""
    if not settings.relay_host:
        if maildir is None:
            return DeliveryResult(False, False, 0, "no relay_host configured and no Maildir folder given")
        return deliver_maildir(raw, sender, recipients, maildir)
    return deliver_smtp(
        raw, sender, recipients, settings, timeout=timeout, context=context, local_hostname=local_hostname
    )
