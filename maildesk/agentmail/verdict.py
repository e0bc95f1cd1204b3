"""One line per agent mail: what was recognised and why, read from the events it left.

Owns `agent_mail_line`: given the events recorded on one incoming message (type, data, in
order), the sentence `maildesk explain` and `maildesk ticket show` print for it — a reply
sent, a note, commands done or refused, a hold and its release, a forward that opened a
ticket, a refusal with its reason, or the how-to — or None when the message was not agent
mail at all. Pure: the callers read the events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_REASONS = {
    "bad-token": "the reply address's token is not valid for this sender",
    "token-for-another-agent": "the token belongs to another agent",
    "inactive-agent": "the sender is a deactivated agent",
    "sender-not-an-agent": "the sender is not an agent",
    "display-name-spoof": "the display name shows an agent's address, the real sender is someone else",
    "sender-not-authenticated": "a forward needs a DKIM or trusted Authentication-Results pass",
    "tokens-for-several-tickets": "the reply names several tickets",
    "commands-without-ticket": "commands need a reply to a notification, or a forward",
}


def _commands(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values if str(v).strip())


def agent_mail_line(events: Sequence[tuple[str, Mapping[str, Any]]]) -> str | None:
    """The sentence for one message's events; None when it was not agent mail."""
    by_type: dict[str, Mapping[str, Any]] = {}
    for type_, data in events:
        by_type.setdefault(type_, data or {})
    if "agent-commands-ignored" in by_type and "agent-mail-received" not in by_type:
        why = by_type["agent-commands-ignored"].get("detail") or by_type["agent-commands-ignored"].get("reason")
        return f"customer mail: its '#' lines were not taken as agent commands ({why})"
    if "agent-mail-received" not in by_type:
        return None
    sender = by_type["agent-mail-received"].get("from") or "?"
    head = f"agent mail from {sender}"
    auth = ""
    if "agent-sender-authenticated" in by_type:
        auth = f" (sender authenticated: {by_type['agent-sender-authenticated'].get('detail')})"
    elif "agent-sender-not-authenticated" in by_type:
        auth = f" (not authenticated: {by_type['agent-sender-not-authenticated'].get('detail')})"
    if "agent-mail-refused" in by_type:
        data = by_type["agent-mail-refused"]
        reason = str(data.get("reason") or "")
        why = _REASONS.get(reason, reason)
        detail = data.get("detail")
        claimed = data.get("claimed_ticket")
        on = f" for ticket #{claimed}" if claimed else ""
        return f"{head}: REFUSED{on}, nothing changed or sent — {why} [{reason}]" + (
            f": {detail}{auth}" if detail else auth
        )
    if "agent-mail-not-a-ticket" in by_type:
        return f"{head}: not a reply and not a forward — no ticket, no acknowledgement; a how-to was sent"
    if "agent-commands-refused" in by_type:
        errors = "; ".join(str(e) for e in by_type["agent-commands-refused"].get("errors") or [])
        return f"{head}: commands REFUSED, nothing changed and nothing sent to the customer — {errors}"
    parts: list[str] = []
    if "ticket-opened-by-agent" in by_type:
        data = by_type["ticket-opened-by-agent"]
        how = "#customer" if data.get("found_by") == "command" else "the forwarded mail's sender"
        parts.append(f"forward: opened this ticket for {data.get('customer')} (customer from {how}){auth}")
    recognised = by_type.get("agent-mail-recognised")
    if recognised is not None:
        parts.append("reply to a notification (token valid for this agent and ticket)")
    replied = "agent-replied" in by_type
    if "agent-reply-held" in by_type:
        data = by_type["agent-reply-held"]
        why = (
            f"it answers a notification made at message {data.get('seq')}, older than the ticket's"
            f" latest message {data.get('latest')}"
        )
        if replied:
            parts.append(f"reply was HELD ({why}), then released with #send and sent to the customer")
        else:
            parts.append(
                f"reply HELD, not sent: {why}; the agent was sent what they missed and can release it with #send"
            )
    if "agent-reply-released" in by_type:
        parts.append(f"#send: released the held reply (message {by_type['agent-reply-released'].get('held_message')})")
    if "agent-reply-superseded" in by_type:
        parts.append("replaces the agent's held reply")
    if replied and "agent-reply-held" not in by_type:
        parts.append("reply sent to the customer")
    if "note-added" in by_type:
        parts.append("internal note, shared with the agents, never sent to the customer")
    if "agent-commands-done" in by_type:
        parts.append(f"commands done: {_commands(by_type['agent-commands-done'].get('commands') or [])}")
    if "mail-not-composed" in by_type:
        parts.append(f"could not be composed: {by_type['mail-not-composed'].get('error')}")
    if recognised is not None and not any(
        t in by_type for t in ("agent-replied", "note-added", "agent-reply-held", "agent-reply-released")
    ):
        parts.append("nothing sent to the customer")
    return f"{head}: " + ("; ".join(parts) if parts else "recognised, nothing to do")


__all__ = ["agent_mail_line"]
