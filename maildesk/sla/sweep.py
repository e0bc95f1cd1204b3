"""The SLA sweep: act on the warnings, breaches and follow-up timers that have fallen due.

Owns `sweep(store, mailer, now)`: it claims tickets with a due clock (`store.sla_queries.claim_due`,
`FOR UPDATE SKIP LOCKED` on PostgreSQL, so two daemons never take the same ticket), runs
`sla.clocks.due_actions`, saves the clocks and acts, all in one transaction per batch, so each
warning, breach and timer is acted on exactly once across repeated sweeps, restarts and nodes.
Outbox rows carry idempotency keys derived from ticket, clock kind, due time and recipient.

`Actor.act` is how the desk acts (also for what fell due just before a change, through
`SlaContext.act`): a warning mail (`sla_warning`) to the assignee, else the agents of the
ticket's tier; on breach the policy's actions through the ticket-change path (escalate one tier
with a hand-off note, raise priority) and `sla_breach` mail to the queue's lead (its agents at
the highest tier) or the assignee; the customer's follow-up (`followup`, automatic mail under
the loop limits) and the auto-resolve (status resolved with a closing note, and the `resolved`
notice to the customer, queued by the change path: services/survey.on_change).

Must not: read the clock (`now` is given), build SQL, or decide clock semantics (sla.clocks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from maildesk.domain import PRIORITIES, Status
from maildesk.outbound.context import FollowupInput, SlaInput
from maildesk.outbound.mailer import COMPOSE_ERRORS, Mailer, Recipient, SendRequest, to_customer
from maildesk.rules.engine import escalate_tier
from maildesk.services import notify, tickets
from maildesk.services import sla as sla_service
from maildesk.sla.clocks import Action, AutoResolve, Breach, FollowUp, Warn, due_actions
from maildesk.sla.policy import SlaPolicy, Target
from maildesk.store import Session, rows
from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store import sla_queries as sq
from maildesk.store.db import Store
from maildesk.store.models import Agent, Ticket
from maildesk.store.routing_queries import all_agents

log = logging.getLogger("maildesk.sla")

BY = "sla"  # who made a change the sweep made
VIA = "sla"


@dataclass
class SweepReport:
    now: datetime
    tickets: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "tickets": self.tickets, "actions": self.actions, "dry_run": self.dry_run}


class _DryRun(Exception):
    """Raised to roll a dry run's transaction back."""


def sweep(store: Store, mailer: Mailer, now: datetime, *, dry_run: bool = False, batch: int = 200) -> SweepReport:
    """Act on everything due by `now`, `batch` tickets per transaction. `dry_run`: one
    transaction over everything, rolled back (what would be done)."""
    report = SweepReport(now, dry_run=dry_run)
    actor = Actor(mailer)
    try:
        more = True
        while more:
            with store.session() as session:
                while True:
                    found = sq.claim_due(session, now, batch)  # a ticket swept has no due clock left
                    for number in found:
                        report.actions.extend(sweep_ticket(session, actor, number, now))
                    report.tickets += len(found)
                    more = len(found) == batch
                    if not (dry_run and more):
                        break
                if dry_run:
                    raise _DryRun
    except _DryRun:
        pass
    return report


def sweep_ticket(session: Session, actor: Actor, number: int, now: datetime) -> list[dict[str, Any]]:
    """One ticket's due clocks: mark them, record and act. Returns what was done, for the report."""
    ticket = session.get(Ticket, number)
    if ticket is None:
        return []
    ctx = sla_service.context(session)
    clocks = sq.load_clocks(session, number, ticket.status, lock=True)
    if sla_service.policy_gone(ctx, clocks) and sla_service.withdraw_gone_policy(session, ticket, now):
        clocks = sq.load_clocks(session, number, ticket.status)  # a removed policy promises nothing any more
    policy = ctx.settings.policy(clocks.policy) if clocks.policy else None
    marked, actions = due_actions(clocks, now, policy)
    sq.save_clocks(session, number, marked)  # always: next_at moves on, so the claim cannot return it again
    return actor.act(session, ticket, actions, now)


class Actor:
    """Acts on the engine's actions for one desk (its settings and mailer)."""

    def __init__(self, mailer: Mailer | Callable[[], Mailer]) -> None:
        self._mailer = mailer  # a callable: the desk's mailer, looked up when first needed

    @property
    def mailer(self) -> Mailer:
        return self._mailer if isinstance(self._mailer, Mailer) else self._mailer()

    def __call__(self, session: Session, ticket: Ticket, actions: Sequence[Action], now: datetime) -> None:
        self.act(session, ticket, actions, now)

    def act(self, session: Session, ticket: Ticket, actions: Sequence[Action], now: datetime) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        breached = {a.kind for a in actions if isinstance(a, Breach)}
        for action in actions:
            if isinstance(action, Warn):
                done.append(self._warn(session, ticket, action, now, skip=action.kind in breached))
            elif isinstance(action, Breach):
                done.append(self._breach(session, ticket, action, now))
            elif isinstance(action, FollowUp):
                done.append(self._followup(session, ticket, action, now))
            elif isinstance(action, AutoResolve):
                done.append(self._autoresolve(session, ticket, action, now))
        return done

    # Warnings and breaches ------------------------------------------------------------
    def _warn(self, session: Session, ticket: Ticket, action: Warn, now: datetime, *, skip: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": action.kind, "warn_at": action.due_at.isoformat()}
        data["due_at"] = action.breach_at.isoformat()
        if skip:
            data["mailed"] = []
            data["skipped"] = "the breach came in the same sweep"
        else:
            to = _assignee(session, ticket) or _tier_group(session, ticket)
            sla = SlaInput(_template_kind(action.kind), action.breach_at)
            data["mailed"] = self._mail_agents(session, ticket, "sla_warning", to, sla, action.kind, action.due_at, now)
        q.add_event(session, ticket.number, "sla-warning", data, now)
        return {"ticket": ticket.number, "action": "warning", **data}

    def _breach(self, session: Session, ticket: Ticket, action: Breach, now: datetime) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": action.kind,
            "due_at": action.due_at.isoformat(),
            "actions": list(action.actions),
        }
        q.add_event(session, ticket.number, "sla-breached", data, now)
        done: dict[str, Any] = {}
        escalated_to = ""
        for what in action.actions:
            if what == "escalate":
                old = ticket.tier
                new, how = escalate_tier(old)
                text = (
                    f"Escalated {how}: the {action.kind.replace('_', ' ')} target was missed "
                    f"(due {action.due_at:%Y-%m-%d %H:%M} UTC)."
                )
                note = rows.agent_note(ticket, text, BY, now, source="sla")
                tickets.escalate_ticket(
                    session, ticket, new, what=how, note=note, note_text=text, by=BY, via=VIA, now=now,
                    extra={"sla": action.kind},
                )  # fmt: skip
                escalated_to = new if new != old else ""
                done["escalate"] = [old, new]
            elif what == "raise_priority":
                old = ticket.priority
                new = _raised(old)
                if new != old:
                    tickets.change_priority(session, ticket, new, by=BY, via=VIA, now=now)
                done["raise_priority"] = [old, new]
        sla = SlaInput(_template_kind(action.kind), action.due_at, action.due_at, escalated_to)
        if "notify_lead" in action.actions:
            lead = _queue_lead(session, ticket)
            done["notify_lead"] = self._mail_agents(
                session, ticket, "sla_breach", lead, sla, action.kind, action.due_at, now
            )
        if "notify_assignee" in action.actions:
            to = _assignee(session, ticket)
            done["notify_assignee"] = self._mail_agents(
                session, ticket, "sla_breach", to, sla, action.kind, action.due_at, now
            )
        if done:
            q.add_event(session, ticket.number, "sla-breach-acted", {"kind": action.kind, **done}, now)
        return {"ticket": ticket.number, "action": "breach", **data, "done": done}

    def _mail_agents(
        self,
        session: Session,
        ticket: Ticket,
        template: str,
        agents: Sequence[Agent],
        sla: SlaInput,
        kind: str,
        due: datetime,
        now: datetime,
    ) -> list[str]:
        sent = []
        for agent in agents:
            request = SendRequest(
                key=f"sla:{template}:{ticket.number}:{kind}:{due.isoformat()}:{agent.email.lower()}",
                ticket_number=ticket.number,
                template=template,
                to=Recipient(agent.email, agent.name),
                automatic=True,
                internal=True,
                kind="auto",
                reader_agent=self.mailer.agent_input(agent, agent.email),
                sla=sla,
            )
            if self._send(session, request, now):
                sent.append(agent.email)
        return sent

    # Follow-ups -----------------------------------------------------------------------
    def _followup(self, session: Session, ticket: Ticket, action: FollowUp, now: datetime) -> dict[str, Any]:
        policy = self._policy(session, ticket)
        waiting_since = _pending_since(session, ticket) or action.due_at
        request = to_customer(
            session,
            ticket,
            key=f"sla:followup:{ticket.number}:{action.due_at.isoformat()}",
            template="followup",
            followup=FollowupInput(waiting_since, _close_after_days(policy)),
        )
        queued = self._send(session, request, now)
        data = {"due_at": action.due_at.isoformat(), "queued": queued}
        q.add_event(session, ticket.number, "followup-sent", data, now)
        return {"ticket": ticket.number, "action": "followup", **data}

    def _autoresolve(self, session: Session, ticket: Ticket, action: AutoResolve, now: datetime) -> dict[str, Any]:
        data: dict[str, Any] = {"due_at": action.due_at.isoformat(), "status": ticket.status}
        q.add_event(session, ticket.number, "auto-resolved", data, now)
        if ticket.status == Status.PENDING:
            text = "Resolved automatically: no reply from the customer since the follow-up."
            note = rows.agent_note(ticket, text, BY, now, source="sla")
            tickets.attach_note(session, ticket, note, by=BY, via=VIA, now=now, data={"auto_resolved": True})
            tickets.change_status(
                session, ticket, Status.RESOLVED, by=BY, via=VIA, reason="no reply from the customer", now=now
            )
            # the customer's `resolved` notice (and survey) comes from the change path:
            # services/survey.on_change, as for every other way a ticket is resolved
        return {"ticket": ticket.number, "action": "auto-resolve", **data}

    # Helpers ----------------------------------------------------------------------------
    def _send(self, session: Session, request: SendRequest, now: datetime) -> bool:
        try:
            item = self.mailer.send(session, request, now)
        except COMPOSE_ERRORS as exc:
            q.add_event(
                session,
                request.ticket_number,
                "sla-mail-failed",
                {"template": request.template, "error": str(exc)},
                now,
            )
            return False
        return item is not None

    def _policy(self, session: Session, ticket: Ticket) -> SlaPolicy | None:
        return sla_service.policy_for(session, ticket)


def _template_kind(kind: str) -> str:
    return "next_update" if kind == "next_response" else kind


def _raised(priority: str) -> str:
    order = list(PRIORITIES)
    at = order.index(priority) if priority in order else 0
    return order[min(at + 1, len(order) - 1)]


def _assignee(session: Session, ticket: Ticket) -> list[Agent]:
    if not ticket.assignee:
        return []
    agent = oq.agent_by_email(session, ticket.assignee)
    return [agent] if agent is not None and agent.active else [Agent(email=ticket.assignee, name="")]


def _works_queue(agent: Agent, queue: str) -> bool:
    return not agent.queues or queue in agent.queues


def _tier_group(session: Session, ticket: Ticket) -> list[Agent]:
    return [
        a for a in all_agents(session) if a.active and ticket.tier in (a.tiers or []) and _works_queue(a, ticket.queue)
    ]


def _queue_lead(session: Session, ticket: Ticket) -> list[Agent]:
    """The queue's lead (`services.notify.queue_lead_agents`), else the assignee."""
    return notify.queue_lead_agents(session, ticket) or _assignee(session, ticket)


def _pending_since(session: Session, ticket: Ticket) -> datetime | None:
    clock = sq.load_clocks(session, ticket.number, ticket.status).get("followup")
    return clock.started_at if clock is not None else None


def _days(target: Target | None) -> float:
    return 0.0 if target is None else target.days + target.seconds / (8 * 3600)


def _close_after_days(policy: SlaPolicy | None) -> int:
    if policy is None or policy.resolve_after is None:
        return 7
    return max(1, round(_days(policy.resolve_after) - _days(policy.followup_after)))
