"""SMTP intake with aiosmtpd (the only module that imports it).

Accepts mail only for configured support addresses and domains (no open relay), answers
250 only after the message is durable in the spool's intake journal, and answers 451 4.3.0
for any failure of ours, never a 5xx and never internals. No database and no rules here: it
only spools.

Lines longer than RFC 5321's 1,000 octets are accepted (real clients send them: HTML on
one line, unwrapped base64): a line is bounded only by `smtp.max_message_size`, the bound
every message already has, so the longest accepted line costs no more memory than the
largest accepted message.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from maildesk.config import Settings
from maildesk.spool.files import Spool
from maildesk.spool.journal import SEGMENT_SIZE

log = logging.getLogger("maildesk.smtp")

TEMPFAIL = "451 4.3.0 Temporary local problem, please try again later"


class GroupWriter:
    """Group commit for all SMTP sessions: one thread appends whatever is queued to the
    spool's intake journal (one pwritev and one fdatasync, no file per message) and answers
    the whole group with one call into the event loop, so the loop never waits on the disk
    and each 250 waits for its own group. The worker's `Spool.claim()` turns journal records
    into spool files later.

    Hand-offs are per group, not per message: thread wake-ups and GIL hand-overs, not the
    disk, were most of the cost when each message went to the thread on its own.

    `on_durable` is called after each group that stored something, once it is synced (the
    worker's wake-up, `maildesk.wakeup`): never before the bytes are durable."""

    MAX_GROUP = 256

    def __init__(
        self, spool: Spool, *, segment_size: int = SEGMENT_SIZE, on_durable: Callable[[], None] | None = None
    ) -> None:
        self.spool = spool
        self.on_durable = on_durable
        self.journal = spool.journal_writer(segment_size)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: list[tuple[bytes, dict[str, Any], asyncio.AbstractEventLoop, asyncio.Future[str]]] = []
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="spool-sync", daemon=True)
        self._thread.start()

    async def put(self, raw: bytes, meta: dict[str, Any]) -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        with self._lock:
            if self._closing:
                raise RuntimeError("the spool writer is closed")
            self._pending.append((raw, meta, loop, future))
            if len(self._pending) == 1:
                self._wake.set()
        return await future

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            self.journal.open()  # a new segment at every start; the first group need not wait for it
        except Exception:  # noqa: BLE001 - retried by the first group, which answers 451 if it fails again
            log.exception("cannot start the intake journal")
        try:
            self._loop()
        finally:
            self.journal.close()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                group, self._pending = self._pending[: self.MAX_GROUP], self._pending[self.MAX_GROUP :]
                if not self._pending:
                    self._wake.clear()
                closing = self._closing
            if not group:
                if closing:
                    return
                continue
            try:
                results: list[Any] = self.journal.append([(raw, "smtp", meta) for raw, meta, _, _ in group])
            except Exception as exc:  # noqa: BLE001 - every waiting session gets an answer
                results = [exc] * len(group)
            if self.on_durable is not None and any(isinstance(r, str) for r in results):
                try:
                    self.on_durable()
                except Exception:  # noqa: BLE001 - a lost wake-up costs the safety net, not the mail
                    log.exception("waking the worker failed")
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[str], Any]]] = {}
            for (_, _, loop, future), result in zip(group, results, strict=True):
                by_loop.setdefault(loop, []).append((future, result))
            for loop, settled in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle_all, settled)
                except RuntimeError:
                    pass  # that loop is closed: its sessions are gone


def _settle_all(settled: list[tuple[asyncio.Future[str], Any]]) -> None:
    for future, result in settled:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def tempfail_reason(exc: BaseException) -> str:
    """Why intake answered 451, in words for `status` (never sent to the client)."""
    seen: BaseException | None = exc
    while seen is not None:  # the spool wraps OS errors: look through the chain
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the spool file system is full (no space left to store mail)"
        if isinstance(seen, OSError) and seen.errno == errno.EROFS:
            return "the spool file system is read-only"
        if isinstance(seen, OSError) and seen.errno in (errno.EACCES, errno.EPERM):
            return f"no permission to write the spool ({seen})"
        seen = seen.__cause__ or seen.__context__
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


class SpoolHandler:
    """aiosmtpd handler: recipient policy and durable acceptance."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        *,
        segment_size: int = SEGMENT_SIZE,
        on_spooled: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.writer = GroupWriter(spool, segment_size=segment_size, on_durable=on_spooled)
        self.accepted = 0
        self.refused = 0
        self.tempfailed = 0
        self.last_tempfail: dict[str, Any] | None = None  # {"at": epoch, "reason": why the last 451}

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not self.settings.is_support_address(address):
            self.refused += 1
            return f"550 5.1.1 <{address[:200]}>: recipient address not accepted here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        meta: dict[str, Any] = {
            "mail_from": envelope.mail_from or "",
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer": str(session.peer[0]) if session.peer else "",
            "helo": session.host_name or "",
        }
        try:
            entry_id = await self.writer.put(bytes(content or b""), meta)
        except Exception as exc:  # noqa: BLE001 - any failure of ours is temporary for the client
            self.tempfailed += 1
            self.last_tempfail = {"at": time.time(), "reason": tempfail_reason(exc)}
            log.exception("could not spool a message from %s", meta["peer"])
            return TEMPFAIL
        self.accepted += 1
        return f"250 2.0.0 OK queued as {entry_id}"

    async def handle_exception(self, error: Exception) -> str:
        self.tempfailed += 1
        self.last_tempfail = {"at": time.time(), "reason": tempfail_reason(error)}
        log.error("SMTP session error: %s: %s", type(error).__name__, error)
        return TEMPFAIL


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP with a per-listener line length limit instead of RFC 5321's 1,001.

    aiosmtpd reads a class attribute when it builds the connection's stream reader, so the
    limit is set on the instance before aiosmtpd's own `__init__` runs."""

    def __init__(self, handler: Any, *, line_length_limit: int, **kwargs: Any) -> None:
        self.line_length_limit = line_length_limit
        super().__init__(handler, **kwargs)


UNLIMITED_LINE = 64 * 1024 * 1024  # the line bound when smtp.max_message_size is 0 (no size limit)


def line_length_limit(max_message_size: int) -> int:
    """The longest line (CRLF included) the listener reads: a whole message's worth."""
    if max_message_size <= 0:
        return UNLIMITED_LINE
    return max(SMTP.line_length_limit, max_message_size + 2)


class SmtpIntake(Controller):
    """Lifecycle of the SMTP listener (runs its own event loop thread)."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        *,
        port: int | None = None,
        segment_size: int = SEGMENT_SIZE,
        on_spooled: Callable[[], None] | None = None,
    ) -> None:
        self.handler = SpoolHandler(settings, spool, segment_size=segment_size, on_spooled=on_spooled)
        smtp = settings.smtp
        self._tls: ssl.SSLContext | None = None
        if smtp.tls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(settings.resolve(smtp.tls_cert), settings.resolve(smtp.tls_key))
            self._tls = ctx
        domain = (
            settings.desk.support_addresses[0].partition("@")[2] if settings.desk.support_addresses else "localhost"
        )
        super().__init__(
            self.handler,
            hostname=smtp.host,
            port=port if port is not None else smtp.port,
            ready_timeout=10.0,
            server_hostname=domain,
            data_size_limit=smtp.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            ident="maildesk",
            tls_context=self._tls,
            require_starttls=bool(self._tls) and smtp.require_starttls,
        )

    def factory(self) -> SMTP:
        return IntakeSMTP(
            self.handler,
            line_length_limit=line_length_limit(self.handler.settings.smtp.max_message_size),
            **self.SMTP_kwargs,
        )

    def stop(self, no_assert: bool = False) -> None:
        """Stop accepting, then let the spool writer finish what it holds."""
        super().stop(no_assert=no_assert)
        self.handler.writer.close()
