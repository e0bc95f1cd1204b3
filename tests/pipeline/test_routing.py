"""Rules run the desk: every condition family and action through the real pipeline (both
backends), rule order and stop, captures into fields, replies re-routed, round-robin and
least-loaded assignment against the database, escalation L1 -> L2 -> L3 with hand-off notes,
spam/discard, notify, queues by address, and a broken rules file during operation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.config import parse_settings
from maildesk.errors import ConfigError
from maildesk.services.explain import explain
from maildesk.store.models import Agent, Customer, KeyValue, Ticket
from tests.support.mailgen import eml
from tests.support.routing_kit import AGENTS, Desk, team_settings


@pytest.fixture
def make_desk(tmp_path: Path, database_url: str) -> Iterator[Any]:
    made: list[Desk] = []

    def make(rules: str | None, **kw: Any) -> Desk:
        d = Desk(team_settings(tmp_path, database_url, rules, **kw))
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


ROUTING = """
version: 1
rules:
  - name: defaults
    when: new
    then: [{queue: general}, {priority: normal}]
  - name: billing with invoice number
    when: new
    if:
      subject: {regex: 'invoice\\s+(?P<invoice>[A-Z]{2}-\\d{4,})'}
    then:
      - queue: billing
      - tags: [billing, "inv-{{invoice}}"]
      - field: {invoice: "{{invoice}}", source: "subject"}
  - name: attachments
    if: {has_attachments: true}
    then: [{tags: [has-attachment]}]
  - name: big customers
    if: {from.domain: {in: [bigcorp.example]}}
    then: [{priority: high}, {tier: L2}, {status: open}]
  - name: header urgent
    if: {header.X-Priority: {starts_with: "1"}}
    then: [{priority: urgent}]
  - name: vip
    if: {customer.vip: true}
    then: [{tags: [vip]}]
  - name: repeat customer
    when: new
    if: {customer.tickets: {gt: 1}}
    then: [{tags: [repeat]}]
"""


def test_conditions_and_actions_apply_to_the_ticket_and_are_explained(make_desk: Any) -> None:
    d = make_desk(ROUTING)
    m = d.say(eml(subject="Question about invoice AB-12345", message_id="<r1@customer.example>"))
    t = d.ticket(m.ticket_number)
    assert (t.queue, t.tier, t.priority, t.status) == ("billing", "L1", "normal", "new")
    assert t.tags == ["billing", "inv-AB-12345"]
    assert t.fields == {"invoice": "AB-12345", "source": "subject"}
    hits = d.events(t.number, "rule")
    assert [h["name"] for h in hits] == ["defaults", "billing with invoice number"]
    assert hits[1]["captures"] == {"invoice": "AB-12345"} and hits[1]["line"] > 0
    routed = d.events(t.number, "routed")[-1]
    assert routed["changes"]["queue"] == ["default", "billing"]
    assert routed["input"] == {
        "event": "new",
        "customer": {"vip": False, "tickets": 0, "open_tickets": 0},
        "ticket": None,
    }
    # explain lists the rule hits with the mail
    why = explain(d.app.store, "<r1@customer.example>")
    assert why is not None
    types = [e["type"] for e in why["events"]]
    assert types.count("rule") == 2 and "routed" in types

    # from.domain + status + tier; header; attachments
    raw = eml(sender="Boss <boss@bigcorp.example>", subject="help", extra="X-Priority: 1 (Highest)")
    t2 = d.ticket(d.say(raw).ticket_number)
    assert (t2.priority, t2.tier, t2.status) == ("urgent", "L2", "open")  # later rule wins for priority
    with_file = (
        b"From: Carla <carla@customer.example>\r\nTo: support@example.com\r\nSubject: see log\r\n"
        b"Message-ID: <att1@customer.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nlog attached\r\n'
        b"--b\r\nContent-Type: text/plain\r\n"
        b'Content-Disposition: attachment; filename="app.log"\r\n\r\nERR\r\n--b--\r\n'
    )
    assert "has-attachment" in d.ticket(d.say(with_file).ticket_number).tags


def test_customer_facts_come_from_the_database(make_desk: Any) -> None:
    d = make_desk(ROUTING)
    first = d.say(eml(subject="one"))
    assert "repeat" not in d.ticket(first.ticket_number).tags
    d.say(eml(subject="two"))
    third = d.say(eml(subject="three"))
    t3 = d.ticket(third.ticket_number)
    assert "repeat" in t3.tags and "vip" not in t3.tags
    assert d.events(t3.number, "routed")[-1]["input"]["customer"] == {"vip": False, "tickets": 2, "open_tickets": 2}
    with d.app.store.session() as s:
        cust = s.scalars(select(Customer).where(Customer.email == "anna@customer.example")).one()
        cust.vip = True
    assert "vip" in d.ticket(d.say(eml(subject="four")).ticket_number).tags


def test_rule_order_later_wins_and_stop_ends_the_run(make_desk: Any) -> None:
    d = make_desk("""
rules:
  - name: first
    then: [{queue: general}, {tags: [a]}, {reply: after_hours}]
  - name: second
    if: {subject: {contains: refund}}
    then: [{queue: billing}, {tags: [b]}]
    stop: true
  - name: never after stop
    then: [{queue: technical}, {tags: [c]}]
""")
    t = d.ticket(d.say(eml(subject="Refund please")).ticket_number)
    assert t.queue == "billing" and t.tags == ["a", "b"]
    assert [h["name"] for h in d.events(t.number, "rule")] == ["first", "second"]
    # the reply a rule named takes the acknowledgement's place: one mail to the customer
    templates = sorted(i.template for i in d.outbox(t.number, internal=False))
    assert templates == ["after_hours"]
    # and the billing queue's L1 agents were told of the new ticket (services/notify.py)
    told = sorted(r for i in d.outbox(t.number, internal=True) for r in i.recipients)
    assert told == ["ann@example.com", "bob@example.com"]
    u = d.ticket(d.say(eml(subject="Other")).ticket_number)
    assert u.queue == "technical" and u.tags == ["a", "c"]


def test_reply_is_rerouted_by_a_rule_and_sees_the_ticket_state(make_desk: Any) -> None:
    d = make_desk("""
rules:
  - name: billing
    when: new
    if: {to: billing@example.com}
    then: [{tags: [billing]}]
  - name: outage reply re-routes
    when: reply
    if:
      - body: {regex: '\\b(?P<symptom>still down|outage)\\b'}
      - ticket.queue: billing
    then:
      - queue: technical
      - priority: urgent
      - escalate: {note: "Customer wrote '{{symptom}}'; moved to technical."}
  - name: reopened tickets get flagged
    when: reply
    if: {ticket.status: [resolved, closed]}
    then: [{tags: [reopened]}, {priority: high}]
""")
    first = d.say(eml(to="billing@example.com", subject="Invoice wrong", message_id="<q1@customer.example>"))
    t = d.ticket(first.ticket_number)
    assert t.queue == "billing"  # [[queue]] address routes it before the rules
    assert d.events(t.number, "queued-by-address") == [{"address": "billing@example.com", "queue": "billing"}]
    d.later(hours=1)
    reply = d.say(
        eml(
            to="billing@example.com",
            subject="Re: Invoice wrong",
            message_id="<q2@customer.example>",
            body="The portal is still down since this morning.\n\n> old quoted text about an outage\n",
            extra="In-Reply-To: <q1@customer.example>",
        )
    )
    assert reply.ticket_number == t.number
    t = d.ticket(t.number)
    assert (t.queue, t.tier, t.priority) == ("technical", "L2", "urgent")
    routed = d.events(t.number, "routed")[-1]
    assert routed["input"]["event"] == "reply" and routed["input"]["ticket"]["queue"] == "billing"
    assert routed["changes"]["queue"] == ["billing", "technical"]
    note = d.notes(t.number)[-1]
    assert note.internal and "still down" in note.visible_text and "L1 -> L2" in note.visible_text
    # a reply to a resolved ticket: the rules see "resolved" although threading reopened it
    with d.app.store.session() as s:
        row = s.get(Ticket, t.number)
        assert row is not None
        row.status = "resolved"
        row.resolved_at = d.now
    d.later(days=1)
    d.say(
        eml(
            subject="Re: Invoice wrong",
            message_id="<q3@customer.example>",
            body="Hm, one more question.",
            extra="In-Reply-To: <q2@customer.example>",
        )
    )
    t = d.ticket(t.number)
    assert t.status == "open" and "reopened" in t.tags and t.priority == "high"
    assert d.events(t.number, "routed")[-1]["input"]["ticket"]["status"] == "resolved"


def test_escalation_l1_l2_l3_keeps_history_and_handoff_notes(make_desk: Any) -> None:
    d = make_desk("""
rules:
  - name: customer asks for a manager
    when: reply
    if: {body: {regex: '(?i)(?P<ask>manager|supervisor)'}}
    then: [{escalate: {note: "Customer asked for a {{ask}}."}}]
""")
    t = d.say(eml(message_id="<e0@customer.example>")).ticket_number
    tiers = []
    for i in range(1, 4):
        d.later(minutes=10)
        d.say(
            eml(
                subject="Re: Printer on fire",
                message_id=f"<e{i}@customer.example>",
                body=f"Get me a manager now ({i})",
                extra=f"In-Reply-To: <e{i - 1}@customer.example>",
            )
        )
        tiers.append(d.ticket(t).tier)
    assert tiers == ["L2", "L3", "L3"]
    steps = [(e["from"], e["to"], e["rule"]) for e in d.events(t, "escalated")]
    assert steps == [
        ("L1", "L2", "customer asks for a manager"),
        ("L2", "L3", "customer asks for a manager"),
        ("L3", "L3", "customer asks for a manager"),
    ]
    notes = d.notes(t)
    assert len(notes) == 3 and all(n.internal and n.sender == "maildesk" for n in notes)
    assert "L1 -> L2" in notes[0].visible_text and "Customer asked for a manager." in notes[0].visible_text
    assert "already at L3" in notes[2].visible_text
    assert d.events(t, "routed")[-1]["decision"]["notes"]  # the engine says it stayed at L3
    # nothing of this reached the customer: the rest went to agents only
    assert [i.template for i in d.outbox(t, internal=False)] == ["ack"]
    agents = {a["email"] for a in AGENTS}
    staff = d.outbox(t, internal=True)
    assert staff and all(i.template == "agent_notification" and set(i.recipients) <= agents for i in staff)


def test_round_robin_assignment_uses_a_persistent_cursor(make_desk: Any, tmp_path: Path, database_url: str) -> None:
    rules = """
rules:
  - name: billing round robin
    if: {subject: {contains: invoice}}
    then: [{queue: billing}, {assign: {round_robin: billing}}]
"""
    d = make_desk(rules)
    got = [d.ticket(d.say(eml(subject=f"invoice {i}")).ticket_number).assignee for i in range(3)]
    assert got == ["ann@example.com", "bob@example.com", "ann@example.com"]
    with d.app.store.reader() as s:
        kv = s.get(KeyValue, "round_robin:billing")
        assert kv is not None and kv.value == {"last": "ann@example.com"}
    d.close()
    # a restarted desk continues where the last one stopped
    again = make_desk(rules)
    assert again.ticket(again.say(eml(subject="invoice 4")).ticket_number).assignee == "bob@example.com"
    last = again.events(again.say(eml(subject="invoice 5")).ticket_number, "assigned")[-1]
    assert (
        last["strategy"] == "round_robin" and last["previous"] == "bob@example.com" and last["new"] == "ann@example.com"
    )


def test_least_loaded_assignment_counts_open_tickets_per_agent(make_desk: Any) -> None:
    d = make_desk("""
rules:
  - name: technical
    if: {subject: {contains: error}}
    then: [{queue: technical}, {tier: L2}, {assign: {least_loaded: L2}}]
""")
    # load: cem 2 open, dora 1 open + 3 resolved (resolved ones do not count)
    numbers = [d.say(eml(subject=f"seed {i}")).ticket_number for i in range(6)]
    with d.app.store.session() as s:
        for n, (who, status) in zip(
            numbers,
            [
                ("cem@example.com", "open"),
                ("cem@example.com", "new"),
                ("dora@example.com", "pending"),
                ("dora@example.com", "resolved"),
                ("dora@example.com", "resolved"),
                ("dora@example.com", "closed"),
            ],
            strict=True,
        ):
            row = s.get(Ticket, n)
            assert row is not None
            row.assignee, row.status = who, status
    t = d.ticket(d.say(eml(subject="error 1")).ticket_number)
    assert t.assignee == "dora@example.com"
    ev = d.events(t.number, "assigned")[-1]
    assert ev["loads"] == {"cem@example.com": 2, "dora@example.com": 1}
    # now 2 : 2, ties go to the alphabetically first
    assert d.ticket(d.say(eml(subject="error 2")).ticket_number).assignee == "cem@example.com"
    # an inactive agent is never chosen
    with d.app.store.session() as s:
        cem = s.scalars(select(Agent).where(Agent.email == "cem@example.com")).one()
        cem.active = False
    assert d.ticket(d.say(eml(subject="error 3")).ticket_number).assignee == "dora@example.com"


def test_assignment_to_an_empty_group_is_reported_not_fatal(make_desk: Any) -> None:
    d = make_desk(
        """
rules:
  - name: to L3 of billing
    then: [{assign: {round_robin: billing/L3}}]
""",
        agents=[{"email": "ann@example.com", "tiers": ["L1"], "queues": ["billing"]}],
    )
    t = d.ticket(d.say(eml()).ticket_number)
    assert t.assignee is None
    assert "no active agent" in d.events(t.number, "assign-failed")[-1]["reason"]


def test_spam_and_discard_mark_and_close_but_never_delete_or_answer(make_desk: Any) -> None:
    d = make_desk("""
rules:
  - name: discard prize mail
    if: {body: {contains: claim your prize}}
    then: [{discard: "prize spam"}, {reply: after_hours}]
    stop: true
  - name: newsletter
    if: {header.List-Unsubscribe: {regex: '.+'}}
    then: [{spam: "newsletter"}]
""")
    gone = d.ticket(d.say(eml(body="Click to claim your prize today")).ticket_number)
    assert gone.spam and gone.status == "closed" and gone.closed_at is not None
    assert d.events(gone.number, "discarded")[-1]["reason"] == "prize spam"
    news = d.ticket(d.say(eml(subject="Our news", extra="List-Unsubscribe: <mailto:off@news.example>")).ticket_number)
    assert news.spam and news.status == "new"
    assert d.outbox() == []  # neither the ack nor the rule's reply went out
    assert "suppressed" in d.events(gone.number, "routed")[-1]["decision"]["notes"][0]
    with d.app.store.reader() as s:
        assert s.scalar(select(Ticket.number).where(Ticket.number == gone.number)) == gone.number


def test_notify_queues_an_internal_mail_and_resolve_on_reply(make_desk: Any) -> None:
    d = make_desk("""
rules:
  - name: tell the lead
    when: new
    if: {subject: {contains: urgent}}
    then: [{notify: {to: lead@example.com, template: agent_notification}}]
  - name: thanks it works
    when: reply
    if: {body: {regex: '(?i)^\\s*thanks.*works'}}
    then: [{resolve: true}]
""")
    t = d.say(eml(subject="urgent: printer", message_id="<n1@customer.example>")).ticket_number
    assert {i.template for i in d.outbox(t)} == {"ack", "agent_notification"}
    # the rule's mail (the desk's own notifications to the queue's agents have keys of their own)
    items = {i.template: i for i in d.outbox(t) if not i.idempotency_key.startswith("agent-notify:")}
    assert set(items) == {"ack", "agent_notification"}
    assert items["agent_notification"].recipients == ["lead@example.com"]
    assert d.events(t, "notified")[-1]["to"] == "lead@example.com"
    d.later(hours=2)
    d.say(
        eml(
            subject="Re: urgent: printer",
            message_id="<n2@customer.example>",
            body="Thanks, it works again!",
            extra="In-Reply-To: <n1@customer.example>",
        )
    )
    tk = d.ticket(t)
    assert tk.status == "resolved" and tk.resolved_at is not None
    # a replay of the same mail changes nothing and sends nothing twice
    before = len(d.outbox())
    d.app.spool.put(eml(subject="urgent: printer", message_id="<n1@customer.example>"), "test")
    d.app.process()
    assert len(d.outbox()) == before and len(d.events(t, "notified")) == 1


def test_no_rules_file_routes_by_address_only_and_records_nothing(make_desk: Any) -> None:
    d = make_desk(None)
    t = d.ticket(d.say(eml(to="billing@example.com")).ticket_number)
    assert t.queue == "billing"
    assert d.events(t.number, "routed") == [] and d.events(t.number, "rule") == []
    assert d.app.status_snapshot()["rules"] == {"file": None, "rules": 0, "errors": [], "reloaded_at": None}


def test_broken_rules_file_during_operation_keeps_the_last_good_rules(make_desk: Any) -> None:
    d = make_desk("""
rules:
  - name: to billing
    then: [{queue: billing}]
""")
    assert d.ticket(d.say(eml(subject="one")).ticket_number).queue == "billing"
    # an admin saves a broken edit: unknown action and unknown queue
    d.rules_path.write_text(
        "version: 1\nrules:\n  - name: to tech\n    then: [{queue: tehcnical}, {prioritty: high}]\n"
    )
    t2 = d.ticket(d.say(eml(subject="two")).ticket_number)
    assert t2.queue == "billing"  # the old rules still run
    status = d.app.status_snapshot()["rules"]
    assert status["rules"] == 1 and len(status["errors"]) == 2
    assert status["errors"][0].startswith(f"{d.rules_path}:4: rule 'to tech':")
    assert "tehcnical" in status["errors"][0] and "did you mean 'technical'" in status["errors"][0]
    assert d.events(t2.number, "routed")[-1]["rules_errors"] == status["errors"]
    # SIGHUP-style reload of the same broken file reports again, still keeps the old rules
    assert len(d.app.reload()) == 2 and d.app.rules.ruleset.rules[0].name == "to billing"
    # the fix is picked up on the next message without a restart
    d.rules_path.write_text("version: 1\nrules:\n  - name: to tech\n    then: [{queue: technical}, {priority: high}]\n")
    t3 = d.ticket(d.say(eml(subject="three")).ticket_number)
    assert (t3.queue, t3.priority) == ("technical", "high")
    assert d.app.status_snapshot()["rules"]["errors"] == []


def test_a_broken_file_at_start_runs_without_rules_and_says_so(make_desk: Any) -> None:
    d = make_desk("rules:\n  - name: x\n    then: [{reply: no_such_template}]\n")
    assert "unknown template 'no_such_template'" in d.app.status_snapshot()["rules"]["errors"][0]
    t = d.ticket(d.say(eml()).ticket_number)
    assert t.queue == "default" and d.events(t.number, "rule") == []


def test_agents_are_synced_from_the_config(make_desk: Any) -> None:
    d = make_desk(None)
    with d.app.store.reader() as s:
        rows = {a.email: (a.tiers, a.queues, a.active) for a in s.scalars(select(Agent))}
    assert rows["dora@example.com"] == (["L2"], ["technical", "billing"], True) and len(rows) == 5
    d.close()
    fewer = make_desk(None, agents=[{"email": "ann@example.com", "name": "Ann B.", "tiers": ["L1", "L2"]}])
    with fewer.app.store.reader() as s:
        rows2 = {a.email: (a.name, a.tiers, a.active) for a in s.scalars(select(Agent))}
    assert rows2["ann@example.com"] == ("Ann B.", ["L1", "L2"], True)
    assert rows2["bob@example.com"][2] is False and len(rows2) == 5


@pytest.mark.parametrize(
    ("table", "entry", "message"),
    [
        ("agent", {"email": "not-an-address"}, "agent[0].email"),
        ("agent", {"email": "a@example.com", "tiers": ["L4"]}, "agent[0].tiers: unknown tier 'L4'"),
        ("agent", {"email": "a@example.com", "queues": ["nope"]}, "agent[0].queues: unknown queue 'nope'"),
        ("agent", {"email": "a@example.com", "colour": "red"}, "agent[0].colour: unknown key"),
        ("queue", {"name": "x", "address": "elsewhere@other.example"}, "queue[0].address"),
        ("queue", {"name": "bad name"}, "queue[0].name"),
    ],
)
def test_team_config_errors_name_the_key(tmp_path: Path, table: str, entry: dict[str, Any], message: str) -> None:
    data: dict[str, Any] = {
        "desk": {"data_dir": str(tmp_path), "support_addresses": ["support@example.com"], "secret_env": ""},
        "queue": [{"name": "billing"}],
        table: [entry],
    }
    if table == "queue":
        data["queue"] = [entry]
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_settings(data)


def test_team_keys_are_documented_in_the_shipped_default() -> None:
    from dataclasses import fields

    from maildesk import config as c

    text = (Path(c.__file__).parent / "defaults" / "maildesk.toml").read_text()
    for cls in (c.AgentSettings, c.QueueSettings):
        for f in fields(cls):
            assert f"{f.name} =" in text, f"{cls.__name__}.{f.name} is not documented"
    assert "[[agent]]" in text and "[[queue]]" in text
