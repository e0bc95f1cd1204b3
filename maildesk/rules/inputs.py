"""Build a `RuleInput` from a parsed message plus facts the pipeline looked up.

Owns the mapping from `maildesk.message.ParsedMessage` fields to rule fields (addresses as
bare lower-case `local@domain`, attachments as (filename, content type)). The caller passes
the visible text (quotes stripped), the customer facts, the ticket state and `now`.

Must not: query the store or read the clock; it only reshapes data it is given.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from maildesk.rules.model import CustomerFacts, RuleInput, TicketState

if TYPE_CHECKING:
    from maildesk.message import ParsedMessage


def rule_input_from_message(
    msg: ParsedMessage,
    *,
    event: str,
    now: datetime,
    body: str | None = None,
    customer: CustomerFacts | None = None,
    ticket: TicketState | None = None,
) -> RuleInput:
    """`event` is "new" or "reply"; `body` defaults to the message's full text."""
    sender = msg.from_ or msg.sender
    email = sender.email.lower() if sender is not None else ""
    return RuleInput(
        event=event,
        sender=email,
        sender_name=sender.name if sender is not None else "",
        recipients=tuple(a.email.lower() for a in msg.to),
        cc=tuple(a.email.lower() for a in msg.cc),
        subject=msg.subject,
        body=msg.text if body is None else body,
        headers=msg.headers,
        attachments=tuple((a.filename, a.content_type) for a in msg.attachments),
        customer=customer or CustomerFacts(email=email, domain=email.rpartition("@")[2]),
        ticket=ticket,
        now=now,
    )
