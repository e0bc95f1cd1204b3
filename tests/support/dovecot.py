"""A private Dovecot IMAP server for tests, started from a generated config.

Owns: a temporary folder (config, users file, maildirs, log), a free loopback port and the
Dovecot master process (run in the foreground as our child, so stopping it is a plain
terminate + wait). Restartable on the same folder to simulate a server drop: the mail stays.
It must not touch the system Dovecot service or its config, and it never skips a test: a
missing `dovecot` binary is an error that says how to get it.

Test-side IMAP access (append, list UIDs and flags) goes through imapclient directly; the
package's own `maildesk/ingest/imap.py` is what is under test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.support.net import free_port  # noqa: F401 - re-exported for the tests

DOVECOT_CANDIDATES = ("dovecot", "/usr/sbin/dovecot")
MISSING_MESSAGE = (
    "dovecot is not installed (no `dovecot` on PATH or in /usr/sbin). The IMAP tests run against a "
    "real Dovecot: run the project's test command, which installs it with "
    "`apt-get update && apt-get install -y dovecot-imapd`, or install that package yourself."
)


class DovecotUnavailable(RuntimeError):
    """Dovecot is missing or could not be started; the message says why and what to do."""


def find_dovecot() -> str:
    for candidate in DOVECOT_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise DovecotUnavailable(MISSING_MESSAGE)


CONFIG_TEMPLATE = """\
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{dir}/mail/%u
first_valid_uid = 100
default_login_user = nobody
default_internal_user = dovenull
default_internal_group = dovenull
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}{imaps}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={dir}/mail/%u
}}
{extra}
"""


class DovecotServer:
    """One private Dovecot instance with one user; `start()` / `stop()` may be repeated."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        user: str = "support@example.com",
        password: str = "secret-Pa55",
        extra_config: str = "",
        tls: bool = False,
    ) -> None:
        self.binary = find_dovecot()
        if os.geteuid() != 0:
            raise DovecotUnavailable(
                "the test Dovecot runs mail as the `dovecot` user and must be started as root "
                "(as the project's test command does in CI and containers)"
            )
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="mdovecot-"))
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = user
        self.password = password
        self.tls = tls
        self.tls_port = free_port() if tls else 0  # IMAPS; STARTTLS is offered on .port
        self.cafile = self.root / "cert.pem"  # the self-signed certificate, to trust in clients
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: IMAPClient | None = None
        self._write_config(extra_config)

    # Lifecycle -------------------------------------------------------------------------
    def _write_config(self, extra: str) -> None:
        self.root.chmod(0o755)  # the dovecot and dovenull users must reach mail/ and users
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        shutil.chown(self.root / "mail", "dovecot", "dovecot")
        users = self.root / "users"
        users.write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        users.chmod(0o644)
        ssl_lines, imaps = "ssl = no", ""
        if self.tls:
            self._make_certificate()
            ssl_lines = f"ssl = yes\nssl_cert = <{self.cafile}\nssl_key = <{self.root / 'key.pem'}"
            imaps = f"\n  inet_listener imaps {{\n    port = {self.tls_port}\n    ssl = yes\n  }}"
        self.config = self.root / "dovecot.conf"
        self.config.write_text(
            CONFIG_TEMPLATE.format(dir=self.root, port=self.port, extra=extra, ssl=ssl_lines, imaps=imaps)
        )

    def _make_certificate(self) -> None:
        openssl = shutil.which("openssl")
        if not openssl:
            raise DovecotUnavailable("openssl is needed for the TLS test server: apt-get install -y openssl")
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(self.root / "key.pem"),
                "-out",
                str(self.cafile),
            ],
            check=True,
            capture_output=True,
        )
        (self.root / "key.pem").chmod(0o600)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> DovecotServer:
        if self.running:
            return self
        self._proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise DovecotUnavailable(f"dovecot exited at start: {err.strip()}\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise DovecotUnavailable(
            f"dovecot did not answer on {self.host}:{self.port} within {timeout}s\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the master and every process it started, and wait until they are gone.

        Dovecot's master leaves running imap processes (and their client connections) behind
        when it is terminated alone, so the whole process group is signalled: clients see the
        connection drop, as they would when a real server goes down."""
        self._drop_client()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the master leads its own process group
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        deadline = time.monotonic() + 5.0
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        if proc.stderr:
            proc.stderr.close()
        (self.root / "run" / "master.pid").unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        log = self.root / "dovecot.log"
        if not log.exists():
            return "(no dovecot.log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    # Test-side IMAP access -----------------------------------------------------------
    def connect(self) -> IMAPClient:
        client = IMAPClient(self.host, self.port, ssl=False, timeout=10)
        client.login(self.user, self.password)
        return client

    def _admin(self) -> IMAPClient:
        if self._client is None:
            self._client = self.connect()
        return self._client

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - the server may already be gone
                pass

    def create_folder(self, folder: str) -> None:
        client = self._admin()
        if not client.folder_exists(folder):
            client.create_folder(folder)

    def delete_folder(self, folder: str) -> None:
        client = self._admin()
        try:
            client.unselect_folder()
        except Exception:  # noqa: BLE001 - nothing was selected
            pass
        client.delete_folder(folder)

    def append(self, folder: str, raw: bytes, flags: Iterable[str] = ()) -> int:
        """Append one message; returns its UID (from APPENDUID)."""
        response = self._admin().append(folder, raw, flags=tuple(flags))
        return _appenduid(response)

    def append_many(self, folder: str, raws: Iterable[bytes], chunk: int = 200) -> None:
        """MULTIAPPEND in chunks: much faster than one APPEND per message."""
        client = self._admin()
        batch: list[bytes] = []
        for raw in raws:
            batch.append(raw)
            if len(batch) >= chunk:
                client.multiappend(folder, batch)
                batch = []
        if batch:
            client.multiappend(folder, batch)

    def uids(self, folder: str) -> list[int]:
        client = self._admin()
        client.select_folder(folder, readonly=True)
        return sorted(int(u) for u in client.search("ALL"))

    def flags(self, folder: str) -> dict[int, set[str]]:
        client = self._admin()
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        if not uids:
            return {}
        data = client.get_flags(uids)
        return {
            int(uid): {f.decode() if isinstance(f, bytes) else str(f) for f in flags} for uid, flags in data.items()
        }

    def uidvalidity(self, folder: str) -> int:
        status = self._admin().folder_status(folder, ["UIDVALIDITY"])
        return int(status[b"UIDVALIDITY"])

    def set_flags(self, folder: str, uids: Iterable[int], flags: Iterable[str]) -> None:
        client = self._admin()
        client.select_folder(folder)
        client.add_flags(list(uids), list(flags))

    def bodies(self, folder: str) -> dict[int, bytes]:
        client = self._admin()
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        if not uids:
            return {}
        return {int(u): d[b"BODY[]"] for u, d in client.fetch(uids, ["BODY.PEEK[]"]).items()}


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process remains in the group."""
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _appenduid(response: bytes) -> int:
    # b"[APPENDUID 1700000000 5] Append completed."
    text = response.decode(errors="replace") if isinstance(response, bytes) else str(response)
    if "APPENDUID" in text:
        return int(text.split("APPENDUID", 1)[1].split("]", 1)[0].split()[1])
    return -1


def dovecot_server(**kwargs: Any) -> Iterator[DovecotServer]:
    """Generator body for fixtures: a started server, always stopped and removed afterwards.
    A missing or broken Dovecot fails the test with the reason (never a skip)."""
    try:
        server = DovecotServer(**kwargs)
    except DovecotUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        server.start()
    except DovecotUnavailable as exc:
        server.cleanup()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    """A fresh private Dovecot per test: it starts in about 0.04 s and stops in about 1 s."""
    yield from dovecot_server()
