"""This tree's full pipeline against another git revision's, in alternating rounds of one run.

Usage: python -m bench.ab_bench REV [--rounds 3] [--messages 2000] [--database URL]

Why: on this shared 2-core machine the same commit measured an hour apart differed by 25%
(session 6: fe53618 gave 270-309 msg/s at the start of the session, 389-409 msg/s later),
more than most single changes are worth. A change is only shown by running both trees
under the same conditions: round k of REV, then round k of this tree, and so on.

REV is checked out into a temporary git worktree (removed afterwards); both trees run
`intake_bench.pipeline_rate` on the same generated corpus (new Message-IDs each round, an
own database each round: SQLite in a temporary folder, or PostgreSQL databases created
and dropped next to `--database`) with this tree's interpreter and installed libraries.
Printed: msg/s and the worker's CPU per message (the steadier figure), min/median/max,
and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.rounds import summary

ROOT = Path(__file__).resolve().parent.parent

ONE_ROUND = r"""
import json, sys, tempfile
from dataclasses import replace
from pathlib import Path
from bench.intake_bench import corpus, pipeline_rate, scratch_database
from maildesk.config import parse_settings
from maildesk.services.init import init_directory

def main():
    n, tag, url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    work = Path(tempfile.mkdtemp(prefix="maildesk-ab-"))
    init_directory(work / "desk")
    database = url or f"sqlite:///{work / 'ab.db'}"
    settings = replace(parse_settings({"desk": {
        "data_dir": str(work / "data"), "support_addresses": ["support@example.com"], "secret_env": "",
        "locales": ["en", "de", "fr", "es"], "rules_file": str(work / "desk" / "rules.yaml"),
        "templates_dir": str(work / "desk" / "templates")},
        "database": {"url": database, "url_env": ""}}, base_dir=str(work)), secret="bench")
    with scratch_database(url):
        rate, result = pipeline_rate(settings, corpus(n, tag=tag), foundation=False)
    print(json.dumps({"rate": rate, "cpu": result["cpu"], "failed": result["failed"]}))

if __name__ == "__main__":
    main()
"""


def run_round(tree: Path, messages: int, tag: str, url: str) -> dict[str, float]:
    """One round in a fresh interpreter that imports `maildesk` and `bench` from `tree` (its
    folder comes first on the path, before this environment's editable install)."""
    with tempfile.TemporaryDirectory(prefix="maildesk-ab-") as folder:
        script = Path(folder) / "ab_round.py"
        script.write_text(ONE_ROUND)
        out = subprocess.run(
            [sys.executable, str(script), str(messages), tag, url],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise SystemExit(f"the round in {tree} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def database_for(url: str, name: str) -> str:
    if not url:
        return ""
    from sqlalchemy.engine import make_url

    target = make_url(url)
    return target.set(database=f"{target.database}_{name}").render_as_string(hide_password=False)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev", help="the git revision to compare this tree with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument(
        "--database", default="", help="a PostgreSQL URL; each round creates and drops databases named after it"
    )
    args = parser.parse_args()
    other = Path(tempfile.mkdtemp(prefix="maildesk-ab-tree-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), args.rev], cwd=ROOT, check=True)
    results: dict[str, list[dict[str, float]]] = {args.rev: [], "this tree": []}
    try:
        for k in range(args.rounds):
            for name, tree in ((args.rev, other), ("this tree", ROOT)):
                tag = f"ab{k}{'o' if tree == other else 't'}"
                found = run_round(tree, args.messages, tag, database_for(args.database, tag))
                results[name].append(found)
                print(
                    f"  round {k + 1}, {name}: {found['rate']:,.0f} msg/s, worker CPU {found['cpu'] * 1e6:,.0f} µs "
                    f"per message ({int(found['failed'])} failed)"
                )
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)
    backend = "PostgreSQL" if args.database else "SQLite"
    print(f"full pipeline, {args.messages} mails, {backend}, {args.rounds} alternating rounds:")
    medians = {}
    for name, found in results.items():
        rates = [f["rate"] for f in found]
        cpus = [f["cpu"] for f in found]
        medians[name] = (sorted(rates)[len(rates) // 2], sorted(cpus)[len(cpus) // 2])
        cpu = summary(cpus, 1e6, "µs", 0)
        print(f"  {name:>12}: {summary(rates, unit='msg/s', digits=0)}; worker CPU per message {cpu}")
    (rate_o, cpu_o), (rate_t, cpu_t) = medians[args.rev], medians["this tree"]
    print(f"  this tree / {args.rev}: rate {rate_t / rate_o:.2f}x, worker CPU per message {cpu_t / cpu_o:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
