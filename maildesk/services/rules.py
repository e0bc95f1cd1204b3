"""What `maildesk rules check|test|replay` do, without the command line: load a rules file the
way the daemon would, decide one mail with an explanation, and replay stored mail against a
rules file to show what would change.

Owns the replay: for each stored customer mail since a moment, the facts the rules saw then
(taken from its `routed` event; reconstructed from the database when it has none, marked
`approximate`), the baseline decision (what the events say happened, or the current rules'
decision) and the candidate decision, compared with `rules.engine.diff_decisions`.

Must not: write anything. Every database access is a read-only session that is never
committed; no stage, mailer or outbox is called. Printing is the CLI's job.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maildesk.config import Settings
from maildesk.message import parse_bytes
from maildesk.pipeline.stages.route import customer_facts, load_for_desk, ticket_state
from maildesk.rules.engine import diff_decisions, evaluate
from maildesk.rules.inputs import rule_input_from_message
from maildesk.rules.model import AssignSpec, CustomerFacts, Decision, RuleHit, RuleInput, RulesError, TicketState
from maildesk.rules.ruleset import RuleSet
from maildesk.store import Session
from maildesk.store import routing_queries as rq
from maildesk.store.db import Store
from maildesk.store.models import Message, Ticket


def rules_path(settings: Settings, file: str | Path | None) -> Path | None:
    """The file given, else the desk's `rules_file` (None when neither is set)."""
    if file:
        return Path(file)
    return settings.resolve(settings.desk.rules_file) if settings.desk.rules_file else None


def check(settings: Settings, path: Path) -> tuple[RuleSet | None, list[str]]:
    """Load `path` as the daemon would; (ruleset, []) or (None, every problem as `file:line: ...`)."""
    try:
        return load_for_desk(path, settings), []
    except RulesError as exc:
        return None, exc.messages


def load(settings: Settings, path: Path) -> RuleSet:
    """Like `check`, but raises RulesError."""
    return load_for_desk(path, settings)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# rules test ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TestResult:
    input: RuleInput
    decision: Decision
    facts_from_db: bool  # False: the database could not be read, customer facts are defaults


def decide_mail(
    settings: Settings,
    ruleset: RuleSet,
    raw: bytes,
    now: datetime,
    *,
    store: Store | None = None,
    ticket: int | None = None,
) -> TestResult:
    """Decide one mail file as the daemon would (a new ticket, or a reply on `ticket`)."""
    from maildesk.threading.quotes import split_reply

    msg = parse_bytes(raw)
    visible = split_reply(msg.text, msg.html).visible or msg.text
    sender = msg.from_ or msg.sender
    email = sender.email.lower() if sender else ""
    facts: CustomerFacts | None = None
    state: TicketState | None = None
    from_db = False
    if store is not None:
        try:
            with store.reader() as session:
                if ticket is not None:
                    row = session.get(Ticket, ticket)
                    if row is None:
                        raise LookupError(f"no ticket {ticket}")
                    state = ticket_state(row)
                facts = customer_facts(session, email, ticket)
                from_db = True
        except LookupError:
            raise
        except Exception:  # noqa: BLE001 - no database: decide with default facts, and say so
            from_db = False
    if ticket is not None and state is None:
        raise LookupError(f"ticket {ticket} cannot be read: the database is not reachable")
    inp = rule_input_from_message(
        msg, event="reply" if ticket is not None else "new", now=now, body=visible, customer=facts, ticket=state
    )
    return TestResult(inp, evaluate(ruleset, inp), from_db)


# rules replay -------------------------------------------------------------------------------
def decision_from_json(data: Mapping[str, Any], event: str = "new") -> Decision:
    """The decision a `routed` event recorded (hits reduced to the matched rule names).

    Decisions recorded before the rules chose the acknowledgement (no `ack` key) sent it
    for every new ticket: `ack` is then "ack" for a new one."""
    assign = data.get("assign")
    spec: AssignSpec | None = None
    if isinstance(assign, str) and assign:
        how, _, rest = assign.partition("(")
        spec = (
            AssignSpec(how, group=rest.rstrip(")"))
            if rest and how in ("round_robin", "least_loaded")
            else AssignSpec("agent", agent=assign)
        )
    return Decision(
        queue=data.get("queue"),
        tier=data.get("tier"),
        priority=data.get("priority"),
        status=data.get("status"),
        tags_add=tuple(data.get("tags_add") or ()),
        tags_remove=tuple(data.get("tags_remove") or ()),
        fields=dict(data.get("fields") or {}),
        assign=spec,
        replies=tuple(data.get("replies") or ()),
        notify=tuple(tuple(n) for n in data.get("notify") or ()),  # type: ignore[misc]
        escalate=tuple(data.get("escalate") or ()),
        resolve=bool(data.get("resolve")),
        spam=data.get("spam"),
        discard=data.get("discard"),
        hits=tuple(RuleHit(n, True, 0) for n in data.get("matched") or ()),
        ack=data["ack"] if "ack" in data else ("ack" if event == "new" and not data.get("spam") else None),
    )


@dataclass(frozen=True)
class ReplayItem:
    message_pk: int
    message_id: str
    ticket: int
    subject: str
    event: str
    approximate: bool  # the mail was never routed: facts rebuilt from today's database
    baseline: str  # "recorded" | "current rules" | "not routed"
    diff: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return any(not line.startswith("rules matched") for line in self.diff)

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message_id,
            "ticket": self.ticket,
            "subject": self.subject,
            "event": self.event,
            "approximate": self.approximate,
            "baseline": self.baseline,
            "changes": list(self.diff),
        }


@dataclass
class ReplayReport:
    since: datetime
    candidate: str
    against: str
    messages: int = 0
    skipped: int = 0  # erased raw mail
    items: list[ReplayItem] = field(default_factory=list)  # only those with a difference
    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def changed(self) -> int:
        return sum(1 for i in self.items if i.changed)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return (
            f"{self.messages} messages, {self.changed} would change"
            + (f": {parts}" if parts else "")
            + (f" ({self.skipped} skipped: raw mail erased)" if self.skipped else "")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "candidate": self.candidate,
            "against": self.against,
            "messages": self.messages,
            "changed": self.changed,
            "skipped": self.skipped,
            "counts": dict(self.counts),
            "items": [i.to_json() for i in self.items],
        }


def _category(line: str) -> str:
    head = line.split(":", 1)[0]
    return "fields" if head.startswith("field ") else head


def _recorded(session: Session, message_pk: int) -> tuple[dict[str, Any] | None, bool]:
    """(the routed event's data, whether the message opened its ticket)."""
    routed = None
    opened = False
    for ev in rq.routing_events(session, message_pk):
        if ev.type == "routed":
            routed = ev.data
        else:
            opened = True
    return routed, opened


def _input_for(session: Session, m: Message, routed: Mapping[str, Any] | None, opened: bool) -> tuple[RuleInput, bool]:
    msg = parse_bytes(m.raw or b"")
    when = _aware(m.created_at)
    if routed is not None and isinstance(routed.get("input"), dict):
        rec = routed["input"]
        email = (m.sender or "").lower()
        c = rec.get("customer") or {}
        facts = CustomerFacts(
            email=email,
            domain=email.rpartition("@")[2],
            vip=bool(c.get("vip")),
            tickets=int(c.get("tickets", 0)),
            open_tickets=int(c.get("open_tickets", 0)),
        )
        t = rec.get("ticket")
        state = (
            None
            if not t
            else TicketState(
                status=t["status"],
                queue=t["queue"],
                tier=t["tier"],
                priority=t["priority"],
                tags=tuple(t.get("tags") or ()),
                assignee=t.get("assignee") or "",
            )
        )
        event, approximate = str(rec.get("event", "new")), False
    else:
        event = "new" if opened else "reply"
        facts = customer_facts(session, m.sender or "", m.ticket_number, before=when)
        row = session.get(Ticket, m.ticket_number) if event == "reply" else None
        state = ticket_state(row) if row is not None else None
        approximate = True
    inp = rule_input_from_message(
        msg, event=event, now=when, body=m.visible_text or msg.text, customer=facts, ticket=state
    )
    return inp, approximate


def replay(
    store: Store, since: datetime, candidate: RuleSet, *, baseline: RuleSet | None = None, limit: int | None = None
) -> ReplayReport:
    """Re-decide stored customer mail since `since` with `candidate`; compare with `baseline`
    (another ruleset) or, when None, with what the `routed` events say happened."""
    report = ReplayReport(
        since=since, candidate=candidate.source, against=baseline.source if baseline else "recorded decisions"
    )
    with store.reader() as session:
        for m in rq.customer_mail_since(session, since, limit):
            if m.raw is None:
                report.skipped += 1
                continue
            report.messages += 1
            assert m.ticket_number is not None
            routed, opened = _recorded(session, m.id)
            inp, approximate = _input_for(session, m, routed, opened)
            new = evaluate(candidate, inp)
            if baseline is not None:
                old, label = evaluate(baseline, inp), "current rules"
            elif routed is not None:
                old, label = (
                    decision_from_json({**routed.get("decision", {}), "matched": routed.get("matched", [])}, inp.event),
                    "recorded",
                )
            else:
                old, label = Decision(), "not routed"
            diff = diff_decisions(old, new)
            if not diff:
                continue
            item = ReplayItem(
                m.id, m.message_id, m.ticket_number, m.subject[:120], inp.event, approximate, label, tuple(diff)
            )
            report.items.append(item)
            if item.changed:
                report.counts.update({_category(line) for line in diff if not line.startswith("rules matched")})
        session.rollback()
    return report
