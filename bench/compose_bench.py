"""Composing an acknowledgement: the direct writer (`build_message`) against the standard
library's `EmailMessage` (`build_message_stdlib`), in one run.

Usage: python -m bench.compose_bench [--mails N]

The mail is the built-in `ack` template rendered with the sample context, as a reply with
threading headers, Reply-To, the loop header and an HTML alternative: what the respond stage
queues for every new ticket. Three rounds, min/median/max µs per mail, and the ratio.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bench.rounds import ROUNDS, measure_rounds, summary
from maildesk.outbound.compose import OutgoingMail, build_message, build_message_stdlib
from maildesk.outbound.context import sample_context
from maildesk.outbound.render import TemplateRenderer

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=1000)
    args = parser.parse_args()
    out = TemplateRenderer(None).render("ack", sample_context("en"), locale="en")
    mail = OutgoingMail(
        from_addr="support@example.com",
        from_name="Example Support",
        to=("anna.schmidt@example.org",),
        reply_to="support+t42.k3y@example.com",
        subject=f"Re: [#42] {out.subject}",
        text=out.text,
        html=out.html,
        message_id="42.abc123@example.com",
        in_reply_to="cust-1@example.org",
        references=("cust-1@example.org",),
        thread_index="AQHbjbEqQtAiTAH3dulTgvZnDsy4Vg==",
        automatic=True,
        loop_value="0123456789abcdef0123",
    )
    direct: list[float] = []
    stdlib: list[float] = []
    for _ in range(ROUNDS):  # interleaved, so both see the same machine load
        direct += measure_rounds(lambda: build_message(mail, now=NOW), rounds=1, repeat=args.mails)
        stdlib += measure_rounds(lambda: build_message_stdlib(mail, now=NOW), rounds=1, repeat=max(args.mails // 10, 1))
    ratio = [s / d for s, d in zip(stdlib, direct, strict=True)]
    print(
        f"compose an acknowledgement: direct {summary(direct, 1e6, 'µs', 0)}; EmailMessage "
        f"{summary(stdlib, 1e6, 'µs', 0)}; EmailMessage / direct {summary(ratio, 1, 'x', 1)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
