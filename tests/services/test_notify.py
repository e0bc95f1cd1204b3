"""Agent notifications (services/notify.py) through the real App and pipeline, and the real
CLI for the ticket changes: who is told, what the mail says, its agent token and threading."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from maildesk.agentmail.commands import HELP_TEXT
from maildesk.agentmail.strip import marker_line
from maildesk.services import notify
from maildesk.services import tickets as ops
from maildesk.store.models import OutboxItem, Ticket
from maildesk.store.outbox_queries import latest_inbound
from maildesk.threading.tokens import parse_agent_address
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk, team_settings

SECRET = "test-secret"
AGENTS: list[dict[str, Any]] = [
    {"email": "ann@example.com", "name": "Ann Lee", "tiers": ["L1"], "queues": ["billing"]},
    {"email": "bob@example.com", "name": "Bob Roe", "tiers": ["L1"], "queues": ["billing"]},
    {"email": "dora@example.com", "name": "Dora Kim", "tiers": ["L2"], "queues": ["billing"]},
    {"email": "eve@example.com", "name": "Eve Ng", "tiers": ["L3"], "queues": []},
    {"email": "zed@example.com", "name": "Zed Old", "tiers": ["L1"], "queues": ["billing"], "active": False},
]
QUEUES: list[dict[str, Any]] = [{"name": "billing", "address": "billing@example.com"}]
CUSTOMER = "Anna Schmidt <anna@customer.example>"


@pytest.fixture
def make_desk(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Desk]]:
    made: list[Desk] = []

    def make(rules: str | None = None) -> Desk:
        d = Desk(team_settings(tmp_path, database_url, rules, agents=AGENTS, queues=QUEUES))
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.fixture
def cli(make_desk: Callable[..., Desk], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """`maildesk …` against the desk's database and data folder, with the same agents and secret."""
    from maildesk.cli import app

    def run(d: Desk, *args: str) -> Any:
        s = d.app.settings
        agents = "".join(
            f'[[agent]]\nemail = "{a["email"]}"\nname = "{a["name"]}"\ntiers = {a["tiers"]!r}\n'
            f"queues = {a['queues']!r}\nactive = {str(a.get('active', True)).lower()}\n"
            for a in AGENTS
        ).replace("'", '"')
        config = tmp_path / "maildesk-cli.toml"
        config.write_text(
            f'[desk]\ndata_dir = "{s.data_path}"\nsupport_addresses = ["support@example.com", "billing@example.com"]\n'
            f'secret_env = "MAILDESK_NOTIFY_TEST_SECRET"\n[database]\nurl = "{s.database_url}"\nurl_env = ""\n'
            f'[[queue]]\nname = "billing"\naddress = "billing@example.com"\n{agents}'
        )
        result = CliRunner().invoke(
            app,
            [*args, "--config", str(config)],
            env={"COLUMNS": "200", "MAILDESK_AGENT": "", "MAILDESK_NOTIFY_TEST_SECRET": SECRET},
        )
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    return run


def parsed(item: OutboxItem) -> EmailMessage:
    msg = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(item: OutboxItem) -> str:
    body = parsed(item).get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def notices(d: Desk, number: int | None, to: str | None = None) -> list[OutboxItem]:
    """The desk's own agent notifications on a ticket (to one agent)."""
    items = [i for i in d.outbox(number, internal=True) if i.idempotency_key.startswith("agent-notify:")]
    return [i for i in items if to is None or i.recipients == [to]]


def new_ticket(d: Desk, **kw: Any) -> int:
    row = d.say(eml(sender=CUSTOMER, to="billing@example.com", **kw))
    assert row.ticket_number is not None
    return row.ticket_number


def test_a_new_ticket_tells_the_queue_agents_at_its_tier_each_with_their_own_token(
    make_desk: Callable[..., Desk],
) -> None:
    d = make_desk()
    earlier = new_ticket(d, subject="Old invoice question", message_id="<old@customer.example>")
    with d.app.store.session() as s:
        ops.resolve(s, earlier, "ann@example.com", d.now)
    d.later(days=3)
    t = new_ticket(d, subject="Invoice wrong", body="Hello,\n\nmy invoice 4711 is wrong.\n\nAnna\n")
    items = notices(d, t)
    # the billing queue at L1: Ann and Bob (Zed is inactive; Dora is L2, Eve L3), one mail each
    assert sorted(r for i in items for r in i.recipients) == ["ann@example.com", "bob@example.com"]
    for item in items:
        agent = item.recipients[0]
        other = "bob@example.com" if agent == "ann@example.com" else "ann@example.com"
        msg = parsed(item)
        assert msg["To"].addresses[0].addr_spec == agent
        assert str(msg["Auto-Submitted"]).startswith("auto-")  # automatic: no out-of-office answers it
        reply_to = msg["Reply-To"].addresses[0].addr_spec
        got = parse_agent_address(SECRET, reply_to, agent)
        assert got is not None and got[0] == t and got[1] > 0
        assert parse_agent_address(SECRET, reply_to, other) is None  # bound to this agent
        assert parse_agent_address(SECRET, reply_to, "anna@customer.example") is None
        assert msg["Subject"] == f"[#{t}] Invoice wrong"
        body = text_of(item)
        assert body.lstrip().splitlines()[0] == marker_line("en")  # above everything quoted
        assert "a new request from Anna Schmidt has arrived" in body
        assert f"Ticket:    [#{t}] Invoice wrong" in body
        assert "Status:    new" in body
        assert "Queue:     billing · tier L1 · priority normal" in body
        assert "Assigned:  nobody yet" in body
        assert f"[#{earlier}] Old invoice question – resolved" in body  # the history, and how it ended
        assert "> my invoice 4711 is wrong." in body
        assert body.rstrip().endswith(HELP_TEXT)  # the commands, two lines, at the bottom
    assert [e["to"] for e in d.events(t, "agent-notified")] == ["ann@example.com", "bob@example.com"]
    assert all(e["event"] == "new" for e in d.events(t, "agent-notified"))


def test_a_reply_tells_the_assignee_only_and_cli_assign_tells_the_new_assignee(
    make_desk: Callable[..., Desk], cli: Callable[..., Any]
) -> None:
    d = make_desk()
    t = new_ticket(d, message_id="<r0@customer.example>")
    assert len(notices(d, t)) == 2
    cli(d, "ticket", "assign", str(t), "bob@example.com", "--by", "lead@example.com")
    assigned = notices(d, t, "bob@example.com")[-1]
    assert assigned.idempotency_key.startswith("agent-notify:assigned:")
    assert "has been assigned to you by lead@example.com" in text_of(assigned)
    assert "Assigned:  Bob Roe" in text_of(assigned)
    assert parse_agent_address(SECRET, parsed(assigned)["Reply-To"].addresses[0].addr_spec, "bob@example.com")
    before = {i.id for i in d.outbox(t)}
    d.later(hours=1)
    d.say(
        eml(
            sender=CUSTOMER,
            to="billing@example.com",
            subject="Re: Printer on fire",
            message_id="<r1@customer.example>",
            body="Any news?",
            extra="In-Reply-To: <r0@customer.example>",
        )
    )
    fresh = [i for i in notices(d, t) if i.id not in before]
    assert [i.recipients for i in fresh] == [["bob@example.com"]]
    assert "has replied on" in text_of(fresh[0]) and "> Any news?" in text_of(fresh[0])
    # taking a ticket yourself sends you nothing
    to_ann = len(notices(d, t, "ann@example.com"))
    cli(d, "ticket", "assign", str(t), "ann@example.com", "--by", "ann@example.com")
    assert d.ticket(t).assignee == "ann@example.com" and len(notices(d, t, "ann@example.com")) == to_ann


def test_cli_escalate_tells_the_agent_picked_at_the_new_tier_with_the_handoff_note(
    make_desk: Callable[..., Desk], cli: Callable[..., Any]
) -> None:
    d = make_desk()
    t = new_ticket(d)
    cli(d, "ticket", "assign", str(t), "ann@example.com", "--by", "lead@example.com")
    cli(d, "ticket", "escalate", str(t), "--note", "Needs a refund approval.", "--by", "ann@example.com")
    assert d.ticket(t).tier == "L2"
    got = notices(d, t, "dora@example.com")
    assert len(got) == 1 and got[0].idempotency_key.startswith("agent-notify:escalated:")
    body = text_of(got[0])
    assert "has been escalated to L2 by ann@example.com" in body
    assert "Hand-off note:" in body and "Needs a refund approval." in body
    assert "Queue:     billing · tier L2" in body
    assert parse_agent_address(SECRET, parsed(got[0])["Reply-To"].addresses[0].addr_spec, "dora@example.com")
    # Ann escalated it herself: no mail to her about her own note or escalation
    assert [i.idempotency_key.split(":")[1] for i in notices(d, t, "ann@example.com")] == ["new", "assigned"]


def test_a_note_by_one_agent_tells_the_others_not_the_author(
    make_desk: Callable[..., Desk], cli: Callable[..., Any]
) -> None:
    d = make_desk()
    t = new_ticket(d)
    cli(d, "ticket", "assign", str(t), "bob@example.com", "--by", "lead@example.com")
    cli(d, "ticket", "note", str(t), "--text", "Called her, she sends the logs.", "--by", "ann@example.com")
    to_bob = [i for i in notices(d, t, "bob@example.com") if i.idempotency_key.startswith("agent-notify:note:")]
    assert len(to_bob) == 1
    assert "ann@example.com added an internal note" in text_of(to_bob[0])
    assert "Called her, she sends the logs." in text_of(to_bob[0])
    assert not [i for i in notices(d, t, "ann@example.com") if ":note:" in i.idempotency_key]
    # Bob answers with a note: Ann took part (she wrote one), so now she is told
    cli(d, "ticket", "note", str(t), "--text", "Thanks, got them.", "--by", "bob@example.com")
    to_ann = [i for i in notices(d, t, "ann@example.com") if ":note:" in i.idempotency_key]
    assert len(to_ann) == 1 and "Thanks, got them." in text_of(to_ann[0])
    assert len([i for i in notices(d, t, "bob@example.com") if ":note:" in i.idempotency_key]) == 1


def test_notifications_of_one_ticket_to_one_agent_share_their_thread_root(
    make_desk: Callable[..., Desk], cli: Callable[..., Any]
) -> None:
    d = make_desk()
    t = new_ticket(d, message_id="<th0@customer.example>")
    cli(d, "ticket", "assign", str(t), "ann@example.com", "--by", "lead@example.com")
    d.later(minutes=5)
    d.say(
        eml(
            sender=CUSTOMER,
            to="billing@example.com",
            subject="Re: Printer on fire",
            message_id="<th1@customer.example>",
            body="More details.",
            extra="In-Reply-To: <th0@customer.example>",
        )
    )
    mails = [parsed(i) for i in notices(d, t, "ann@example.com")]
    assert len(mails) == 3  # new, assigned, reply
    root = notify.thread_root(SECRET, t, "ann@example.com", "example.com")
    assert {m["In-Reply-To"] for m in mails} == {f"<{root}>"}
    assert all(f"<{root}>" in m["References"] for m in mails)
    assert len({m["Message-ID"] for m in mails}) == 3
    assert len({m["Subject"] for m in mails}) == 1 and f"[#{t}]" in mails[0]["Subject"]
    assert len({m["Thread-Index"][:30] for m in mails}) == 1  # one Outlook conversation
    # Bob's thread of the same ticket is his own
    bob = parsed(notices(d, t, "bob@example.com")[0])
    assert bob["In-Reply-To"] == f"<{notify.thread_root(SECRET, t, 'bob@example.com', 'example.com')}>"
    assert bob["In-Reply-To"] != mails[0]["In-Reply-To"]


def test_automatic_mail_and_imported_history_notify_nobody(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    t = new_ticket(d, message_id="<a0@customer.example>")
    assert len(notices(d, t)) == 2
    d.say(
        eml(
            sender=CUSTOMER,
            to="billing@example.com",
            subject="Automatic reply: Printer on fire",
            message_id="<a1@customer.example>",
            body="I am out of office until Monday.",
            extra="In-Reply-To: <a0@customer.example>\nAuto-Submitted: auto-replied",
        )
    )
    assert len(notices(d, t)) == 2
    d.app.spool.put(eml(sender=CUSTOMER, to="billing@example.com", subject="From 2019"), "import:old.mbox")
    assert d.app.process()["failed"] == 0
    with d.app.store.reader() as s:
        old = s.scalars(select(Ticket.number).where(Ticket.subject == "From 2019")).one()
    assert notices(d, old) == []


def test_customer_html_reaches_agents_only_as_text(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    html = (
        "<html><body><p>Please <b>help</b>, the portal is down.</p>"
        "<script>alert('pwned')</script><img src=\"https://tracker.example/p.gif?u=1\">"
        "<p>Anna</p></body></html>"
    )
    raw = (
        f"From: {CUSTOMER}\r\nTo: billing@example.com\r\nSubject: Portal down\r\n"
        "Message-ID: <h0@customer.example>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n"
    ).encode()
    t = d.say(raw).ticket_number
    items = notices(d, t)
    assert len(items) == 2
    for item in items:
        html_part = parsed(item).get_body(("html",))  # the desk's own layout around the text, escaped
        html_text = str(html_part.get_content()) if html_part is not None else ""
        for decoded in (text_of(item), html_text):
            assert "<script" not in decoded and "pwned" not in decoded and "alert(" not in decoded
            assert "tracker.example" not in decoded and "<img" not in decoded
        assert "the portal is down" in text_of(item)


def test_attachments_are_listed_with_sizes_and_attached(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = CUSTOMER, "billing@example.com", "Invoice attached"
    msg["Message-ID"] = "<att0@customer.example>"
    msg.set_content("See the attached invoice.\n")
    msg.add_attachment(b"%PDF-1.4 " + b"x" * 3000, maintype="application", subtype="pdf", filename="invoice.pdf")
    t = d.say(msg.as_bytes()).ticket_number
    item = notices(d, t, "ann@example.com")[0]
    assert "invoice.pdf (3 KB)" in text_of(item)
    files = [(p.get_filename(), p.get_content()) for p in parsed(item).iter_attachments()]
    assert files == [("invoice.pdf", b"%PDF-1.4 " + b"x" * 3000)]


def test_rule_notify_mail_carries_an_agent_token_for_its_recipient(make_desk: Callable[..., Desk]) -> None:
    d = make_desk("""
rules:
  - name: tell the lead
    when: new
    then: [{notify: {to: lead@example.com, template: agent_notification}}]
""")
    t = new_ticket(d)
    (lead,) = [i for i in d.outbox(t) if i.recipients == ["lead@example.com"]]
    reply_to = parsed(lead)["Reply-To"].addresses[0].addr_spec
    got = parse_agent_address(SECRET, reply_to, "lead@example.com")
    assert got is not None and got[0] == t
    assert parse_agent_address(SECRET, reply_to, "anna@customer.example") is None


def test_customers_and_inactive_agents_are_refused_with_an_event(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    t = new_ticket(d)
    mailer = d.app.deps.mailer
    with d.app.store.session() as s:
        ticket = s.get(Ticket, t)
        assert ticket is not None
        assert "customer of ticket" in notify.refusal(s, mailer, ticket, "anna@customer.example")
        assert "not active" in notify.refusal(s, mailer, ticket, "zed@example.com")
        assert "own addresses" in notify.refusal(s, mailer, ticket, "support@example.com")
        assert notify.refusal(s, mailer, ticket, "ann@example.com") == ""
        ticket.assignee = "anna@customer.example"  # as if someone assigned the customer
    with d.app.store.session() as s:
        ticket = s.get(Ticket, t)
        assert ticket is not None
        row = latest_inbound(s, t)
        assert row is not None
        sent = notify.on_customer_mail(s, mailer, ticket, row.id, new_ticket=False, now=d.now)
    assert sent == []
    refused = d.events(t, "agent-notify-refused")
    assert refused and refused[-1]["to"] == "anna@customer.example"
    assert all(i.recipients != ["anna@customer.example"] for i in notices(d, t))


def test_a_rule_escalation_on_a_reply_tells_the_pick_at_the_new_tier_with_the_note(
    make_desk: Callable[..., Desk],
) -> None:
    d = make_desk("""
rules:
  - name: wants a manager
    when: reply
    if: {body: {contains: manager}}
    then: [{escalate: {note: "Customer asked for a manager."}}]
""")
    t = new_ticket(d, message_id="<m0@customer.example>")
    d.later(minutes=5)
    d.say(
        eml(
            sender=CUSTOMER,
            to="billing@example.com",
            subject="Re: Printer on fire",
            message_id="<m1@customer.example>",
            body="Get me a manager.",
            extra="In-Reply-To: <m0@customer.example>",
        )
    )
    assert d.ticket(t).tier == "L2"
    (to_dora,) = notices(d, t, "dora@example.com")
    body = text_of(to_dora)
    assert "Customer asked for a manager." in body and "> Get me a manager." in body
    assert "Queue:     billing · tier L2" in body
    # one mail per agent per customer mail: the rules' own escalation sends nothing extra
    assert len(notices(d, t)) == 2 + 1
