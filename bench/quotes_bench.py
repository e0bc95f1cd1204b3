"""Reply splitting cost (`maildesk.threading.quotes.split_reply`), in three rounds.

Usage: python -m bench.quotes_bench [--rounds 3] [--repeat 200]

1. Pathological input: 5,000 characters on one line, 300 "On ... wrote"-like lines of 200
   words, 2,000 quoted lines; one call per round. Goal: under 1 s (this was a timing assert
   in tests/threading/test_quotes.py; the test keeps what the split returns).
2. An ordinary reply (visible text, attribution line, quoted history, signature): the mean
   over --repeat calls per round, for scale.
Prints min / median / max over the rounds.
"""

from __future__ import annotations

import argparse

from bench.rounds import measure_rounds, summary
from maildesk.threading.quotes import split_reply

PATHOLOGICAL = "a" * 5000 + "\n" + ("On " + "x " * 200 + "\n") * 300 + "> q\n" * 2000

ORDINARY = (
    "Thanks, that fixed it. The printer works again.\n\n"
    "Best regards,\nRobin\n-- \nRobin Example | Example Ltd | +44 20 7946 0000\n\n"
    "On Mon, 24 Nov 2025 at 10:15, Example Support <support@example.com> wrote:\n"
    + "> Please restart the printer and try again.\n" * 40
    + ">\n> On Sun, 23 Nov 2025, Robin wrote:\n"
    + ">> My printer does not print.\n" * 40
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    patho = measure_rounds(lambda: split_reply(PATHOLOGICAL), rounds=args.rounds)
    print(f"split_reply, pathological input ({len(PATHOLOGICAL):,} chars): {summary(patho)} (goal < 1 s)")
    ordinary = measure_rounds(lambda: split_reply(ORDINARY), rounds=args.rounds, repeat=args.repeat)
    print(f"split_reply, ordinary reply ({len(ORDINARY):,} chars): {summary(ordinary, 1e6, 'µs', 0)} per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
