"""Customers, agents and privacy: a customer's page, agents with their open load, export
of everything held about a customer, erasure, and retention of raw mail.

Owns what personal data is and how it goes: the `CONTENT_KEYS` of event data that are mail
content, the scrubbing of another person's mail, the anonymous token that replaces an
erased address. Functions take an open Session (the caller owns the transaction) and `now`.

Must not: change ticket status, tier, tags or assignee (that is `services.tickets`), print,
know about Typer or Rich, read the clock, or build SQL (queries live in `store/desk_queries.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maildesk.domain import TIERS, Direction
from maildesk.language import OPERATOR, match_locale
from maildesk.outbound.compose import HeaderInjection, check_address
from maildesk.outbound.context import normalize_locale
from maildesk.services.tickets import OperationError
from maildesk.services.views import event_view, iso, jsonable, message_view, summarize
from maildesk.store import Session
from maildesk.store import desk_queries as dq
from maildesk.store import queries as q
from maildesk.store.models import Customer, Message, Ticket

ERASED = "[erased]"


# Customers and agents ----------------------------------------------------------------------
def _customer(session: Session, address: str) -> Customer:
    customer = dq.customer_by_email(session, address)
    if customer is None:
        raise OperationError(f"no customer {address!r}")
    return customer


def customer_view(session: Session, address: str, now: datetime) -> dict[str, Any]:
    customer = _customer(session, address)
    tickets = dq.tickets_of_customer(session, customer.id)
    clocks = dq.clocks_for(session, [t.number for t in tickets])
    own = {t.number for t in tickets}
    return {
        "email": customer.email,
        "name": customer.name,
        "locale": customer.locale,
        "locale_source": customer.locale_source,
        "tz": customer.tz,
        "vip": bool(customer.vip),
        "created_at": iso(customer.created_at),
        "erased_at": iso(customer.erased_at),
        "tickets": [summarize(t, clocks[t.number], now).to_dict() for t in tickets],
        "also_on": [n for n in dq.tickets_with_participant(session, customer.email) if n not in own],
        "suppressions": [
            {"reason": s.reason, "ticket": s.ticket_number, "created_at": iso(s.created_at), "until": iso(s.until)}
            for s in dq.suppressions_for(session, customer.email)
        ],
    }


def set_customer(
    session: Session,
    address: str,
    now: datetime,
    *,
    supported: tuple[str, ...],
    locale: str | None = None,
    vip: bool | None = None,
    name: str | None = None,
    timezone: str | None = None,
    by: str = "",
) -> dict[str, Any]:
    """Set what an operator knows about a customer (created when new); None leaves a field as it is.

    `locale` must be one of the desk's `supported` locales (a region of one is fine:
    `fr_CA` when `fr` is supported); it is then the operator's and mail never changes it.
    `locale=""` forgets it (the desk default until their mail says otherwise). `timezone`
    is an IANA name ("" forgets it). Records a `customer-updated` event with what changed.
    """
    try:
        email = check_address(address.strip().lower())
    except HeaderInjection as exc:
        raise OperationError(f"not an email address: {address!r}") from exc
    changes: dict[str, Any] = {}
    if locale is not None:
        wanted = locale.strip()
        if wanted and wanted.lower() != "default":
            found = _supported_locale(wanted, supported)
            changes.update(locale=found, locale_source=OPERATOR)
        else:
            changes.update(locale="", locale_source="")
    if timezone is not None:
        zone = timezone.strip()
        if zone:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise OperationError(f"unknown time zone {zone!r} (an IANA name, e.g. Europe/Paris)") from exc
        changes["tz"] = zone
    if name is not None:
        cleaned = " ".join(name.split())
        if any(ch in name for ch in "\r\n\x00"):
            raise OperationError("the name must be one line")
        changes["name"] = cleaned[:300]
    if vip is not None:
        changes["vip"] = vip
    customer = dq.customer_by_email(session, email)
    created = customer is None
    if customer is None:
        customer_id = q.customer_id_for(session, email, str(changes.get("name", "")), now)
        customer = session.get(Customer, customer_id)
        assert customer is not None
    if customer.erased_at is not None:
        raise OperationError(f"customer {email} was erased")
    for key, value in changes.items():
        setattr(customer, key, value)
    session.flush()
    shown = {k: v for k, v in changes.items() if k != "locale_source"}
    q.add_event(session, None, "customer-updated", {"customer": email, "by": by, "created": created, **shown}, now)
    return {**customer_view(session, email, now), "created": created, "changed": sorted(shown)}


def _supported_locale(wanted: str, supported: tuple[str, ...]) -> str:
    """`fr`, `fr-CA`, `fr_CA` → the locale to store, when its language is supported; else an error."""
    found = match_locale(wanted, supported)
    if not found:
        raise OperationError(
            f"locale {wanted!r} is not one of the desk's locales ({', '.join(supported)}; desk.locales)"
        )
    region = wanted.strip().replace("-", "_")
    # A region of a supported language (fr_CA) is kept: dates follow it, templates fall back to fr.
    if region.lower() != found.lower() and region.lower().startswith(found.lower() + "_"):
        known = normalize_locale(region, "")
        if not known:
            raise OperationError(f"unknown locale {wanted!r} (e.g. fr, fr_CA, de_AT)")
        return known[:20]
    return found


def agents_load(session: Session) -> list[dict[str, Any]]:
    """Every agent (from the agents table and from ticket assignees) with open load per tier."""
    load: dict[str, dict[str, int]] = {}
    for assignee, tier, count in dq.open_load(session):
        per = load.setdefault(assignee.lower(), {})
        per[tier] = per.get(tier, 0) + count
    rows: dict[str, dict[str, Any]] = {}
    for agent in dq.agents(session):
        rows[agent.email.lower()] = {
            "email": agent.email,
            "name": agent.name,
            "tiers": list(agent.tiers or []),
            "queues": list(agent.queues or []),
            "active": bool(agent.active),
            "known": True,
        }
    for email in load:
        rows.setdefault(email, {"email": email, "name": "", "tiers": [], "queues": [], "active": True, "known": False})
    out = []
    for key in sorted(rows):
        per = load.get(key, {})
        out.append({**rows[key], "open": sum(per.values()), "open_by_tier": {t: per.get(t, 0) for t in TIERS}})
    return out


# Privacy -----------------------------------------------------------------------------------
def _customer_data(session: Session, customer: Customer) -> tuple[list[Ticket], list[Message]]:
    tickets = dq.tickets_of_customer(session, customer.id)
    messages = dq.messages_of(session, [t.number for t in tickets], customer.email)
    return tickets, messages


def export_customer(session: Session, address: str, out: Path, now: datetime) -> dict[str, Any]:
    """Write everything held about a customer into `out` (created; must be new or empty):
    each message as `.eml` (the raw bytes as received or sent) and `customer.json`."""
    customer = _customer(session, address)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OperationError(f"{out} exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    tickets, messages = _customer_data(session, customer)
    numbers = [t.number for t in tickets]
    message_rows = []
    written = 0
    for msg in messages:
        row = message_view(msg)
        row.update(
            ticket=msg.ticket_number,
            message_id=msg.message_id,
            full_text=msg.full_text,
            quoted_text=msg.quoted_text,
            signature=msg.signature,
            eml=None,
        )
        if msg.raw is not None:
            name = f"ticket-{msg.ticket_number or 0:06d}-message-{msg.id}.eml"  # never a name from the mail
            path = out / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(msg.raw)
            row["eml"] = name
            written += 1
        message_rows.append(row)
    events = dq.events_of(session, numbers, [m.id for m in messages], [customer.email])
    data = {
        "exported_at": iso(now),
        "customer": {
            "id": customer.id,
            "email": customer.email,
            "name": customer.name,
            "locale": customer.locale,
            "locale_source": customer.locale_source,
            "tz": customer.tz,
            "vip": bool(customer.vip),
            "created_at": iso(customer.created_at),
            "erased_at": iso(customer.erased_at),
        },
        "tickets": [
            {
                "number": t.number,
                "subject": t.subject,
                "status": t.status,
                "queue": t.queue,
                "tier": t.tier,
                "priority": t.priority,
                "assignee": t.assignee,
                "tags": list(t.tags or []),
                "fields": jsonable(t.fields or {}),
                "created_at": iso(t.created_at),
                "updated_at": iso(t.updated_at),
                "resolved_at": iso(t.resolved_at),
                "closed_at": iso(t.closed_at),
                "merged_into": t.merged_into,
            }
            for t in tickets
        ],
        "messages": message_rows,
        "events": [{**event_view(e), "ticket": e.ticket_number} for e in events],
        "participants": [
            {"ticket": p.ticket_number, "address": p.address, "role": p.role}
            for p in dq.participants_of(session, numbers, customer.email)
        ],
        "suppressions": [
            {
                "address": s.address,
                "reason": s.reason,
                "ticket": s.ticket_number,
                "created_at": iso(s.created_at),
                "until": iso(s.until),
            }
            for s in dq.suppressions_for(session, customer.email)
        ],
        "outbox": [
            {
                "ticket": o.ticket_number,
                "message_id": o.message_id,
                "recipients": list(o.recipients or []),
                "state": o.state,
                "created_at": iso(o.created_at),
                "sent_at": iso(o.sent_at),
            }
            for o in dq.outbox_of(session, numbers, customer.email)
        ],
    }
    fd = os.open(out / "customer.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
    return {
        "folder": str(out),
        "eml_files": written,
        "messages": len(messages),
        "tickets": len(numbers),
        "events": len(events),
    }


# Event data keys whose values are content from mail (always erased) or addresses (scrubbed).
CONTENT_KEYS = frozenset(
    {
        "subject",
        "text",
        "note",
        "body",
        "snippet",
        "name",
        "sender_name",
        "detail",
        "reason",
        "message_id",
        "stored_as",
        "captures",
        "fields",
        "headers",
        "quote",
        "excerpt",
        "display_name",
        "source",
    }
)


class _Scrubber:
    """Replaces a person's address and name (any case) and mail content in stored values."""

    def __init__(self, address: str, name: str, token: str) -> None:
        self.token = token
        parts = [re.escape(address)]
        if len(name.strip()) >= 3:
            parts.append(re.escape(name.strip()))
        self.pattern = re.compile("|".join(parts), re.IGNORECASE)
        self.raw_pattern = re.compile("|".join(parts).encode("utf-8"), re.IGNORECASE)
        self.address = address.lower()

    def raw(self, value: bytes | None) -> bytes | None:
        """Best effort on another person's raw mail: literal mentions (headers, plain
        text) are replaced; encoded ones (base64, quoted-printable splits) are not found."""
        if value is None:
            return None
        token = self.token.encode()
        return self.raw_pattern.sub(
            lambda m: token if m.group(0).lower() == self.address.encode() else b"[erased]", value
        )

    def text(self, value: str) -> str:
        return self.pattern.sub(lambda m: self.token if m.group(0).lower() == self.address else ERASED, value)

    def data(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: self.data(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v, key) for v in value]
        if isinstance(value, str):
            return ERASED if key.lower() in CONTENT_KEYS else self.text(value)
        return value

    def addresses(self, values: Iterable[Any]) -> list[Any]:
        return [self.token if str(v).lower() == self.address else v for v in values]


def erase_customer(session: Session, address: str, now: datetime) -> dict[str, Any]:
    """Remove a customer's personal data; keep anonymous ticket rows so counts stay right.

    Their address becomes an anonymous token (`erased-<hash>@invalid`); raw mail,
    attachment data, texts and names of their tickets' messages and of every message they
    sent go; event data is scrubbed. An Event `customer-erased` without personal data is
    recorded on each ticket and once without a ticket.
    """
    customer = _customer(session, address)
    dq.prepare_erasure(session)
    email, name = customer.email.lower(), customer.name
    token = f"erased-{hashlib.sha256(secrets.token_bytes(16)).hexdigest()[:16]}@invalid"
    scrub = _Scrubber(email, name, token)
    tickets, messages = _customer_data(session, customer)
    numbers = [t.number for t in tickets]
    pks = [m.id for m in messages]
    counts = {
        "tickets": len(numbers),
        "messages": len(messages),
        "attachments": 0,
        "events": 0,
        "participants": 0,
        "suppressions": 0,
        "outbox": 0,
        "other_messages": 0,
    }
    for ticket in tickets:
        ticket.subject = ERASED
        ticket.fields = {k: ERASED for k in (ticket.fields or {})}
    for msg in messages:
        msg.raw = None
        msg.subject = ERASED
        msg.full_text = msg.visible_text = msg.quoted_text = msg.signature = msg.html = ""
        if msg.direction == Direction.IN:
            msg.message_id = f"erased-{msg.id}@invalid"  # mid_hash stays: a re-delivery is still a duplicate
        if msg.sender.lower() == email or scrub.pattern.search(msg.sender_name or ""):
            msg.sender_name = ""
        msg.sender = scrub.addresses([msg.sender])[0]
        msg.recipients = scrub.addresses(msg.recipients or [])
        for att in msg.attachments:
            att.data = None
            att.filename = ERASED
            att.sha256 = ""
            att.content_id = ""
            counts["attachments"] += 1
    for msg in dq.messages_mentioning(session, email, pks):
        msg.raw = scrub.raw(msg.raw)
        msg.sender_name = scrub.text(msg.sender_name)
        msg.recipients = scrub.addresses(msg.recipients or [])
        msg.full_text, msg.visible_text = scrub.text(msg.full_text), scrub.text(msg.visible_text)
        msg.quoted_text = scrub.text(msg.quoted_text)
        counts["other_messages"] += 1
    for part in dq.participants_of(session, [], email):
        part.address = token
        counts["participants"] += 1
    for sup in dq.suppressions_for(session, email):
        sup.address, sup.reason = token, ERASED
        counts["suppressions"] += 1
    counts["limit_log"] = dq.forget_automatic(session, email)
    for item in dq.outbox_of(session, numbers, email):
        item.raw = b""
        item.recipients = scrub.addresses(item.recipients or [])
        if item.state in ("queued", "held"):
            item.state, item.last_error = "failed", "customer erased"
        counts["outbox"] += 1
    for ev in dq.events_of(session, numbers, pks, [email, name] if len(name.strip()) >= 3 else [email]):
        ev.data = scrub.data(ev.data or {})
        counts["events"] += 1
    customer.email, customer.name, customer.erased_at = token, "", now
    session.flush()
    for number in numbers:
        q.add_event(session, number, "customer-erased", {"customer": token}, now)
    q.add_event(session, None, "customer-erased", {"customer": token, **counts}, now)
    session.flush()
    dq.compact_search_index(session)
    return {"token": token, **counts}


def apply_retention(session: Session, days: int, now: datetime) -> dict[str, Any]:
    """Remove raw mail and attachment data of tickets closed more than `days` days ago.

    Texts, fields and events stay, so tickets still read and count. Reports what went.
    """
    if days < 1:
        raise OperationError("days must be at least 1")
    cutoff = now - timedelta(days=days)
    numbers = dq.tickets_with_stored_bytes(session, dq.closed_before(session, cutoff))
    removed = dq.drop_stored_bytes(session, numbers)
    for number in numbers:
        q.add_event(session, number, "retention-applied", {"days": days}, now)
    report = {"days": days, "cutoff": iso(cutoff), "tickets": len(numbers), **removed}
    if numbers:
        q.add_event(session, None, "retention-applied", dict(report), now)
    return report


__all__ = [
    "OperationError",
    "ERASED",
    "CONTENT_KEYS",
    "customer_view",
    "set_customer",
    "agents_load",
    "export_customer",
    "erase_customer",
    "apply_retention",
]
