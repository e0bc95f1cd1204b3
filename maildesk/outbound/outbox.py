"""The outbox: outgoing mail written as rows in the caller's transaction.

Owns `enqueue`: one `OutboxItem` (the exact bytes to send, envelope sender and recipients,
a UNIQUE idempotency key) plus one outgoing `Message` row on the ticket (so threading finds
our own Message-IDs when customers answer), both in the transaction of the change that
caused the mail — so a mail exists exactly when its cause was committed. A second enqueue
with the same key writes nothing. Suppressed recipients and the automatic-mail limits
(`rules/limits.py`) are checked here; mail that may not go is kept in state `held` with an
event saying why, never dropped silently.

It must not: talk SMTP (that is `relay.py` / `sender.py`), render templates, commit, or read
the clock (`now` is passed in).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maildesk.config import LimitSettings
from maildesk.outbound.compose import OutgoingMail, build_message
from maildesk.rules.limits import LimitPolicy, SentCounts, check_agent_limit, check_limits
from maildesk.store import Session
from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store.models import OutboxItem
from maildesk.threading.thread_index import thread_index_root

DEFAULT_LIMITS = LimitPolicy(5, 20, 10, 1000)  # without a policy (tests, tools): the built-in limits

Signer = Callable[[bytes], bytes]


def loop_id(secret: str) -> str:
    """This desk's stable X-Maildesk-Loop value; the same as `Settings.instance_id`, which
    the screen compares incoming mail with. Stable across restarts and nodes (derived from
    the signing secret) without revealing it."""
    return hashlib.sha256(("maildesk-loop:" + secret).encode()).hexdigest()[:20]


def nonce_for(key: str) -> str:
    """A Message-ID nonce derived from the idempotency key: the same logical mail always
    gets the same Message-ID, even when its cause is replayed."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def policy_from(limits: LimitSettings) -> LimitPolicy:
    return LimitPolicy(
        per_recipient_hour=limits.per_recipient_hour,
        per_recipient_day=limits.per_recipient_day,
        per_ticket_day=limits.per_ticket_day,
        global_hour=limits.global_hour,
        per_domain_hour=limits.per_domain_hour,
        per_agent_hour=limits.per_agent_hour,
    )


@dataclass(frozen=True)
class MessageFacts:
    """What the outgoing Message row records besides the bytes."""

    kind: str = "auto"  # auto | agent-reply
    text: str = ""
    html: str = ""
    internal: bool = False  # a mail to agents, not the customer


def _screen_recipients(
    session: Session,
    recipients: list[str],
    *,
    automatic: bool,
    ticket_number: int | None,
    policy: LimitPolicy | None,
    now: datetime,
    internal: bool = False,
    agents: set[str] | None = None,
) -> tuple[list[str], list[dict[str, str]]]:
    """Recipients that may get this mail, and the refused ones with the reason.

    Internal automatic mail to an active agent (a notification) has its own hourly cap and
    is added to `agents`, so it is logged without a ticket and never uses up the ticket's or
    a customer's budget."""
    allowed: list[str] = []
    refused: list[dict[str, str]] = []
    for rcpt in recipients:
        to_agent = automatic and internal and _active_agent(session, rcpt)
        if automatic and not to_agent:  # to a customer: suppression and limits in one statement
            suppression, (rh, rd, td, gh), (known, dh) = oq.recipient_facts(
                session,
                recipient=rcpt,
                ticket_number=ticket_number,
                now=now,
                global_cap=(policy or DEFAULT_LIMITS).global_hour,
            )
            _judge_automatic(policy, rcpt, suppression, _sent_counts(rh, rd, td, gh, known, dh), allowed, refused)
            continue
        suppression = q.is_suppressed(session, rcpt, now)
        if not automatic or (suppression is None and to_agent):
            if suppression is not None:
                refused.append({"recipient": rcpt, "reason": f"recipient {rcpt} is suppressed: {suppression.reason}"})
                continue
            if automatic:
                hour = oq.automatic_counts(session, recipient=rcpt, ticket_number=None, now=now)[0]
                verdict = check_agent_limit(policy or DEFAULT_LIMITS, hour, recipient=rcpt)
                if not verdict.allowed:
                    refused.append({"recipient": rcpt, "reason": verdict.reason})
                    continue
                if agents is not None:
                    agents.add(rcpt)
            allowed.append(rcpt)
            continue
        (rh, rd, td, gh), (known, dh) = oq.limit_facts(session, recipient=rcpt, ticket_number=ticket_number, now=now)
        _judge_automatic(policy, rcpt, suppression, _sent_counts(rh, rd, td, gh, known, dh), allowed, refused)
    return allowed, refused


def _sent_counts(rh: int, rd: int, td: int, gh: int, known: bool, dh: int) -> SentCounts:
    """The store's counts (`recipient_facts`, `limit_facts`) as the limits read them."""
    return SentCounts(recipient_hour=rh, recipient_day=rd, ticket_day=td, global_hour=gh, domain_hour=dh, known=known)


def _judge_automatic(
    policy: LimitPolicy | None,
    rcpt: str,
    suppression: q.SuppressionFacts | None,
    counts: SentCounts,
    allowed: list[str],
    refused: list[dict[str, str]],
) -> None:
    """Add `rcpt` to `allowed` or `refused` by the automatic-mail limits and its suppression."""
    decision = check_limits(
        policy or DEFAULT_LIMITS,
        counts,
        recipient=rcpt,
        suppressed=suppression is not None,
        suppressed_reason=suppression.reason if suppression is not None else "",
    )
    if decision.allowed:
        allowed.append(rcpt)
    else:
        refused.append({"recipient": rcpt, "reason": decision.reason})


def enqueue(
    session: Session,
    *,
    key: str,
    ticket_number: int | None,
    mail: OutgoingMail,
    template: str,
    automatic: bool,
    now: datetime,
    policy: LimitPolicy | None = None,
    signer: Signer | None = None,
    facts: MessageFacts | None = None,
    message_pk: int | None = None,
) -> OutboxItem | None:
    """Queue `mail` under the idempotency `key`; None when that key was queued before.

    Returns the new row: state `queued`, or `held` when no recipient may get it (suppressed,
    or over an automatic-mail limit), with an event on the ticket naming the reason.
    `policy` is the automatic-mail limit policy (default: the built-in limits); `signer`
    DKIM-signs the finished bytes. Raises `compose.HeaderInjection` for a bad address.
    """
    # No look-up first: Mailer.send checks the key before rendering, and a repeat here is
    # caught by the unique key below (the same answer: None).
    raw = build_message(mail, now=now)
    if signer is not None:
        raw = signer(raw)
    recipients = list(dict.fromkeys(a.lower() for a in (*mail.to, *mail.cc)))
    facts = facts or MessageFacts(kind="auto" if automatic else "agent-reply", text=mail.text, html=mail.html or "")
    agents: set[str] = set()
    allowed, refused = _screen_recipients(
        session,
        recipients,
        automatic=automatic,
        ticket_number=ticket_number,
        policy=policy,
        now=now,
        internal=facts.internal,
        agents=agents,
    )
    values = {
        "idempotency_key": key[:200],
        "ticket_number": ticket_number,
        "message_id": mail.message_id,
        "template": template[:100],
        "sender": mail.from_addr,
        "recipients": allowed or recipients,
        "raw": raw,
        "automatic": automatic,
        "state": "queued" if allowed else "held",
        "attempts": 0,
        "next_try": now,
        "last_error": "; ".join(r["reason"] for r in refused)[:2000] if refused else "",
        "created_at": now,
    }
    message = _message_row(ticket_number, mail, raw, recipients, template, facts, now)
    item = oq.add_unless_queued(session, key, values, message)
    if item is None:  # a concurrent enqueue of the same key
        return None
    if automatic and item.state == "queued":
        customers = [r for r in allowed if r not in agents]
        if customers:
            oq.record_automatic(session, item.id, customers, ticket_number, now)
        if agents:  # notifications: logged for the per-agent cap, not on the ticket's budget
            oq.record_automatic(session, item.id, sorted(agents), None, now, first=not customers)
    _record_queued(session, item, template, recipients, refused, now, message_pk)
    return item


def _message_row(
    ticket_number: int | None,
    mail: OutgoingMail,
    raw: bytes,
    recipients: list[str],
    template: str,
    facts: MessageFacts,
    now: datetime,
) -> dict[str, Any]:
    """The outgoing Message on the ticket (its column values), so threading knows our
    Message-ID when the customer answers."""
    return {
        "ticket_number": ticket_number,
        "direction": "out",
        "kind": facts.kind,
        "message_id": mail.message_id,
        "mid_hash": q.mid_hash(mail.message_id),
        "content_hash": hashlib.sha256(raw).hexdigest(),
        "raw": raw,
        "raw_size": len(raw),
        "subject": mail.subject[:2000],
        "sender": mail.from_addr.lower(),
        "sender_name": mail.from_name[:300],
        "recipients": recipients,
        "sent_at": None,
        "created_at": now,
        "source": f"outbox:{template}"[:200],
        "full_text": facts.text,
        "visible_text": facts.text,
        "html": facts.html,
        "thread_root": thread_index_root(mail.thread_index) if mail.thread_index else None,
        "screen": "human",
        "internal": facts.internal,
    }


def _record_queued(
    session: Session,
    item: OutboxItem,
    template: str,
    recipients: list[str],
    refused: list[dict[str, str]],
    now: datetime,
    message_pk: int | None,
) -> None:
    """The `mail-queued` event (with the recipients skipped), or `(automatic-)mail-held` with the reasons."""
    data: dict[str, Any] = {
        "outbox_id": item.id,
        "template": template,
        "message_id": item.message_id,
        "recipients": recipients,
        "automatic": item.automatic,
    }
    if item.state == "held":
        data["reasons"] = [r["reason"] for r in refused]
        event = "automatic-mail-held" if item.automatic else "mail-held"
        q.add_event(session, item.ticket_number, event, data, now, message_pk)
    else:
        if refused:
            data["skipped"] = refused
        q.add_event(session, item.ticket_number, "mail-queued", data, now, message_pk)


def _active_agent(session: Session, address: str) -> bool:
    agent = q.agent_by_email(session, address)
    return agent is not None and bool(agent.active)
