"""The desk's vocabulary, defined once: ticket statuses, tiers, priorities, message kinds
and directions, and the subject tag format.

Everything is a `StrEnum`, so a member *is* its stored string (`Status.OPEN == "open"`):
rows, events, rules files and config keep the plain strings they always had; no migration.
The tuples (`STATUSES`, `TIERS`, `PRIORITIES`) are the same values in their fixed order, for
error messages and validation.

Must not: import anything from maildesk (it sits in the lowest layer with `errors` and
`clock`), touch the database, or decide anything beyond what a word means.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Where a ticket stands. new/open/pending still need work; resolved/closed do not."""

    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATUSES

    @property
    def is_closed(self) -> bool:
        return self in CLOSED_STATUSES


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
OPEN_STATUSES: tuple[str, ...] = (Status.NEW.value, Status.OPEN.value, Status.PENDING.value)
CLOSED_STATUSES: frozenset[str] = frozenset({Status.RESOLVED.value, Status.CLOSED.value})


class Tier(StrEnum):
    """Support tiers, lowest first; escalation moves one step up and stops at the top."""

    L1 = "L1"
    L2 = "L2"
    L3 = "L3"

    @property
    def next(self) -> Tier:
        """The tier an escalation moves to (L3 stays L3)."""
        order = list(Tier)
        return order[min(order.index(self) + 1, len(order) - 1)]

    @property
    def is_top(self) -> bool:
        return self is list(Tier)[-1]


TIERS: tuple[str, ...] = tuple(t.value for t in Tier)


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


PRIORITIES: tuple[str, ...] = tuple(p.value for p in Priority)


class MessageKind(StrEnum):
    """What a stored Message row is (column `messages.kind`)."""

    CUSTOMER = "customer"  # mail a person sent us
    AGENT_REPLY = "agent-reply"  # an agent's answer, mailed through the outbox
    AGENT_NOTE = "agent-note"  # an internal note (by an agent or by the rules); never mailed
    AUTO = "auto"  # automatic mail: ours (ack, rule replies, notices) or a received auto-reply
    BOUNCE = "bounce"  # a delivery status notification
    SURVEY = "survey"  # an answer to the satisfaction survey (never reopens its ticket)


class Direction(StrEnum):
    """`messages.direction`: "in" is mail that arrived; "out" is everything the desk wrote."""

    IN = "in"
    OUT = "out"


# The ticket tag in subjects, e.g. "[#42]"; `desk.subject_tag` may change it (it must keep
# `{number}` exactly once). Formatting and matching live in `maildesk.threading.subject`.
SUBJECT_TAG_FORMAT = "[#{number}]"


def subject_tag(number: int, tag_format: str = SUBJECT_TAG_FORMAT) -> str:
    """The ticket tag for `number`: `[#42]` for the default format."""
    if "{number}" not in tag_format:
        raise ValueError(f"tag format {tag_format!r} must contain {{number}}")
    return tag_format.replace("{number}", str(int(number)))


__all__ = [
    "Status",
    "STATUSES",
    "OPEN_STATUSES",
    "CLOSED_STATUSES",
    "Tier",
    "TIERS",
    "Priority",
    "PRIORITIES",
    "MessageKind",
    "Direction",
    "SUBJECT_TAG_FORMAT",
    "subject_tag",
]


@dataclass(frozen=True)
class TicketChange:
    """One change made to a ticket, as the change path's consequences (SLA clocks,
    notifications) see it (`services.tickets._consequences`)."""

    kind: str  # status | tier | priority | assignee | queue | tags | note
    old: Any
    new: Any
    by: str  # an agent's address, "rules", "customer"
    via: str  # cli | rules | thread | mail
    reason: str = ""
