"""Run `maildesk run` as a real subprocess for crash and outage tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from tests.support.wait import wait_for


def write_config(path: Path, *, data_dir: Path, database_url: str, smtp_port: int, extra: str = "") -> Path:
    # The crash tests send hundreds of mails from one sender and one domain: durability is under test, not
    # the new-ticket flood limits (tests/pipeline/test_new_ticket_limits.py covers those).
    if "[limits]" not in extra:  # after `extra`, whose first lines may belong to [worker]
        extra = extra + "\n[limits]\nnew_tickets_per_sender_hour = 0\nnew_tickets_per_domain_hour = 0\n"
    path.write_text(
        f"""
[desk]
name = "Crash Test Support"
data_dir = "{data_dir}"
support_addresses = ["support@example.com"]
secret_env = "MAILDESK_TEST_SECRET"

[database]
url = "{database_url}"
url_env = ""

[smtp]
port = {smtp_port}

[worker]
poll_interval = 0.05
{extra}
"""
    )
    return path


def wait_port(host: str, port: int, timeout: float = 20.0) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_for(listening, timeout=timeout, message=f"something listening on {host}:{port}")


class Daemon:
    """One `maildesk run` subprocess; restartable."""

    def __init__(self, config: Path, port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.env = dict(env or {})
        self.config = config
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**os.environ, "MAILDESK_TEST_SECRET": "crash-secret", **self.env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "maildesk", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.starts += 1
        wait_port("127.0.0.1", self.port)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until this run's worker has migrated and warmed up (it logs "worker ready")."""
        wait_for(
            lambda: self.log.read_text(errors="replace").count("worker ready") >= self.starts,
            timeout=timeout,
            message="the worker ready",
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class TcpProxy:
    """A loopback TCP proxy we can cut, to make a database unreachable on purpose."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self, port: int = 0) -> int:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port or self.port))
        srv.listen(64)
        self.port = srv.getsockname()[1]
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()
        return self.port

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            if self._server is not srv:
                client.close()
                upstream.close()
                return
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self._conns.clear()


def outgoing_mails(outgoing: Path) -> list[tuple[bytes, EmailMessage]]:
    """Every mail the daemon delivered to its outgoing Maildir (`outgoing/new`), in file-name
    order: the raw bytes and the parsed message, each file read once."""
    folder = outgoing / "new"
    found = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        raw = path.read_bytes()
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        found.append((raw, msg))
    return found
