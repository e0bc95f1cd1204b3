"""Score `maildesk.threading.quotes.split_reply` on the reply-parser corpora.

Usage:  python bench/reply_accuracy.py CORPUS_DIR [FIXTURES_DIR]   (CORPUS_DIR = ../shared/corpus)

Also scores maildesk's own fixtures per kind (FIXTURES_DIR, default tests/fixtures/replies:
bottom-posted, wrapped non-Latin attributions, HTML sign-offs; see its README): a fixture
passes when visible text, signature lines and the first quoted line are as expected.

Reads CORPUS_DIR/email-reply-parser/expected.json and CORPUS_DIR/mail-parser-reply/expected.json.
Their assertions are written against each library's own model (fragments with hidden/quoted/
signature flags; replies with body/signatures/headers). maildesk's model is one `Reply(visible,
quoted, signature)`, so each assertion is translated (and the translation is the same for every
candidate, so the comparison is fair):

email-reply-parser
  message.reply / parse_reply(text)         -> visible
  fragments[i].content                      -> the part fragment i belongs to: visible unless the
                                               test says it is hidden (then signature or quoted);
                                               without flags, fragment 0 is visible, later ones hidden
  len(fragments) == 1                       -> nothing quoted and no signature;  > 1 -> something hidden
  [f.hidden] / [f.signature] / [f.quoted]   -> something hidden / a signature / a hidden quote exists
mail-parser-reply
  len(replies) == 1                         -> nothing quoted;  > 1 -> something quoted
  replies[0].body / .signatures / .content  -> visible / signature / visible + signature
  replies[k>0].*                            -> quoted   (not_contains: must not be visible)
  equals on replies[k>0]                    -> expected text is inside quoted
Equality ignores surrounding whitespace and trailing rule lines (----, ____): the two corpora
disagree on whether the rule above an Outlook header belongs to the reply (email_2_1.txt).
Assertions that test a library option maildesk does not have (keep_hyphen_lists) are skipped.

Also printed: each raw library through an adapter to the same model (same translation), and each
library's native score on its own corpus (original assertions on its own objects).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from email_reply_parser import EmailReplyParser as ErpParser
from mailparser_reply import EmailReplyParser as MprParser
from mailparser_reply.parser import EmailMessage as MprMessage

from maildesk.threading.quotes import Reply, split_reply

Splitter = Callable[[str, list[str] | None], Reply]
ALL_LANGS = ["en", "de", "da", "sv", "nl", "pl", "ja", "fr", "es", "it", "cs", "ko", "zh", "david"]


@dataclass
class Outcome:
    ok: bool | None  # None = not applicable
    what: str


def norm(text: str) -> str:
    lines = [line.rstrip() for line in (text or "").replace("\r\n", "\n").strip().split("\n")]
    while lines and re.fullmatch(r"[\s_\-=*]*", lines[-1]):
        lines.pop()
    return "\n".join(lines).strip()


# ---------------------------------------------------------------- candidates (same model)


def maildesk_split(text: str, langs: list[str] | None) -> Reply:
    return split_reply(text)


def erp_adapter(text: str, langs: list[str] | None) -> Reply:
    msg = ErpParser.read(text)
    visible = [f.content for f in msg.fragments if not (f.hidden or f.quoted)]
    sig = [f.content for f in msg.fragments if (f.hidden or f.quoted) and f.signature]
    quoted = [f.content for f in msg.fragments if (f.hidden or f.quoted) and not f.signature]
    return Reply("\n".join(visible).strip(), "\n".join(quoted).strip(), "\n".join(sig).strip())


def mpr_adapter(text: str, langs: list[str] | None) -> Reply:
    mail = MprParser(languages=list(langs or ALL_LANGS)).read(text)
    first = mail.replies[0] if mail.replies else None
    if first is None:
        return Reply("", "", "")
    rest = [r.content for r in mail.replies[1:]]
    head = [first.headers] if first.headers else []
    return Reply(first.body, "\n".join(head + rest).strip(), first.signatures)


# ---------------------------------------------------------------- translated assertions


def _flags(test: dict[str, Any]) -> dict[str, list[bool]]:
    out: dict[str, list[bool]] = {}
    for a in test["assertions"]:
        m = re.fullmatch(
            r"\[(?:f|fragment)\.(hidden|quoted|signature) for \w+ in \w+\.fragments\]", a.get("target") or ""
        )
        if m and a["check"] == "equals":
            out[m.group(1)] = a["expected"]
    return out


def _erp_part(r: Reply, i: int, flags: dict[str, list[bool]]) -> str:
    hidden, sig = flags.get("hidden"), flags.get("signature")
    if hidden is not None and i < len(hidden):
        if not hidden[i]:
            return r.visible
        return r.signature if sig and i < len(sig) and sig[i] else r.quoted
    return r.visible if i == 0 else r.quoted + "\n" + r.signature


def check_erp(a: dict[str, Any], r: Reply, test: dict[str, Any], elapsed: float) -> Outcome:
    target, check = a.get("target") or a.get("expr") or "", a["check"]
    flags = _flags(test)
    hidden_text = bool((r.quoted + r.signature).strip())
    if target in ("message.reply", "EmailReplyParser.parse_reply(text)"):
        if check == "contains":
            return Outcome(a["needle"] in r.visible, f"visible contains {a['needle']!r}")
        if check == "not_contains":
            return Outcome(a["needle"] not in r.visible, f"visible lacks {a['needle']!r}")
        return Outcome(norm(r.visible) == norm(a["expected"]), f"visible == {a['expected']!r}")
    m = re.fullmatch(r"(?:message|msg)\.fragments\[(\d+)\]\.content", target)
    if m:
        part = _erp_part(r, int(m.group(1)), flags)
        return Outcome(a["needle"] in part, f"fragment {m.group(1)} part contains {a['needle']!r}")
    if target == "message.fragments" and check == "len":
        if a["expected"] == 1:
            return Outcome(not hidden_text, "single fragment: nothing hidden")
        return Outcome(hidden_text, f"{a['expected']} fragments: something hidden")
    m = re.fullmatch(r"\[(?:f|fragment)\.(hidden|quoted|signature) for \w+ in \w+\.fragments\]", target)
    if m:
        kind, exp = m.group(1), a["expected"]
        if kind == "hidden":
            return Outcome(hidden_text == any(exp), f"something hidden == {any(exp)}")
        if kind == "signature":
            return Outcome(bool(r.signature.strip()) == any(exp), f"signature present == {any(exp)}")
        hid = flags.get("hidden", [True] * len(exp))
        want = any(q and h for q, h in zip(exp, hid, strict=False))
        return Outcome(bool(r.quoted.strip()) == want, f"hidden quote present == {want}")
    m = re.fullmatch(r"re\.match\('\^(.+)', message\.fragments\[(\d+)\]\.content\)", target)
    if m:
        part = _erp_part(r, int(m.group(2)), flags)
        return Outcome(part.lstrip().startswith(m.group(1)), f"fragment {m.group(2)} part starts {m.group(1)!r}")
    if target == "time.time() - t0 < 1":
        return Outcome(elapsed < 1, f"took {elapsed:.3f}s < 1s")
    return Outcome(None, f"untranslated {target!r}")


def check_mpr(a: dict[str, Any], r: Reply, test: dict[str, Any], elapsed: float) -> Outcome:
    target, check = a.get("target") or a.get("expr") or "", a["check"]
    if test.get("options"):
        return Outcome(None, f"option {test['options']} not in maildesk's model")
    if target == "mail.replies" and check == "len":
        if a["expected"] == 1:
            return Outcome(not r.quoted.strip(), "one reply: nothing quoted")
        return Outcome(bool(r.quoted.strip()), f"{a['expected']} replies: something quoted")
    if target == "len(mail.latest_reply.split('\\n'))":
        latest = "\n".join(p for p in (r.visible, r.signature) if p)
        return Outcome(len(latest.split("\n")) == a["expected"], f"visible+signature has {a['expected']} lines")
    if target == "mail.replies[0].signatures.startswith('Regards,')":
        return Outcome(r.signature.startswith("Regards,"), "signature starts 'Regards,'")
    m = re.fullmatch(r"mail\.replies\[(\d+)\]\.(body|content|signatures|headers)", target)
    if not m:
        return Outcome(None, f"untranslated {target!r}")
    k, field = int(m.group(1)), m.group(2)
    if k == 0:
        part = {
            "body": r.visible,
            "signatures": r.signature,
            "content": r.visible + "\n" + r.signature,
            "headers": r.visible,
        }[field]
        name = {"body": "visible", "signatures": "signature", "content": "visible+signature", "headers": "visible"}[
            field
        ]
    else:
        part, name = r.quoted, "quoted"
    if check == "contains":
        return Outcome(a["needle"] in part, f"{name} contains {a['needle']!r}")
    if check == "not_contains":
        if k == 0:
            return Outcome(a["needle"] not in part, f"{name} lacks {a['needle']!r}")
        return Outcome(a["needle"] not in r.visible, f"visible lacks {a['needle']!r}")
    if check == "equals":
        if k == 0:
            return Outcome(norm(part) == norm(a["expected"]), f"{name} == {a['expected']!r}")
        return Outcome(norm(a["expected"]) in part, f"quoted contains {a['expected']!r}")
    return Outcome(None, f"untranslated check {check}")


# ---------------------------------------------------------------- native library scores


def native_erp(a: dict[str, Any], text: str, test: dict[str, Any]) -> Outcome:
    t0 = time.time()
    msg = ErpParser.read(text)
    elapsed = time.time() - t0
    target = a.get("target") or a.get("expr") or ""
    value: Any
    m = re.fullmatch(r"(?:message|msg)\.fragments\[(\d+)\]\.content", target)
    if target in ("message.reply", "EmailReplyParser.parse_reply(text)"):
        value = msg.reply
    elif m:
        i = int(m.group(1))
        value = msg.fragments[i].content if i < len(msg.fragments) else None
    elif target == "message.fragments":
        value = msg.fragments
    elif mm := re.fullmatch(r"\[(?:f|fragment)\.(hidden|quoted|signature) for \w+ in \w+\.fragments\]", target):
        value = [getattr(f, mm.group(1)) for f in msg.fragments]
    elif mm := re.fullmatch(r"re\.match\('(.+)', message\.fragments\[(\d+)\]\.content\)", target):
        i = int(mm.group(2))
        return Outcome(i < len(msg.fragments) and bool(re.match(mm.group(1), msg.fragments[i].content)), target)
    elif target == "time.time() - t0 < 1":
        return Outcome(elapsed < 1, target)
    else:
        return Outcome(None, target)
    return _native_check(a, value, target)


def native_mpr(a: dict[str, Any], text: str, test: dict[str, Any]) -> Outcome:
    opts = test.get("options") or {}
    if opts.get("keep_hyphen_lists") == "True":
        mail = MprMessage(text=text, languages=["en"], keep_hyphen_lists=True).read()
    else:
        mail = MprParser(languages=test.get("languages") or ["en"]).read(text)
    target = a.get("target") or a.get("expr") or ""
    value: Any
    if target == "mail.replies":
        value = mail.replies
    elif target == "len(mail.latest_reply.split('\\n'))":
        value = len((mail.latest_reply or "").split("\n"))
    elif target == "mail.replies[0].signatures.startswith('Regards,')":
        return Outcome(bool(mail.replies) and mail.replies[0].signatures.startswith("Regards,"), target)
    elif m := re.fullmatch(r"mail\.replies\[(\d+)\]\.(body|content|signatures|headers)", target):
        i = int(m.group(1))
        value = getattr(mail.replies[i], m.group(2)) if i < len(mail.replies) else None
    else:
        return Outcome(None, target)
    return _native_check(a, value, target)


def _native_check(a: dict[str, Any], value: Any, target: str) -> Outcome:
    check = a["check"]
    if value is None:
        return Outcome(False, f"{target} missing")
    if check == "len":
        return Outcome(len(value) == a["expected"], target)
    if check == "contains":
        return Outcome(a["needle"] in value, target)
    if check == "not_contains":
        return Outcome(a["needle"] not in value, target)
    if check == "equals":
        return Outcome(value == a["expected"], target)
    if check == "equals_stripped":
        return Outcome(value.strip() == a["expected"].strip(), target)
    return Outcome(None, target)


# ---------------------------------------------------------------- runner


def run(corpus: Path, name: str, splitter: Splitter, label: str, verbose: bool) -> tuple[int, int, int]:
    spec = json.loads((corpus / name / "expected.json").read_text(encoding="utf-8"))
    checker = check_erp if name == "email-reply-parser" else check_mpr
    passed = total = skipped = 0
    for test in spec["tests"]:
        for fixture in test["fixtures"]:
            text = (corpus / name / "emails" / fixture).read_text(encoding="utf-8", errors="replace")
            t0 = time.perf_counter()
            reply = splitter(text, test.get("languages"))
            elapsed = time.perf_counter() - t0
            outcomes = [checker(a, reply, test, elapsed) for a in test["assertions"]]
            ok = sum(1 for o in outcomes if o.ok)
            n = sum(1 for o in outcomes if o.ok is not None)
            skipped += len(outcomes) - n
            passed, total = passed + ok, total + n
            if verbose:
                status = "PASS" if ok == n else "FAIL"
                print(f"  {status} {test['test']} [{fixture}] {ok}/{n}")
                for o in outcomes:
                    if o.ok is False:
                        print(f"       x {o.what}")
    return passed, total, skipped


def run_native(corpus: Path, name: str) -> tuple[int, int]:
    spec = json.loads((corpus / name / "expected.json").read_text(encoding="utf-8"))
    native = native_erp if name == "email-reply-parser" else native_mpr
    passed = total = 0
    for test in spec["tests"]:
        for fixture in test["fixtures"]:
            text = (corpus / name / "emails" / fixture).read_text(encoding="utf-8", errors="replace")
            for a in test["assertions"]:
                o = native(a, text, test)
                if o.ok is not None:
                    total += 1
                    passed += bool(o.ok)
    return passed, total


FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "replies"


def _filled(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def score_fixtures(root: Path, split: Callable[[str, str], Any]) -> dict[str, tuple[int, int, list[str]]]:
    """Per kind (folder): (passed, total, failed file names) of `split(text, html)`."""
    out: dict[str, tuple[int, int, list[str]]] = {}
    for kind in sorted(p for p in root.iterdir() if p.is_dir()):
        expected = json.loads((kind / "expected.json").read_text(encoding="utf-8"))
        failed = []
        for name, want in expected.items():
            text = (kind / name).read_text(encoding="utf-8")
            r = split("", text) if name.endswith(".html") else split(text, "")
            quoted = _filled(r.quoted)
            ok = (
                r.visible.strip("\n") == want["visible"]
                and _filled(r.signature) == _filled(want["signature"])
                and (quoted[0] if quoted else "") == want["quoted_starts"]
            )
            if not ok:
                failed.append(name)
        out[kind.name] = (len(expected) - len(failed), len(expected), failed)
    return out


def pct(p: int, t: int) -> str:
    return f"{p}/{t} = {100 * p / t:.1f}%" if t else "n/a"


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    corpus = Path(argv[1])
    fixtures = Path(argv[2]) if len(argv) == 3 else FIXTURES
    print(f"== maildesk's own fixtures per kind ({fixtures})")
    own_p = own_t = 0
    for kind, (p, t, failed) in score_fixtures(fixtures, split_reply).items():
        own_p, own_t = own_p + p, own_t + t
        print(f"  {kind:24s} {pct(p, t)}" + (f"   failed: {', '.join(failed)}" if failed else ""))
    print(f"  {'all':24s} {pct(own_p, own_t)}\n")
    names = ["email-reply-parser", "mail-parser-reply"]
    candidates: list[tuple[str, Splitter]] = [
        ("maildesk split_reply", maildesk_split),
        ("email-reply-parser (adapted)", erp_adapter),
        ("mail-parser-reply (adapted)", mpr_adapter),
    ]
    for name in names:
        print(f"== {name}: maildesk split_reply, per fixture")
        run(corpus, name, maildesk_split, "maildesk", verbose=True)
    print("\n== totals (translated assertions; same translation for every candidate)")
    grand: dict[str, list[int]] = {}
    for label, splitter in candidates:
        cells = []
        for name in names:
            p, t, s = run(corpus, name, splitter, label, verbose=False)
            grand.setdefault(label, [0, 0])
            grand[label][0] += p
            grand[label][1] += t
            cells.append(f"{name}: {pct(p, t)}" + (f" ({s} skipped)" if s else ""))
        print(f"  {label:30s} " + " | ".join(cells) + f" | all: {pct(*grand[label])}")
    print("\n== coverage and speed of split_reply on every fixture file")
    files = sorted(p for name in names for p in (corpus / name / "emails").glob("*.txt"))
    lost, spent = [], 0.0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        t0 = time.perf_counter()
        r = split_reply(text)
        spent += time.perf_counter() - t0

        def key(s: str) -> list[str]:
            return sorted(line.strip() for line in s.replace("\r\n", "\n").split("\n") if line.strip())

        if key("\n".join((r.visible, r.quoted, r.signature))) != key(text):
            lost.append(path.name)
    print(f"  {len(files) - len(lost)}/{len(files)} files keep every non-blank line; lost in: {lost or 'none'}")
    print(f"  mean {1000 * spent / max(1, len(files)):.2f} ms per message")
    print("\n== native scores (each library, its own model and corpus, original assertions)")
    for name in names:
        print(f"  {name:30s} {pct(*run_native(corpus, name))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
