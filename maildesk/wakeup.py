"""Wake-ups: how one stage tells the next "there is work" the moment it is durable.

Owns the hand-off signals of one node and how they travel:

- inside the daemon, a `Signal` (a flag under a condition variable): the SMTP writer, the
  IMAP poller and the worker's commits `notify()` it; the worker and the outbox sender
  `wait()` on it, with the safety-net interval as the timeout;
- from other processes on the machine (`maildesk inject`, `import`, CLI commands that
  queue mail), a datagram to the Unix socket `<data_dir>/wake.sock` that the daemon's
  `WakeListener` reads (`poke`). A datagram socket, not inotify: it is sent after the
  write is durable (inotify would fire at the rename, before the sync), it needs no
  third-party module, it costs the sender one system call and never blocks (a full or
  missing socket is simply a lost wake-up), and it tells which stage to wake;
- across nodes on PostgreSQL: LISTEN/NOTIFY, owned by `maildesk.store.notify`.

A wake-up carries no data and promises nothing: a lost one costs at most the safety-net
interval (the waiter looks for work then anyway), a duplicate costs one look at an empty
queue. So it must only ever be sent after the durable write or commit it announces, and
nobody may rely on it for correctness.

It must not: import anything of maildesk's (every layer uses it), read or write mail, or
raise into a producer (a failed wake-up is never an error).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
from pathlib import Path

log = logging.getLogger("maildesk.wakeup")

SOCKET_NAME = "wake.sock"
SPOOL = "spool"  # mail was spooled: the worker has work
OUTBOX = "outbox"  # an outbox row was committed: the sender has work
TOPICS = (SPOOL, OUTBOX)
STOP_SLICE = 0.25  # how often a wait given a foreign stop event looks at it
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes with its NUL


class Signal:
    """A wake-up flag for one consumer: `notify()` sets it, `wait()` returns at once when
    it is set (and clears it) or after the timeout. A notify that comes while the consumer
    is busy is kept, so the consumer's next wait returns at once: nothing is missed as long
    as the consumer looks for work after each wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._flag = False
        self.notified = 0  # how many times it was rung (status, tests)

    def notify(self) -> None:
        with self._cond:
            self._flag = True
            self.notified += 1
            self._cond.notify_all()

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """True when woken by `notify`, False after `timeout` or once `stop` is set (the
        stop event is looked at every STOP_SLICE seconds; whoever sets it may also
        `notify()` to end the wait at once)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._flag:
                if stop is not None and stop.is_set():
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, STOP_SLICE) if stop is not None else remaining)
            self._flag = False
            return True


def _address(path: Path) -> tuple[str, int | None]:
    """The address to bind or send to, and a folder descriptor to close afterwards: a path
    longer than sun_path allows is reached through /proc/self/fd/<folder>/ (Linux)."""
    text = str(path)
    if len(os.fsencode(text)) <= _UNIX_PATH_MAX:
        return text, None
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def poke(data_path: Path | str, topic: str) -> bool:
    """Tell a daemon on this machine that `topic` has work. Never raises and never blocks;
    False when no daemon listens (or its socket is full: it has wake-ups pending anyway)."""
    fd: int | None = None
    try:
        address, fd = _address(Path(data_path) / SOCKET_NAME)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as sock:
            sock.sendto(topic.encode("ascii"), address)
        return True
    except OSError:
        return False
    finally:
        if fd is not None:
            os.close(fd)


class WakeListener:
    """The daemon's end of `wake.sock`: a thread that turns datagrams into `Signal.notify()`.

    The socket is created at start (a leftover file of a dead daemon is replaced) and
    removed at close when it is still ours. If it cannot be created, the daemon runs on
    without it: wake-ups from other processes are then lost and the safety net finds
    their work."""

    def __init__(self, data_path: Path | str, signals: dict[str, Signal]) -> None:
        self.path = Path(data_path) / SOCKET_NAME
        self.signals = signals
        self.received = 0
        self._sock: socket.socket | None = None
        self._inode: int | None = None
        self._pipe_r, self._pipe_w = -1, -1
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        fd: int | None = None
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                with contextlib.suppress(FileNotFoundError):
                    if self.path.is_socket():
                        self.path.unlink()
                address, fd = _address(self.path)
                sock.bind(address)
                sock.setblocking(False)
                self._inode = os.stat(self.path).st_ino
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            log.warning("no wake-up socket at %s (%s): other processes' mail waits for the safety net", self.path, exc)
            return False
        finally:
            if fd is not None:
                os.close(fd)
        self._sock = sock
        self._pipe_r, self._pipe_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="wake-listener", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            try:
                ready, _, _ = select.select([sock.fileno(), self._pipe_r], [], [])
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                log.error("wake-up socket failed (%s): the safety net takes over", exc)
                return
            if self._pipe_r in ready:
                return
            while True:
                try:
                    data = sock.recv(64)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    log.error("wake-up socket failed (%s): the safety net takes over", exc)
                    return
                self.received += 1
                signal = self.signals.get(data.decode("ascii", "replace").strip())
                if signal is not None:
                    signal.notify()

    def close(self) -> None:
        if self._thread is not None:
            with contextlib.suppress(OSError):
                os.write(self._pipe_w, b"x")
            self._thread.join(timeout=5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self._inode:  # not a newer daemon's socket
                    self.path.unlink()
        for fd in (self._pipe_r, self._pipe_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._pipe_r, self._pipe_w = -1, -1


class Wakeups:
    """The node's hand-off signals and how to ring them from anywhere in this process.

    `spooled()` and `outbox_queued()` ring the local signal, and, when this process is not
    the listening daemon (a CLI command), send the datagram to the daemon instead."""

    def __init__(self, data_path: Path | str) -> None:
        self.data_path = Path(data_path)
        self.spool = Signal()
        self.outbox = Signal()
        self.listener: WakeListener | None = None

    def _ring(self, signal: Signal, topic: str) -> None:
        signal.notify()
        if self.listener is None or not self.listener.listening:
            poke(self.data_path, topic)

    def spooled(self) -> None:
        """Mail is durable in the spool (after the sync, never before)."""
        self._ring(self.spool, SPOOL)

    def outbox_queued(self) -> None:
        """An outbox row is committed (after the commit, never before)."""
        self._ring(self.outbox, OUTBOX)

    def listen(self) -> bool:
        """Start reading `wake.sock` (the daemon). False when the socket cannot be made."""
        if self.listener is None:
            self.listener = WakeListener(self.data_path, {SPOOL: self.spool, OUTBOX: self.outbox})
        return self.listener.start()

    def wake_all(self) -> None:
        """End every wait now (shutdown: the waiters then see their stop event)."""
        self.spool.notify()
        self.outbox.notify()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
