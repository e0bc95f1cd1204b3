"""The screening stage: automatic mail, bounces and loops, and what follows from them.

The verdict comes from the pure `maildesk.rules.screen`; this stage applies the policy:
- bounces and loops never open a ticket; a permanent bounce suppresses the failed
  addresses for all automatic mail and is recorded on the ticket it concerns;
- auto-replies (out of office…) are recorded on their ticket without reopening it, and
  never open a ticket of their own;
- list and other bulk mail may open a ticket but never gets an automatic answer.
"""

from __future__ import annotations

from maildesk.config import Settings
from maildesk.message import ParsedMessage
from maildesk.pipeline.context import MessageContext, Needs, PipelineDeps, stage
from maildesk.rules.screen import ScreenVerdict, screen_message
from maildesk.store import Session
from maildesk.store import queries as q
from maildesk.store.models import Suppression
from maildesk.threading import parse_message_id

LOOP_HEADER = "X-Maildesk-Loop"


def verdict_for(msg: ParsedMessage, settings: Settings) -> ScreenVerdict:
    verdict = screen_message(
        msg,
        own_addresses=frozenset(settings.desk.support_addresses),
        loop_header=LOOP_HEADER,
        loop_value=settings.instance_id,
    )
    if verdict.verdict == "human" and parse_message_id(settings.secret, msg.message_id) is not None:
        return ScreenVerdict("loop", "Message-ID is one of ours (signed): our own mail came back")
    return verdict


@stage(needs=Needs(screen=True))
def screen(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    if ctx.duplicate:
        return
    pre = ctx.pre
    verdict = pre.screen if pre is not None and pre.screen is not None else verdict_for(ctx.msg, deps.settings)
    ctx.screen = verdict
    ctx.note("screened", **verdict.to_json())
    if verdict.verdict in {"bounce", "loop", "auto-reply"}:
        ctx.kind = "bounce" if verdict.verdict == "bounce" else "auto"
        ctx.no_new_ticket = True
    if verdict.verdict == "bounce" and verdict.original_message_id:
        found = q.tickets_for_message_ids(session, [verdict.original_message_id])
        if found:
            ctx.ticket_number = found[verdict.original_message_id]
            ctx.thread_locked = True


@stage()
def apply_bounce(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """After persist: suppress permanently failed addresses and say so on the ticket."""
    verdict: ScreenVerdict | None = ctx.screen
    if ctx.duplicate or verdict is None or verdict.verdict != "bounce":
        return
    if not verdict.permanent:
        q.add_event(
            session,
            ctx.ticket_number,
            "bounce-delay",
            {"addresses": list(verdict.addresses), "reason": verdict.reason},
            ctx.now,
            ctx.message_pk,
        )
        return
    for address in verdict.addresses:
        address = address.lower()
        if q.is_suppressed(session, address, ctx.now) is None:
            session.add(
                Suppression(
                    address=address,
                    reason=f"permanent bounce: {verdict.reason}"[:1000],
                    ticket_number=ctx.ticket_number,
                    created_at=ctx.now,
                )
            )
            session.flush()
        q.add_event(
            session,
            ctx.ticket_number,
            "address-suppressed",
            {"address": address, "reason": verdict.reason, "message_id": verdict.original_message_id},
            ctx.now,
            ctx.message_pk,
        )
    if ctx.ticket_number is not None and verdict.addresses:
        from maildesk.outbound.sender import notify_agents_of_bounce

        notify_agents_of_bounce(
            deps.mailer,
            session,
            ctx.ticket_number,
            ", ".join(verdict.addresses),
            verdict.reason,
            key=f"dsn-notice:{ctx.stored_message_id}",
            now=ctx.now,
        )


def describe_screen(msg: ParsedMessage, settings: Settings) -> dict[str, object]:
    return {"screen": verdict_for(msg, settings).to_json()}
