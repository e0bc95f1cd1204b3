"""The survey stage: is this human mail an answer to a satisfaction survey?

Runs after `visible_text`, before `agent_mail` and `thread`, so a survey answer never
reaches threading and NEVER reopens its ticket (a later real reply still does), and an
agent who clicks a customer's survey link is refused here rather than told how to write in.

Two ways to answer (`services/survey.py`):
- a link: the mail goes to a survey token `support+s<ticket>.<rating>-<sig>@domain`. It
  counts when the token verifies for the real sender (the raw From, never the display
  name), which is the ticket's customer. A token that verifies for the ticket's customer
  but came from someone else is refused on the ticket (reason `agent` or
  `not-the-customer`); one that verifies for no one (`bad-signature`) is refused on no
  ticket, so a forged token cannot write on a ticket.
- a reply whose first visible line is a rating (`services.survey.parse_rating`), on a
  resolved or closed ticket that was sent a survey. From the customer it counts; from an
  agent or anyone else it is refused on the ticket. Other replies go on to threading.

The answer is stored as a `survey` message (on its ticket when it counts, else on no
ticket) and the stage marks the context `handled`: persist, routing, the acknowledgement and
agent notifications skip it. Automatic mail (auto-replies to the notice) never gets here:
the stage runs only for the screen's `human` verdict.

Must not: change the ticket, send mail itself (services do), or commit.
"""

from __future__ import annotations

from maildesk.domain import CLOSED_STATUSES, MessageKind
from maildesk.pipeline.context import MessageContext, Needs, PipelineDeps, stage
from maildesk.pipeline.stages.persist import store_message
from maildesk.pipeline.stages.thread import StoreThreadLookup, decide
from maildesk.services import survey as sv
from maildesk.store import Session
from maildesk.store import queries as q
from maildesk.store.models import Ticket
from maildesk.threading.tokens import agent_token_base, parse_survey_address, survey_token_shape


def _store(ctx: MessageContext, session: Session, deps: PipelineDeps, number: int | None, sender: str) -> int:
    ctx.kind, ctx.handled = MessageKind.SURVEY.value, True
    name = ctx.msg.from_.name if ctx.msg.from_ else ""
    pk = store_message(ctx, session, deps, number, sender, name)
    ctx.ticket_number = number
    for type_, data in ctx.events:  # what the earlier stages noted (e.g. visible-text-capped)
        q.add_event(session, number, type_, data, ctx.now, pk)
    ctx.events.clear()
    return pk


@stage(needs=Needs(agent=True))
def survey(ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
    """Recognise and record survey answers; leave every other mail alone."""
    if ctx.duplicate or ctx.handled or ctx.screen_verdict != "human":
        return
    settings = deps.settings
    recipients = ctx.recipients
    for address in recipients:
        shape = survey_token_shape(address)
        if shape is not None and settings.is_support_address(shape[0]):
            _link(ctx, session, deps, address, shape[1], shape[2])
            return
    if not settings.survey.enabled or any(agent_token_base(r) for r in recipients):
        return
    found = sv.parse_rating(ctx.visible_text or ctx.msg.text, settings.survey.keyword)
    if found is None:
        return
    _reply(ctx, session, deps, found)


def _link(ctx: MessageContext, session: Session, deps: PipelineDeps, token: str, claimed: int, rating: int) -> None:
    settings = deps.settings
    sender = ctx.real_sender()[1].lower()
    ticket = session.get(Ticket, claimed)
    found = parse_survey_address(settings.secret, token, sender) if sender else None
    comment = sv.comment_of(ctx.visible_text or ctx.msg.text, settings.survey.keyword)
    if found is not None and ticket is not None and ticket.customer.email.lower() == sender:
        _count(ctx, session, deps, ticket, sender, rating, comment, "link")
    elif ticket is not None and parse_survey_address(settings.secret, token, ticket.customer.email) is not None:
        _refuse(ctx, session, deps, ticket.number, sender, rating, "link", _who(session, deps, sender))
    else:
        _refuse(ctx, session, deps, None, sender, rating, "link", sv.BAD_SIGNATURE, claimed=claimed)


def _reply(ctx: MessageContext, session: Session, deps: PipelineDeps, found: sv.Rating) -> None:
    decision = decide(ctx.msg, ctx, StoreThreadLookup(session), deps.settings)
    number = decision.ticket if decision.ticket is not None else decision.linked_to
    ticket = session.get(Ticket, number) if number is not None else None
    if ticket is None or ticket.status not in CLOSED_STATUSES:
        return  # a reply on an open ticket, or a new request: the customer path
    if ticket.merged_into is not None or sv.survey_offered(session, ticket.number) is None:
        return  # no survey was sent: an ordinary reply (it reopens as always)
    sender = ctx.real_sender()[1].lower()
    if sender and sender == ticket.customer.email.lower():
        _count(ctx, session, deps, ticket, sender, found.rating, found.comment, "reply")
    else:
        _refuse(ctx, session, deps, ticket.number, sender, found.rating, "reply", _who(session, deps, sender))


def _who(session: Session, deps: PipelineDeps, sender: str) -> str:
    """Why a rating from someone other than the customer is refused: an agent, or not the customer."""
    return sv.AGENT if sv.is_agent(session, deps.settings, sender) else sv.NOT_THE_CUSTOMER


def _count(
    ctx: MessageContext,
    session: Session,
    deps: PipelineDeps,
    ticket: Ticket,
    sender: str,
    rating: int,
    comment: str,
    via: str,
) -> None:
    """The customer's answer: stored on the ticket and counted (`services.survey.answer`)."""
    pk = _store(ctx, session, deps, ticket.number, sender)
    ctx.outcome = "survey-" + sv.answer(
        session,
        deps.mailer,
        ticket,
        rating=rating,
        comment=comment,
        sender=sender,
        via=via,
        now=ctx.now,
        message_pk=pk,
    )


def _refuse(
    ctx: MessageContext,
    session: Session,
    deps: PipelineDeps,
    number: int | None,
    sender: str,
    rating: int,
    via: str,
    reason: str,
    *,
    claimed: int | None = None,
) -> None:
    """Someone else's answer (or a forged token): stored on no ticket, refused and recorded on
    `number` (None for a signature that verifies for no one)."""
    pk = _store(ctx, session, deps, None, sender or "unknown@invalid")
    ctx.ticket_number = None
    ctx.outcome = "survey-refused"
    sv.refuse(
        session,
        number,
        reason=reason,
        sender=sender,
        rating=rating,
        via=via,
        now=ctx.now,
        message_pk=pk,
        claimed=claimed,
    )
