"""Two `maildesk run` nodes as processes on one (empty) PostgreSQL database, each with its
own data folder, SMTP port and outgoing Maildir, both configured with the same IMAP mailbox
in Dovecot. Mail arrives at both over SMTP and in the mailbox; the node polling the mailbox
(the lease holder) is SIGKILLed mid-stream; the other takes the mailbox over. Every message
is stored exactly once, every acknowledgement sent exactly once, and a customer's reply to
an acknowledgement one node signed threads on the other node.
"""

from __future__ import annotations

import email
import smtplib
import time
from collections import Counter
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from maildesk.store.nodes import SECRET_KEY
from maildesk.threading.tokens import parse_message_id
from tests.conftest import PgDatabases, free_port
from tests.support.daemon import Daemon
from tests.support.dovecot import DovecotServer, dovecot_server
from tests.support.mailgen import eml
from tests.support.wait import wait_for

IMAP_PW_ENV = "MAILDESK_TEST_NODES_IMAP_PW"


@pytest.fixture
def imap_server() -> Iterator[DovecotServer]:
    yield from dovecot_server()


@pytest.fixture
def empty_pg(pg_databases: PgDatabases) -> str:
    """A database never migrated: the two nodes' first start migrates it at once."""
    pg_databases.counter += 1
    name = f"{pg_databases.run_id}_nodes_{pg_databases.counter}"
    pg_databases._exec(f'CREATE DATABASE "{name}"')
    pg_databases.created.append(name)
    return pg_databases.url(name)


def node_config(folder: Path, url: str, smtp_port: int, imap: DovecotServer) -> Path:
    folder.mkdir(parents=True)
    cfg = folder / "maildesk.toml"
    cfg.write_text(
        f"""
[desk]
name = "Two Nodes Support"
data_dir = "{folder / "data"}"
support_addresses = ["support@example.com"]
secret_env = ""

[database]
url = "{url}"
url_env = ""

[smtp]
port = {smtp_port}

[worker]
parse_processes = 0

[limits]
new_tickets_per_sender_hour = 0
new_tickets_per_domain_hour = 0
per_domain_hour = 1000

[[imap]]
name = "shared"
host = "127.0.0.1"
port = {imap.port}
security = "none"
username = "{imap.user}"
password_env = "{IMAP_PW_ENV}"
batch_size = 5
poll_interval = 0.5
lease_seconds = 2
"""
    )
    return cfg


def send(port: int, raw: bytes, sender: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.sendmail(sender, ["support@example.com"], raw)


def outgoing(folder: Path) -> list[email.message.EmailMessage]:
    found = []
    for sub in ("new", "cur"):
        for path in sorted((folder / "data" / "outgoing" / sub).glob("*")):
            found.append(email.message_from_bytes(path.read_bytes(), policy=policy.default))
    return found  # type: ignore[return-value]


def test_two_nodes_share_one_database_and_one_mailbox(
    tmp_path: Path, empty_pg: str, imap_server: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IMAP_PW_ENV, imap_server.password)
    folders = {"a": tmp_path / "a", "b": tmp_path / "b"}
    ports = {"a": free_port(), "b": free_port()}
    nodes = {
        n: Daemon(node_config(folders[n], empty_pg, ports[n], imap_server), ports[n], tmp_path / f"{n}.log")
        for n in folders
    }
    engine = create_engine(empty_pg)
    expected: dict[str, str] = {}  # customer Message-ID -> how it came

    def stored() -> Counter[str]:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT message_id FROM messages WHERE direction = 'in'")).scalars()
            return Counter(rows)

    def outbox() -> str:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT state, count(*), min(next_try), max(attempts) FROM outbox GROUP BY state")
            ).all()
            events = conn.execute(text("SELECT type, count(*) FROM events GROUP BY type ORDER BY type")).all()
        return f"outbox: {rows}\nevents: {events}"

    def logs() -> str:
        return "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text(errors='replace')[-2500:]}" for n in nodes)

    try:
        for node in nodes.values():  # both start at once on the empty database
            node.start()
        for node in nodes.values():
            node.wait_ready()

        def lease_holder() -> str | None:
            with engine.connect() as conn:
                return conn.execute(text("SELECT holder FROM imap_leases")).scalar()

        holder_pid = wait_for(
            lease_holder,
            timeout=20,
            message="no node took the IMAP lease",
        )
        holder = next(n for n in nodes if str(holder_pid).endswith(str((folders[n] / "data").resolve())))
        other = "b" if holder == "a" else "a"

        # SMTP to both nodes, IMAP to the holder; then the holder dies while mail still flows.
        for i in range(10):
            for n in nodes:
                mid = f"smtp-{n}-{i}@customer.example"
                expected[mid] = f"smtp {n}"
                send(ports[n], eml(sender=f"<c{n}{i}@customer.example>", message_id=f"<{mid}>"), f"c{n}{i}@x")
        first = [f"imap-{i}@customer.example" for i in range(25)]
        imap_server.append_many(
            "INBOX", [eml(sender=f"<i{i}@customer.example>", message_id=f"<{m}>") for i, m in enumerate(first)]
        )
        expected.update({m: "imap" for m in first})
        wait_for(
            lambda: sum("$MaildeskSpooled" in f for f in imap_server.flags("INBOX").values()) >= 5,
            timeout=20,
            message="the holder took nothing from the mailbox",
        )
        nodes[holder].kill()
        killed_at = time.monotonic()
        later = [f"imap-late-{i}@customer.example" for i in range(15)]
        imap_server.append_many(
            "INBOX", [eml(sender=f"<l{i}@customer.example>", message_id=f"<{m}>") for i, m in enumerate(later)]
        )
        expected.update({m: "imap" for m in later})
        for i in range(5):  # the survivor keeps taking SMTP mail meanwhile
            mid = f"smtp-after-{i}@customer.example"
            expected[mid] = f"smtp {other}"
            send(ports[other], eml(sender=f"<s{i}@customer.example>", message_id=f"<{mid}>"), f"s{i}@x")
        wait_for(
            lambda: all("$MaildeskSpooled" in f for f in imap_server.flags("INBOX").values()),
            timeout=20,
            interval=0.2,
            message=lambda: f"the other node did not take the mailbox over\n{logs()}",
        )
        takeover = time.monotonic() - killed_at
        assert takeover < 2 + 10, f"takeover took {takeover:.1f}s (lease 2s)"
        assert "now polls the mailbox" in (tmp_path / f"{other}.log").read_text()  # the survivor took over
        nodes[holder].start()  # as its supervisor would: its spool may hold mail it had taken
        wait_for(
            lambda: set(expected) <= set(stored()),
            timeout=30,
            interval=0.2,
            message=lambda: f"not stored: {sorted(set(expected) - set(stored()))[:10]}\n{logs()}",
        )

        # Every acknowledgement exactly once, over both nodes' Maildirs.
        def acks() -> Counter[str]:
            out: Counter[str] = Counter()
            for n in nodes:
                for msg in outgoing(folders[n]):
                    out[str(msg.get("In-Reply-To", "")).strip("<> ")] += 1
            return out

        wait_for(  # a row the killed node was writing comes back after its 30 s Maildir lease
            lambda: set(expected) <= set(acks()),
            timeout=60,
            interval=0.2,
            message=lambda: f"no ack for {sorted(set(expected) - set(acks()))[:10]}\n{outbox()}\n{logs()}",
        )

        # A reply to an acknowledgement one node sent, sent to the other node, threads there.
        # (Either node's sender may have sent them all: the outbox is shared.)
        sent_by, ack = next(
            (n, m) for n in nodes for m in outgoing(folders[n]) if str(m["In-Reply-To"]).strip("<>") in expected
        )
        answered_at = "b" if sent_by == "a" else "a"
        ack_id = str(ack["Message-ID"]).strip("<>")
        with engine.connect() as conn:
            shared = conn.execute(text("SELECT value FROM kv WHERE key = :k"), {"k": SECRET_KEY}).scalar()
            ticket = conn.execute(
                text("SELECT ticket_number FROM messages WHERE message_id = :m"),
                {"m": str(ack["In-Reply-To"]).strip("<>")},
            ).scalar()
        assert parse_message_id(shared["secret"], ack_id) == ticket  # signed with the shared secret
        reply_id = "reply-across-nodes@customer.example"
        send(
            ports[answered_at],
            eml(
                sender=str(ack["To"]),
                subject="Re: about my question",  # no ticket tag: the signed Message-ID must do
                message_id=f"<{reply_id}>",
                extra=f"In-Reply-To: <{ack_id}>\nReferences: <{ack_id}>",
            ),
            "reply@x",
        )

        def reply_ticket() -> object:
            with engine.connect() as conn:
                return conn.execute(
                    text("SELECT ticket_number FROM messages WHERE message_id = :m"), {"m": reply_id}
                ).scalar()

        assert wait_for(reply_ticket, timeout=20, message=logs) == ticket
        for node in nodes.values():
            assert node.terminate() == 0
    finally:
        for node in nodes.values():
            node.kill()
        engine.dispose()

    counts = stored()
    twice = {m: c for m, c in counts.items() if c != 1}
    assert twice == {}, f"stored more than once: {twice}"
    ack_counts = acks()
    assert {m: ack_counts[m] for m in expected if ack_counts[m] != 1} == {}, "acknowledgements not sent exactly once"
    log = "\n".join((tmp_path / f"{n}.log").read_text(errors="replace") for n in nodes)
    assert "UniqueViolation" not in log and "Traceback" not in log
    assert not any((f / "data" / "secret.key").exists() for f in folders.values())  # the secret is shared
