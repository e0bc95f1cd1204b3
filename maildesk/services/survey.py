"""The resolution notice and the satisfaction survey.

Owns what happens to the customer when a ticket is resolved, and what their rating does:
- `on_change` (`services.tickets._consequences`): a status change to `resolved` — by an
  agent on the CLI, an agent's `#resolve` by mail, a rule or the SLA auto-resolve — queues
  the `resolved` notice to the ticket's customer, threaded under their newest mail
  (In-Reply-To/References like the acknowledgement), automatic (so the automatic-mail loop
  limits and `auto_sends` apply), in the caller's transaction. `[survey] notice = false`
  turns the notice off. The survey is inside the notice (`delivery = "inline"`, default) or
  its own `survey` mail (`"separate"`, also used when the notice is off); `enabled = false`
  offers none. One notice (and one survey) per resolution: keys `resolved:<ticket>:<stamp>`
  and `survey:<ticket>:<stamp>` (stamp = `resolved_at`). A survey that was queued (not held)
  records `survey-sent` {outbox_id, delivery}; the answer window counts from its time.
- The survey's 1-5 links are `mailto:` links to signed addresses
  (`threading.tokens.make_survey_address`, bound to the ticket, the rating and the
  customer's address) with the subject and a `RATING n` line prefilled: they work in any
  client, without a web server. A plain reply whose first visible line is a rating (`4`,
  `4/5`, `5 - great`, `RATING 3`; `parse_rating`) answers too.
- `answer` (the pipeline's `survey` stage, before threading) records one answer:
  `survey-answered` {rating, comment, via, sender, previous} when it counts (within
  `window_days` of the survey), else `survey-late` {rating, comment, via, sent_at}. The
  latest counted answer is the ticket's rating (the KPIs read the latest `survey-answered`).
  A rating of `low_rating` (2) or less also sends the `survey_low` thank-you (asking what went
  wrong) and notifies the assignee and the queue's lead (`services.notify.on_low_rating`).
- `refuse` records `survey-refused` {reason, sender, rating, via}: `agent` (an agent's
  address), `not-the-customer`, `bad-signature` (on no ticket, the claimed ticket in the data).

The comment is plain text (the visible text of the answer, HTML already turned into text),
capped at `COMMENT_MAX` characters; it goes into events and mail bodies, never a header.

Must not: commit, read the clock, reopen or otherwise change the ticket, or mail anyone but
the ticket's customer and (for a low rating) agents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from maildesk.config import Settings
from maildesk.domain import Status, TicketChange
from maildesk.outbound.context import SurveyInput
from maildesk.outbound.mailer import COMPOSE_ERRORS, Mailer, SendRequest, compose_failed, to_customer
from maildesk.services import notify
from maildesk.store import Session
from maildesk.store import notify_queries as nq
from maildesk.store import queries as q
from maildesk.store.models import OutboxItem, Ticket
from maildesk.threading import reply_subject
from maildesk.threading.tokens import make_survey_address

NOTICE_TEMPLATE = "resolved"
SURVEY_TEMPLATE = "survey"
LOW_TEMPLATE = "survey_low"
COMMENT_MAX = 2000
SURVEY_SENT = "survey-sent"
ANSWERED = "survey-answered"
LATE = "survey-late"
REFUSED = "survey-refused"

# Why a rating does not count (`survey-refused` {reason}).
AGENT = "agent"
NOT_THE_CUSTOMER = "not-the-customer"
BAD_SIGNATURE = "bad-signature"


# Reading a rating --------------------------------------------------------------------------
@dataclass(frozen=True)
class Rating:
    rating: int
    comment: str


_SEPARATORS = "-–—:,.!;)"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _first_line(text: str) -> tuple[str, str]:
    lines = (text or "").replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            return line.strip(), "\n".join(lines[i + 1 :])
    return "", ""


def clean_comment(text: str) -> str:
    """Plain text for an event: control characters out, blank edges trimmed, capped."""
    text = _CONTROL.sub("", (text or "").replace("\r\n", "\n")).strip()
    return text[:COMMENT_MAX]


def parse_rating(text: str, keyword: str = "RATING") -> Rating | None:
    """The rating on the first visible line of `text`, with the rest as the comment; None
    when that line is not a rating.

    A rating line is `4`, `4/5`, `4 of 5`, `RATING 4`, `Rating: 4`, optionally followed by a
    separator (`-`, `:`, `,`, `.`, `!`) and a comment: `5 - great`. After `/5` or the
    keyword a space is enough (`4/5 thanks`); a bare number followed by words is not a
    rating (`5 minutes later it broke again` is a reply), nor a number followed by digits
    (`3.5`, `5:30`)."""
    line, rest = _first_line(text)
    kw = re.escape(keyword or "RATING")
    match = re.match(rf"^(?:({kw})\s*:?\s*)?([1-5])(\s*(?:/|of|von|out of)\s*5)?(.*)$", line, re.IGNORECASE)
    if match is None:
        return None
    tail = match.group(4)
    marked = bool(match.group(1) or match.group(3))
    stripped = tail.strip()
    if stripped:
        if stripped[0] in _SEPARATORS:
            after = stripped.lstrip(_SEPARATORS)
            if after[:1].isdigit():
                return None  # 3.5, 5:30, 1,000
            first = after.strip()
        elif marked and tail[:1].isspace() and not stripped[0].isdigit():
            first = stripped
        else:
            return None
    else:
        first = ""
    comment = "\n".join(part for part in (first, rest.strip()) if part)
    return Rating(int(match.group(2)), clean_comment(comment))


def comment_of(text: str, keyword: str = "RATING") -> str:
    """The comment of a link's answer: its visible text without the prefilled rating line."""
    found = parse_rating(text, keyword)
    return found.comment if found is not None else clean_comment(text)


# The notice and the survey -----------------------------------------------------------------
def _stamp(ticket: Ticket, now: datetime) -> str:
    return (ticket.resolved_at or now).strftime("%Y%m%dT%H%M%S")


def survey_input(session: Session, mailer: Mailer, ticket: Ticket) -> SurveyInput:
    """The survey section: a signed address per rating, bound to the ticket's customer."""
    settings = mailer.settings
    support = mailer.ticket_support_address(session, ticket.number)
    customer = ticket.customer.email
    links = tuple(
        (r, make_survey_address(settings.secret, support, ticket.number, r, customer)) for r in (5, 4, 3, 2, 1)
    )
    subject = reply_subject(ticket.subject, settings.desk.subject_tag, ticket.number)
    return SurveyInput(settings.survey.keyword, links, subject)


def on_change(session: Session, ticket: Ticket, change: TicketChange, now: datetime) -> None:
    """A ticket became resolved: the notice (and the survey) to its customer."""
    if change.kind != "status" or change.new != Status.RESOLVED:
        return
    mailer = notify.bound_mailer(session)
    if mailer is None:
        return  # a bare Store (tests, tools) mails nobody
    send_resolution_notice(session, mailer, ticket, now)


def send_resolution_notice(
    session: Session, mailer: Mailer, ticket: Ticket, now: datetime, *, key: str | None = None
) -> OutboxItem | None:
    """Queue the notice and/or the survey for the ticket's current resolution, as
    `[survey]` says. The notice's row, or the survey's when only that went; None: nothing
    queued now (turned off, queued before, spam, or it could not be composed)."""
    cfg = mailer.settings.survey
    if ticket.spam or ticket.merged_into is not None:
        return None
    stamp = _stamp(ticket, now)
    survey = survey_input(session, mailer, ticket) if cfg.enabled else None
    inline = survey is not None and cfg.notice and cfg.delivery == "inline"
    request = to_customer(session, ticket, key=key or f"resolved:{ticket.number}:{stamp}", template=NOTICE_TEMPLATE)
    notice: OutboxItem | None = None
    if cfg.notice:
        notice = _send(session, mailer, replace(request, survey=survey if inline else None), now)
        if inline and notice is not None:
            _sent(session, ticket, notice, "inline", now)
    if survey is None or inline:
        return notice
    separate = _send(
        session,
        mailer,
        replace(request, key=f"survey:{ticket.number}:{stamp}", template=SURVEY_TEMPLATE, survey=survey),
        now,
    )
    if separate is not None:
        _sent(session, ticket, separate, "separate", now)
    return notice or separate


def _send(session: Session, mailer: Mailer, request: SendRequest, now: datetime) -> OutboxItem | None:
    try:
        return mailer.send(session, request, now)
    except COMPOSE_ERRORS as exc:
        compose_failed(session, request.ticket_number, request.template, exc, now, request.message_pk)
        return None


def _sent(session: Session, ticket: Ticket, item: OutboxItem, delivery: str, now: datetime) -> None:
    if item.state == "held":
        return  # the loop limits held it: no survey was offered
    q.add_event(session, ticket.number, SURVEY_SENT, {"outbox_id": item.id, "delivery": delivery}, now)


# Answers -----------------------------------------------------------------------------------
def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def survey_offered(session: Session, ticket_number: int) -> datetime | None:
    """When the newest survey of the ticket was sent (None: never)."""
    event = nq.latest_event(session, ticket_number, (SURVEY_SENT,))
    return _aware(event.at) if event is not None else None


def is_agent(session: Session, settings: Settings, address: str) -> bool:
    address = address.lower()
    return nq.agent(session, address) is not None or any(a.email.lower() == address for a in settings.agents)


def refuse(
    session: Session,
    ticket_number: int | None,
    *,
    reason: str,
    sender: str,
    rating: int,
    via: str,
    now: datetime,
    message_pk: int | None,
    claimed: int | None = None,
) -> None:
    """Record a rating that does not count (never a comment: it may come from anyone)."""
    data: dict[str, Any] = {"reason": reason, "sender": sender, "rating": rating, "via": via}
    if claimed is not None:
        data["claimed_ticket"] = claimed
    q.add_event(session, ticket_number, REFUSED, data, now, message_pk)


def answer(
    session: Session,
    mailer: Mailer,
    ticket: Ticket,
    *,
    rating: int,
    comment: str,
    sender: str,
    via: str,
    now: datetime,
    message_pk: int | None,
) -> str:
    """Record the customer's rating; "answered" or "late" (outside the window)."""
    cfg = mailer.settings.survey
    comment = clean_comment(comment)
    sent_at = survey_offered(session, ticket.number) or (_aware(ticket.resolved_at) if ticket.resolved_at else None)
    if sent_at is not None and _aware(now) > sent_at + timedelta(days=cfg.window_days):
        late = {"rating": rating, "comment": comment, "via": via, "sent_at": sent_at.isoformat()}
        q.add_event(session, ticket.number, LATE, late, now, message_pk)
        return "late"
    before = nq.latest_event(session, ticket.number, (ANSWERED,))
    previous = (before.data or {}).get("rating") if before is not None else None
    data = {"rating": rating, "comment": comment, "via": via, "sender": sender, "previous": previous}
    q.add_event(session, ticket.number, ANSWERED, data, now, message_pk)
    if rating <= cfg.low_rating:
        _low(session, mailer, ticket, rating, comment, now, message_pk)
    return "answered"


def _low(
    session: Session,
    mailer: Mailer,
    ticket: Ticket,
    rating: int,
    comment: str,
    now: datetime,
    message_pk: int | None,
) -> None:
    """A poor rating: thank the customer and ask what went wrong; tell the assignee and lead."""
    request = to_customer(
        session,
        ticket,
        key=f"survey-low:{ticket.number}:{message_pk if message_pk is not None else now.isoformat()}",
        template=LOW_TEMPLATE,
        message_pk=message_pk,
        survey=SurveyInput(mailer.settings.survey.keyword),
    )
    _send(session, mailer, request, now)
    notify.on_low_rating(session, mailer, ticket, rating, comment, now=now, message_pk=message_pk)


__all__ = [
    "AGENT",
    "ANSWERED",
    "BAD_SIGNATURE",
    "LATE",
    "NOT_THE_CUSTOMER",
    "REFUSED",
    "SURVEY_SENT",
    "Rating",
    "answer",
    "clean_comment",
    "comment_of",
    "is_agent",
    "on_change",
    "parse_rating",
    "refuse",
    "send_resolution_notice",
    "survey_input",
    "survey_offered",
]
