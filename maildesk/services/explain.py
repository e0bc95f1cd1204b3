"""`maildesk explain`: why did this mail do that? Reads the events recorded on it.

Owns only the shape of the explanation; every fact comes from the event log.
"""

from __future__ import annotations

from typing import Any

from maildesk.agentmail.verdict import agent_mail_line
from maildesk.message import normalize_message_id
from maildesk.store import queries as q
from maildesk.store.db import Store


def explain(store: Store, message_id: str) -> dict[str, Any] | None:
    """The message's ticket, the events written while processing it, and their order."""
    mid = normalize_message_id(message_id) or message_id.strip()
    with store.reader() as session:
        msg = q.message_by_id(session, mid)
        if msg is None:
            return None
        events = q.events_for_message(session, msg.id)
        return {
            "message_id": msg.message_id,
            "direction": msg.direction,
            "kind": msg.kind,
            "from": msg.sender,
            "subject": msg.subject,
            "received_at": msg.created_at.isoformat(),
            "source": msg.source,
            "screen": msg.screen,
            "ticket": msg.ticket_number,
            "agent_mail": agent_mail_line([(e.type, e.data or {}) for e in events]),
            "events": [{"type": e.type, "at": e.at.isoformat(), **e.data} for e in events],
        }


def render_text(data: dict[str, Any]) -> str:
    lines = [
        f"Message <{data['message_id']}> from {data['from']} ({data['kind']}, {data['direction']})",
        f"  subject: {data['subject']}",
        f"  source: {data['source']}  received: {data['received_at']}",
        f"  ticket: {'#' + str(data['ticket']) if data['ticket'] else 'none'}",
    ]
    if data.get("agent_mail"):
        lines.append(f"  recognised: {data['agent_mail']}")
    for ev in data["events"]:
        detail = {k: v for k, v in ev.items() if k not in {"type", "at"}}
        why = detail.pop("detail", None) or detail.pop("reason", None)
        lines.append(f"- {ev['type']}" + (f": {why}" if why else ""))
        for key, value in detail.items():
            if value not in (None, "", [], {}):
                lines.append(f"    {key}: {value}")
    return "\n".join(lines)
