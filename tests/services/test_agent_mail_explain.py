"""`maildesk explain` and `maildesk ticket show` say, for each agent mail, what was
recognised and why: reply, note, commands, command errors, hold and release, refusal,
forward and the how-to (the real pipeline, then the real CLI on the same database)."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from maildesk.agentmail.verdict import agent_mail_line
from maildesk.services.explain import explain, render_text
from tests.commands.desk.conftest import cli_app, write_config
from tests.services.test_agent_mail_service import QUOTED, AgentDesk, desk, reply  # noqa: F401
from tests.support.mailgen import eml


def test_each_agent_mail_gets_one_clear_line(desk: AgentDesk, tmp_path: Path) -> None:  # noqa: F811
    n = desk.customer(message_id="<c1@customer.example>").ticket_number
    assert n is not None
    desk.agent(reply(desk.token(n), "Unplug it." + QUOTED, message_id="<a-reply@example.com>"))
    desk.agent(reply(desk.token(n), "#note\nShe is a VIP.", message_id="<a-note@example.com>"))
    desk.agent(reply(desk.token(n), "#priority high\n#tag vip", message_id="<a-cmds@example.com>"))
    desk.agent(reply(desk.token(n), "#frobnicate\nHi", message_id="<a-bad-cmd@example.com>"))
    old = desk.token(n)
    desk.customer(body="Also the scanner smokes.", subject="Re: [#1] Printer on fire")
    desk.agent(reply(old, "Unplug the scanner.", message_id="<a-held@example.com>"))
    fresh = email.message_from_bytes(desk.sent("agent_reply_held")[0].raw, policy=policy.default)["Reply-To"]
    desk.agent(reply(str(fresh), "#send" + QUOTED, message_id="<a-send@example.com>"))
    bad = desk.token(n).replace(desk.token(n).split("-")[-1][:4], "aaaa")
    desk.agent(reply(bad, "#resolve", message_id="<a-forged@example.com>"))
    body = "#customer zoe@customer.example\n\n---------- Forwarded message ---------\nFrom: zoe@customer.example\n"
    desk.agent(eml(sender="ann@example.com", subject="Fwd: Order", body=body, message_id="<a-fwd@example.com>"))
    desk.agent(eml(sender="ann@example.com", subject="lunch?", body="Anyone?", message_id="<a-lunch@example.com>"))

    def line(mid: str) -> str:
        data = explain(desk.app.store, mid)
        assert data is not None and data["agent_mail"], mid
        assert f"  recognised: {data['agent_mail']}" in render_text(data).splitlines()
        return str(data["agent_mail"])

    assert line("a-reply@example.com").endswith(
        "reply to a notification (token valid for this agent and ticket); reply sent to the customer"
    )
    assert "internal note, shared with the agents, never sent to the customer" in line("a-note@example.com")
    cmds = line("a-cmds@example.com")
    assert "commands done: #priority high, #tag vip" in cmds and "nothing sent to the customer" in cmds
    assert "commands REFUSED, nothing changed" in line("a-bad-cmd@example.com")
    assert "#frobnicate" in line("a-bad-cmd@example.com")
    assert "then released with #send and sent to the customer" in line("a-held@example.com")
    assert "#send: released the held reply" in line("a-send@example.com")
    forged = line("a-forged@example.com")
    assert "REFUSED for ticket #1" in forged and "[bad-token]" in forged
    assert "forward: opened this ticket for zoe@customer.example (customer from #customer)" in line("a-fwd@example.com")
    assert "no ticket, no acknowledgement; a how-to was sent" in line("a-lunch@example.com")
    customer = explain(desk.app.store, "c1@customer.example")
    assert customer is not None and customer["agent_mail"] is None

    from typer.testing import CliRunner

    config = write_config(desk.app, tmp_path)
    out = CliRunner().invoke(cli_app(), ["ticket", "show", str(n), "--config", str(config)], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    shown = [ln.strip() for ln in out.output.splitlines() if ln.strip().startswith("recognised:")]
    # reply, note, commands, command error, held (later released), #send; the forged one is on no ticket
    assert len(shown) == 6, out.output
    assert shown[0] == "recognised: " + line("a-reply@example.com")
    assert "agent mail (agent-reply)" in out.output and "agent mail (agent-note, internal)" in out.output
    explained = CliRunner().invoke(
        cli_app(), ["explain", "a-held@example.com", "--config", str(config)], env={"COLUMNS": "250"}
    )
    assert explained.exit_code == 0 and "recognised: agent mail from ann@example.com" in explained.output


def test_the_line_for_a_hold_not_yet_released_and_for_a_strangers_hash_lines() -> None:
    held = [
        ("agent-mail-received", {"from": "ann@example.com", "kind": "agent-reply"}),
        ("agent-mail-recognised", {"seq": 3, "note": False, "commands": []}),
        ("agent-reply-held", {"seq": 3, "latest": 5}),
    ]
    text = agent_mail_line(held)
    assert text is not None and "reply HELD, not sent" in text and "release it with #send" in text
    assert "nothing sent to the customer" not in text
    ignored = [("agent-commands-ignored", {"reason": "sender-not-an-agent", "detail": "x is not an agent"})]
    assert (
        agent_mail_line(ignored) == "customer mail: its '#' lines were not taken as agent commands (x is not an agent)"
    )
    assert agent_mail_line([("message-received", {})]) is None
