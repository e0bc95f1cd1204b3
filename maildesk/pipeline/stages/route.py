"""The route stage: the rules decide queue, tier, priority, tags, fields, assignee and the
automatic mail for a customer's mail, new ticket or reply, and the decision is applied.

Owns: the facts the rules see (`customer_facts`, `ticket_state`: looked up here, evaluated
by the pure `maildesk.rules.engine`), applying a `Decision` to the ticket row, the
assignment strategies against the store (round-robin cursor in the `kv` table, least-loaded
by open tickets per agent), turning the decision into ticket changes — made through
`services.tickets`, the one change path (escalation hand-off notes: `store.rows.rules_note`
plus an `escalated` event per step, from `Decision.escalations`, never parsed out of the
display strings in `hit.actions`), `notify` mail through the outbox (its Reply-To is an
agent token bound to the recipient and the ticket, `services.notify.agent_reply_to`: a reply
is never taken as the customer's words), and the audit trail: one
`rule` event per matched rule and one `routed` event with the decision, what changed and the
input facts (so `maildesk rules replay` can re-decide the mail exactly as it was seen).
`ctx.decision` is set so the respond stage sends the automatic mail the rules chose
(`Decision.mails`).

Also owns guided information collection (a rule's `ask:`): `start_ask` keeps what was asked
on the ticket (`tickets.ask`, tag `awaiting-info`, event `ask-sent`); `guided_reply` reads a
customer's reply on such a ticket before the rules run — found fields are stored
(`field-captured`), missing ones are asked for once more (`ask-again`, the `again`
template as the one mail answering the reply), then the ticket is handed to an agent
(`ask-handoff`: tags and an assignment, through `services.tickets`).

Also owns `make_rules_holder` (the rules file loaded with the desk's known queues, agents,
groups and templates) so the daemon, `rules check` and `rules test` judge a file alike.

Must not: delete anything (spam/discard only mark and close), send or render mail itself,
commit, or run for duplicates, automatic mail or mail without a ticket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from maildesk.config import Settings
from maildesk.domain import TIERS, Status
from maildesk.pipeline.context import MessageContext, PipelineDeps, stage
from maildesk.rules.engine import capture_fields, evaluate, pick_least_loaded, pick_round_robin
from maildesk.rules.holder import RulesHolder
from maildesk.rules.inputs import rule_input_from_message
from maildesk.rules.loader import load_rules
from maildesk.rules.model import AssignSpec, AutoMail, CustomerFacts, Decision, RuleInput, TicketState
from maildesk.rules.ruleset import RuleSet
from maildesk.rules.teams import group_members
from maildesk.services import notify as notices
from maildesk.services import sla, tickets
from maildesk.store import Session, rows
from maildesk.store import queries as q
from maildesk.store import routing_queries as rq
from maildesk.store.models import Customer, Ticket

log = logging.getLogger("maildesk.rules")

RULES = "rules"  # `by` of the changes the rules make


# Loading ------------------------------------------------------------------------------------
def known_groups(settings: Settings) -> set[str]:
    """Assignment group names a rule may use: tiers, queues and `queue/tier`."""
    queues = {qs.name for qs in settings.queues} | {"default"}
    for agent in settings.agents:
        queues.update(agent.queues)
    return set(TIERS) | queues | {f"{qn}/{t}" for qn in queues for t in TIERS}


def load_for_desk(path: Path, settings: Settings) -> RuleSet:
    """Load a rules file checked against this desk's queues, agents, groups and templates.

    A check is skipped when the desk does not define that vocabulary (no `[[queue]]`: any
    queue name; no `[[agent]]`: any agent address and group).
    """
    from maildesk.outbound.render import TemplateRenderer

    site = settings.resolve(settings.desk.templates_dir) if settings.desk.templates_dir else None
    templates = TemplateRenderer(site, default_locale=settings.desk.locale).names()
    queues = ({qs.name for qs in settings.queues} | {"default"}) if settings.queues else None
    agents = {a.email for a in settings.agents} if settings.agents else None
    groups = known_groups(settings) if settings.agents else None
    return load_rules(path, known_templates=templates, known_queues=queues, known_agents=agents, known_groups=groups)


def make_rules_holder(settings: Settings) -> RulesHolder:
    """The desk's RulesHolder, loaded once (errors are in `holder.errors`, rules empty)."""
    if not settings.desk.rules_file:
        return RulesHolder(None)
    holder = RulesHolder(settings.resolve(settings.desk.rules_file), loader=lambda p: load_for_desk(p, settings))
    errors = holder.reload()
    for line in errors:
        log.error("rules not loaded: %s", line)
    return holder


def refresh(holder: RulesHolder) -> None:
    """Reload when the file changed (one stat() otherwise); a broken edit keeps the old rules."""
    errors = holder.reload_if_changed()
    if errors is None:
        return
    if errors:
        for line in errors:
            log.error("rules file has errors, previous rules stay in force: %s", line)
    else:
        log.info("rules reloaded from %s: %d rules", holder.path, len(holder.ruleset.rules))


# Facts --------------------------------------------------------------------------------------
def customer_facts(
    session: Session,
    email: str,
    exclude_ticket: int | None,
    before: datetime | None = None,
    customer: Customer | None = None,
) -> CustomerFacts:
    """VIP flag, earlier tickets and open tickets of the sender (the current ticket excluded).

    `customer` saves the lookup when the caller already holds the sender's row."""
    email = email.lower()
    domain = email.rpartition("@")[2]
    if customer is not None and customer.email.lower() == email:
        known: tuple[int, bool] | None = (customer.id, bool(customer.vip))
    else:
        known = rq.customer_id_vip(session, email)
    if known is None:
        return CustomerFacts(email=email, domain=domain)
    customer_id, vip = known
    if before is not None or exclude_ticket is None:  # rules replay: the tickets as they were then
        tickets, open_tickets = rq.customer_ticket_counts(session, customer_id, exclude_ticket, before)
    else:
        others = rq.customer_tickets(session, customer_id, exclude_ticket)
        tickets, open_tickets = others.total, others.open
    return CustomerFacts(email=email, domain=domain, vip=vip, tickets=int(tickets), open_tickets=int(open_tickets))


def ticket_state(ticket: Ticket, status: str | None = None) -> TicketState:
    return TicketState(
        status=status or ticket.status,
        queue=ticket.queue or "",
        tier=ticket.tier or "L1",
        priority=ticket.priority or "normal",
        tags=tuple(str(t) for t in (ticket.tags or [])),
        assignee=ticket.assignee or "",
    )


def input_json(inp: RuleInput) -> dict[str, Any]:
    """The looked-up facts of a RuleInput (the mail itself is stored with the message)."""
    c = inp.customer
    data: dict[str, Any] = {
        "event": inp.event,
        "customer": {"vip": c.vip, "tickets": c.tickets, "open_tickets": c.open_tickets},
        "ticket": None,
    }
    if inp.ticket is not None:
        t = inp.ticket
        data["ticket"] = {
            "status": t.status,
            "queue": t.queue,
            "tier": t.tier,
            "priority": t.priority,
            "tags": list(t.tags),
            "assignee": t.assignee,
        }
    return data


def _status_before(session: Session, ctx: MessageContext, ticket: Ticket) -> str:
    """The ticket's status as the customer's mail found it (before this mail reopened it)."""
    if ctx.thread is None or not ctx.thread.reopen or ctx.message_pk is None:
        return ticket.status
    return rq.reopened_from(session, ctx.message_pk) or ticket.status


def build_input(session: Session, ctx: MessageContext, ticket: Ticket) -> RuleInput:
    sender = ctx.msg.from_ or ctx.msg.sender
    email = sender.email.lower() if sender is not None else ""
    state = None if ctx.new_ticket else ticket_state(ticket, _status_before(session, ctx, ticket))
    return rule_input_from_message(
        ctx.msg,
        event="new" if ctx.new_ticket else "reply",
        now=ctx.now,
        body=ctx.visible_text or ctx.msg.text,
        customer=customer_facts(session, email, ticket.number, customer=ticket.customer),
        ticket=state,
    )


# Assignment ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Assignment:
    agent: str | None
    detail: dict[str, Any]


def resolve_assignment(session: Session, spec: AssignSpec, ticket: Ticket) -> Assignment:
    """Turn an AssignSpec into one agent address (None with a reason when nobody fits)."""
    if spec.strategy == "agent":
        row = rq.agent_by_email(session, spec.agent)
        if row is not None and not row.active:
            return Assignment(None, {"strategy": "agent", "reason": f"agent {row.email} is not active"})
        return Assignment(row.email if row is not None else spec.agent.lower(), {"strategy": "agent"})
    agents = rq.all_agents(session)
    members = group_members(agents, spec.group, ticket.queue, ticket.tier)
    if not members:
        return Assignment(
            None,
            {
                "strategy": spec.strategy,
                "group": spec.group,
                "reason": f"no active agent in group {spec.group!r} (queue {ticket.queue}, tier {ticket.tier})",
            },
        )
    if spec.strategy == "least_loaded":
        loads = rq.open_loads(session, members, ticket.number)
        return Assignment(pick_least_loaded(loads), {"strategy": "least_loaded", "group": spec.group, "loads": loads})
    last = rq.round_robin_last(session, spec.group)
    chosen = pick_round_robin(members, last)
    rq.set_round_robin_last(session, spec.group, chosen)
    return Assignment(chosen, {"strategy": "round_robin", "group": spec.group, "members": members, "previous": last})


# Applying -----------------------------------------------------------------------------------
def apply_decision(
    session: Session, ctx: MessageContext, deps: PipelineDeps, ticket: Ticket, decision: Decision
) -> dict[str, Any]:
    """Change the ticket as decided, through `services.tickets` (one change path with the CLI
    and threading); returns {what: [old, new]} for the `routed` event, which records the
    queue, priority, tier, status and tag changes (escalations and assignments record their
    own events, as ever)."""
    now, pk = ctx.now, ctx.message_pk
    who: dict[str, Any] = {"by": RULES, "via": tickets.VIA_RULES, "now": now}
    changes: dict[str, Any] = {}

    def note(change: tickets.TicketChange | None) -> None:
        if change is not None:
            changes[change.kind] = [change.old, change.new]

    old_tier = ticket.tier
    if decision.queue is not None:
        note(tickets.change_queue(session, ticket, decision.queue, event=None, **who))
    if decision.priority is not None:
        note(tickets.change_priority(session, ticket, decision.priority, event=None, **who))
    # escalation steps: one hand-off note and one event each
    for step, esc in enumerate(decision.escalations, 1):
        text = f"Escalated {esc.what} by rule {esc.rule!r}.\n\n{esc.note}"
        tickets.escalate_ticket(
            session,
            ticket,
            esc.to_tier,
            what=esc.what,
            note=rows.rules_note(ticket, text, now, message_pk=pk, step=step),
            note_text=esc.note,
            message_pk=pk,
            extra={"from": esc.from_tier, "to": esc.to_tier, "rule": esc.rule},
            **who,
        )
    if decision.tier is not None:
        tickets.change_tier(session, ticket, decision.tier, event=None, **who)
    if ticket.tier != old_tier:
        changes["tier"] = [old_tier, ticket.tier]
    if decision.sla is not None and sla.choose_policy(session, ticket, decision.sla, now):
        changes["sla"] = decision.sla  # a rule's `sla: NAME` (or none); the clocks record their own events
    status = Status.RESOLVED if decision.resolve else decision.status
    if status is not None:
        note(tickets.change_status(session, ticket, status, reason="rules", event=None, **who))
    if decision.tags_add or decision.tags_remove:
        tagged = tickets.retag(session, ticket, decision.tags_add, decision.tags_remove, event=None, **who)
        if tagged is not None:
            added = [t for t in tagged.new if t not in tagged.old]
            removed = [t for t in tagged.old if t not in tagged.new]
            if added:
                changes["tags"] = added
            if removed:
                changes["untag"] = removed
    filled = tickets.set_fields(session, ticket, dict(decision.fields), event=None, **who)
    if filled:
        changes["fields"] = filled
    junk = decision.discard if decision.discard is not None else decision.spam
    if junk is not None:
        kind = "discard" if decision.discard is not None else "spam"
        if ctx.new_ticket:
            if not ticket.spam:
                ticket.spam = True
                changes["spam"] = [False, True]
            if kind == "discard":
                note(tickets.change_status(session, ticket, Status.CLOSED, reason="discarded", event=None, **who))
            q.add_event(
                session,
                ticket.number,
                "marked-spam" if kind == "spam" else "discarded",
                {"reason": junk, "by": "rules", "kept": "the ticket and the mail are kept, never deleted"},
                now,
                pk,
            )
        else:
            q.add_event(
                session,
                ticket.number,
                "reply-flagged",
                {"kind": kind, "reason": junk, "detail": "a reply on an existing ticket: the ticket is left as it was"},
                now,
                pk,
            )
    if decision.assign is not None:
        got = resolve_assignment(session, decision.assign, ticket)
        if got.agent is None:
            q.add_event(
                session, ticket.number, "assign-failed", {"rule_assign": str(decision.assign), **got.detail}, now, pk
            )
        else:
            assigned = tickets.change_assignee(session, ticket, got.agent, message_pk=pk, detail=got.detail, **who)
            if assigned is not None:
                changes["assignee"] = [assigned.old, assigned.new]
    if changes:
        ticket.updated_at = now
    for to, template in decision.notify:
        _notify(session, ctx, deps, ticket, to, template)
    return changes


def _notify(session: Session, ctx: MessageContext, deps: PipelineDeps, ticket: Ticket, to: str, template: str) -> None:
    from maildesk.outbound.mailer import COMPOSE_ERRORS, Parent, Recipient, SendRequest, compose_failed
    from maildesk.pipeline.stages.respond import _message_input

    try:
        request = SendRequest(
            key=f"notify:{ctx.message_pk}:{to}:{template}",
            ticket_number=ticket.number,
            template=template,
            to=Recipient(to, ""),
            automatic=True,
            parent=Parent.of(ctx.msg),
            kind="auto",
            internal=True,
            message=_message_input(ctx),
            message_pk=ctx.message_pk,
            reply_to=notices.agent_reply_to(session, deps.mailer, ticket, to),
        )
        item = deps.mailer.send(session, request, ctx.now)
    except COMPOSE_ERRORS as exc:
        compose_failed(session, ticket.number, template, exc, ctx.now, ctx.message_pk)
        return
    data: dict[str, Any] = {"to": to, "template": template, "by": "rules"}
    if item is not None:
        data.update(outbox_id=item.id, state=item.state)
    q.add_event(session, ticket.number, "notified", data, ctx.now, ctx.message_pk)


# Guided information collection (a rule's `ask:`) ---------------------------------------------
AWAITING_TAG = "awaiting-info"  # on the ticket while the desk waits for asked fields


def start_ask(session: Session, ctx: MessageContext, ticket: Ticket, decision: Decision) -> Decision:
    """A decision's `ask:` begins the guided collection: the state goes on the ticket
    (`tickets.ask`), the ticket is tagged `awaiting-info` and an `ask-sent` event records
    what was asked. Not when the ticket already waits for an answer or has the fields: the
    question is then dropped from the decision's mails (and a note says why)."""
    spec = decision.ask
    if spec is None:
        return decision
    have = dict(ticket.fields or {})
    missing = tuple(n for n in decision.ask_missing if not have.get(n))
    waiting = (ticket.ask or {}).get("state") == "waiting"
    if not missing or waiting:
        why = "the ticket already waits for an answer" if waiting else "the ticket already has the fields"
        return replace(
            decision,
            mails=tuple(m for m in decision.mails if m.kind != "ask"),
            notes=(*decision.notes, f"ask {spec.template} not sent: {why}"),
            ask=None,
        )
    who: dict[str, Any] = {"by": RULES, "via": tickets.VIA_RULES, "now": ctx.now, "message_pk": ctx.message_pk}
    state = {
        **spec.to_json(),
        "rule": decision.ask_rule,
        "missing": list(missing),
        "asked": 1,
        "state": "waiting",
        "asked_at": ctx.now.isoformat(),
    }
    data = {"rule": decision.ask_rule, "fields": list(missing), "template": spec.template}
    tickets.set_ask(session, ticket, state, event="ask-sent", data=data, **who)
    tickets.retag(session, ticket, [AWAITING_TAG], event=None, **who)
    return decision


def guided_reply(session: Session, ctx: MessageContext, ticket: Ticket) -> AutoMail | None:
    """The customer answered while the ticket waits for asked fields: the fields found in
    their visible text are stored (`field-captured`); when all are there the ticket is no
    longer waiting; when some are missing the desk asks once more (the returned `again`
    mail, `ask-again` event), and after that hands the ticket to an agent (`ask-handoff`:
    the handoff tags, an assignment when the rule named one)."""
    state = dict(ticket.ask or {})
    if state.get("state") != "waiting":
        return None
    patterns = {str(k): str(v) for k, v in (state.get("fields") or {}).items()}
    missing = [n for n in state.get("missing") or [] if n in patterns and not (ticket.fields or {}).get(n)]
    who: dict[str, Any] = {"by": RULES, "via": tickets.VIA_RULES, "now": ctx.now, "message_pk": ctx.message_pk}
    found = capture_fields([(n, patterns[n]) for n in missing], ctx.visible_text or ctx.msg.text)
    rule = str(state.get("rule", ""))
    if found:
        tickets.set_fields(session, ticket, found, event="field-captured", extra={"rule": rule}, **who)
    still = [n for n in missing if n not in found]
    asked = int(state.get("asked", 1))
    if not still:
        state.update(state="answered", missing=[], answered_at=ctx.now.isoformat())
        tickets.set_ask(session, ticket, state, event="ask-answered", data={"rule": rule, "fields": found}, **who)
        tickets.retag(session, ticket, (), [AWAITING_TAG], event=None, **who)
        return None
    if asked < 2:
        state.update(asked=asked + 1, missing=still)
        again = {"rule": rule, "missing": still, "template": state.get("again", "ask_again")}
        tickets.set_ask(session, ticket, state, event="ask-again", data=again, **who)
        why = f"rule {rule!r}: the reply lacks {', '.join(still)}; asked once more"
        return AutoMail(str(state.get("again") or "ask_again"), why, kind="ask-again")
    handoff = state.get("handoff") or {}
    state.update(state="handed-off", missing=still, handed_off_at=ctx.now.isoformat())
    data: dict[str, Any] = {"rule": rule, "missing": still, "asked": asked}
    tickets.set_ask(session, ticket, state, event=None, **who)
    tickets.retag(session, ticket, [str(t) for t in handoff.get("tags") or ()], [AWAITING_TAG], event=None, **who)
    assign = handoff.get("assign")
    if assign:
        how, _, rest = str(assign).partition("(")
        spec = (
            AssignSpec(how, group=rest.rstrip(")"))
            if rest and how in ("round_robin", "least_loaded")
            else AssignSpec("agent", agent=str(assign))
        )
        got = resolve_assignment(session, spec, ticket)
        data["assign"] = got.agent
        if got.agent is not None:
            tickets.change_assignee(session, ticket, got.agent, detail=got.detail, **who)
    data["tags"] = list(handoff.get("tags") or ())
    q.add_event(session, ticket.number, "ask-handoff", data, ctx.now, ctx.message_pk)
    return None


def _guided_mail_first(decision: Decision, mail: AutoMail) -> Decision:
    """The guided question is the one answer to this mail: plain rule replies give way
    (`also: true` replies stay)."""
    kept = tuple(m for m in decision.mails if m.kind == "also" and m.template != mail.template)
    gone = [m.template for m in decision.mails if m not in kept]
    notes = decision.notes + ((f"not sent: {', '.join(gone)} ({mail.template} answers this mail)",) if gone else ())
    return replace(decision, mails=(mail, *kept), replies=tuple(m.template for m in kept), notes=notes)


@stage()
def route(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Queue by support address for a new ticket, then the rules; record every hit."""
    if ctx.duplicate or ctx.handled or ctx.ticket_number is None or ctx.kind != "customer":
        return
    ticket = session.get(Ticket, ctx.ticket_number)
    if ticket is None:
        return
    settings = deps.settings
    if ctx.new_ticket and settings.queues:
        for rcpt in [*ctx.envelope_recipients, *(a.email for a in ctx.msg.to + ctx.msg.cc)]:
            queue = settings.queue_for_address(rcpt)
            if queue is not None:
                tickets.change_queue(
                    session,
                    ticket,
                    queue,
                    by=RULES,
                    via=tickets.VIA_RULES,
                    now=ctx.now,
                    message_pk=ctx.message_pk,
                    event="queued-by-address",
                    exact_data={"address": rcpt, "queue": queue},
                )
                break
    guided = None if ctx.new_ticket else guided_reply(session, ctx, ticket)
    holder = deps.rules
    if holder.path is not None:
        refresh(holder)
    ruleset = holder.ruleset
    if holder.path is None or not ruleset.rules:
        if guided is not None:
            ctx.decision = Decision(mails=(guided,))
        return
    inp = build_input(session, ctx, ticket)
    decision = start_ask(session, ctx, ticket, evaluate(ruleset, inp))
    if guided is not None:
        decision = _guided_mail_first(decision, guided)
    ctx.decision = decision
    for hit in decision.hits:
        if hit.matched:
            q.add_event(
                session,
                ticket.number,
                "rule",
                {"name": hit.name, "line": hit.line, "actions": list(hit.actions), "captures": dict(hit.captures)},
                ctx.now,
                ctx.message_pk,
            )
    changes = apply_decision(session, ctx, deps, ticket, decision)
    summary = {k: v for k, v in decision.to_json().items() if k != "hits"}
    q.add_event(
        session,
        ticket.number,
        "routed",
        {
            "rules_file": str(holder.path),
            "rules": len(ruleset.rules),
            "matched": list(decision.matched),
            "decision": summary,
            "changes": changes,
            "input": input_json(inp),
            "rules_errors": list(holder.errors)[:5],
        },
        ctx.now,
        ctx.message_pk,
    )
