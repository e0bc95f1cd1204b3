"""Every corpus message through `maildesk inject`, then `maildesk process`: stored or quarantined.

Usage: python -m bench.corpus_inject CORPUS_DIR [--workdir DIR]

Runs the real console command once per file (as an MTA pipe would), then processes the
spool and prints counts: injected, stored (messages in the database: with a ticket, or
automatic mail kept without one), duplicates, quarantined with their reasons, failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    files = sorted(p for p in args.corpus.rglob("*") if p.is_file() and p.suffix in {".eml", ".box", ".txt"})
    work = args.workdir or Path(tempfile.mkdtemp(prefix="maildesk-corpus-"))
    cfg = work / "maildesk.toml"
    cfg.write_text(f'[desk]\ndata_dir = "{work / "data"}"\nsupport_addresses = ["support@example.com"]\n')
    exe = [sys.executable, "-m", "maildesk"]

    def inject(path: Path) -> tuple[Path, int, str]:
        proc = subprocess.run([*exe, "inject", str(path), "--config", str(cfg)], capture_output=True, text=True)
        return path, proc.returncode, proc.stderr.strip()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(inject, files))
    codes = collections.Counter(code for _, code, _ in results)
    for path, code, error in results:
        if code != 0:
            print(f"inject exit {code}: {path}: {error}")
    proc = subprocess.run([*exe, "process", "--json", "--config", str(cfg)], capture_output=True, text=True)
    if proc.returncode != 0:
        print("process failed:", proc.stderr)
        return 1
    processed = json.loads(proc.stdout.strip().splitlines()[-1])
    status = json.loads(
        subprocess.run([*exe, "status", "--json", "--config", str(cfg)], capture_output=True, text=True).stdout
    )
    quarantine = json.loads(
        subprocess.run(
            [*exe, "spool", "list", "--state", "quarantine", "--json", "--config", str(cfg)],
            capture_output=True,
            text=True,
        ).stdout
    )
    reasons = collections.Counter(q["reason"] for q in quarantine)
    by_folder = collections.Counter(p.relative_to(args.corpus).parts[0] for p in files)
    print(f"files: {len(files)} ({', '.join(f'{k} {v}' for k, v in sorted(by_folder.items()))})")
    print(f"inject exit codes: {dict(codes)}")
    print(f"processed: {processed}")
    db = status["database"]
    print(f"stored messages: {db.get('messages')}, tickets: {db.get('tickets')}, spool: {status['spool']}")
    print("quarantine reasons:")
    for reason, n in reasons.most_common():
        print(f"  {n:4d}  {reason}")
    accounted = (
        processed["tickets_created"] + processed["appended"] + processed["duplicates"] + processed["quarantined"]
    )
    print(f"accounted for: {accounted} of {codes.get(0, 0)} injected; failed: {processed['failed']}")
    return 0 if processed["failed"] == 0 and accounted == codes.get(0, 0) else 1


if __name__ == "__main__":
    raise SystemExit(main())
