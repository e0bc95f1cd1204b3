"""What an operator can see and do to the desk: ticket lists and views, search, ticket
actions (note, assign, tier, escalate, priority, tags, resolve, close, reopen, merge, reply),
customers and agents, privacy (export, erase) and retention.

Owns the semantics of each action — the same an email command would have: validate, change
the ticket, record an Event saying who did what. Functions take an open Session (the caller
owns the transaction) and `now`; they return plain dicts and dataclasses.

Must not: print, know about Typer or Rich, read the clock, or build SQL (queries live in
`store/desk_queries.py` and `store/queries.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from maildesk.errors import MaildeskError
from maildesk.rules.engine import escalate_tier
from maildesk.rules.model import PRIORITIES, STATUSES, TIERS
from maildesk.store import Session
from maildesk.store import desk_queries as dq
from maildesk.store import queries as q
from maildesk.store.desk_queries import OPEN_STATUSES, SearchHit, TicketFilter, utc
from maildesk.store.models import Customer, Event, Message, SlaClock, Ticket

__all__ = ["OperationError", "SearchHit", "TicketFilter", "ActionResult"]

ERASED = "[erased]"
TAG_MAX = 100


class OperationError(MaildeskError):
    """An action cannot be done as asked; the message says why, for the operator."""


# Helpers -----------------------------------------------------------------------------------
_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(value: str) -> timedelta:
    """'3d' -> 3 days; units s, m, h, d, w."""
    match = _AGE.match(value)
    if not match:
        raise OperationError(f"cannot read age {value!r}: use a number and a unit s/m/h/d/w, like 3d or 12h")
    return timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})


def _iso(value: datetime | None) -> str | None:
    value = utc(value)
    return value.isoformat() if value is not None else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, bytes):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _ticket(session: Session, number: int, *, allow_merged: bool = False) -> Ticket:
    ticket = q.ticket(session, number)
    if ticket is None:
        raise OperationError(f"no ticket #{number}")
    if ticket.merged_into is not None and not allow_merged:
        raise OperationError(f"ticket #{number} is merged into #{ticket.merged_into}; act on #{ticket.merged_into}")
    return ticket


def _clock_dict(clock: SlaClock, now: datetime) -> dict[str, Any]:
    due = utc(clock.due_at)
    if clock.stopped:
        state = "stopped"
    elif clock.breached:
        state = "breached"
    elif clock.paused_at is not None:
        state = "paused"
    elif due is not None and due <= now:
        state = "overdue"
    elif clock.warned:
        state = "warned"
    else:
        state = "running"
    return {"kind": clock.kind, "due_at": _iso(due), "state": state, "paused_at": _iso(clock.paused_at)}


# Lists and views ---------------------------------------------------------------------------
@dataclass
class TicketSummary:
    number: int
    subject: str
    status: str
    queue: str
    tier: str
    priority: str
    assignee: str | None
    customer: str
    tags: list[str]
    created_at: str | None
    updated_at: str | None
    next_due: str | None  # earliest due time of a running SLA clock
    breaching: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _summary(ticket: Ticket, clocks: Sequence[SlaClock], now: datetime) -> TicketSummary:
    running = [utc(c.due_at) for c in clocks if not c.stopped and c.paused_at is None and c.due_at is not None]
    due = min((d for d in running if d is not None), default=None)
    breaching = any(
        not c.stopped
        and (c.breached or (c.paused_at is None and c.due_at is not None and (utc(c.due_at) or now) <= now))
        for c in clocks
    )
    return TicketSummary(
        number=ticket.number,
        subject=ticket.subject,
        status=ticket.status,
        queue=ticket.queue,
        tier=ticket.tier,
        priority=ticket.priority,
        assignee=ticket.assignee,
        customer=ticket.customer.email,
        tags=list(ticket.tags or []),
        created_at=_iso(ticket.created_at),
        updated_at=_iso(ticket.updated_at),
        next_due=_iso(due),
        breaching=breaching,
    )


def validate_filter(f: TicketFilter) -> None:
    for name, values, allowed in (
        ("status", f.statuses, STATUSES),
        ("tier", tuple(t.upper() for t in f.tiers), TIERS),
        ("priority", f.priorities, PRIORITIES),
    ):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise OperationError(f"unknown {name} {', '.join(bad)}; use {', '.join(allowed)}")
    if f.sort not in dq.SORTS:
        raise OperationError(f"unknown sort {f.sort!r}; use {', '.join(dq.SORTS)}")


def list_tickets(session: Session, f: TicketFilter, now: datetime) -> list[TicketSummary]:
    validate_filter(f)
    tickets = dq.list_tickets(session, f, now)
    clocks = dq.clocks_for(session, [t.number for t in tickets])
    return [_summary(t, clocks[t.number], now) for t in tickets]


def _message_view(msg: Message) -> dict[str, Any]:
    text = msg.visible_text or msg.full_text
    return {
        "id": msg.id,
        "at": _iso(msg.sent_at or msg.created_at),
        "received_at": _iso(msg.created_at),
        "direction": msg.direction,
        "kind": msg.kind,
        "internal": bool(msg.internal),
        "from": msg.sender,
        "from_name": msg.sender_name,
        "to": list(msg.recipients or []),
        "subject": msg.subject,
        "text": text,
        "quoted_lines": len(msg.quoted_text.splitlines()) if msg.quoted_text else 0,
        "screen": msg.screen,
        "raw_kept": msg.raw is not None,
        "size": msg.raw_size,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size, "data_kept": a.data is not None}
            for a in msg.attachments
        ],
    }


def _event_view(ev: Event) -> dict[str, Any]:
    return {"id": ev.id, "at": _iso(ev.at), "type": ev.type, "message": ev.message_pk, "data": _jsonable(ev.data or {})}


def ticket_view(session: Session, number: int, now: datetime) -> dict[str, Any]:
    """Everything about one ticket, as a person reads it: fields, clocks, conversation, history."""
    ticket = _ticket(session, number, allow_merged=True)
    clocks = dq.clocks_for(session, [number])[number]
    summary = _summary(ticket, clocks, now).to_dict()
    return {
        **summary,
        "customer_name": ticket.customer.name,
        "fields": _jsonable(ticket.fields or {}),
        "spam": bool(ticket.spam),
        "first_response_at": _iso(ticket.first_response_at),
        "resolved_at": _iso(ticket.resolved_at),
        "closed_at": _iso(ticket.closed_at),
        "merged_into": ticket.merged_into,
        "merged_from": dq.merged_into_this(session, number),
        "linked_to": ticket.linked_to,
        "participants": q.participants(session, number),
        "sla": [_clock_dict(c, now) for c in clocks],
        "messages": [_message_view(m) for m in q.messages_for_ticket(session, number)],
        "events": [_event_view(e) for e in q.events_for_ticket(session, number)],
    }


def search(session: Session, query: str, limit: int = 20) -> list[SearchHit]:
    if limit < 1:
        raise OperationError("limit must be at least 1")
    return dq.search(session, query, limit)


# Actions -----------------------------------------------------------------------------------
@dataclass
class ActionResult:
    number: int
    action: str
    changed: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record(
    session: Session,
    ticket: Ticket,
    type_: str,
    data: dict[str, Any],
    by: str,
    now: datetime,
    message_pk: int | None = None,
) -> None:
    ticket.updated_at = now
    q.add_event(session, ticket.number, type_, {**data, "by": by, "via": "cli"}, now, message_pk)


def _add_note_row(session: Session, ticket: Ticket, text: str, by: str, now: datetime) -> Message:
    mid = f"note-{secrets.token_hex(12)}@maildesk.invalid"
    row = Message(
        ticket_number=ticket.number,
        direction="out",
        kind="agent-note",
        message_id=mid,
        mid_hash=q.mid_hash(mid),
        content_hash=hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest(),
        raw=None,
        raw_size=0,
        subject=ticket.subject,
        sender=by,
        sender_name="",
        recipients=[],
        sent_at=now,
        created_at=now,
        source="cli",
        full_text=text,
        visible_text=text,
        internal=True,
    )
    session.add(row)
    session.flush()
    return row


def add_note(session: Session, number: int, text: str, by: str, now: datetime) -> ActionResult:
    """An internal note on the ticket (never mailed to the customer)."""
    text = text.strip()
    if not text:
        raise OperationError("the note is empty")
    ticket = _ticket(session, number)
    row = _add_note_row(session, ticket, text, by, now)
    _record(session, ticket, "note-added", {"chars": len(text)}, by, now, row.id)
    return ActionResult(number, "note", True, {"message": row.id})


def assign(session: Session, number: int, agent: str, by: str, now: datetime) -> ActionResult:
    """Assign to an agent (known from the agents table when it has any); "none" unassigns."""
    ticket = _ticket(session, number)
    target: str | None
    if agent.strip().lower() in ("none", "-", ""):
        target = None
    else:
        known = dq.agent_by_email(session, agent.strip())
        if known is not None:
            target = known.email
        elif dq.agents(session):
            names = ", ".join(a.email for a in dq.agents(session) if a.active)
            raise OperationError(f"unknown agent {agent!r}; agents are: {names}")
        elif "@" not in agent:
            raise OperationError(f"{agent!r} is not an address")
        else:
            target = agent.strip().lower()
        if known is not None and not known.active:
            raise OperationError(f"agent {known.email} is not active")
    if ticket.assignee == target:
        return ActionResult(number, "assign", False, {"assignee": target})
    old, ticket.assignee = ticket.assignee, target
    if target is not None:
        q.add_participant(session, number, target, "agent")
    _record(session, ticket, "assigned", {"old": old, "new": target}, by, now)
    return ActionResult(number, "assign", True, {"old": old, "new": target})


def _set_choice(
    session: Session, number: int, field: str, value: str, choices: Sequence[str], by: str, now: datetime
) -> ActionResult:
    """Set `field` (tier or priority) to one of `choices`, recording `<field>-changed`."""
    if value not in choices:
        raise OperationError(f"unknown {field} {value!r}; use {', '.join(choices)}")
    ticket = _ticket(session, number)
    old = getattr(ticket, field)
    if old == value:
        return ActionResult(number, field, False, {field: value})
    setattr(ticket, field, value)
    _record(session, ticket, f"{field}-changed", {"old": old, "new": value}, by, now)
    return ActionResult(number, field, True, {"old": old, "new": value})


def set_tier(session: Session, number: int, tier: str, by: str, now: datetime) -> ActionResult:
    return _set_choice(session, number, "tier", tier.upper(), TIERS, by, now)


def escalate(session: Session, number: int, note: str, by: str, now: datetime) -> ActionResult:
    """Move to the next tier (L3 stays L3) and keep the hand-off note on the ticket."""
    ticket = _ticket(session, number)
    new, what = escalate_tier(ticket.tier)
    old, ticket.tier = ticket.tier, new
    text = f"Escalated {what}." + (f"\n\n{note.strip()}" if note.strip() else "")
    row = _add_note_row(session, ticket, text, by, now)
    _record(session, ticket, "escalated", {"old": old, "new": new, "what": what}, by, now, row.id)
    return ActionResult(number, "escalate", old != new, {"old": old, "new": new, "what": what, "message": row.id})


def set_priority(session: Session, number: int, priority: str, by: str, now: datetime) -> ActionResult:
    return _set_choice(session, number, "priority", priority.lower(), PRIORITIES, by, now)


def parse_tag_changes(items: Iterable[str]) -> tuple[list[str], list[str]]:
    """['+vip', '-spam', 'x'] -> (['vip', 'x'], ['spam'])."""
    add: list[str] = []
    remove: list[str] = []
    for item in items:
        item = item.strip()
        sign, tag = (item[0], item[1:].strip()) if item[:1] in "+-" else ("+", item)
        if not tag or len(tag) > TAG_MAX or any(ch.isspace() or ord(ch) < 32 for ch in tag):
            raise OperationError(f"bad tag {item!r}: one word of at most {TAG_MAX} characters, like +vip or -spam")
        (add if sign == "+" else remove).append(tag)
    return add, remove


def change_tags(session: Session, number: int, changes: Iterable[str], by: str, now: datetime) -> ActionResult:
    add, remove = parse_tag_changes(changes)
    if not add and not remove:
        raise OperationError("no tag changes given; use +tag to add and -tag to remove")
    ticket = _ticket(session, number)
    tags = list(ticket.tags or [])
    added = [t for t in dict.fromkeys(add) if t not in tags]
    removed = [t for t in dict.fromkeys(remove) if t in tags]
    new = [t for t in tags if t not in removed] + added
    if not added and not removed:
        return ActionResult(number, "tag", False, {"tags": tags})
    ticket.tags = new
    _record(session, ticket, "tags-changed", {"added": added, "removed": removed}, by, now)
    return ActionResult(number, "tag", True, {"added": added, "removed": removed, "tags": new})


def _stop_clocks(session: Session, number: int) -> None:
    for clock in dq.clocks_for(session, [number])[number]:
        clock.stopped = True


def resolve(session: Session, number: int, by: str, now: datetime) -> ActionResult:
    ticket = _ticket(session, number)
    if ticket.status in ("resolved", "closed"):
        return ActionResult(number, "resolve", False, {"status": ticket.status})
    old, ticket.status, ticket.resolved_at = ticket.status, "resolved", now
    _stop_clocks(session, number)
    _record(session, ticket, "status", {"from": old, "to": "resolved", "reason": "resolved by an agent"}, by, now)
    return ActionResult(number, "resolve", True, {"old": old, "new": "resolved"})


def close(session: Session, number: int, by: str, now: datetime) -> ActionResult:
    ticket = _ticket(session, number)
    if ticket.status == "closed":
        return ActionResult(number, "close", False, {"status": "closed"})
    old, ticket.status, ticket.closed_at = ticket.status, "closed", now
    ticket.resolved_at = ticket.resolved_at or now
    _stop_clocks(session, number)
    _record(session, ticket, "status", {"from": old, "to": "closed", "reason": "closed by an agent"}, by, now)
    return ActionResult(number, "close", True, {"old": old, "new": "closed"})


def reopen(session: Session, number: int, by: str, now: datetime) -> ActionResult:
    ticket = _ticket(session, number)
    if ticket.status not in ("resolved", "closed"):
        return ActionResult(number, "reopen", False, {"status": ticket.status})
    old, ticket.status = ticket.status, "open"
    ticket.resolved_at = ticket.closed_at = None
    _record(session, ticket, "status", {"from": old, "to": "open", "reason": "reopened by an agent"}, by, now)
    return ActionResult(number, "reopen", True, {"old": old, "new": "open"})


def merge(session: Session, target: int, source: int, by: str, now: datetime) -> ActionResult:
    """Merge ticket `source` into `target`: source closes and points at target, its people
    join target, its tags carry over; later mail for source lands on target."""
    if target == source:
        raise OperationError("cannot merge a ticket into itself")
    into = _ticket(session, target)
    src = _ticket(session, source)
    if src.customer_id != into.customer_id:
        q.add_participant(session, target, src.customer.email, "cc")
    for address in q.participants(session, source):
        if address != into.customer.email:
            q.add_participant(session, target, address, "cc")
    into.tags = list(dict.fromkeys([*(into.tags or []), *(src.tags or [])]))
    old_status = src.status
    src.merged_into = target
    src.status = "closed"
    src.closed_at = now
    src.resolved_at = src.resolved_at or now
    _stop_clocks(session, source)
    _record(session, src, "merged-into", {"into": target, "old_status": old_status}, by, now)
    _record(session, into, "merged", {"from": source}, by, now)
    return ActionResult(target, "merge", True, {"into": target, "from": source})


def reply(
    session: Session, deps: Any, number: int, text: str, by: str, now: datetime, status: str = "pending"
) -> ActionResult:
    """A reply to the customer through the outbox (the daemon's sender delivers it); the
    ticket then waits on the customer (`status`, default pending; their answer reopens it)."""
    from maildesk.outbound.mailer import COMPOSE_ERRORS
    from maildesk.pipeline.stages.respond import send_agent_reply

    if not text.strip():
        raise OperationError("the reply is empty")
    if status not in STATUSES:
        raise OperationError(f"unknown status {status!r}; use {', '.join(STATUSES)}")
    ticket = _ticket(session, number)
    try:
        item = send_agent_reply(session, deps, number, text, by, now)
    except COMPOSE_ERRORS as exc:
        raise OperationError(f"cannot compose the reply: {exc}") from exc
    detail: dict[str, Any] = {"queued": item is not None}
    if item is not None:
        detail.update(outbox_id=item.id, state=item.state, message_id=item.message_id, recipients=list(item.recipients))
    if item is not None and ticket.status != status:
        old, ticket.status = ticket.status, status
        if status == "resolved":
            ticket.resolved_at = now
        _record(session, ticket, "status", {"from": old, "to": status, "reason": "agent replied"}, by, now)
        detail["status"] = status
    return ActionResult(number, "reply", item is not None, detail)


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
        "tz": customer.tz,
        "vip": bool(customer.vip),
        "created_at": _iso(customer.created_at),
        "erased_at": _iso(customer.erased_at),
        "tickets": [_summary(t, clocks[t.number], now).to_dict() for t in tickets],
        "also_on": [n for n in dq.tickets_with_participant(session, customer.email) if n not in own],
        "suppressions": [
            {"reason": s.reason, "ticket": s.ticket_number, "created_at": _iso(s.created_at), "until": _iso(s.until)}
            for s in dq.suppressions_for(session, customer.email)
        ],
    }


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
        row = _message_view(msg)
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
        "exported_at": _iso(now),
        "customer": {
            "id": customer.id,
            "email": customer.email,
            "name": customer.name,
            "locale": customer.locale,
            "tz": customer.tz,
            "vip": bool(customer.vip),
            "created_at": _iso(customer.created_at),
            "erased_at": _iso(customer.erased_at),
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
                "fields": _jsonable(t.fields or {}),
                "created_at": _iso(t.created_at),
                "updated_at": _iso(t.updated_at),
                "resolved_at": _iso(t.resolved_at),
                "closed_at": _iso(t.closed_at),
                "merged_into": t.merged_into,
            }
            for t in tickets
        ],
        "messages": message_rows,
        "events": [{**_event_view(e), "ticket": e.ticket_number} for e in events],
        "participants": [
            {"ticket": p.ticket_number, "address": p.address, "role": p.role}
            for p in dq.participants_of(session, numbers, customer.email)
        ],
        "suppressions": [
            {
                "address": s.address,
                "reason": s.reason,
                "ticket": s.ticket_number,
                "created_at": _iso(s.created_at),
                "until": _iso(s.until),
            }
            for s in dq.suppressions_for(session, customer.email)
        ],
        "outbox": [
            {
                "ticket": o.ticket_number,
                "message_id": o.message_id,
                "recipients": list(o.recipients or []),
                "state": o.state,
                "created_at": _iso(o.created_at),
                "sent_at": _iso(o.sent_at),
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
        if msg.direction == "in":
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
    report = {"days": days, "cutoff": _iso(cutoff), "tickets": len(numbers), **removed}
    if numbers:
        q.add_event(session, None, "retention-applied", dict(report), now)
    return report


__all__ += [
    "TicketSummary",
    "parse_age",
    "list_tickets",
    "ticket_view",
    "search",
    "add_note",
    "assign",
    "set_tier",
    "escalate",
    "set_priority",
    "change_tags",
    "parse_tag_changes",
    "resolve",
    "close",
    "reopen",
    "merge",
    "reply",
    "customer_view",
    "agents_load",
    "export_customer",
    "erase_customer",
    "apply_retention",
    "OPEN_STATUSES",
]
