"""Draining the outbox: claim due rows, hand them to the relay, record what happened.

Owns the delivery state machine of an `OutboxItem`:

    queued --claim (attempts+1, COMMIT)--> sending --relay ok--> sent
                                              |--temporary--> queued (next_try = backoff)
                                              |--permanent or max_attempts--> failed
    sending (lease ran out: the sender died mid-send) --recover--> queued + "send-interrupted"

The attempt is committed before SMTP starts, so a crash is always visible: the row stays in
`sending`. While sending, `next_try` holds the lease's end; a row whose lease ran out is put
back (it may or may not have gone out; its stable Message-ID lets receivers dedupe). On
PostgreSQL rows are claimed with FOR UPDATE SKIP LOCKED so several nodes can drain one
outbox. A permanent failure is recorded on the ticket, the refused address is suppressed,
and the agent is told with a `bounce_notice` (to the assignee; else the active agents of
the ticket's queue; else all active agents, at most five; else only the event).

Between rounds it waits on its wake-up `Signal` (rung after each commit that queued a row:
in this process by the store's commit hook, from other processes through `wake.sock` or,
on PostgreSQL, LISTEN/NOTIFY), until the earliest queued row is due, and at most
`outbound.safety_net_interval` seconds: a lost wake-up delays a mail by that much, never
loses it.

It must not: compose customer mail (that is `mailer.py`), decide limits, or sleep in tests
(time comes from the injected clock; `run_forever` waits on the stop event).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from maildesk.clock import utcnow
from maildesk.config import Settings
from maildesk.logctx import about, about_values
from maildesk.outbound import relay
from maildesk.outbound.context import BounceInput
from maildesk.outbound.mailer import COMPOSE_ERRORS, Mailer, Recipient, SendRequest, compose_failed
from maildesk.store import Session
from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store.db import Store, is_unavailable
from maildesk.store.models import OutboxItem, Ticket
from maildesk.wakeup import Signal

MAILDIR_LEASE = 30.0  # seconds a row is claimed for a local Maildir delivery (no relay_host)
MAILDIR_BATCH = 20  # rows claimed (and recorded) together for the local Maildir: 20 file writes fit the lease
log = logging.getLogger("maildesk.outbound.sender")

Clock = Callable[[], datetime]
Deliver = Callable[[bytes, str, Sequence[str]], relay.DeliveryResult]

MAX_BACKOFF_SECONDS = 6 * 3600.0
NOTICE_TEMPLATE = "bounce_notice"


@dataclass(frozen=True)
class Claimed:
    """A snapshot of a claimed row: what the relay needs, outside any transaction."""

    id: int
    raw: bytes
    sender: str
    recipients: tuple[str, ...]
    attempts: int
    ticket_number: int | None
    template: str
    message_id: str


@dataclass
class SendCounts:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    recovered: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.sent + self.deferred + self.failed

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "deferred": self.deferred, "failed": self.failed, "recovered": self.recovered}


def backoff_seconds(attempts: int, base: float, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """`base * 2**(attempts-1)`, capped: 30 s, 1 min, 2 min, … for base 30."""
    return float(min(cap, base * 2.0 ** max(0, attempts - 1)))


def _sent_data(
    outbox_id: int,
    template: str,
    message_id: str,
    attempts: int,
    recipients: Sequence[str],
    result: relay.DeliveryResult,
) -> dict[str, object]:
    """The `mail-sent` event's data."""
    return {
        "outbox_id": outbox_id,
        "template": template,
        "message_id": message_id,
        "attempts": attempts,
        "recipients": list(recipients),
        "relay": result.message[:300],
    }


class OutboxSender:
    """Sends due outbox rows through the relay (or the local Maildir)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        deliver: Deliver | None = None,
        mailer: Mailer | None = None,
        timeout: float = relay.DEFAULT_TIMEOUT,
        poll_interval: float | None = None,
        wakeup: Signal | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.timeout = timeout
        # the safety net: the longest wait without a wake-up
        self.poll_interval = settings.outbound.safety_net_interval if poll_interval is None else poll_interval
        self.wakeup = wakeup or Signal()
        # How long a row stays claimed: a relay may take two timeouts; a local Maildir write
        # takes milliseconds, so a node that died mid-write gives its row back sooner.
        self.lease = timedelta(seconds=2 * timeout + 60 if settings.outbound.relay_host else MAILDIR_LEASE)
        self._deliver = deliver or self._relay
        self._tls = (
            relay.tls_context() if settings.outbound.relay_host and settings.outbound.security != "none" else None
        )
        self._ehlo_name = socket.getfqdn()  # looked up once: it costs a DNS query per call
        self._mailer = mailer
        self.totals = SendCounts()

    @property
    def mailer(self) -> Mailer:
        if self._mailer is None:
            self._mailer = Mailer(self.settings)
        return self._mailer

    def _relay(self, raw: bytes, sender: str, recipients: Sequence[str]) -> relay.DeliveryResult:
        maildir: Path = self.settings.outgoing_maildir
        return relay.deliver(
            raw,
            sender,
            recipients,
            self.settings.outbound,
            maildir=maildir,
            timeout=self.timeout,
            context=self._tls,
            local_hostname=self._ehlo_name,
        )

    # -- recovery ----------------------------------------------------------------------

    def recover(self) -> int:
        """Put rows whose sender died mid-send back in the queue, each with an event."""
        now = self.clock()
        with self.store.session() as session:
            rows = oq.stale_sending(session, now)
            for row in rows:
                row.state = "queued"
                row.next_try = now
                q.add_event(
                    session,
                    row.ticket_number,
                    "send-interrupted",
                    {
                        "outbox_id": row.id,
                        "template": row.template,
                        "message_id": row.message_id,
                        "attempts": row.attempts,
                        "detail": "the sender stopped while this mail was being handed to the relay; it may or may "
                        "not have gone out, so it is sent again with the same Message-ID (receivers dedupe)",
                    },
                    now,
                )
                log.warning("outbox row %s was interrupted while sending; queued again", row.id)
        self.totals.recovered += len(rows)
        return len(rows)

    # -- one mail ----------------------------------------------------------------------

    def _claim(self) -> Claimed | None:
        found = self._claim_many(1)
        return found[0] if found else None

    def _claim_many(self, limit: int) -> list[Claimed]:
        """Claim up to `limit` due rows in one transaction (state `sending`, one more attempt,
        the lease in `next_try`); committed before any is handed over."""
        now = self.clock()
        with self.store.session() as session:
            rows = oq.claim_due_rows(session, now, limit, now + self.lease)  # the lease: then recover() may take it
        claimed = [
            Claimed(
                id=row_id,
                raw=raw,
                sender=sender,
                recipients=tuple(recipients),
                attempts=attempts,
                ticket_number=ticket_number,
                template=template,
                message_id=message_id,
            )
            for row_id, raw, sender, recipients, attempts, ticket_number, template, message_id in rows
        ]
        # the commit happened on leaving the block: the attempt is durable before SMTP starts
        return claimed

    def _finish(self, item: Claimed, result: relay.DeliveryResult, counts: SendCounts) -> None:
        self._finish_all([(item, result)], counts)

    def _finish_all(self, done: list[tuple[Claimed, relay.DeliveryResult]], counts: SendCounts) -> None:
        """Record what happened to each handed-over row, in one transaction."""
        sent: list[tuple[Claimed, relay.DeliveryResult]] = []  # to every recipient: recorded as a group
        other: list[tuple[Claimed, relay.DeliveryResult]] = []
        for pair in done:
            (sent if pair[1].ok and not pair[1].permanent_recipients else other).append(pair)
        with self.store.session() as session:
            if sent:
                self._record_sent(session, sent, counts)
            rows = oq.load_outbox_rows(session, [item.id for item, _result in other]) if len(other) > 1 else []
            for item, result in other:
                self._record(session, item, result, counts)
            del rows  # held until here: the identity map keeps loaded rows only while referenced

    def _record_sent(
        self, session: Session, done: list[tuple[Claimed, relay.DeliveryResult]], counts: SendCounts
    ) -> None:
        """What `_record` does for mail handed over to every recipient, for a group at once
        and without loading the rows: `sent` (and the Message's `sent_at`) by two
        statements, a `mail-sent` event each from the claimed snapshot."""
        now = self.clock()
        marked = oq.mark_sent_many(session, [item.id for item, _result in done], now)
        for item, result in done:
            if item.id not in marked:
                log.warning("outbox row %s changed while it was being sent", item.id)
                continue
            data = _sent_data(item.id, item.template, item.message_id, item.attempts, item.recipients, result)
            q.add_event(session, item.ticket_number, "mail-sent", data, now)
            counts.sent += 1

    def _record(self, session: Session, item: Claimed, result: relay.DeliveryResult, counts: SendCounts) -> None:
        now = self.clock()
        out = self.settings.outbound
        row = session.get(OutboxItem, item.id)
        if row is None or row.state != "sending":
            log.warning("outbox row %s changed while it was being sent (%s)", item.id, row.state if row else "gone")
            return
        base = {
            "outbox_id": row.id,
            "template": row.template,
            "message_id": row.message_id,
            "attempts": row.attempts,
        }
        if result.ok:
            row.state, row.sent_at, row.last_error = "sent", now, ""
            oq.mark_message_sent(session, row.message_id, now)
            data = _sent_data(row.id, row.template, row.message_id, row.attempts, item.recipients, result)
            q.add_event(session, row.ticket_number, "mail-sent", data, now)
            if result.permanent_recipients:
                self._permanent(session, row, result, now)
            counts.sent += 1
            return
        row.last_error = result.message[:2000]
        if not result.permanent and row.attempts < out.max_attempts:
            delay = backoff_seconds(row.attempts, out.retry_base_seconds)
            row.state, row.next_try = "queued", now + timedelta(seconds=delay)
            q.add_event(
                session,
                row.ticket_number,
                "send-deferred",
                {**base, "error": result.message[:500], "retry_in_seconds": delay},
                now,
            )
            counts.deferred += 1
            return
        row.state = "failed"
        why = "permanent" if result.permanent else f"gave up after {row.attempts} attempts"
        q.add_event(
            session,
            row.ticket_number,
            "send-failed",
            {**base, "error": result.message[:500], "code": result.code, "why": why},
            now,
        )
        self._permanent(session, row, result, now)
        counts.failed += 1

    def _permanent(self, session: Session, row: OutboxItem, result: relay.DeliveryResult, now: datetime) -> None:
        """Suppress refused addresses and tell the agent (never about a failed notice)."""
        for address in result.permanent_recipients:
            code, text = result.refused.get(address, (result.code, result.message))
            oq.suppress(session, address, f"relay refused: {code} {text}"[:500], row.ticket_number, now)
            q.add_event(
                session,
                row.ticket_number,
                "address-suppressed",
                {"address": address.lower(), "code": code, "reason": text[:300], "outbox_id": row.id},
                now,
            )
        if row.ticket_number is None or row.template == NOTICE_TEMPLATE:
            return
        address = (result.permanent_recipients or tuple(row.recipients or ()) or ("",))[0]
        reason = result.refused.get(address, (result.code, result.message))[1] if result.refused else result.message
        if result.code and not reason.startswith(str(result.code)):
            reason = f"{result.code} {reason}"
        notify_agents_of_bounce(
            self.mailer,
            session,
            row.ticket_number,
            address,
            reason,
            key=f"bounce-notice:{row.id}",
            now=now,
            outbox_id=row.id,
        )

    # -- loops -------------------------------------------------------------------------

    def send_due(self, limit: int = 50) -> dict[str, int]:
        """Send up to `limit` due mails. Through a relay, one claim-send-record cycle each
        (a relay may take two timeouts a mail: the lease covers one). Into the local Maildir,
        up to `MAILDIR_BATCH` rows per claim and one transaction to record them: a file
        write takes a millisecond, two commits a mail cost more than the delivery."""
        counts = SendCounts()
        per_claim = 1 if self.settings.outbound.relay_host else MAILDIR_BATCH
        remaining = limit
        while remaining > 0:
            wanted = min(per_claim, remaining)
            items = self._claim_many(wanted)
            if not items:
                break
            remaining -= len(items)
            done = self._hand_over_all(items)
            self._finish_all(done, counts)
            if len(items) < wanted:
                break  # nothing more was due
        self.totals.sent += counts.sent
        self.totals.deferred += counts.deferred
        self.totals.failed += counts.failed
        return counts.as_dict()

    def _hand_over_all(self, items: list[Claimed]) -> list[tuple[Claimed, relay.DeliveryResult]]:
        """Deliver claimed rows: into the local Maildir as one group (one sync for all the
        copies, `relay.deliver_maildir_many`), otherwise one at a time."""
        maildir = self.settings.outgoing_maildir
        if len(items) < 2 or self._deliver != self._relay or self.settings.outbound.relay_host or maildir is None:
            return [(item, self._hand_over(item)) for item in items]
        try:
            results = relay.deliver_maildir_many([(i.raw, i.sender, i.recipients) for i in items], maildir)
        except Exception as exc:  # noqa: BLE001 - a delivery bug must not leave the rows in sending
            log.exception("delivery of outbox rows %s raised", [i.id for i in items])
            failed = relay.DeliveryResult(False, False, 0, f"delivery raised {type(exc).__name__}: {exc}")
            return [(item, failed) for item in items]
        return list(zip(items, results, strict=True))

    def _hand_over(self, item: Claimed) -> relay.DeliveryResult:
        with about(about_values(ticket=item.ticket_number, message_id=item.message_id)):
            try:
                return self._deliver(item.raw, item.sender, item.recipients)
            except Exception as exc:  # noqa: BLE001 - a delivery bug must not leave the row in sending
                log.exception("delivery of outbox row %s raised", item.id)
                return relay.DeliveryResult(False, False, 0, f"delivery raised {type(exc).__name__}: {exc}")

    def run_forever(self, stop: threading.Event) -> None:
        """Drain until `stop` is set; recovers interrupted rows at start and then now and again."""
        backoff = 0.5
        last_recover: datetime | None = None
        while not stop.is_set():
            try:
                now = self.clock()
                if last_recover is None or now - last_recover >= self.lease / 2:
                    self.recover()
                    last_recover = now
                done = self.send_due()
                backoff = 0.5
                if not sum(done.values()):
                    self.wakeup.wait(self._idle_wait(), stop)
            except Exception as exc:  # noqa: BLE001 - the sender never stops for one failure
                if is_unavailable(exc):
                    log.error("database unavailable, outbox waits: %s", str(exc).splitlines()[0][:300])
                else:
                    log.exception("outbox sender failed; retrying")
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _idle_wait(self) -> float:
        """How long to wait for a wake-up: until the earliest queued row is due (a retry's
        backoff), at most the safety net. A row due already but not claimable (another
        node holds it) gets the whole safety net: its holder sends it."""
        with self.store.reader() as session:
            due = oq.next_due(session)
        if due is None:
            return self.poll_interval
        now = self.clock()
        if due.tzinfo is None:  # SQLite keeps no offset; times are stored in UTC
            due = due.replace(tzinfo=now.tzinfo)
        seconds = (due - now).total_seconds()
        return self.poll_interval if seconds <= 0 else min(self.poll_interval, seconds + 0.01)


def notify_agents_of_bounce(
    mailer: Mailer,
    session: Session,
    ticket_number: int,
    address: str,
    reason: str,
    *,
    key: str,
    now: datetime,
    outbox_id: int | None = None,
) -> None:
    """Tell the ticket's assignee (else the queue's active agents) that mail to `address`
    failed for good. Used for relay refusals and for incoming delivery reports."""
    ticket = session.get(Ticket, ticket_number)
    if ticket is None:
        return
    if ticket.assignee:
        agents = [(ticket.assignee, oq.agent_by_email(session, ticket.assignee))]
    else:
        agents = [(a.email, a) for a in oq.agents_for_queue(session, ticket.queue)]
    if not agents:
        q.add_event(
            session,
            ticket_number,
            "agent-not-notified",
            {"outbox_id": outbox_id, "detail": "no assignee and no active agent to tell about the failed mail"},
            now,
        )
        return
    for email, agent in agents:
        try:
            request = SendRequest(
                key=f"{key}:{email.lower()}",
                ticket_number=ticket_number,
                template=NOTICE_TEMPLATE,
                to=Recipient(email, agent.name if agent else ""),
                automatic=True,
                reader_agent=Mailer.agent_input(agent, email),
                bounce=BounceInput(address=address, reason=reason[:500], at=now),
                kind="auto",
                internal=True,
            )
            mailer.send(session, request, now)
        except COMPOSE_ERRORS as exc:
            compose_failed(session, ticket_number, NOTICE_TEMPLATE, exc, now)
