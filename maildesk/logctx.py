"""Log lines about a message carry the message: spool entry, Message-ID and ticket number.

Owns the per-message log context (a `contextvars` variable the worker sets around each
message, the outbox sender around each row), the filter that copies it onto every record
(`entry`, `message_id`, `ticket`, and `about` — a ready-made ` [ticket #42 <id@host> entry
…]` for the plain format), the JSON formatter (one object a line) and the daemon's logging
set-up, which a reload may apply again (`configure`).

The context is a getter, not a copy: stages learn the ticket number part-way through the
pipeline, and every line after that carries it.
Must not: import anything of maildesk above `errors`; decide what to log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

Getter = Callable[[], dict[str, Any]]

_about: ContextVar[Getter | None] = ContextVar("maildesk_log_about", default=None)

FIELDS = ("entry", "message_id", "ticket")
NOISY = ("mail.log", "mailparser", "apscheduler", "alembic")
_HANDLER_NAME = "maildesk"


@contextmanager
def about(getter: Getter) -> Iterator[None]:
    """Every log record made inside the block (in this thread) carries what `getter()` returns
    at the time of the record: a dict with some of `entry`, `message_id`, `ticket`."""
    token = _about.set(getter)
    try:
        yield
    finally:
        _about.reset(token)


def about_values(**values: Any) -> Getter:
    """A getter for fixed values (`about(about_values(entry=..., ticket=...))`)."""
    return lambda: values


def current() -> dict[str, Any]:
    getter = _about.get()
    if getter is None:
        return {}
    try:
        return {k: v for k, v in getter().items() if v not in (None, "")}
    except Exception:  # noqa: BLE001 - logging must never fail because of the context
        return {}


class ContextFilter(logging.Filter):
    """Puts the message context on every record (attributes `entry`, `message_id`, `ticket`,
    `about`). Values given with `extra=` win over the context."""

    def filter(self, record: logging.LogRecord) -> bool:
        found = current()
        parts = []
        for key in FIELDS:
            value = getattr(record, key, None)
            if value in (None, ""):
                value = found.get(key)
                setattr(record, key, value)
        if record.ticket not in (None, ""):  # type: ignore[attr-defined]
            parts.append(f"ticket #{record.ticket}")  # type: ignore[attr-defined]
        if record.message_id not in (None, ""):  # type: ignore[attr-defined]
            parts.append(f"<{record.message_id}>")  # type: ignore[attr-defined]
        if record.entry not in (None, ""):  # type: ignore[attr-defined]
            parts.append(f"entry {record.entry}")  # type: ignore[attr-defined]
        record.about = f" [{' '.join(parts)}]" if parts else ""
        return True


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(about)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the message
    context fields when known, thread, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value not in (None, ""):
                data[key] = value
        data["thread"] = record.threadName
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure(fmt: str = "plain", level: str = "info", *, stream: TextIO | None = None) -> None:
    """(Re)configure the root logger for the daemon: one handler on standard error with the
    context filter and the chosen format. Safe to call again (a reload): the handler is
    replaced, not added."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(PLAIN_FORMAT))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
