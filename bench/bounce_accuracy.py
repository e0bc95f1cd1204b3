"""Measure screening and bounce parsing on the third-party corpora.

Usage: python -m bench.bounce_accuracy CORPUS_DIR [FIXTURES_DIR]   (or: python bench/bounce_accuracy.py ...)

First scores maildesk's own bounce fixtures per kind (FIXTURES_DIR, default
tests/fixtures/bounces: free-text bounces of older MTAs and groupware, addresses glued to quotes
or '<', permanence from codes and words; see its README): a fixture passes when it is screened
as a bounce with exactly the expected failed addresses and permanence.

Reads CORPUS_DIR/flanker/messages, CORPUS_DIR/zammad/mail (with the .yml expectations) and
CORPUS_DIR/imap-tools/messages; never copies them. Prints the labelling rule, a verdict per
file, a confusion table, bounce precision/recall, failed-address accuracy where the corpus
names the addresses, and flufl.bounce's own detection rate for comparison.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from maildesk.errors import UnparseableMessage
from maildesk.message import parse_bytes
from maildesk.rules.bounce import flufl_scan, parse_bounce
from maildesk.rules.screen import VERDICTS, screen_message

LABEL_RULE = """\
Labelling rule (expected class per file, from paths, names and the corpus's own .yml only):
  bounce     - path has a 'bounce/' or 'multipart_report' folder, or the file name contains
               'bounce', 'dsn', 'delayed', 'undeliver'; or (zammad) the .yml expectation has
               from_email mailer-daemon@/postmaster@ and a subject about (un)delivery /
               'Benachrichtung', or lists an attachment of type message/delivery-status.
  auto-reply - path has 'complaints/' (ARF abuse reports) or the name contains
               'disposition-notification' (read receipt), 'ooo', 'autoreply', 'auto-reply'.
  other      - the names say nothing: human mail, list mail or unnamed automatic mail. Any
               verdict is possible; rows of this class only count against bounce precision.
Reference failed addresses: 'Final-Recipient:' and 'X-Failed-Recipients:' values found by a
plain regex in the raw file, and (zammad) in the .yml attachment data or '<addr>:' body lines.
"""

_FINAL_RE = re.compile(rb"^Final-Recipient:[ \t]*[^;\r\n]*;[ \t]*<?([^\s<>;]+@[^\s<>;]+?)>?[ \t]*\r?$", re.I | re.M)
_XFAILED_RE = re.compile(rb"^X-Failed-Recipients:[ \t]*(.+)$", re.I | re.M)
_ADDR_RE = re.compile(r"[\w.+\-=]+@[\w\-]+(?:\.[\w\-]+)+")
_BOUNCE_SUBJECT = re.compile(r"undeliver|delivery status|returned mail|delivery failed|benachrichtung", re.I)


def label_for(rel: str, yml: dict | None) -> str:
    low = rel.lower()
    name = low.rsplit("/", 1)[-1]
    if (
        "/bounce/" in low
        or "multipart_report" in low
        or any(t in name for t in ("bounce", "dsn", "delayed", "undeliver"))
    ):
        return "bounce"
    if "/complaints/" in low or any(t in name for t in ("disposition-notification", "ooo", "autoreply", "auto-reply")):
        return "auto-reply"
    if yml:
        local = str(yml.get("from_email") or "").lower().partition("@")[0]
        subject = str(yml.get("subject") or "")
        if local in {"mailer-daemon", "postmaster"} and _BOUNCE_SUBJECT.search(subject):
            return "bounce"
        if "message/delivery-status" in yaml.safe_dump(yml.get("attachments") or []):
            return "bounce"
    return "other"


def reference_addresses(raw: bytes, yml: dict | None) -> set[str]:
    found = {m.group(1).decode("ascii", "replace").lower() for m in _FINAL_RE.finditer(raw)}
    for m in _XFAILED_RE.finditer(raw):
        found |= {a.lower() for a in _ADDR_RE.findall(m.group(1).decode("ascii", "replace"))}
    if yml:
        data = yaml.safe_dump(yml.get("attachments") or [])
        for m in re.finditer(r"Final-Recipient:\s*[^;\n]*;\s*<?([^\s<>;]+@[^\s<>;\\]+)", data, re.I):
            found.add(m.group(1).lower())
        for m in re.finditer(r"^<([^<>\s]+@[^<>\s]+)>:", str(yml.get("body") or ""), re.M):
            found.add(m.group(1).lower())
    return found


def _load_yml(path: Path) -> dict | None:
    yml_path = path.with_suffix(".yml")
    if not yml_path.exists():
        return None
    try:
        # The Zammad files carry Ruby class tags; read them as plain mappings.
        text = re.sub(r"!ruby/\S+", "", yml_path.read_text("utf-8", "replace"))
        data = yaml.safe_load(text)
        return data if isinstance(data, dict) else None
    except yaml.YAMLError:
        return None


FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "bounces"


def score_fixture(raw: bytes, want: dict) -> tuple[bool, str]:
    """(passed, what was found) for one fixture of tests/fixtures/bounces."""
    msg = parse_bytes(raw)
    verdict = screen_message(msg, own_addresses=frozenset({"support@desk.example"}))
    info = parse_bounce(msg)
    found = sorted(info.addresses) if info else []
    permanent = info.permanent if info else None
    ok = verdict.verdict == "bounce" and found == sorted(want["addresses"]) and permanent is want["permanent"]
    return ok, f"{verdict.verdict} {','.join(found) or '-'} permanent={permanent}"


def score_fixtures(root: Path) -> dict[str, tuple[int, int, list[str]]]:
    """Per kind (folder): (passed, total, failures as 'file: found')."""
    out: dict[str, tuple[int, int, list[str]]] = {}
    for kind in sorted(p for p in root.iterdir() if p.is_dir()):
        expected = json.loads((kind / "expected.json").read_text(encoding="utf-8"))
        failed = []
        for name, want in expected.items():
            ok, found = score_fixture((kind / name).read_bytes(), want)
            if not ok:
                failed.append(f"{name}: {found}")
        out[kind.name] = (len(expected) - len(failed), len(expected), failed)
    return out


def print_fixture_scores(root: Path) -> None:
    print(f"== maildesk's own bounce fixtures per kind ({root})")
    passed = total = 0
    for kind, (p, t, failed) in score_fixtures(root).items():
        passed, total = passed + p, total + t
        print(f"  {kind:16s} {p}/{t} = {100 * p / t:.1f}%")
        for line in failed:
            print(f"      x {line}")
    print(f"  {'all':16s} {passed}/{total} = {100 * passed / max(total, 1):.1f}%\n")


def corpus_files(corpus: Path) -> list[Path]:
    files = sorted((corpus / "flanker" / "messages").rglob("*.eml"))
    files += sorted((corpus / "zammad" / "mail").glob("*.box"))
    files += sorted((corpus / "imap-tools" / "messages").rglob("*.eml"))
    return files


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__)
        return 2
    corpus = Path(argv[1])
    print_fixture_scores(Path(argv[2]) if len(argv) == 3 else FIXTURES)
    print(LABEL_RULE)
    confusion: Counter[tuple[str, str]] = Counter()
    tp = fp = fn = 0
    flufl_tp = flufl_fp = 0
    addr_total = addr_exact = flufl_addr_exact = 0
    unparseable = 0
    elapsed = 0.0
    n = 0
    own = frozenset({"support@maildesk.invalid"})
    print(f"{'file':68} {'expected':10} {'verdict':10} perm  addresses | reference | flufl | reason")
    for path in corpus_files(corpus):
        rel = str(path.relative_to(corpus))
        raw = path.read_bytes()
        yml = _load_yml(path) if path.suffix == ".box" else None
        expected = label_for(rel, yml)
        try:
            msg = parse_bytes(raw)
        except UnparseableMessage as exc:
            unparseable += 1
            print(f"{rel:68} {expected:10} {'UNPARSEABLE':10} {exc}")
            if expected == "bounce":
                fn += 1
            continue
        start = time.perf_counter()
        verdict = screen_message(msg, own_addresses=own)
        elapsed += time.perf_counter() - start
        n += 1
        info = parse_bounce(msg)
        flufl = flufl_scan(msg)
        got = verdict.verdict
        confusion[(expected, got)] += 1
        if got == "bounce" and expected == "bounce":
            tp += 1
        elif got == "bounce":
            fp += 1
        elif expected == "bounce":
            fn += 1
        if flufl and expected == "bounce":
            flufl_tp += 1
        elif flufl:
            flufl_fp += 1
        ref = reference_addresses(raw, yml) if expected == "bounce" else set()
        ours = set(info.addresses) if info else set()
        if ref:
            addr_total += 1
            addr_exact += ours == ref
            flufl_addr_exact += set(flufl) == ref
        perm = {True: "perm", False: "temp", None: "-"}[verdict.permanent] if got == "bounce" else ""
        print(
            f"{rel:68} {expected:10} {got:10} {perm:5} {','.join(sorted(ours)) or '-'} | "
            f"{','.join(sorted(ref)) or '-'} | {','.join(sorted(flufl)) or '-'} | {verdict.reason}"
        )

    print("\nConfusion table (rows: expected, columns: verdict)")
    print(f"{'':12}" + "".join(f"{v:>12}" for v in VERDICTS))
    for row in ("bounce", "auto-reply", "other"):
        print(f"{row:12}" + "".join(f"{confusion[(row, v)]:>12}" for v in VERDICTS))
    labelled_bounces = tp + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / labelled_bounces if labelled_bounces else 0.0
    print(f"\nmessages: {n + unparseable} ({unparseable} unparseable by parse_bytes)")
    print(
        f"bounce detection: precision {precision:.3f} ({tp}/{tp + fp}), recall {recall:.3f} ({tp}/{labelled_bounces})"
    )
    auto_rows = sum(confusion[("auto-reply", v)] for v in VERDICTS)
    auto_ok = sum(confusion[("auto-reply", v)] for v in VERDICTS if v != "human")
    print(f"labelled auto-replies/reports screened as automatic: {auto_ok}/{auto_rows}")
    print(
        f"failed-address accuracy (exact set, files where the corpus names them): {addr_exact}/{addr_total}"
        f" ({addr_exact / addr_total:.3f})"
        if addr_total
        else "failed-address accuracy: no named addresses"
    )
    print(
        f"flufl.bounce alone: detects {flufl_tp}/{labelled_bounces} labelled bounces"
        f" ({flufl_tp / labelled_bounces:.3f}), {flufl_fp} detections on other files,"
        f" exact addresses {flufl_addr_exact}/{addr_total}"
    )
    print(f"screen_message time: {elapsed / max(n, 1) * 1e3:.3f} ms per message (mean over {n})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
