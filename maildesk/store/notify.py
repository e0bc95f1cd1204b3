"""Commit-time wake-ups for the outbox: "a row was queued" after the commit, never before.

Owns three small things:

- `mark_outbox_queued(session)`: called where an outbox row is added; remembers it on
  the session for this transaction;
- the session hooks `Store` installs (`install`): before the commit, on PostgreSQL, one
  `NOTIFY maildesk_outbox` per transaction (PostgreSQL delivers it only if and when the
  transaction commits, so a listener never hears of a row it cannot see yet); after the
  commit, the in-process callbacks (`Store.on_outbox_commit`);
- `OutboxListener`: a thread holding one psycopg connection in LISTEN on that channel, for
  senders on other nodes (or processes). Each (re)connection counts as a wake-up, since
  whatever was notified while it was away was missed.

A notification carries no data and may be lost (a dropped connection, a node restarting);
the sender's safety-net wait finds such rows. It must not be used for anything but waking.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger("maildesk.store.notify")

CHANNEL = "maildesk_outbox"
_KEY = "maildesk.outbox_queued"
LISTEN_SLICE = 0.25  # how often the listening thread looks at its stop event
APPLICATION_NAME = "maildesk-outbox-listener"


def mark_outbox_queued(session: Session) -> None:
    """An outbox row was added in this transaction: notify when it commits."""
    session.info[_KEY] = True


def install(sessions: Any, *, postgresql: bool, callbacks: list[Callable[[], None]]) -> None:
    """Hook the session factory: NOTIFY before the commit (PostgreSQL), callbacks after it."""

    def before_commit(session: Session) -> None:
        if postgresql and session.info.get(_KEY):
            session.execute(text(f"NOTIFY {CHANNEL}"))

    def after_commit(session: Session) -> None:
        if session.info.pop(_KEY, False):
            for callback in list(callbacks):
                try:
                    callback()
                except Exception:  # noqa: BLE001 - a wake-up never fails a commit
                    log.exception("outbox wake-up callback failed")

    def after_rollback(session: Session) -> None:
        session.info.pop(_KEY, None)

    event.listen(sessions, "before_commit", before_commit)
    event.listen(sessions, "after_commit", after_commit)
    event.listen(sessions, "after_rollback", after_rollback)


class OutboxListener:
    """LISTEN on the outbox channel in a thread; calls `on_notify` for each notification
    and after each (re)connection. Reconnects with backoff; never raises."""

    def __init__(self, url: str, on_notify: Callable[[], None], *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.on_notify = on_notify
        self.connect_timeout = connect_timeout
        self.connected = threading.Event()
        self.notifications = 0
        self.connections = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-listener", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _conninfo(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._listen()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - the listener outlives any database trouble
                self.last_error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                log.warning("outbox listener lost its connection (%s); reconnecting in %.1fs", self.last_error, delay)
            finally:
                self.connected.clear()
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def _listen(self) -> None:
        import psycopg

        with psycopg.connect(
            self._conninfo(),
            autocommit=True,
            connect_timeout=max(1, int(self.connect_timeout)),
            application_name=APPLICATION_NAME,
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.connections += 1
            self.connected.set()
            self.on_notify()  # rows queued while nobody listened
            while not self._stop.is_set():
                for _note in conn.notifies(timeout=LISTEN_SLICE, stop_after=1):
                    self.notifications += 1
                    self.on_notify()
                if conn.closed or conn.broken:
                    raise psycopg.OperationalError("the listening connection was closed")
