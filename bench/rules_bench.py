"""Per-message cost of rule evaluation with 5 and with 500 generated rules.

Run: .venv/bin/python bench/rules_bench.py [--messages N]
Rules mix the operators a real desk uses (contains, regex with captures, in, equals, gt,
any/not); none has `stop`, so every rule is evaluated for every message (the worst case).
Prints µs/message for each size, the ratio, and the load time of the 500-rule file.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

from maildesk.rules.engine import evaluate
from maildesk.rules.loader import load_rules_text
from maildesk.rules.model import CustomerFacts, RuleInput, TicketState
from maildesk.rules.ruleset import RuleSet

WORDS = "invoice refund outage login password upgrade cancel delivery api billing crash slow export".split()
DOMAINS = ["bigcorp.com", "acme.org", "customer.example", "mail.example", "shop.example"]


def rule_yaml(i: int, rnd: random.Random) -> str:
    word = rnd.choice(WORDS)
    kind = i % 6
    if kind == 0:
        cond = f"{{subject: {{contains: {word}{i}}}}}"
    elif kind == 1:
        cond = f"{{body: {{regex: '\\b{word}\\s+(?P<ref{i}>\\d{{4,}})'}}}}"
    elif kind == 2:
        cond = f"{{from.domain: {{in: [{rnd.choice(DOMAINS)}, d{i}.example]}}}}"
    elif kind == 3:
        cond = f"{{all: [{{customer.vip: true}}, {{customer.tickets: {{gt: {i % 7}}}}}]}}"
    elif kind == 4:
        cond = f"{{any: [{{subject: {{starts_with: '[{word}]'}}}}, {{not: {{header.X-Prio: '{i}'}}}}]}}"
    else:
        cond = f"{{ticket.queue: q{i % 9}, body: {{contains: '{word}'}}}}"
    then = f"[{{queue: q{i % 9}}}, {{tags: [t{i}]}}]"
    if kind == 1:
        then = f"[{{queue: billing}}, {{field: {{ref: '{{{{ref{i}}}}}'}}}}]"
    return f"  - name: rule {i}\n    if: {cond}\n    then: {then}\n"


def make_rules(n: int) -> str:
    rnd = random.Random(n)
    return "version: 1\nrules:\n" + "".join(rule_yaml(i, rnd) for i in range(n))


def make_inputs(n: int) -> list[RuleInput]:
    rnd = random.Random(7)
    base = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        word = rnd.choice(WORDS)
        body = " ".join(rnd.choice(WORDS) for _ in range(60)) + f" {word} {rnd.randint(1000, 99999)}"
        out.append(
            RuleInput(
                event=rnd.choice(["new", "reply"]),
                sender=f"user{i}@{rnd.choice(DOMAINS)}",
                sender_name=f"User {i}",
                recipients=("support@desk.example",),
                subject=f"[{word}] Question about {rnd.choice(WORDS)}",
                body=body,
                headers=(("X-Prio", str(i % 50)), ("Received", "from mx")),
                customer=CustomerFacts(vip=i % 5 == 0, tickets=i % 11),
                ticket=TicketState(queue=f"q{i % 9}") if i % 2 else None,
                now=base + timedelta(minutes=i),
            )
        )
    return out


def per_message_us(ruleset: RuleSet, inputs: list[RuleInput], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for inp in inputs:
            evaluate(ruleset, inp)
        best = min(best, time.perf_counter() - start)
    return best / len(inputs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    inputs = make_inputs(args.messages)
    results = {}
    for n in (5, 500):
        text = make_rules(n)
        start = time.perf_counter()
        ruleset = load_rules_text(text, f"<{n} rules>")
        load_ms = (time.perf_counter() - start) * 1e3
        count = len(inputs) if n == 5 else max(200, len(inputs) // 5)
        results[n] = per_message_us(ruleset, inputs[:count])
        matched = sum(len(evaluate(ruleset, inp).matched) for inp in inputs[:200]) / 200
        print(
            f"{n:4d} rules: {results[n]:9.1f} µs/message  "
            f"(load {load_ms:7.1f} ms, {matched:.1f} rules match per message)"
        )
    print(f"ratio 500/5: {results[500] / results[5]:.1f}x  ({results[500] / 500:.2f} µs per rule at 500 rules)")


if __name__ == "__main__":
    main()
