"""Who belongs to an assignment group: the pure team arithmetic the rules' `assign:` and the
agent notifications share.

Owns `group_members` (the active agents of a group — a tier `L2`, a queue `billing`, or
`queue/tier` — in a stable order) and `tier_group` (who serves a ticket's queue at a tier).
Works on anything shaped like an agent (`TeamMember`: email, active, queues, tiers), so it
never sees the store. Must not: look anything up, pick one agent (that is
`rules.engine.pick_*`), or know about mail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from maildesk.domain import TIERS


class TeamMember(Protocol):
    """What the team arithmetic reads of an agent (the store's Agent row fits)."""

    @property
    def email(self) -> str: ...

    @property
    def active(self) -> bool: ...

    @property
    def queues(self) -> Sequence[Any] | None: ...

    @property
    def tiers(self) -> Sequence[Any] | None: ...


def group_members(agents: Iterable[TeamMember], group: str, queue: str, tier: str) -> list[str]:
    """Active agents of a group, by email. See the teams section of maildesk.toml.

    `queue/tier`: agents serving the queue at that tier. A tier: agents at that tier serving
    `queue`, else every agent at that tier. A queue: its agents at `tier`, else all its agents
    (agents with no queues serve every queue)."""
    active = sorted((a for a in agents if a.active), key=lambda a: a.email.lower())

    def serves(a: TeamMember, qn: str) -> bool:
        return not a.queues or qn in a.queues

    def at(a: TeamMember, t: str) -> bool:
        return t in (a.tiers or [])

    gq, _, gt = group.partition("/")
    if gt:
        return [a.email for a in active if serves(a, gq) and at(a, gt)]
    if group in TIERS:
        tiered = [a for a in active if at(a, group)]
        here = [a.email for a in tiered if serves(a, queue)]
        return here or [a.email for a in tiered]
    in_queue = [a for a in active if a.queues and group in a.queues] or [a for a in active if serves(a, group)]
    here = [a.email for a in in_queue if at(a, tier)]
    return here or [a.email for a in in_queue]


def queue_group(agents: Iterable[TeamMember], queue: str, tier: str) -> list[str]:
    """The agents a ticket in `queue` at `tier` concerns: the queue's agents at that tier,
    else all the queue's agents (the queue group, as `assign: {group: QUEUE}` sees it)."""
    return group_members(agents, queue or "default", queue or "default", tier)


def tier_pool(agents: Iterable[TeamMember], queue: str, tier: str) -> tuple[list[str], bool]:
    """Who can take a ticket of `queue` at `tier`: (agents, True) when some serve the queue
    at that tier (one of them is to be picked), else (the tier group, False)."""
    agents = list(agents)
    exact = group_members(agents, f"{queue or 'default'}/{tier}", queue or "default", tier)
    if exact:
        return exact, True
    return group_members(agents, tier, queue or "default", tier), False
