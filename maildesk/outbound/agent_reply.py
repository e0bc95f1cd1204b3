"""An agent's reply to the customer, queued through the desk's Mailer into the outbox.

Owns `send_agent_reply` (recipients: the customer plus CC participants; parent: the newest
customer mail; first response time; the `agent-replied` event). Lives in `outbound` so the
ticket-change module
(`services.tickets.reply`) and the pipeline can both use it without one importing the other.

Must not: change the ticket's status (that is the caller's, through `services.tickets`),
talk SMTP, or commit.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from maildesk.outbound.context import MessageInput
from maildesk.outbound.mailer import Mailer, Parent, Recipient, SendRequest
from maildesk.store import Session
from maildesk.store import outbox_queries as oq
from maildesk.store import queries as q
from maildesk.store.models import OutboxItem, Ticket


def send_agent_reply(
    session: Session,
    mailer: Mailer,
    ticket_number: int,
    text: str,
    agent_email: str,
    now: datetime,
    *,
    key: str | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    from_name: str = "",
    message_pk: int | None = None,
) -> OutboxItem | None:
    """Queue an agent's reply to the customer (CC participants copied). None: already queued.

    Sets the ticket's first response time when unset and records `agent-replied`; the
    status change is the caller's. `key` makes a repeated command harmless; by default it
    is derived from the ticket, the agent, the text and `now`. `attachments` go along;
    `from_name` names the sender (mail from an agent's mail client: the agent's name).
    Raises ValueError for an unknown ticket and COMPOSE_ERRORS when it cannot be composed.
    """
    ticket = session.get(Ticket, ticket_number)
    if ticket is None:
        raise ValueError(f"no ticket {ticket_number}")
    agent_row = oq.agent_by_email(session, agent_email)
    agent = Mailer.agent_input(agent_row, agent_email.lower())
    if key is None:
        digest = hashlib.sha256(f"{agent_email.lower()}\0{text}\0{now.isoformat()}".encode()).hexdigest()[:24]
        key = f"agent-reply:{ticket_number}:{digest}"
    request = SendRequest(
        key=key,
        ticket_number=ticket_number,
        template="agent_reply",
        to=Recipient(ticket.customer.email, ticket.customer.name),
        cc=tuple(q.participants_with_role(session, ticket_number, "cc")),
        automatic=False,
        parent=Parent.of_row(oq.latest_inbound(session, ticket_number)),
        agent=agent,
        message=MessageInput(text=text, sender_name=agent.name if agent else "", sender_email=agent_email.lower()),
        kind="agent-reply",
        attachments=attachments,
        from_name=from_name,
        message_pk=message_pk,
    )
    item = mailer.send(session, request, now)
    if item is None:
        return None
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    ticket.updated_at = now
    data: dict[str, Any] = {
        "agent": agent_email.lower(),
        "outbox_id": item.id,
        "message_id": item.message_id,
        "state": item.state,
    }
    q.add_event(session, ticket_number, "agent-replied", data, now, message_pk)
    return item


__all__ = ["send_agent_reply"]
