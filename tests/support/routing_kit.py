"""A desk with teams and a rules file, and a `say(...)` helper, for the routing tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maildesk.app import App
from maildesk.config import Settings, parse_settings
from maildesk.store.models import Event, Message, OutboxItem, Ticket
from tests.conftest import make_settings

AGENTS: list[dict[str, Any]] = [
    {"email": "ann@example.com", "name": "Ann", "tiers": ["L1"], "queues": ["billing"]},
    {"email": "bob@example.com", "name": "Bob", "tiers": ["L1"], "queues": ["billing"]},
    {"email": "cem@example.com", "name": "Cem", "tiers": ["L1", "L2"], "queues": ["technical"]},
    {"email": "dora@example.com", "name": "Dora", "tiers": ["L2"], "queues": ["technical", "billing"]},
    {"email": "eve@example.com", "name": "Eve", "tiers": ["L3"], "queues": []},
]
QUEUES: list[dict[str, Any]] = [
    {"name": "general"},
    {"name": "billing", "address": "billing@example.com"},
    {"name": "technical"},
    {"name": "priority"},
]


def team_settings(
    tmp_path: Path,
    database_url: str,
    rules: str | None,
    *,
    agents: list[dict[str, Any]] | None = None,
    queues: list[dict[str, Any]] | None = None,
) -> Settings:
    """Test settings plus teams, a rules file (tmp_path/rules.yaml) and a site template folder."""
    templates = tmp_path / "templates" / "en"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "after_hours.txt.j2").write_text("Subject: We are closed\n\nWe answer tomorrow from 8:00.\n")
    rules_path = tmp_path / "rules.yaml"
    desk: dict[str, Any] = {"templates_dir": str(tmp_path / "templates")}
    if rules is not None:
        if "version:" not in rules:
            rules = "version: 1\n" + rules.lstrip("\n")
        rules_path.write_text(rules)
        desk["rules_file"] = str(rules_path)
    settings = make_settings(tmp_path, database_url, desk=desk)
    team = parse_settings(
        {
            "desk": {
                # only the teams are read from this parse; on SQLite (its default) the parse
                # makes a secret.key in data_dir, which must not land in the desk's own folder
                # (a PostgreSQL node would find it there and refuse the database's shared secret)
                "data_dir": str(tmp_path / "team-parse"),
                "support_addresses": list(settings.desk.support_addresses),
                "secret_env": "",
            },
            "agent": AGENTS if agents is None else agents,
            "queue": QUEUES if queues is None else queues,
        },
        base_dir=str(tmp_path),
    )
    return replace(settings, agents=team.agents, queues=team.queues)


class Desk:
    """One App with a fixed clock; `say` spools a mail, processes it and returns its row."""

    def __init__(self, settings: Settings, now: datetime | None = None) -> None:
        self.app = App(settings)
        self.app.migrate()
        self.now = now or datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, 11:00 in Berlin
        self.app.worker.clock = lambda: self.now

    @property
    def rules_path(self) -> Path:
        return Path(self.app.settings.desk.rules_file)

    def later(self, **delta: float) -> None:
        self.now = self.now + timedelta(**delta)

    def say(self, raw: bytes) -> Message:
        self.app.spool.put(raw, "test")
        stats = self.app.process()
        assert stats["failed"] == 0 and stats["quarantined"] == 0, stats
        with self.app.store.reader() as s:
            row = s.scalars(
                select(Message).where(Message.direction == "in", Message.kind == "customer").order_by(Message.id.desc())
            ).first()
            assert row is not None
            return row

    def ticket(self, number: int | None) -> Ticket:
        assert number is not None
        with self.app.store.reader() as s:
            t = s.get(Ticket, number)
            assert t is not None
            return t

    def events(self, number: int | None, type_: str) -> list[dict[str, Any]]:
        with self.app.store.reader() as s:
            return [
                e.data
                for e in s.scalars(
                    select(Event).where(Event.ticket_number == number, Event.type == type_).order_by(Event.id)
                )
            ]

    def notes(self, number: int | None) -> list[Message]:
        with self.app.store.reader() as s:
            return list(
                s.scalars(
                    select(Message)
                    .where(Message.ticket_number == number, Message.kind == "agent-note")
                    .order_by(Message.id)
                )
            )

    def outbox(self, number: int | None = None, *, internal: bool | None = None) -> list[OutboxItem]:
        """The outbox rows (of ticket `number`); `internal=False`: only mail to customers,
        `internal=True`: only mail to staff (agent notifications, the rules' `notify:`)."""
        with self.app.store.reader() as s:
            stmt = select(OutboxItem).order_by(OutboxItem.id)
            if number is not None:
                stmt = stmt.where(OutboxItem.ticket_number == number)
            if internal is not None:
                staff = select(Message.message_id).where(Message.direction == "out", Message.internal.is_(True))
                stmt = stmt.where(OutboxItem.message_id.in_(staff) if internal else OutboxItem.message_id.not_in(staff))
            return list(s.scalars(stmt))

    def close(self) -> None:
        self.app.store.dispose()
