"""systemd notifications (`Type=notify`): READY=1, STATUS=…, WATCHDOG=1, STOPPING=1.

Owns the sd_notify protocol: one datagram a message to the unix socket named by
`$NOTIFY_SOCKET` (an abstract socket when the name starts with `@`), and the watchdog
interval from `$WATCHDOG_USEC` (pinged at half of it). Outside systemd (no NOTIFY_SOCKET)
every call does nothing. No dependency: the protocol is a socket write.
Must not: raise — a notification that cannot be sent is logged once and forgotten.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger("maildesk.systemd")


class Notifier:
    """Talks to systemd's notification socket (or does nothing when there is none)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        self.watchdog_seconds: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1e6
        self._warned = False
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send `KEY=value` lines as one datagram. True when it was sent."""
        if self.address is None:
            return False
        data = "\n".join(lines).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(data)
            return True
        except OSError as exc:
            with self._lock:
                warned, self._warned = self._warned, True
            if not warned:
                log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), exc)
            return False

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def reloaded(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    @property
    def watchdog_interval(self) -> float | None:
        """How often to ping: half the watchdog timeout (None: no watchdog asked for)."""
        return None if self.watchdog_seconds is None else self.watchdog_seconds / 2
