"""Rate limits for automatic mail (acknowledgements, notifications, surveys).

Owns the decision "may one more automatic mail go to this recipient now?" from a policy
and counts of what was already sent. Pure: the counts come from the store, the caller
supplies them; this module never counts, never reads a clock and never sends.
A limit of 0 allows nothing in its window.

New tickets are limited too (`check_new_ticket`): a sender that opens more than
`new_tickets_per_sender_hour` tickets, or first-contact senders of one domain opening more
than `new_tickets_per_domain_hour`, get their mail stored without a new ticket; a known
customer is never held by the domain limit. There, 0 means no limit.

Flood control that cannot be turned against real customers (issue 16): the desk-wide
hourly breaker (`global_hour`) and the per-domain one (`per_domain_hour`) apply only to
first-contact recipients. A customer the desk already knew before the last hour is held
only by their own per-recipient and per-ticket limits, so a flood of new (rotating)
senders can use up the breaker without silencing a single known customer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class LimitPolicy:
    per_recipient_hour: int
    per_recipient_day: int
    per_ticket_day: int
    global_hour: int
    per_domain_hour: int = 50
    per_agent_hour: int = 60  # internal mail to an active agent (notifications)

    def __post_init__(self) -> None:
        for name in (
            "per_recipient_hour",
            "per_recipient_day",
            "per_ticket_day",
            "global_hour",
            "per_domain_hour",
            "per_agent_hour",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class SentCounts:
    """Automatic mails already sent in each window (not counting the one being decided)."""

    recipient_hour: int
    recipient_day: int
    ticket_day: int
    global_hour: int
    domain_hour: int = 0  # to the recipient's domain (first-contact recipients only)
    known: bool = False  # the recipient was a customer before the last hour


@dataclass(frozen=True)
class LimitDecision:
    allowed: bool
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"allowed": self.allowed, "reason": self.reason}


def _mails(n: int) -> str:
    return f"{n} automatic mail" + ("" if n == 1 else "s")


def check_limits(
    policy: LimitPolicy,
    counts: SentCounts,
    *,
    recipient: str,
    suppressed: bool,
    suppressed_reason: str = "",
) -> LimitDecision:
    """Allow one more automatic mail to `recipient` unless suppressed or a window is full.

    Checks run from the most specific to the broadest, and the first that refuses names
    the window, the count and the limit.
    """
    recipient = recipient.strip().lower()
    if suppressed:
        why = f": {suppressed_reason}" if suppressed_reason else ""
        return LimitDecision(False, f"recipient {recipient} is suppressed{why}")
    checks: tuple[tuple[int, int, str], ...] = (
        (counts.recipient_hour, policy.per_recipient_hour, f"recipient {recipient} got {{n}} in the last hour"),
        (counts.recipient_day, policy.per_recipient_day, f"recipient {recipient} got {{n}} in the last 24 hours"),
        (counts.ticket_day, policy.per_ticket_day, "this ticket sent {n} in the last 24 hours"),
    )
    if not counts.known:
        domain = recipient.rpartition("@")[2]
        checks += (
            (
                counts.domain_hour,
                policy.per_domain_hour,
                f"first-contact recipients at {domain} got {{n}} in the last hour",
            ),
            (counts.global_hour, policy.global_hour, "maildesk sent {n} in the last hour"),
        )
    for count, limit, template in checks:
        if count >= limit:
            return LimitDecision(False, template.format(n=_mails(count)) + f" (limit {limit})")
    return LimitDecision(
        True,
        f"within limits for {recipient}: {counts.recipient_hour}/{policy.per_recipient_hour} this hour, "
        f"{counts.recipient_day}/{policy.per_recipient_day} today, ticket {counts.ticket_day}/{policy.per_ticket_day} "
        f"today, "
        + ("known customer" if counts.known else f"first contact: global {counts.global_hour}/{policy.global_hour}")
        + " this hour",
    )


@dataclass(frozen=True)
class NewTicketPolicy:
    per_sender_hour: int = 20  # 0: no limit
    per_domain_hour: int = 200  # first-contact senders of one domain; 0: no limit


@dataclass(frozen=True)
class NewTicketCounts:
    """Tickets already opened in the last hour (not counting the one being decided)."""

    sender_hour: int
    domain_hour: int  # by first-contact senders of the sender's domain
    known: bool  # the sender was a customer before the last hour


def check_new_ticket(policy: NewTicketPolicy, counts: NewTicketCounts, *, sender: str) -> LimitDecision:
    """May `sender`'s mail open one more ticket now? Refused: stored without a ticket."""
    sender = sender.strip().lower()
    checks = [(counts.sender_hour, policy.per_sender_hour, f"sender {sender} opened {{n}} in the last hour")]
    if not counts.known:
        domain = sender.rpartition("@")[2]
        checks.append(
            (
                counts.domain_hour,
                policy.per_domain_hour,
                f"first-contact senders at {domain} opened {{n}} in the last hour",
            )
        )
    for count, limit, template in checks:
        if limit and count >= limit:
            tickets = f"{count} new ticket" + ("" if count == 1 else "s")
            return LimitDecision(False, template.format(n=tickets) + f" (limit {limit})")
    return LimitDecision(True, f"within new-ticket limits for {sender}")


# What held an automatic mail, read back from the reason `check_limits` wrote (the outbox
# row's `last_error`, first reason): the name of the limit, for `maildesk status`.
_HOLD_KINDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^recipient \S+ is suppressed"), "suppressed"),
    (re.compile(r"^recipient \S+ got \d+ automatic mails? in the last hour"), "per_recipient_hour"),
    (re.compile(r"^recipient \S+ got \d+ automatic mails? in the last 24 hours"), "per_recipient_day"),
    (re.compile(r"^this ticket sent "), "per_ticket_day"),
    (re.compile(r"^agent \S+ got \d+ notifications? in the last hour"), "per_agent_hour"),
    (re.compile(r"^first-contact recipients at "), "per_domain_hour"),
    (re.compile(r"^maildesk sent "), "global_hour"),
    (re.compile(r"^sender \S+ opened \d+ new tickets? in the last hour"), "new_tickets_per_sender_hour"),
    (re.compile(r"^first-contact senders at \S+ opened "), "new_tickets_per_domain_hour"),
)


def hold_kind(reason: str) -> str:
    """The limit named by a hold reason (`per_recipient_hour`, `global_hour`, ...), or "other"."""
    for pattern, kind in _HOLD_KINDS:
        if pattern.match(reason):
            return kind
    return "other"


def summarize_holds(rows: Iterable[tuple[datetime, str]], now: datetime) -> dict[str, dict[str, int]]:
    """Held mails (automatic mail, and mail stored without a new ticket) per limit in the last
    hour and the last 24 hours, from
    `(created_at, reason)` rows (naive datetimes are taken as UTC, as the store keeps them)."""
    out: dict[str, dict[str, int]] = {"last_hour": {}, "last_day": {}}
    for created, reason in rows:
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        kind = hold_kind(reason.split("; ", 1)[0])
        age = now - created
        if age <= timedelta(days=1):
            out["last_day"][kind] = out["last_day"].get(kind, 0) + 1
            if age <= timedelta(hours=1):
                out["last_hour"][kind] = out["last_hour"].get(kind, 0) + 1
    return out


def check_agent_limit(policy: LimitPolicy, sent_last_hour: int, *, recipient: str) -> LimitDecision:
    """Internal mail to an active agent: only the per-agent hourly cap applies (0 = none)."""
    if policy.per_agent_hour and sent_last_hour >= policy.per_agent_hour:
        return LimitDecision(
            False,
            f"agent {recipient} got {sent_last_hour} notifications in the last hour (limit {policy.per_agent_hour})",
        )
    return LimitDecision(True, f"agent {recipient}: {sent_last_hour}/{policy.per_agent_hour} this hour")
