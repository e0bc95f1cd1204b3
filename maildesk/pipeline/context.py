"""The per-message working state handed from stage to stage.

Plain data only; stages fill it in. It never outlives one message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from maildesk.config import Settings
from maildesk.message import ParsedMessage
from maildesk.store import Session


@dataclass
class MessageContext:
    entry_id: str
    meta: dict[str, Any]
    msg: ParsedMessage
    now: datetime
    stage: str = "parse"
    stored_message_id: str = ""  # the id it is stored under (synthetic on a collision)
    duplicate: bool = False  # already stored: nothing else may happen
    ticket_number: int | None = None
    new_ticket: bool = False
    message_pk: int | None = None
    screen: Any = None  # rules.screen.ScreenVerdict
    thread: Any = None  # threading.decide.ThreadDecision
    decision: Any = None  # rules.engine.Decision
    visible_text: str = ""
    quoted_text: str = ""
    signature: str = ""
    kind: str = "customer"
    thread_root: str | None = None  # Outlook Thread-Index root of the message
    no_new_ticket: bool = False  # automatic mail: store it, but never open a ticket for it
    thread_locked: bool = False  # the ticket is already known (e.g. the bounce names our mail)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outcome: str = ""  # ticket-created | appended | duplicate | bounce | ...
    pre: Any = None  # pipeline.prepare.Prepared: results computed before the transaction

    def note(self, type_: str, **data: Any) -> None:
        """Record an event to be written on the ticket when it is known."""
        self.events.append((type_, data))

    @property
    def envelope_recipients(self) -> list[str]:
        env = self.meta.get("envelope") or {}
        return [str(r).lower() for r in env.get("rcpt_tos", [])]


class Stage(Protocol):
    __name__: str

    def __call__(self, ctx: MessageContext, session: Session, deps: PipelineDeps) -> None: ...


@dataclass
class PipelineDeps:
    """What stages may use. Built by the composition root (app.py)."""

    settings: Settings
    extras: dict[str, Any] = field(default_factory=dict)
