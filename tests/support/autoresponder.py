"""An always-answering autoresponder for loop tests: an SMTP server on loopback that replies
to EVERY mail it receives by sending a new mail to maildesk's SMTP port.

Run as `python -m tests.support.autoresponder --listen PORT --reply-to-port MAILDESK_PORT
--mode MODE --record FILE`. Modes:

- `naive`:   no automatic-mail headers at all; subject "Re: <subject>", In-Reply-To and
             References set (what a badly written vacation script does);
- `ooo`:     an "Out of Office" reply with `Auto-Submitted: auto-replied` (RFC 3834);
- `hostile`: strips everything of ours (loop header, threading headers, the ticket tag in
             the subject), sets no automatic-mail headers and a fresh Message-ID each time;
- `echo`:    like `hostile`, but keeps our `X-Maildesk-Loop` header (a forwarding rule or
             a script that copies the headers it got): only the loop marker can stop it.

Every mail received and every reply sent (or not sent) is appended to the record file as
one JSON line, so the test can count the exchange. Replies go out from a separate thread
after the 250, in order. This is a test tool: it must not be imported by maildesk.
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import signal
import smtplib
import sys
import threading
import time
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

MODES = ("naive", "ooo", "hostile", "echo")
RESPONDER = "auto@responder.example"
SUPPORT = "support@example.com"
_TAG = re.compile(r"\s*\[[^\]]*#\s*\d+\]\s*")
_PREFIX = re.compile(r"^\s*((re|aw|fwd?|wg)\s*:\s*)+", re.IGNORECASE)


class Recorder:
    """Appends one JSON line per event (thread-safe, flushed each time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, event: str, **data: Any) -> None:
        line = json.dumps({"event": event, "at": time.time(), **data}, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def build_reply(original: Message, mode: str, counter: int) -> EmailMessage:
    """The reply this autoresponder sends to `original` in `mode`."""
    subject = _header(original, "Subject")
    mid = _header(original, "Message-ID")
    reply = EmailMessage()
    reply["From"] = f"Auto Responder <{RESPONDER}>"
    reply["To"] = SUPPORT
    reply["Date"] = format_datetime(datetime.now(UTC))
    if mode in ("hostile", "echo"):
        bare = _TAG.sub(" ", _PREFIX.sub("", subject)).strip()
        reply["Subject"] = f"Re: {bare or 'your mail'}"
        # A fresh Message-ID in a fresh domain every time; nothing of ours survives.
        reply["Message-ID"] = make_msgid(idstring=f"h{counter}", domain=f"relay{counter}.responder.example")
        if mode == "echo":
            for value in original.get_all("X-Maildesk-Loop") or []:
                reply["X-Maildesk-Loop"] = " ".join(str(value).split())
        reply.set_content(f"Thanks for your mail. This is automatic answer number {counter}.\n")
        return reply
    reply["Subject"] = subject if _PREFIX.match(subject) else f"Re: {subject}"
    reply["Message-ID"] = make_msgid(idstring=f"r{counter}", domain="responder.example")
    if mid:
        reply["In-Reply-To"] = mid
        refs = _header(original, "References")
        reply["References"] = f"{refs} {mid}".strip()
    if mode == "ooo":
        reply["Auto-Submitted"] = "auto-replied"
        reply.set_content("I am out of the office until next Monday and will read your mail then.\n")
    else:
        reply.set_content(f"Thank you for your mail! We received it. (reply {counter})\n")
    return reply


class Responder:
    """aiosmtpd handler: accept everything, record it, queue a reply."""

    def __init__(self, mode: str, reply_host: str, reply_port: int, recorder: Recorder) -> None:
        self.mode = mode
        self.reply_host = reply_host
        self.reply_port = reply_port
        self.recorder = recorder
        self.outgoing: queue.Queue[Message | None] = queue.Queue()
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        msg = BytesParser(policy=policy.compat32).parsebytes(raw)
        self.received += 1
        self.recorder.write(
            "received",
            n=self.received,
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            message_id=_header(msg, "Message-ID"),
            subject=_header(msg, "Subject"),
            auto_submitted=_header(msg, "Auto-Submitted"),
            loop=_header(msg, "X-Maildesk-Loop"),
        )
        self.outgoing.put(msg)
        return "250 2.0.0 OK"

    def send_loop(self) -> None:
        counter = 0
        while True:
            original = self.outgoing.get()
            if original is None:
                return
            counter += 1
            reply = build_reply(original, self.mode, counter)
            data = reply.as_bytes(policy=policy.SMTP)
            try:
                with smtplib.SMTP(self.reply_host, self.reply_port, timeout=10) as smtp:
                    smtp.sendmail(RESPONDER, [SUPPORT], data)
            except (OSError, smtplib.SMTPException) as exc:
                self.recorder.write("send-error", n=counter, error=f"{type(exc).__name__}: {exc}")
                continue
            self.recorder.write(
                "sent",
                n=counter,
                message_id=str(reply["Message-ID"]),
                subject=str(reply["Subject"]),
                in_reply_to=str(reply.get("In-Reply-To", "")),
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=int, required=True, help="loopback port to accept mail on")
    parser.add_argument("--reply-to-port", type=int, required=True, help="maildesk's SMTP port on 127.0.0.1")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--record", type=Path, default=Path("autoresponder.jsonl"), help="JSON-lines record file")
    args = parser.parse_args(argv)

    recorder = Recorder(args.record)
    handler = Responder(args.mode, "127.0.0.1", args.reply_to_port, recorder)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sender = threading.Thread(target=handler.send_loop, name="replies", daemon=True)
    sender.start()
    controller = Controller(handler, hostname="127.0.0.1", port=args.listen)
    controller.start()
    recorder.write("listening", port=args.listen, mode=args.mode)
    try:
        stop.wait()
    finally:
        controller.stop()
        handler.outgoing.put(None)
        sender.join(timeout=15)
        recorder.write("stopped", received=handler.received)
    return 0


if __name__ == "__main__":
    sys.exit(main())
