"""IMAP intake: take every message from configured mailbox folders into the spool, exactly
as received, and acknowledge it on the server only after the spool write.

Owns: the IMAP connection (the only module importing imapclient), the per-mailbox progress
file `imap-<name>.json` in the state folder, the keyword/move acknowledgement, reconnecting
with backoff, and the "fetched vs waiting" status operators ask for.

Rules (LESSONS.md, "Intake"): progress is tracked per folder by UID + UIDVALIDITY, never by
\\Seen; \\Seen is never read nor set, so mail read in another client is still taken. A
message is flagged with our keyword (or moved) only after `Spool.put` returned. Messages
already carrying our keyword are skipped: they were spooled before (e.g. the state file was
lost, or UIDVALIDITY changed and the folder is re-scanned).

Delivery is at-least-once: a crash between the spool write and the flag/move (or before the
state file is updated) spools that message again on the next run. That is by design; the
pipeline drops the copy by its Message-ID hash. Nothing here may lose a message to avoid a
duplicate.

Several nodes (one PostgreSQL): a `MailboxLease` passed in by the App decides which node
polls a mailbox and keeps the folders' progress where every node reads it (the database);
the poller takes mail only while it holds the lease and stops at once when it is lost.
Without a lease (one node) progress is the state file.

It must not parse, decode or judge messages, nor touch the database or rules.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.exceptions import (
    IMAPClientAbortError,
    IMAPClientError,
    LoginError,
)

from maildesk.config import ImapSettings
from maildesk.errors import MaildeskError, SpoolError
from maildesk.spool.files import Spool

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
IDLE_MAX = 25 * 60.0  # RFC 2177: re-issue IDLE before 29 minutes
# How often an IDLE wait looks at the stop event. It adds no latency: `idle_check` returns
# as soon as the server sends anything. Mail appended to a Dovecot folder is announced
# ~0.5 s later (Dovecot waits NOTIFY_DELAY_MSECS = 500 in lib-storage's mailbox-watch.c
# to coalesce changes; measured 470-510 ms from APPEND to EXISTS); maildesk spools it and
# wakes the worker within milliseconds of the EXISTS.
IDLE_SLICE = 0.5
IDLE_FIRST_ROUND = 1.0  # the first IDLE round after a look at the folder (see MailboxPoller._idle)
IDLE_RECHECK = 30.0  # later rounds: the folder is looked at again between them
BATCH_BYTES = 64 * 1024 * 1024  # never hold more than this much raw mail in memory at once


@dataclass(frozen=True)
class PollReport:
    fetched: int
    spooled: int
    marked: int
    errors: tuple[str, ...]


class ImapUnavailable(MaildeskError):
    """The server cannot be reached, refused the login, or dropped the connection."""


class ImapStateError(MaildeskError):
    """The progress file cannot be written (mail already marked stays marked: nothing lost)."""


class LeaseLost(ImapUnavailable):
    """Another node holds this mailbox's lease (or it could not be renewed in time): stop taking mail."""


class MailboxLease(Protocol):
    """Who polls a mailbox when several nodes share one database, and the progress they share.

    Implemented by `maildesk.store.nodes.StoreMailboxLease`; the App passes it in (ingest
    never imports the store). Any method may raise when the database is unreachable."""

    holder: str
    seconds: float  # the lease's length; it is renewed every third of it

    def acquire(self, mailbox: str) -> bool:
        """Take the lease when it is free or expired, or renew ours; True when held."""
        ...

    def release(self, mailbox: str) -> None: ...

    def load(self, mailbox: str) -> dict[str, tuple[int, int, int]]:
        """Per folder: (uidvalidity, last_uid, fetched)."""
        ...

    def save(self, mailbox: str, folders: Mapping[str, tuple[int, int, int]]) -> bool:
        """Store the progress; False when this node no longer holds the lease."""
        ...


@dataclass
class _FolderState:
    uidvalidity: int = 0
    last_uid: int = 0
    fetched: int = 0  # messages spooled from this folder, over the state file's life
    pending: int = 0  # found on the server, not yet spooled (during / after a failed run)
    last_error: str = ""
    last_success: float | None = None  # wall time of the last complete scan


def _state_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60] or "imap"
    return f"imap-{safe}.json"


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), max(1, size)):
        yield list(items[start : start + max(1, size)])


class Backoff:
    """Exponential delays 1 s, 2 s, 4 s … capped at 5 min, each with up to 25 % jitter off."""

    def __init__(
        self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX, rng: random.Random | None = None
    ) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        base = min(self.cap, self.first * 2.0 ** min(self.failures, 30))
        self.failures += 1
        return max(self.first, base * self._rng.uniform(0.75, 1.0))

    def reset(self) -> None:
        self.failures = 0


class MailboxPoller:
    """One configured IMAP account: poll (or IDLE on) its folders and spool new mail.

    One thread drives a poller (run_once or run_forever, not both at once); status() may be
    called from any thread. Only one poller per mailbox may run at a time (several nodes:
    hold a lease per mailbox), else both spool the same mail — harmless, but wasteful."""

    def __init__(
        self,
        settings: ImapSettings,
        spool: Spool,
        state_dir: Path,
        *,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_spooled: Callable[[], None] | None = None,
        lease: MailboxLease | None = None,
    ) -> None:
        if settings.after not in {"keyword", "move"}:
            raise MaildeskError(f"imap {settings.name!r}: after must be 'keyword' or 'move', got {settings.after!r}")
        if settings.security not in {"ssl", "starttls", "none"}:
            raise MaildeskError(
                f"imap {settings.name!r}: security must be ssl, starttls or none, got {settings.security!r}"
            )
        self.settings = settings
        self.spool = spool
        self.state_path = Path(state_dir) / _state_name(settings.name)
        self.log = log or logging.getLogger("maildesk.ingest.imap")
        self.clock = clock
        self.sleep = sleep
        self.wall_clock = wall_clock
        self.backoff = backoff or Backoff()
        self.ssl_context = ssl_context
        self.on_spooled = on_spooled  # wakes the worker after each durable spool write
        self._client: IMAPClient | None = None
        self._lock = threading.Lock()  # guards the status fields below
        self._folders: dict[str, _FolderState] = {}
        self._connected = False
        self._last_error = ""
        self._errors = 0  # connection and folder errors since the start (the metrics endpoint)
        self._last_success: float | None = None
        self._moved_folder_ready = False  # move_to exists (checked once per connection)
        self.lease = lease
        self._held = False  # this node holds the lease (always True without one)
        self._renew_at = 0.0  # clock() when the lease is renewed next
        self._valid_until = 0.0  # clock() until which the lease is surely still ours
        if lease is None:
            self._load_state()
        else:  # read when the lease is taken (the database may not be migrated yet)
            self._folders = {folder: _FolderState() for folder in settings.folders}

    # Lease (several nodes) ----------------------------------------------------------------
    def hold_lease(self) -> bool:
        """True while this node may take mail from the mailbox: always without a lease;
        with one, renewed every third of its length. A database that cannot be reached
        keeps a held lease only until it would expire."""
        if self.lease is None:
            return True
        now = self.clock()
        if self._held and now < self._renew_at:
            return True
        seconds = self.lease.seconds
        try:
            held = self.lease.acquire(self.settings.name)
        except Exception as exc:  # noqa: BLE001 - the database is down: keep it until it would expire
            if self._held and now < self._valid_until:
                return True
            if self._held:
                self.log.error("imap %s: cannot renew the lease (%s); stopping", self.settings.name, exc)
            self._held = False
            return False
        if held and not self._held:
            self._load_state()  # go on where the previous holder stopped
            self.log.info("imap %s: this node (%s) now polls the mailbox", self.settings.name, self.lease.holder)
        elif not held and self._held:
            self.log.warning("imap %s: another node took the mailbox over; stopping", self.settings.name)
        self._held = held
        if held:
            self._renew_at = now + seconds / 3
            self._valid_until = now + seconds * 2 / 3  # margin for a late renewal
        return held

    def _require_lease(self) -> None:
        """Raise LeaseLost unless the lease was held before and still is (taken anew, the
        progress was reloaded: the poll starts over)."""
        was_held = self._held or self.lease is None
        if not self.hold_lease() or not was_held:
            raise LeaseLost(f"{self._where}: this node does not hold the mailbox's lease")

    def release_lease(self) -> None:
        if self.lease is not None and self._held:
            self._held = False
            try:
                self.lease.release(self.settings.name)
            except Exception as exc:  # noqa: BLE001 - it then expires on its own
                self.log.warning("imap %s: cannot release the lease (%s)", self.settings.name, exc)

    # State file ------------------------------------------------------------------------
    def _load_state(self) -> None:
        if self.lease is not None:
            try:
                shared = self.lease.load(self.settings.name)
            except Exception as exc:  # noqa: BLE001 - the database is down: the first acquire reloads
                self.log.warning("imap %s: cannot read the shared progress (%s)", self.settings.name, exc)
                shared = {}
            with self._lock:
                for folder in self.settings.folders:
                    uidvalidity, last_uid, fetched = shared.get(folder, (0, 0, 0))
                    old = self._folders.get(folder)
                    self._folders[folder] = _FolderState(uidvalidity=uidvalidity, last_uid=last_uid, fetched=fetched)
                    if old is not None:
                        self._folders[folder].last_error = old.last_error
            return
        data: dict[str, Any] = {}
        if self.state_path.exists():
            try:
                data = json.loads(self.state_path.read_text())
            except (OSError, ValueError) as exc:
                # Losing progress only re-scans; our keyword keeps that from re-spooling.
                self.log.error(
                    "imap %s: unreadable state file %s (%s); re-scanning all folders",
                    self.settings.name,
                    self.state_path,
                    exc,
                )
        folders = data.get("folders", {}) if isinstance(data, dict) else {}
        for folder in self.settings.folders:
            saved = folders.get(folder, {}) if isinstance(folders, dict) else {}
            self._folders[folder] = _FolderState(
                uidvalidity=int(saved.get("uidvalidity", 0)),
                last_uid=int(saved.get("last_uid", 0)),
                fetched=int(saved.get("fetched", 0)),
            )

    def _save_state(self) -> None:
        if self.lease is not None:
            with self._lock:
                folders = {n: (f.uidvalidity, f.last_uid, f.fetched) for n, f in self._folders.items()}
            try:
                saved = self.lease.save(self.settings.name, folders)
            except Exception as exc:  # noqa: BLE001 - the database refuses: like a disk that does
                raise ImapStateError(f"cannot store the IMAP progress of {self.settings.name!r}: {exc}") from exc
            if not saved:
                self._held = False
                raise LeaseLost(f"{self._where}: another node took the mailbox over")
            return
        with self._lock:
            payload = {
                "mailbox": self.settings.name,
                "folders": {
                    name: {"uidvalidity": f.uidvalidity, "last_uid": f.last_uid, "fetched": f.fetched}
                    for name, f in self._folders.items()
                },
            }
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                os.write(fd, json.dumps(payload, indent=1).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.state_path)
            dfd = os.open(self.state_path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise ImapStateError(f"cannot write IMAP state file {self.state_path}: {exc.strerror or exc}") from exc

    # Connection ------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        return f"imap {self.settings.name!r} ({self.settings.username}@{self.settings.host}:{self.settings.port})"

    def _connect(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        s = self.settings
        if not s.host:
            raise ImapUnavailable(f"imap {s.name!r}: no host configured")
        if not s.password:
            hint = f" (set the environment variable {s.password_env})" if s.password_env else ""
            raise ImapUnavailable(f"{self._where}: no password{hint}")
        context = self.ssl_context or ssl.create_default_context()
        try:
            client = IMAPClient(s.host, s.port, ssl=s.security == "ssl", ssl_context=context, timeout=s.timeout)
        except (OSError, IMAPClientError) as exc:
            raise ImapUnavailable(f"{self._where}: cannot connect: {_describe(exc)}") from exc
        try:
            if s.security == "starttls":
                client.starttls(context)
            client.login(s.username, s.password)
        except LoginError as exc:
            _quietly_close(client)
            raise ImapUnavailable(
                f"{self._where}: login failed (check username and password): {_describe(exc)}"
            ) from exc
        except (OSError, IMAPClientError) as exc:
            _quietly_close(client)
            raise ImapUnavailable(
                f"{self._where}: connection failed during "
                f"{'STARTTLS/' if s.security == 'starttls' else ''}login: {_describe(exc)}"
            ) from exc
        self._client = client
        with self._lock:
            self._connected = True
        self._moved_folder_ready = False
        return client

    def __enter__(self) -> MailboxPoller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()

    def disconnect(self) -> None:
        """Log out (run_forever does this itself when it stops)."""
        client, self._client = self._client, None
        with self._lock:
            self._connected = False
        if client is not None:
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - a dead connection may fail in any way
                _quietly_close(client)

    def _drop(self, error: str) -> None:
        client, self._client = self._client, None
        if client is not None:
            _quietly_close(client)
        with self._lock:
            self._connected = False
            self._last_error = error
            self._errors += 1

    # Polling ---------------------------------------------------------------------------
    def run_once(self) -> PollReport:
        """Connect if needed and take new mail from every folder. Never raises for server or
        connection errors: they are in the report and in status()."""
        try:
            self.hold_lease()
            return self._poll()
        except ImapUnavailable as exc:
            return PollReport(0, 0, 0, (str(exc),))

    def _poll(self) -> PollReport:
        """Like run_once, but a lost connection or failed login raises ImapUnavailable (after
        recording it), so run_forever can back off. Counts of a partial run are logged."""
        counts = [0, 0, 0]
        errors: list[str] = []
        try:
            self._require_lease()
            client = self._connect()
            for folder in self.settings.folders:
                try:
                    self._poll_folder(client, folder, counts)
                except IMAPClientAbortError:
                    raise
                except (IMAPClientError, SpoolError, ImapStateError) as exc:
                    # A folder-level NO/BAD (missing folder, no keyword support, a refused
                    # STORE/MOVE) or a disk problem: record it and go on with the other folders.
                    # Progress stops before the failed batch: it is fetched again next time.
                    message = f"{self._where} folder {folder!r}: {_describe(exc)}"
                    errors.append(message)
                    self._folder_error(folder, message)
                    if not isinstance(exc, IMAPClientError):
                        break  # the disk refuses writes: the other folders would fail too
        except ImapUnavailable as exc:
            self._drop(str(exc))
            raise
        except (OSError, IMAPClientError) as exc:  # includes the abort error and socket timeouts
            message = f"{self._where}: connection lost: {_describe(exc)}"
            self._drop(message)
            if counts[0]:
                self.log.info(
                    "imap %s: %d spooled before the connection was lost; any not yet marked are fetched again",
                    self.settings.name,
                    counts[1],
                )
            raise ImapUnavailable(message) from exc
        with self._lock:
            self._last_error = "; ".join(errors)
            self._errors += len(errors)
            if not errors:
                self._last_success = self.wall_clock()
        return PollReport(counts[0], counts[1], counts[2], tuple(errors))

    def _folder_error(self, folder: str, message: str) -> None:
        with self._lock:
            previous = self._folders[folder].last_error
            self._folders[folder].last_error = message
        if message != previous:
            self.log.error("%s", message)

    def _poll_folder(self, client: IMAPClient, folder: str, counts: list[int]) -> None:
        s = self.settings
        info = client.select_folder(folder, readonly=False)
        uidvalidity = int(info.get(b"UIDVALIDITY", 0) or 0)
        state = self._folders[folder]
        if s.after == "keyword":
            permanent = [bytes(f) for f in info.get(b"PERMANENTFLAGS", ())]
            if b"\\*" not in permanent and s.keyword.encode() not in permanent:
                raise IMAPClientError(
                    f"the server does not store the keyword {s.keyword} here "
                    '(PERMANENTFLAGS lacks \\*); use after = "move"'
                )
        if state.uidvalidity and uidvalidity != state.uidvalidity:
            self.log.error(
                "imap %s folder %r: UIDVALIDITY changed from %d to %d (folder recreated or server restored); "
                "re-scanning the whole folder, skipping mail that carries %s",
                s.name,
                folder,
                state.uidvalidity,
                uidvalidity,
                s.keyword,
            )
            with self._lock:
                state.last_uid = 0
        if state.uidvalidity != uidvalidity:
            with self._lock:
                state.uidvalidity = uidvalidity
            self._save_state()

        criteria: list[Any] = ["UID", f"{state.last_uid + 1}:*", "NOT", "KEYWORD", s.keyword]
        # `n:*` always matches the highest UID even when it is below n: filter.
        uids = sorted(int(u) for u in client.search(criteria) if int(u) > state.last_uid)
        with self._lock:
            state.pending = len(uids)
        if s.after == "move" and uids:
            self._ensure_move_target(client)
        for batch in _chunks(uids, s.batch_size):
            for part in self._split_by_size(client, batch):
                self._require_lease()
                self._take(client, folder, part, uidvalidity, counts)
        # Every UID below UIDNEXT (as of SELECT) was either taken now or carries our keyword:
        # skip past them so a re-scanned folder is not searched from the start each time.
        uidnext = int(info.get(b"UIDNEXT", 0) or 0)
        if uidnext - 1 > state.last_uid:
            with self._lock:
                state.last_uid = uidnext - 1
            self._save_state()
        with self._lock:
            state.pending = 0
            state.last_error = ""
            state.last_success = self.wall_clock()

    def _split_by_size(self, client: IMAPClient, batch: list[int]) -> Iterable[list[int]]:
        """Keep a batch under BATCH_BYTES of raw mail (a batch of 100 big messages would not fit)."""
        sizes = client.fetch(batch, ["RFC822.SIZE"])
        part: list[int] = []
        total = 0
        for uid in batch:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0) or 0)
            if part and total + size > BATCH_BYTES:
                yield part
                part, total = [], 0
            part.append(uid)
            total += size
        if part:
            yield part

    def _take(self, client: IMAPClient, folder: str, batch: list[int], uidvalidity: int, counts: list[int]) -> None:
        s = self.settings
        state = self._folders[folder]
        data = client.fetch(batch, ["BODY.PEEK[]"])
        spooled: list[int] = []
        spool_error: SpoolError | None = None
        for uid in batch:
            item = data.get(uid)
            raw = item.get(b"BODY[]") if item else None
            if raw is None:
                continue  # expunged meanwhile by another client: nothing to take
            counts[0] += 1
            try:
                self.spool.put(
                    bytes(raw),
                    source=f"imap:{s.name}/{folder}",
                    envelope={"uid": uid, "uidvalidity": uidvalidity, "folder": folder, "mailbox": s.name},
                )
            except SpoolError as exc:
                spool_error = exc
                break
            if self.on_spooled is not None:
                self.on_spooled()
            spooled.append(uid)
            counts[1] += 1
        if spooled:
            self._acknowledge(client, spooled)
            counts[2] += len(spooled)
        done_upto = batch[-1] if spool_error is None else (spooled[-1] if spooled else state.last_uid)
        with self._lock:
            state.fetched += len(spooled)
            state.last_uid = max(state.last_uid, done_upto)
            state.pending = max(0, state.pending - len(spooled))
        self._save_state()
        if spool_error is not None:
            raise spool_error

    def _acknowledge(self, client: IMAPClient, uids: list[int]) -> None:
        s = self.settings
        if s.after == "keyword":
            client.add_flags(uids, [s.keyword], silent=True)
            return
        if client.has_capability("MOVE"):
            client.move(uids, s.move_to)
            return
        client.copy(uids, s.move_to)
        client.add_flags(uids, [b"\\Deleted"], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            # Without UIDPLUS a plain EXPUNGE also removes mail another client marked
            # \Deleted; it is what such a client asked for.
            client.expunge()

    def _ensure_move_target(self, client: IMAPClient) -> None:
        if self._moved_folder_ready:
            return
        if not client.folder_exists(self.settings.move_to):
            self.log.info("imap %s: creating folder %r for processed mail", self.settings.name, self.settings.move_to)
            client.create_folder(self.settings.move_to)
        self._moved_folder_ready = True

    # Daemon loop -----------------------------------------------------------------------
    def run_forever(self, stop: threading.Event) -> None:
        """Poll until `stop` is set: IDLE on the first folder when the server offers it (and
        settings.idle), else every poll_interval. Drops and refused logins are retried with
        exponential backoff; each failure and the recovery are logged. Never raises for
        server errors."""
        failing_since: float | None = None
        idle_ok = True
        try:
            while not stop.is_set():
                if not self.hold_lease():
                    self.disconnect()  # another node polls: hold no connection
                    self._wait(stop, self._lease_retry())
                    continue
                try:
                    report = self._poll()
                except LeaseLost as exc:
                    self._held = False
                    self._drop(str(exc))
                    self.log.warning("%s; waiting to take it back", exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - the loop must outlive any server reply
                    if not isinstance(exc, ImapUnavailable):
                        # e.g. a reply imapclient cannot parse: log it with its traceback, reconnect.
                        self.log.exception("%s: unexpected error while polling", self._where)
                        self._drop(f"{self._where}: unexpected error: {type(exc).__name__}: {exc}")
                    delay = self.backoff.next()
                    if failing_since is None:
                        failing_since = self.clock()
                    self.log.error("%s; retry %d in %.1fs", exc, self.backoff.failures, delay)
                    self._wait(stop, delay)
                    continue
                if failing_since is not None:
                    self.log.warning(
                        "imap %s: connection recovered after %d failed attempts (%.0fs)",
                        self.settings.name,
                        self.backoff.failures,
                        self.clock() - failing_since,
                    )
                    failing_since = None
                self.backoff.reset()
                if report.spooled:
                    self.log.info("imap %s: spooled %d new messages", self.settings.name, report.spooled)
                try:
                    self._wait_for_mail(stop, use_idle=idle_ok)
                    idle_ok = True
                except Exception as exc:  # noqa: BLE001 - a drop during IDLE: reconnect on the next poll
                    self._drop(f"{self._where}: connection lost while waiting: {_describe(exc)}")
                    self.log.warning("%s: connection lost while waiting for mail: %s", self._where, _describe(exc))
                    idle_ok = False  # wait a plain poll_interval next time: no reconnect loop
        finally:
            self.disconnect()
            self.release_lease()

    def _lease_retry(self) -> float:
        return max(0.2, self.lease.seconds / 3) if self.lease is not None else self.settings.poll_interval

    def _wait(self, stop: threading.Event, seconds: float) -> None:
        deadline = self.clock() + seconds
        held = self._held
        while not stop.is_set():
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            if held and not self.hold_lease():  # keep the lease while waiting; stop when it is gone
                return
            self.sleep(min(IDLE_SLICE, remaining))

    def _wait_for_mail(self, stop: threading.Event, use_idle: bool = True) -> None:
        client = self._client
        first = self._folders[self.settings.folders[0]]
        if (
            client is None
            or not use_idle
            or not self.settings.idle
            or first.last_error  # e.g. the folder is missing: IDLE on it would fail in a loop
            or not client.has_capability("IDLE")
        ):
            self._wait(stop, self.settings.poll_interval)
            return
        self._idle(client, stop)

    def _idle(self, client: IMAPClient, stop: threading.Event) -> None:
        """IDLE on the first folder until mail arrives or poll_interval is up.

        A message delivered between our look at the folder and the start of IDLE is not
        always announced (seen with Dovecot: about one time in four when mail arrives
        right after a poll). So IDLE runs in rounds: the folder's UIDNEXT is checked before
        each round, the first round lasts one second and the later ones IDLE_RECHECK, and a
        message that slipped through a gap is found by the next check, not a whole
        poll_interval later."""
        # IDLE watches one folder; the others are re-scanned at least every poll_interval.
        folder = self.settings.folders[0]
        state = self._folders[folder]
        deadline = self.clock() + min(self.settings.poll_interval, IDLE_MAX)
        round_length = IDLE_FIRST_ROUND
        while not stop.is_set() and self.clock() < deadline:
            info = client.select_folder(folder, readonly=True)
            uidnext = int(info.get(b"UIDNEXT", 0) or 0)
            if uidnext - 1 > state.last_uid or int(info.get(b"UIDVALIDITY", 0) or 0) != state.uidvalidity:
                return  # mail arrived since the scan: go and fetch it
            round_end = min(deadline, self.clock() + round_length)
            round_length = IDLE_RECHECK
            client.idle()
            try:
                while not stop.is_set() and self.clock() < round_end:
                    if not self.hold_lease():
                        return  # another node took the mailbox over: the loop's next turn waits
                    responses = client.idle_check(timeout=IDLE_SLICE)
                    if any(_is_bye(r) for r in responses):
                        raise IMAPClientAbortError("server said BYE during IDLE")
                    if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                        return
            finally:
                still_ours = self._client is client  # not dropped meanwhile
                if still_ours:
                    client.idle_done()

    # Operators ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Per folder: uidvalidity, last_uid, fetched, pending, last_error, last_success;
        plus connected / last error / last success for the mailbox."""
        with self._lock:
            return {
                "name": self.settings.name,
                "host": self.settings.host,
                "connected": self._connected,
                "lease": None if self.lease is None else {"holder": self.lease.holder, "held": self._held},
                "last_error": self._last_error,
                "errors": self._errors,
                "last_success": self._last_success,
                "folders": {
                    name: {
                        "uidvalidity": f.uidvalidity,
                        "last_uid": f.last_uid,
                        "fetched": f.fetched,
                        "pending": f.pending,
                        "last_error": f.last_error,
                        "last_success": f.last_success,
                    }
                    for name, f in self._folders.items()
                },
            }


@dataclass(frozen=True)
class RemoteMessage:
    """One message as the server lists it (for `maildesk imap reconcile`)."""

    mailbox: str
    folder: str
    uid: int
    uidvalidity: int
    message_id_header: str  # the raw `Message-ID:` header line(s), "" when the mail has none
    taken: bool  # carries our keyword, or sits in the move_to folder


def survey(poller: MailboxPoller, since: date) -> list[RemoteMessage]:
    """Every message received since `since` (IMAP SEARCH SINCE, the server's internal date)
    in the mailbox's folders (and its move_to folder when mail is moved), with its UID and
    Message-ID header. Read-only: flags stay as they are."""
    s = poller.settings
    client = poller._connect()
    folders = list(s.folders)
    if s.after == "move" and client.folder_exists(s.move_to):
        folders.append(s.move_to)
    found: list[RemoteMessage] = []
    for folder in folders:
        info = client.select_folder(folder, readonly=True)
        uidvalidity = int(info.get(b"UIDVALIDITY", 0) or 0)
        uids = sorted(int(u) for u in client.search(["SINCE", since]))
        for batch in _chunks(uids, 500):
            data = client.fetch(batch, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            for uid in batch:
                item = data.get(uid)
                if item is None:
                    continue  # expunged meanwhile
                header = bytes(item.get(b"BODY[HEADER.FIELDS (MESSAGE-ID)]") or b"").decode("utf-8", "replace")
                flags = {bytes(f) if not isinstance(f, bytes) else f for f in item.get(b"FLAGS", ())}
                taken = folder == s.move_to and s.after == "move" or s.keyword.encode() in flags
                found.append(RemoteMessage(s.name, folder, uid, uidvalidity, header.strip(), taken))
    return found


def fetch_raw(poller: MailboxPoller, folder: str, uids: Sequence[int]) -> dict[int, bytes]:
    """The raw bytes of `uids` in `folder` (read-only: nothing is flagged or moved)."""
    client = poller._connect()
    client.select_folder(folder, readonly=True)
    out: dict[int, bytes] = {}
    for batch in _chunks(list(uids), 50):
        data = client.fetch(batch, ["BODY.PEEK[]"])
        for uid in batch:
            raw = (data.get(uid) or {}).get(b"BODY[]")
            if raw is not None:
                out[uid] = bytes(raw)
    return out


def recorded_progress(poller: MailboxPoller) -> dict[str, tuple[int, int]]:
    """Per folder: (uidvalidity, last_uid) as this node's state file (or the lease's shared
    progress) records it."""
    return {name: (f.uidvalidity, f.last_uid) for name, f in poller._folders.items()}


def _is_bye(response: Any) -> bool:
    return isinstance(response, tuple) and len(response) > 0 and response[0] == b"BYE"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"timed out ({text})" if text else "timed out"
    return f"{type(exc).__name__}: {text}" if not text or isinstance(exc, OSError) else text


def _quietly_close(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001 - closing a broken socket may fail in any way
        pass
