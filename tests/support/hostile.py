"""Hostile mail for the fuzz test and the benches (issue 16): synthetic shapes, mutations
of real messages, and a check that one message went through the real pipeline properly.

The real-world corpus is read from /work/shared/corpus (or $MAILDESK_CORPUS) at run time,
never copied into the repository; a missing corpus is an error, not a skip.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

CORPUS = Path(os.environ.get("MAILDESK_CORPUS", "/work/shared/corpus"))
SUFFIXES = {".eml", ".box", ".txt", ".msg"}


def corpus_files(root: Path = CORPUS) -> list[Path]:
    """Every message file of the corpus, sorted. Raises when the corpus is missing."""
    if not root.is_dir():
        raise FileNotFoundError(f"the mail corpus is missing: {root} (set MAILDESK_CORPUS)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    if not files:
        raise FileNotFoundError(f"the mail corpus at {root} holds no messages")
    return files


def _headers(rnd: random.Random, n: int) -> bytes:
    names = ["From", "To", "Cc", "Subject", "Reply-To", "Sender", "Message-ID", "References", "X-Junk", "Date"]
    values = [
        b"=?utf-8?q?caf=C3=A9?= <a@b.example>",
        b"=?x-bogus?b?!!!?=",
        b"\xff\xfe\x00 raw",
        b'"unterminated <x@y',
        b"<" * 50 + b"@" * 50,
        b"=?utf-8?q?Bob_=3Cceo=40bigcorp.com=3E?= <attacker@example.com>",
        b"a, b, c, , ,, <d@e.example>",
        b"x" * 3000,
        b"\t folded\r\n  continuation",
    ]
    return b"".join(rnd.choice(names).encode() + b": " + rnd.choice(values) + b"\r\n" for _ in range(n))


def synthetic(kind: str, rnd: random.Random, size: int = 200_000) -> bytes:
    """One synthetic hostile message of a `kind` (see KINDS), about `size` octets at most."""
    head = b"From: fuzz@fuzz.example\r\nTo: support@example.com\r\nSubject: fuzz " + kind.encode() + b"\r\n"
    if kind == "headers":
        return head + _headers(rnd, rnd.randint(1, 60)) + b"\r\nbody\r\n"
    if kind == "boundaries":
        boundary = b"b" + str(rnd.randint(0, 999)).encode()
        parts = [
            b"--" + (boundary if rnd.random() < 0.7 else b"wrong") + b"\r\nContent-Type: text/plain\r\n\r\npart\r\n"
            for _ in range(rnd.randint(0, 30))
        ]
        end = b"--" + boundary + b"--\r\n" if rnd.random() < 0.5 else b""
        ctype = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n'
        return head + ctype + b"\r\n" + b"".join(parts) + end
    if kind == "charsets":
        charset = rnd.choice([b"utf-8", b"x-unknown", b"utf-7", b"iso-2022-jp", b"gb2312", b"", b'"', b"utf-8\x00"])
        cte = rnd.choice([b"base64", b"quoted-printable", b"8bit", b"x-uuencode", b"bogus"])
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 4000)))
        return (
            head
            + b"Content-Type: text/plain; charset="
            + charset
            + b"\r\nContent-Transfer-Encoding: "
            + cte
            + b"\r\n\r\n"
            + body
        )
    if kind == "huge-line":
        return head + b"\r\n" + rnd.choice([b"x", b" ", b">", b"=", b"<"]) * rnd.randint(10_000, size) + b"\r\n"
    if kind == "nesting":
        depth = rnd.randint(1, 200)
        out = b"part at the bottom\r\n"
        for level in range(depth):
            b = f"n{level}".encode()
            out = (
                b'Content-Type: multipart/mixed; boundary="'
                + b
                + b'"\r\n\r\n--'
                + b
                + b"\r\n"
                + out
                + b"\r\n--"
                + b
                + b"--\r\n"
            )
            if rnd.random() < 0.3:
                out = b"Content-Type: message/rfc822\r\n\r\n" + head + out
        return head + out
    if kind == "html":
        tags = [b"<div>", b"<blockquote>", b"<p>", b"<table><tr><td>", b"<!--", b"<script>", b"<a href='x'>", b"&#x41;"]
        body = b"".join(rnd.choice(tags) + b"text" for _ in range(rnd.randint(1, 5000)))
        return head + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + body
    raise ValueError(f"unknown kind {kind!r}")


KINDS = ("headers", "boundaries", "charsets", "huge-line", "nesting", "html")


def mutate(raw: bytes, rnd: random.Random, rounds: int = 3) -> bytes:
    """`raw` with a few random damages: flipped bytes, cuts, repeats, lost line breaks."""
    data = bytearray(raw)
    for _ in range(rounds):
        if not data:
            break
        at = rnd.randrange(len(data))
        op = rnd.randrange(6)
        if op == 0:
            data[at] = rnd.getrandbits(8)
        elif op == 1:
            del data[at:]  # truncated
        elif op == 2:
            chunk = bytes(data[at : at + rnd.randint(1, 2000)])
            data[at:at] = chunk * rnd.randint(2, 20)
        elif op == 3:
            data[:] = data.replace(b"\r\n", b"\n") if rnd.random() < 0.5 else data.replace(b"\n", b"")
        elif op == 4:
            data[at:at] = rnd.choice([b"\r\n\r\n", b"--", b"=?utf-8?b?", b"\x00", b"\r\n--boundary--\r\n", b" " * 5000])
        else:
            del data[at : at + rnd.randint(1, 500)]
    return bytes(data)


@dataclass
class Outcome:
    verdict: str  # stored | quarantined
    detail: str
    seconds: float


def process_one(app: Any, raw: bytes) -> Outcome:
    """Spool `raw`, run App.process, and say what became of it. Raises AssertionError
    when it went to failed/, stayed in the spool, or vanished without a trace."""
    from maildesk.store.models import Message

    with app.store.reader() as s:
        before = s.scalar(select(func.count()).select_from(Message)) or 0
    quarantined = {e.id for e in app.spool.entries("quarantine")}
    entry_id = app.spool.put(raw, "fuzz")
    started = time.perf_counter()
    result = app.process()
    seconds = time.perf_counter() - started
    failed = list(app.spool.entries("failed"))
    assert not failed, [app.spool.info(e) for e in failed]
    assert result["failed"] == 0, result
    assert not list(app.spool.entries("incoming")) and not list(app.spool.entries("active")), "left in the spool"
    for entry in app.spool.entries("quarantine"):
        if entry.id not in quarantined:
            reason = str(app.spool.info(entry).get("reason", ""))
            assert reason, f"quarantined without a reason: {entry.id}"
            return Outcome("quarantined", reason, seconds)
    with app.store.reader() as s:
        after = s.scalar(select(func.count()).select_from(Message)) or 0
    assert after > before or result.get("duplicates", 0) >= 1, f"{entry_id}: neither stored nor quarantined: {result}"
    return Outcome("stored", "duplicate" if after == before else "", seconds)
