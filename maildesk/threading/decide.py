"""Which ticket does an incoming message belong to, and why.

Owns the ranking of threading evidence, strongest first:

1. our own signed Message-IDs in In-Reply-To, then References (newest first);
2. any Message-ID we stored (incoming or outgoing), In-Reply-To first, then References
   from last to first;
3. a signed per-ticket reply address among the recipients;
4. the subject tag, only when the sender takes part in that ticket or shares the
   customer's (non free-mail) domain, which stops ticket hijacking by strangers;
5. the Outlook Thread-Index root;
6. otherwise a new ticket.

Then it follows `merged_into` chains and applies the reopen policy to resolved/closed
tickets. Input is plain data plus a small `ThreadLookup` protocol; the store answers the
lookups. This module does no work proportional to a ticket's history, keeps no state and
must not import SQLAlchemy or any I/O library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from maildesk.domain import CLOSED_STATUSES
from maildesk.threading.subject import find_tag
from maildesk.threading.thread_index import thread_index_root
from maildesk.threading.tokens import looks_like_our_message_id, parse_message_id, parse_reply_address

DEFAULT_FREE_MAIL: frozenset[str] = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "hotmail.de",
        "live.com",
        "live.co.uk",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "yahoo.de",
        "yahoo.co.jp",
        "ymail.com",
        "rocketmail.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "gmx.de",
        "gmx.net",
        "gmx.com",
        "gmx.at",
        "gmx.ch",
        "web.de",
        "t-online.de",
        "freenet.de",
        "mail.com",
        "email.com",
        "zoho.com",
        "yandex.ru",
        "yandex.com",
        "mail.ru",
        "bk.ru",
        "inbox.ru",
        "list.ru",
        "rambler.ru",
        "qq.com",
        "163.com",
        "126.com",
        "sina.com",
        "sohu.com",
        "naver.com",
        "daum.net",
        "hanmail.net",
        "libero.it",
        "virgilio.it",
        "orange.fr",
        "wanadoo.fr",
        "free.fr",
        "laposte.net",
        "sfr.fr",
        "wp.pl",
        "o2.pl",
        "onet.pl",
        "interia.pl",
        "seznam.cz",
        "fastmail.com",
        "fastmail.fm",
        "hey.com",
        "tutanota.com",
        "tuta.io",
        "mailbox.org",
        "posteo.de",
        "btinternet.com",
        "comcast.net",
        "verizon.net",
        "att.net",
        "sbcglobal.net",
        "bigpond.com",
        "rediffmail.com",
        "uol.com.br",
        "bol.com.br",
        "terra.com.br",
    }
)

MAX_REFERENCES = 64  # newest References considered: bounded work whatever the history
MAX_MERGE_HOPS = 32


@dataclass(frozen=True, kw_only=True)
class ThreadInput:
    """What threading needs to know about one incoming message (addresses lower-case)."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]  # To + Cc
    subject: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    now: datetime
    thread_index: str = ""
    thread_topic: str = ""


@dataclass(frozen=True)
class TicketFacts:
    number: int
    status: str  # new/open/pending/resolved/closed
    participants: frozenset[str]
    customer_domain: str
    closed_at: datetime | None
    merged_into: int | None


class ThreadLookup(Protocol):
    def tickets_for_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
        """Stored Message-ID (incoming and outgoing) -> ticket number, for those known."""
        ...

    def ticket(self, number: int) -> TicketFacts | None: ...

    def ticket_for_thread_index(self, root: str) -> int | None: ...


@dataclass(frozen=True)
class ThreadDecision:
    ticket: int | None  # None = new ticket
    method: str  # own-message-id | message-id | reply-address | subject-tag | thread-index | new
    detail: str
    reopen: bool = False
    linked_to: int | None = None
    refused: tuple[str, ...] = ()


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _newest_first(inp: ThreadInput) -> list[tuple[str, str]]:
    """(header name, id) pairs: In-Reply-To first, then References newest first, no repeats."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for header, ids in (("In-Reply-To", inp.in_reply_to), ("References", inp.references[-MAX_REFERENCES:][::-1])):
        for mid in ids:
            mid = mid.strip().strip("<>").strip()
            if mid and mid not in seen and mid != inp.message_id:
                seen.add(mid)
                out.append((header, mid))
    return out


class _Resolver:
    """Applies merges and the reopen policy to a candidate ticket number."""

    def __init__(self, lookup: ThreadLookup, now: datetime, reopen_days: int) -> None:
        self.lookup = lookup
        self.now = _aware(now)
        self.reopen_days = reopen_days

    def facts(self, number: int) -> tuple[TicketFacts | None, list[int]]:
        """Follow `merged_into` to the surviving ticket; returns it and the hops taken."""
        hops: list[int] = []
        facts = self.lookup.ticket(number)
        while facts is not None and facts.merged_into is not None and facts.merged_into != facts.number:
            if facts.number in hops or len(hops) >= MAX_MERGE_HOPS:
                break  # a cycle or an absurd chain: stay where we are
            hops.append(facts.number)
            target = self.lookup.ticket(facts.merged_into)
            if target is None:
                break
            facts = target
        return facts, hops

    def decide(
        self, facts: TicketFacts, hops: list[int], method: str, detail: str, refused: list[str]
    ) -> ThreadDecision:
        if hops:
            detail += "; merged " + " -> ".join(f"#{n}" for n in hops) + f" -> #{facts.number}"
        if facts.status not in CLOSED_STATUSES:
            return ThreadDecision(facts.number, method, detail, refused=tuple(refused))
        window = timedelta(days=self.reopen_days)
        if facts.closed_at is None or self.now - _aware(facts.closed_at) <= window:
            when = "" if facts.closed_at is None else f" at {_aware(facts.closed_at).isoformat()}"
            return ThreadDecision(
                facts.number,
                method,
                f"{detail}; #{facts.number} was {facts.status}{when}, within {self.reopen_days} days: reopen",
                reopen=True,
                refused=tuple(refused),
            )
        return ThreadDecision(
            None,
            "new",
            f"{detail}; but #{facts.number} was {facts.status} at "
            f"{_aware(facts.closed_at).isoformat()}, more than {self.reopen_days} days ago: "
            f"new ticket linked to #{facts.number}",
            linked_to=facts.number,
            refused=tuple(refused),
        )


def _tag_allowed(facts: TicketFacts, sender: str, free_mail: frozenset[str]) -> tuple[bool, str]:
    sender = sender.strip().lower()
    if not sender:
        return False, "the message has no sender address"
    if sender in facts.participants:
        return True, f"{sender} takes part in #{facts.number}"
    domain = _domain(sender)
    customer = facts.customer_domain.lower()
    if domain and domain == customer and domain not in free_mail:
        return True, f"{sender} shares the customer's domain {domain}"
    if domain and domain == customer:
        return False, f"{sender} shares only the free-mail domain {domain}"
    return False, f"{sender} does not take part in #{facts.number}"


def decide_thread(
    inp: ThreadInput,
    lookup: ThreadLookup,
    *,
    secret: str,
    tag_format: str,
    reopen_days: int,
    free_mail_domains: frozenset[str] = DEFAULT_FREE_MAIL,
) -> ThreadDecision:
    """Decide the ticket for `inp` from the strongest evidence; see the module docstring."""
    resolver = _Resolver(lookup, inp.now, reopen_days)
    refused: list[str] = []
    ids = _newest_first(inp)

    def accept(number: int, method: str, detail: str) -> ThreadDecision | None:
        facts, hops = resolver.facts(number)
        if facts is None:
            refused.append(f"{detail}, but ticket #{number} does not exist")
            return None
        return resolver.decide(facts, hops, method, detail, refused)

    # 1. Our own signed Message-IDs.
    for header, mid in ids:
        number = parse_message_id(secret, mid)
        if number is not None:
            decision = accept(number, "own-message-id", f"{header} <{mid}> is our signed id for #{number}")
            if decision:
                return decision
        elif looks_like_our_message_id(mid):
            refused.append(f"{header} <{mid}> looks like ours but its signature is invalid")

    # 2. Any Message-ID we stored (one lookup for all of them).
    if ids:
        known = lookup.tickets_for_message_ids([mid for _, mid in ids])
        for header, mid in ids:
            if mid in known:
                decision = accept(known[mid], "message-id", f"{header} <{mid}> is a stored message of #{known[mid]}")
                if decision:
                    return decision

    # 3. A signed reply address among the recipients.
    for address in inp.recipients:
        number = parse_reply_address(secret, address)
        if number is not None:
            decision = accept(number, "reply-address", f"sent to {address}, our signed address for #{number}")
            if decision:
                return decision

    # 4. The subject tag, from a participant or a colleague at the customer's domain only.
    number = find_tag(tag_format, inp.subject)
    if number is not None:
        facts, hops = resolver.facts(number)
        if facts is None:
            refused.append(f"subject tag #{number}: no such ticket")
        else:
            ok, why = _tag_allowed(facts, inp.sender, free_mail_domains)
            if ok:
                return resolver.decide(facts, hops, "subject-tag", f"subject tag #{number}; {why}", refused)
            refused.append(f"subject tag #{number} refused: {why}")

    # 5. The Outlook Thread-Index conversation.
    root = thread_index_root(inp.thread_index) if inp.thread_index else None
    if root is not None:
        number = lookup.ticket_for_thread_index(root)
        if number is not None:
            decision = accept(number, "thread-index", f"Thread-Index conversation {root} belongs to #{number}")
            if decision:
                return decision

    reason = "no threading evidence" if not refused else "no acceptable threading evidence"
    return ThreadDecision(None, "new", f"{reason}: new ticket", refused=tuple(refused))
