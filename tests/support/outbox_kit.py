"""Test kit for the outbox: a settable clock, a scripted SMTP relay sink on loopback, and a
desk with the respond stage wired in."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import select

from maildesk.config import Settings
from maildesk.outbound.sender import OutboxSender
from maildesk.pipeline.stages.respond import respond
from maildesk.store.models import Event, OutboxItem, Ticket
from tests.conftest import free_port
from tests.support.mailgen import eml

START = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


class Clock:
    """An injectable clock that moves only when told."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class SinkHandler:
    """An aiosmtpd handler that answers RCPT and DATA from scripts, then accepts."""

    rcpt_script: list[str] = field(default_factory=list)
    data_script: list[str] = field(default_factory=list)
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    rcpt_attempts: int = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        self.rcpt_attempts += 1
        if self.rcpt_script:
            answer = self.rcpt_script.pop(0)
            if not answer.startswith("250"):
                return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_script:
            answer = self.data_script.pop(0)
            if not answer.startswith("250"):
                return answer
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content))
        )
        return "250 2.0.0 queued"


class RelaySink:
    """A real SMTP server on a free loopback port."""

    def __init__(self) -> None:
        self.handler = SinkHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> RelaySink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[tuple[str, list[str], bytes]]:
        return self.handler.received


def relay_settings(settings: Settings, port: int) -> Settings:
    out = replace(settings.outbound, relay_host="127.0.0.1", relay_port=port, security="none", retry_base_seconds=30.0)
    return replace(settings, outbound=out)


def wire(desk: Any, clock: Clock) -> None:
    """Add the respond stage (until the lead wires it for good) and the test clock."""
    if respond not in desk.worker.stages:
        desk.worker.stages = (*desk.worker.stages, respond)
    desk.worker.clock = clock


def quiet(desk: Any, clock: Clock) -> None:
    """The pipeline without the respond stage (tests that queue mail themselves)."""
    desk.worker.stages = tuple(s for s in desk.worker.stages if s is not respond)
    desk.worker.clock = clock


def new_ticket(desk: Any, clock: Clock, **mail: Any) -> int:
    """Deliver one customer mail through the pipeline; the new ticket's number."""
    envelope = mail.pop("envelope", None)
    desk.spool.put(eml(**mail), "smtp", envelope)
    result = desk.process()
    assert result["failed"] == 0 and result["tickets_created"] == 1, result
    with desk.store.reader() as s:
        return int(s.scalars(select(Ticket.number).order_by(Ticket.number.desc())).first() or 0)


def sender_for(desk: Any, settings: Settings, clock: Clock, **kw: Any) -> OutboxSender:
    return OutboxSender(desk.store, settings, clock=clock, timeout=5.0, **kw)


def outbox_rows(desk: Any) -> list[OutboxItem]:
    with desk.store.reader() as s:
        return list(s.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def event_types(desk: Any, ticket: int) -> list[str]:
    with desk.store.reader() as s:
        return [e.type for e in s.scalars(select(Event).where(Event.ticket_number == ticket).order_by(Event.id))]


def events(desk: Any, ticket: int, type_: str) -> list[Event]:
    with desk.store.reader() as s:
        return list(
            s.scalars(select(Event).where(Event.ticket_number == ticket, Event.type == type_).order_by(Event.id))
        )
