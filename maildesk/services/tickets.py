"""The one path by which a ticket changes: status, tier (and escalation), priority,
assignee, queue, tags and notes — for the CLI, the rules (route stage), threading (thread
stage), merge and agent replies alike.

Each kind of change has one function taking the Ticket row (`change_status`,
`change_tier`, `escalate_ticket`, `change_priority`, `change_assignee`, `change_queue`,
`retag`, `attach_note`; `set_fields` and `set_ask` — fields and a rule's `ask:` state —
have no consequences). It makes the change and its bookkeeping (a status sets or clears
`resolved_at`/`closed_at`), records its event (`event=None`: the caller records one summary
event instead, as the route stage's `routed` does) and then calls `_consequences` with a
`TicketChange`. `_consequences` is THE seam for what follows a change: the SLA clocks
(`services.sla.on_change`), agent notifications (`services.notify.on_change`) and the
customer's resolution notice and survey (`services.survey.on_change`).

Above those sit the operator's actions (`add_note`, `assign`, `set_tier`, `escalate`,
`set_priority`, `change_tags`, `resolve`, `close`, `reopen`, `merge`, `reply`): they find
and validate by ticket number, go through the change functions with `via="cli"` and return
an `ActionResult`. Functions take an open Session (the caller owns the transaction) and `now`.

Must not: import the pipeline (it calls us), print, know about Typer or Rich, read the
clock, or build SQL (queries live in `store/desk_queries.py` and `store/queries.py`).
Read-only views are in `services/views.py`; customers and privacy in `services/customers.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from maildesk.domain import CLOSED_STATUSES, PRIORITIES, STATUSES, TIERS, Status, TicketChange
from maildesk.errors import MaildeskError
from maildesk.rules.engine import escalate_tier
from maildesk.services import notify, sla, survey
from maildesk.store import Session, rows
from maildesk.store import desk_queries as dq
from maildesk.store import queries as q
from maildesk.store.models import Message, Ticket

TAG_MAX = 100

# `via` of a change: who asked for it.
VIA_CLI = "cli"
VIA_RULES = "rules"
VIA_THREAD = "thread"


class OperationError(MaildeskError):
    """An action cannot be done as asked; the message says why, for the operator."""


def get_ticket(session: Session, number: int, *, allow_merged: bool = False) -> Ticket:
    """The ticket `number`; a merged one only when `allow_merged` (actions go to the target)."""
    ticket = q.ticket(session, number)
    if ticket is None:
        raise OperationError(f"no ticket #{number}")
    if ticket.merged_into is not None and not allow_merged:
        raise OperationError(f"ticket #{number} is merged into #{ticket.merged_into}; act on #{ticket.merged_into}")
    return ticket


# The change path ---------------------------------------------------------------------------
def _consequences(session: Session, ticket: Ticket, change: TicketChange, now: datetime) -> None:
    """What follows from a change, whoever made it. The one place to hook SLA clocks and
    agent notifications into."""
    # SLA clocks: status, priority, queue and tier changes start, pause, resume, stop or
    # recompute them (services/sla.py; the desk's policies come from session.info["sla"]).
    sla.on_change(session, ticket, change, now)
    # Agent notifications: assignment, escalation and notes (services/notify.py).
    notify.on_change(session, ticket, change, now)
    # The customer: the resolution notice and the satisfaction survey (services/survey.py).
    survey.on_change(session, ticket, change, now)


def _record(
    session: Session,
    ticket: Ticket,
    event: str | None,
    data: dict[str, Any],
    by: str,
    via: str,
    now: datetime,
    message_pk: int | None = None,
) -> None:
    """Touch the ticket and record `event` with `data` plus who (`by`) and how (`via`)."""
    ticket.updated_at = now
    if event is not None:
        q.add_event(session, ticket.number, event, {**data, "by": by, "via": via}, now, message_pk)


def _record_as_given(
    session: Session, ticket: Ticket, event: str | None, data: dict[str, Any], now: datetime, message_pk: int | None
) -> None:
    """Touch the ticket and record `event` with exactly `data` (an event whose shape predates
    the change path, e.g. `queued-by-address`, `merged-into`)."""
    ticket.updated_at = now
    if event is not None:
        q.add_event(session, ticket.number, event, data, now, message_pk)


def _status_times(ticket: Ticket, status: str, now: datetime) -> None:
    """resolved: resolved now, not closed; closed: closed now (resolved then too unless
    earlier); any open status: neither."""
    if status == Status.RESOLVED:
        ticket.resolved_at = now
        ticket.closed_at = None
    elif status == Status.CLOSED:
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    else:
        ticket.resolved_at = ticket.closed_at = None


def change_status(
    session: Session,
    ticket: Ticket,
    status: str,
    *,
    by: str,
    via: str,
    reason: str,
    now: datetime,
    message_pk: int | None = None,
    event: str | None = "status",
    exact_data: dict[str, Any] | None = None,
) -> TicketChange | None:
    """Set the status with its bookkeeping; None when it already was. The event's data is
    `{from, to, reason, by, via}`, or exactly `exact_data` (merge records `merged-into`)."""
    new = Status(status).value
    old = ticket.status
    if old == new:
        return None
    ticket.status = new
    _status_times(ticket, new, now)
    change = TicketChange("status", old, new, by, via, reason)
    if exact_data is None:
        _record(session, ticket, event, {"from": old, "to": new, "reason": reason}, by, via, now, message_pk)
    else:
        _record_as_given(session, ticket, event, exact_data, now, message_pk)
    _consequences(session, ticket, change, now)
    return change


VIA_HISTORY = "history"


def close_from_history(
    session: Session,
    number: int,
    at: datetime,
    *,
    new: bool,
    agent_reply: bool = False,
    message_pk: int | None = None,
) -> bool:
    """Old mail from `maildesk import --history` (dated `at`, UTC) was stored on ticket
    `number`: the ticket is closed as of its newest mail (resolved and closed then), created
    at its oldest, first answered at the earliest agent reply. Returns True when it changed.

    Deliberately without `_consequences`: history starts no SLA clock and notifies nobody
    (Zammad needed an archive mode after an import sent thousands of notifications, #539).
    A ticket that is open today (live mail threaded with old mail) keeps its status. One
    UPDATE (`store.queries.close_from_history`), no ORM load: the import's hot path."""
    changed = q.close_from_history(session, number, at, new=new, agent_reply=agent_reply)
    if changed and new:
        q.add_event(
            session,
            number,
            "history-imported",
            {"status": Status.CLOSED.value, "by": "import", "via": VIA_HISTORY, "at": at.isoformat()},
            at,
            message_pk,
        )
    return changed


def _set_field(
    session: Session,
    ticket: Ticket,
    kind: str,
    value: str | None,
    *,
    by: str,
    via: str,
    now: datetime,
    message_pk: int | None,
    event: str | None,
    extra: dict[str, Any] | None = None,
) -> TicketChange | None:
    old = getattr(ticket, kind)
    if old == value:
        return None
    setattr(ticket, kind, value)
    change = TicketChange(kind, old, value, by, via)
    _record(session, ticket, event, {"old": old, "new": value, **(extra or {})}, by, via, now, message_pk)
    _consequences(session, ticket, change, now)
    return change


def change_tier(
    session: Session,
    ticket: Ticket,
    tier: str,
    *,
    by: str,
    via: str,
    now: datetime,
    message_pk: int | None = None,
    event: str | None = "tier-changed",
) -> TicketChange | None:
    return _set_field(session, ticket, "tier", tier, by=by, via=via, now=now, message_pk=message_pk, event=event)


def escalate_ticket(
    session: Session,
    ticket: Ticket,
    to_tier: str,
    *,
    what: str,
    note: Message,
    note_text: str,
    by: str,
    via: str,
    now: datetime,
    message_pk: int | None = None,
    extra: dict[str, Any] | None = None,
) -> TicketChange:
    """One escalation step: the hand-off `note` row is kept on the ticket, the tier moves to
    `to_tier` (it may stay, at the top) and one `escalated` event records
    `{from, to, what, note, note_message, **extra, by, via}` (on `message_pk`, else on the note)."""
    old = ticket.tier
    attach_note(session, ticket, note, by=by, via=via, now=now, event=None)
    ticket.tier = to_tier
    change = TicketChange("tier", old, to_tier, by, via, reason=what)
    info = {"from": old, "to": to_tier, "what": what, "note": note_text, "note_message": note.id, **(extra or {})}
    _record(session, ticket, "escalated", info, by, via, now, message_pk if message_pk is not None else note.id)
    _consequences(session, ticket, change, now)
    return change


def change_priority(
    session: Session,
    ticket: Ticket,
    priority: str,
    *,
    by: str,
    via: str,
    now: datetime,
    message_pk: int | None = None,
    event: str | None = "priority-changed",
) -> TicketChange | None:
    return _set_field(
        session, ticket, "priority", priority, by=by, via=via, now=now, message_pk=message_pk, event=event
    )


def change_queue(
    session: Session,
    ticket: Ticket,
    queue: str,
    *,
    by: str,
    via: str,
    now: datetime,
    message_pk: int | None = None,
    event: str | None = "queue-changed",
    exact_data: dict[str, Any] | None = None,
) -> TicketChange | None:
    """Move to `queue`. The event's data is `{old, new, by, via}`, or exactly `exact_data`
    (the route stage records `queued-by-address` as `{address, queue}`)."""
    old = ticket.queue
    if old == queue:
        return None
    ticket.queue = queue
    change = TicketChange("queue", old, queue, by, via)
    if exact_data is None:
        _record(session, ticket, event, {"old": old, "new": queue}, by, via, now, message_pk)
    else:
        _record_as_given(session, ticket, event, exact_data, now, message_pk)
    _consequences(session, ticket, change, now)
    return change


def change_assignee(
    session: Session,
    ticket: Ticket,
    agent: str | None,
    *,
    by: str,
    via: str,
    now: datetime,
    message_pk: int | None = None,
    event: str | None = "assigned",
    detail: dict[str, Any] | None = None,
) -> TicketChange | None:
    """Assign to `agent` (None unassigns); the agent joins the ticket's participants.

    The address is stored lower-case (0010): per-agent counts and filters then read the
    `(status, assignee)` index as it is, with no `lower()` that would need every row."""
    agent = agent.strip().lower() if agent else None
    if ticket.assignee == agent:
        return None
    if agent is not None:
        q.add_participant(session, ticket.number, agent, "agent")
    return _set_field(
        session, ticket, "assignee", agent, by=by, via=via, now=now, message_pk=message_pk, event=event, extra=detail
    )


def retag(
    session: Session,
    ticket: Ticket,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    *,
    by: str,
    via: str,
    now: datetime,
    message_pk: int | None = None,
    event: str | None = "tags-changed",
) -> TicketChange | None:
    """Add and remove tags (order kept, added ones last); None when nothing changes.
    The change's `old`/`new` are the tag tuples; the event records `{added, removed}`."""
    tags = list(ticket.tags or [])
    added = [t for t in dict.fromkeys(add) if t not in tags]
    removed = [t for t in dict.fromkeys(remove) if t in tags]
    if not added and not removed:
        return None
    new = [t for t in tags if t not in removed] + added
    ticket.tags = new
    change = TicketChange("tags", tuple(tags), tuple(new), by, via)
    _record(session, ticket, event, {"added": added, "removed": removed}, by, via, now, message_pk)
    _consequences(session, ticket, change, now)
    return change


def set_fields(
    session: Session,
    ticket: Ticket,
    values: dict[str, str],
    *,
    by: str,
    via: str,
    now: datetime,
    message_pk: int | None = None,
    event: str | None = "fields-changed",
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Merge `values` into the ticket's fields (empty values are ignored); returns what
    changed. The event records `{fields: changed, **extra}`."""
    before = dict(ticket.fields or {})
    changed = {k: v for k, v in values.items() if v != "" and before.get(k) != v}
    if not changed:
        return {}
    ticket.fields = {**before, **changed}
    _record(session, ticket, event, {"fields": changed, **(extra or {})}, by, via, now, message_pk)
    return changed


def set_ask(
    session: Session,
    ticket: Ticket,
    state: dict[str, Any],
    *,
    by: str,
    via: str,
    now: datetime,
    message_pk: int | None = None,
    event: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Keep the state of a rule's `ask:` (guided information collection) on the ticket and
    record `event` with `data`."""
    ticket.ask = dict(state)
    _record(session, ticket, event, data or {}, by, via, now, message_pk)


def attach_note(
    session: Session,
    ticket: Ticket,
    note: Message,
    *,
    by: str,
    via: str,
    now: datetime,
    event: str | None = "note-added",
    data: dict[str, Any] | None = None,
) -> TicketChange:
    """Keep an internal note row (built by `store.rows`) on the ticket; the event sits on the note."""
    session.add(note)
    session.flush()
    change = TicketChange("note", None, note.id, by, via)
    _record(session, ticket, event, data or {}, by, via, now, note.id)
    _consequences(session, ticket, change, now)
    return change


# Operator actions --------------------------------------------------------------------------
@dataclass
class ActionResult:
    number: int
    action: str
    changed: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def add_note(session: Session, number: int, text: str, by: str, now: datetime) -> ActionResult:
    """An internal note on the ticket (never mailed to the customer)."""
    text = text.strip()
    if not text:
        raise OperationError("the note is empty")
    ticket = get_ticket(session, number)
    row = rows.agent_note(ticket, text, by, now)
    attach_note(session, ticket, row, by=by, via=VIA_CLI, now=now, data={"chars": len(text)})
    return ActionResult(number, "note", True, {"message": row.id})


def assign(session: Session, number: int, agent: str, by: str, now: datetime) -> ActionResult:
    """Assign to an agent (known from the agents table when it has any); "none" unassigns."""
    ticket = get_ticket(session, number)
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
    old = ticket.assignee
    if change_assignee(session, ticket, target, by=by, via=VIA_CLI, now=now) is None:
        return ActionResult(number, "assign", False, {"assignee": target})
    return ActionResult(number, "assign", True, {"old": old, "new": target})


def _set_choice(
    session: Session, number: int, name: str, value: str, choices: Sequence[str], by: str, now: datetime
) -> ActionResult:
    """Set `name` (tier or priority) to one of `choices`, recording `<name>-changed`."""
    if value not in choices:
        raise OperationError(f"unknown {name} {value!r}; use {', '.join(choices)}")
    ticket = get_ticket(session, number)
    setter = change_tier if name == "tier" else change_priority
    change = setter(session, ticket, value, by=by, via=VIA_CLI, now=now)
    if change is None:
        return ActionResult(number, name, False, {name: value})
    return ActionResult(number, name, True, {"old": change.old, "new": change.new})


def set_tier(session: Session, number: int, tier: str, by: str, now: datetime) -> ActionResult:
    return _set_choice(session, number, "tier", tier.upper(), TIERS, by, now)


def escalate(session: Session, number: int, note: str, by: str, now: datetime) -> ActionResult:
    """Move to the next tier (L3 stays L3) and keep the hand-off note on the ticket."""
    ticket = get_ticket(session, number)
    old = ticket.tier
    new, what = escalate_tier(old)
    text = f"Escalated {what}." + (f"\n\n{note.strip()}" if note.strip() else "")
    row = rows.agent_note(ticket, text, by, now)
    escalate_ticket(
        session,
        ticket,
        new,
        what=what,
        note=row,
        note_text=note.strip(),
        by=by,
        via=VIA_CLI,
        now=now,
        extra={"old": old, "new": new},
    )
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
    ticket = get_ticket(session, number)
    change = retag(session, ticket, add, remove, by=by, via=VIA_CLI, now=now)
    if change is None:
        return ActionResult(number, "tag", False, {"tags": list(ticket.tags or [])})
    added = [t for t in change.new if t not in change.old]
    removed = [t for t in change.old if t not in change.new]
    return ActionResult(number, "tag", True, {"added": added, "removed": removed, "tags": list(change.new)})


def resolve(session: Session, number: int, by: str, now: datetime) -> ActionResult:
    ticket = get_ticket(session, number)
    if ticket.status in CLOSED_STATUSES:
        return ActionResult(number, "resolve", False, {"status": ticket.status})
    old = ticket.status
    change_status(session, ticket, Status.RESOLVED, by=by, via=VIA_CLI, reason="resolved by an agent", now=now)
    return ActionResult(number, "resolve", True, {"old": old, "new": "resolved"})


def close(session: Session, number: int, by: str, now: datetime) -> ActionResult:
    ticket = get_ticket(session, number)
    if ticket.status == Status.CLOSED:
        return ActionResult(number, "close", False, {"status": "closed"})
    old = ticket.status
    change_status(session, ticket, Status.CLOSED, by=by, via=VIA_CLI, reason="closed by an agent", now=now)
    return ActionResult(number, "close", True, {"old": old, "new": "closed"})


def reopen(session: Session, number: int, by: str, now: datetime) -> ActionResult:
    ticket = get_ticket(session, number)
    if ticket.status not in CLOSED_STATUSES:
        return ActionResult(number, "reopen", False, {"status": ticket.status})
    old = ticket.status
    change_status(session, ticket, Status.OPEN, by=by, via=VIA_CLI, reason="reopened by an agent", now=now)
    return ActionResult(number, "reopen", True, {"old": old, "new": "open"})


def merge(session: Session, target: int, source: int, by: str, now: datetime, deps: Any = None) -> ActionResult:
    """Merge ticket `source` into `target`: source closes and points at target, its people
    join target, its tags carry over; later mail for source lands on target, and
    `ticket show TARGET` shows source's conversation and history (services.views).

    With `deps` (the desk's PipelineDeps) the customer of `source` gets the `merged` notice:
    automatic mail on `source`, threaded under their latest mail there, subject to the
    automatic-mail limits and suppressions like any other."""
    if target == source:
        raise OperationError("cannot merge a ticket into itself")
    into = get_ticket(session, target)
    src = get_ticket(session, source)
    if src.customer_id != into.customer_id:
        q.add_participant(session, target, src.customer.email, "cc")
    for address in q.participants(session, source):
        if address != into.customer.email:
            q.add_participant(session, target, address, "cc")
    retag(session, into, src.tags or [], by=by, via=VIA_CLI, now=now, event=None)  # the `merged` event says it
    old_status = src.status
    src.merged_into = target
    merged = {"into": target, "old_status": old_status, "by": by, "via": VIA_CLI}
    reason = f"merged into #{target}"
    if (
        change_status(
            session,
            src,
            Status.CLOSED,
            by=by,
            via=VIA_CLI,
            reason=reason,
            now=now,
            event="merged-into",
            exact_data=merged,
        )
        is None
    ):
        _record_as_given(session, src, "merged-into", merged, now, None)  # it was closed already
    _record(session, into, "merged", {"from": source}, by, VIA_CLI, now)
    detail: dict[str, Any] = {"into": target, "from": source}
    if deps is not None:
        detail["notice"] = _merged_notice(session, deps, src, now)
    return ActionResult(target, "merge", True, detail)


def _merged_notice(session: Session, deps: Any, src: Ticket, now: datetime) -> str:
    """Queue the `merged` notice to the customer of `src`; what happened, in a word."""
    from maildesk.outbound.mailer import COMPOSE_ERRORS, compose_failed, to_customer

    if src.spam:
        q.add_event(
            session, src.number, "auto-reply-skipped", {"reason": "ticket marked spam", "template": "merged"}, now
        )
        return "skipped: spam"
    request = to_customer(session, src, key=f"merged:{src.number}:{src.merged_into}", template="merged")
    try:
        item = deps.mailer.send(session, request, now)
    except COMPOSE_ERRORS as exc:
        compose_failed(session, src.number, "merged", exc, now, None)
        return "failed"
    return "already sent" if item is None else item.state


def reply(
    session: Session, deps: Any, number: int, text: str, by: str, now: datetime, status: str = "pending"
) -> ActionResult:
    """A reply to the customer through the outbox (the daemon's sender delivers it); the
    ticket then waits on the customer (`status`, default pending; their answer reopens it).
    `deps` is the desk's PipelineDeps (`deps.mailer` composes and queues)."""
    from maildesk.outbound.agent_reply import send_agent_reply
    from maildesk.outbound.mailer import COMPOSE_ERRORS

    if not text.strip():
        raise OperationError("the reply is empty")
    if status not in STATUSES:
        raise OperationError(f"unknown status {status!r}; use {', '.join(STATUSES)}")
    ticket = get_ticket(session, number)
    try:
        item = send_agent_reply(session, deps.mailer, number, text, by, now)
    except COMPOSE_ERRORS as exc:
        raise OperationError(f"cannot compose the reply: {exc}") from exc
    detail: dict[str, Any] = {"queued": item is not None}
    if item is not None:
        sla.on_agent_reply(session, ticket, now)  # stops the response clock before the status pauses the rest
        detail.update(outbox_id=item.id, state=item.state, message_id=item.message_id, recipients=list(item.recipients))
        if change_status(session, ticket, status, by=by, via=VIA_CLI, reason="agent replied", now=now) is not None:
            detail["status"] = status
    return ActionResult(number, "reply", item is not None, detail)


__all__ = [
    "OperationError",
    "ActionResult",
    "TicketChange",
    "VIA_CLI",
    "VIA_RULES",
    "VIA_THREAD",
    "get_ticket",
    "change_status",
    "change_tier",
    "escalate_ticket",
    "change_priority",
    "change_queue",
    "change_assignee",
    "retag",
    "set_fields",
    "set_ask",
    "attach_note",
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
]
