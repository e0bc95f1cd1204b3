"""The seams of the pipeline: the per-message working state (`MessageContext`), what a
stage may use (`PipelineDeps`), and what a stage is (`Stage`, made with `@stage`).

Plain data only; stages fill the context in. It never outlives one message. Each result a
stage leaves for the later ones has its real type, so a later stage reads it directly.
Must not: decide anything, touch the database, or know the order of the stages
(that is `pipeline/order.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from maildesk.agentmail.classify import real_sender
from maildesk.clock import utcnow
from maildesk.config import Settings
from maildesk.message import ParsedMessage
from maildesk.outbound.mailer import Mailer
from maildesk.rules.holder import RulesHolder
from maildesk.rules.model import Decision
from maildesk.rules.screen import ScreenVerdict
from maildesk.sanitize import clean_html
from maildesk.store import Session
from maildesk.threading import ThreadDecision

if TYPE_CHECKING:  # prepare.py imports the stages, which import this module
    from maildesk.pipeline.prepare import Prepared

Clock = Callable[[], datetime]


@dataclass
class MessageContext:
    entry_id: str
    meta: dict[str, Any]  # the spool entry's meta data (envelope, source): JSON as spooled
    msg: ParsedMessage
    now: datetime
    stage: str = "parse"
    stored_message_id: str = ""  # the id it is stored under (synthetic on a collision)
    duplicate: bool = False  # already stored: nothing else may happen
    ticket_number: int | None = None
    new_ticket: bool = False
    message_pk: int | None = None
    screen: ScreenVerdict | None = None  # set by `screen`
    thread: ThreadDecision | None = None  # set by `thread`
    decision: Decision | None = None  # set by `route` when rules ran
    visible_text: str = ""
    quoted_text: str = ""
    signature: str = ""
    kind: str = "customer"
    thread_root: str | None = None  # Outlook Thread-Index root of the message
    no_new_ticket: bool = False  # automatic mail: store it, but never open a ticket for it
    thread_locked: bool = False  # the ticket is already known (e.g. the bounce names our mail)
    internal: bool = False  # stored as internal (an agent's note, a held or refused agent mail)
    handled: bool = False  # a stage stored and applied the mail itself (agent mail): later ones skip
    history: bool = False  # `import --history`: old mail, stored and threaded, nothing follows from it
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outcome: str = ""  # ticket-created | appended | duplicate | bounce | ...
    pre: Prepared | None = None  # results computed before the transaction (pipeline/prepare.py)

    def note(self, type_: str, **data: Any) -> None:
        """Record an event to be written on the ticket when it is known."""
        self.events.append((type_, data))

    @property
    def envelope_recipients(self) -> list[str]:
        env = self.meta.get("envelope") or {}
        return [str(r).lower() for r in env.get("rcpt_tos", [])]

    @property
    def recipients(self) -> tuple[str, ...]:
        """To, Cc and the envelope's recipients, lower-case, each once (where tokens are)."""
        found = [a.email.lower() for a in self.msg.to + self.msg.cc] + self.envelope_recipients
        return tuple(dict.fromkeys(found))

    def real_sender(self) -> tuple[str, str]:
        """(display name, addr-spec) of the real From mailbox (never a decoded display name):
        prepared by a child when a stage asked for it (`Needs.agent`), else read here."""
        if self.pre is not None and self.pre.sender is not None:
            return self.pre.sender
        return real_sender(self.msg.raw)

    @property
    def screen_verdict(self) -> str:
        """The screen's verdict word; "human" when the mail was not screened."""
        return self.screen.verdict if self.screen is not None else "human"


class PipelineDeps:
    """What stages may use. Built by the composition root (app.py); tests and tools that
    need only some of it take the defaults (no rules, the real clock and sanitiser)."""

    def __init__(
        self,
        settings: Settings,
        *,
        rules: RulesHolder | None = None,
        clock: Clock = utcnow,
        sanitize_html: Callable[[str], str] = clean_html,
        mailer: Mailer | None = None,
        dkim_dns: Callable[..., bytes | None] | None = None,
    ) -> None:
        self.settings = settings
        self.dkim_dns = dkim_dns  # DNS TXT look-up for DKIM keys (None: dkimpy's resolver)
        self.rules = rules if rules is not None else RulesHolder(None)
        self.clock = clock
        self.sanitize_html = sanitize_html
        self._mailer = mailer

    @property
    def mailer(self) -> Mailer:
        """The desk's Mailer, made on first use (a command that sends nothing never builds it)."""
        if self._mailer is None:
            self._mailer = Mailer(self.settings)
        return self._mailer

    @mailer.setter
    def mailer(self, mailer: Mailer) -> None:
        self._mailer = mailer

    def use_settings(self, settings: Settings) -> None:
        """Switch to `settings` (the App does, once it read the secret the nodes share); a
        Mailer made with the old ones is dropped and made again on next use."""
        self.settings = settings
        self._mailer = None


@dataclass(frozen=True)
class Needs:
    """Which optional preparation results (`pipeline/prepare.py`) a stage uses."""

    screen: bool = False
    reply: bool = False
    language: bool = False
    agent: bool = False  # the agent stage's From mailbox and unsigned agent words

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            screen=self.screen or other.screen,
            reply=self.reply or other.reply,
            language=self.language or other.language,
            agent=self.agent or other.agent,
        )


StageFn = Callable[[MessageContext, Session, PipelineDeps], None]


class Stage:
    """One step of the pipeline: a function `(ctx, session, deps) -> None` run inside the
    batch's transaction, with what it needs computed ahead by preparation. Made with
    `@stage(...)`; called like the function it wraps."""

    def __init__(self, run: StageFn, needs: Needs) -> None:
        self.run = run
        self.needs = needs
        self.__name__: str = run.__name__
        functools.update_wrapper(self, run)  # __doc__, __module__, __wrapped__ of the function

    @property
    def name(self) -> str:
        """What a failure is reported under (`failed/` entries, `ctx.stage`)."""
        return self.__name__

    def __call__(self, ctx: MessageContext, session: Session, deps: PipelineDeps) -> None:
        self.run(ctx, session, deps)

    def __repr__(self) -> str:
        return f"<stage {self.name}>"


def needs_of(stages: Iterable[Stage]) -> Needs:
    """What these stages together use from preparation."""
    needs = Needs()
    for one in stages:
        needs |= one.needs
    return needs


def stage(*, needs: Needs = Needs()) -> Callable[[StageFn], Stage]:
    """Declare a function a pipeline stage, with what it uses from preparation:
    `@stage(needs=Needs(screen=True))`."""

    def make(fn: StageFn) -> Stage:
        return Stage(fn, needs)

    return make
