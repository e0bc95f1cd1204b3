"""Several nodes on one PostgreSQL: the shared signing secret and the IMAP mailbox leases.

Owns the `desk.secret` row of the `kv` table (the secret every node signs Message-IDs and
reply addresses with), the `imap_leases` rows (which node polls which mailbox, until when)
and the `imap_progress` rows (per folder UIDVALIDITY and last UID, read by the node that
takes a lease over). `StoreMailboxLease` is handed to the IMAP poller by the App: ingest
never imports the store, it sees only the `MailboxLease` protocol it declares.

Lease times are the database's clock (`now()`), so nodes whose clocks differ still agree
on when a lease has expired.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from maildesk.errors import ConfigError
from maildesk.store.models import KeyValue

if TYPE_CHECKING:
    from maildesk.store.db import Store

SECRET_KEY = "desk.secret"
# The advisory lock key every node takes around `alembic upgrade` ("maildesk" in ASCII).
MIGRATION_LOCK = 0x6D61696C6465736B


def fingerprint(secret: str) -> str:
    """A public fingerprint of a secret: says whether two nodes use the same one."""
    return hashlib.sha256(("maildesk-secret-fingerprint:" + secret).encode()).hexdigest()[:16]


def shared_secret(store: Store, *, local: str, local_from: str) -> str:
    """The signing secret all nodes on this PostgreSQL database use.

    `local_from` says where this node's own secret came from:
    - "database": none was configured; `local` is this node's old `secret.key` ("" when it has
      none). The first node stores its file's secret (or a new random one) with INSERT ... ON
      CONFLICT DO NOTHING; every node reads back the row that won. A node whose own file holds
      another secret is refused (its old signed mail would stop verifying without a word).
    - "given" (set by code: tests, benchmarks): like an old `secret.key`.
    - "env": the secret comes from the environment; the database keeps only its fingerprint,
      and a node whose secret has another fingerprint is refused.
    """
    if store.is_sqlite:
        return local
    value: dict[str, str | None]
    if local_from == "given" and local:
        local_from = "database"
    if local_from == "database":
        new = local or secrets.token_hex(32)
        value = {"secret": new, "fingerprint": fingerprint(new)}
    else:
        value = {"secret": None, "fingerprint": fingerprint(local)}
    with store.session() as session:
        session.execute(pg_insert(KeyValue).values(key=SECRET_KEY, value=value).on_conflict_do_nothing())
    with store.reader() as session:
        row = session.get(KeyValue, SECRET_KEY)
        stored = dict(row.value) if row is not None else {}
    kept = stored.get("secret")
    if local_from == "database":
        if not kept:
            raise ConfigError(
                "the other nodes of this database sign with the secret from their environment "
                "(desk.secret_env); set the same variable on this node too"
            )
        if local and local != kept:
            raise ConfigError(
                "this node's secret.key differs from the secret shared in the database (fingerprint "
                f"{fingerprint(local)} here, {stored.get('fingerprint')} there): move the file away to "
                "join with the shared secret (mail this node signed before will no longer be recognised), "
                "or set the database's secret on every node through desk.secret_env"
            )
        return str(kept)
    if stored.get("fingerprint") != fingerprint(local):
        raise ConfigError(
            f"desk.secret_env: this node's secret (fingerprint {fingerprint(local)}) is not the one the "
            f"other nodes of this database use (fingerprint {stored.get('fingerprint')}); every node must sign "
            "with the same secret"
        )
    return local


class StoreMailboxLease:
    """The `maildesk.ingest.imap.MailboxLease` of one node on PostgreSQL."""

    def __init__(self, store: Store, holder: str, seconds: float) -> None:
        self.store = store
        self.holder = holder
        self.seconds = float(seconds)

    def acquire(self, mailbox: str) -> bool:
        """Take the lease (free or expired) or renew ours; True when this node holds it."""
        with self.store.session() as session:
            row = session.execute(
                text(
                    "INSERT INTO imap_leases (mailbox, holder, expires_at, acquired_at) "
                    "VALUES (:m, :h, now() + :d, now()) "
                    "ON CONFLICT (mailbox) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, "
                    "acquired_at = CASE WHEN imap_leases.holder = excluded.holder THEN imap_leases.acquired_at "
                    "ELSE excluded.acquired_at END "
                    "WHERE imap_leases.holder = excluded.holder OR imap_leases.expires_at < now() "
                    "RETURNING holder"
                ),
                {"m": mailbox, "h": self.holder, "d": timedelta(seconds=self.seconds)},
            ).first()
        return row is not None and row[0] == self.holder

    def release(self, mailbox: str) -> None:
        """Give the lease up at a clean stop, so another node takes over at once."""
        with self.store.session() as session:
            session.execute(
                text("DELETE FROM imap_leases WHERE mailbox = :m AND holder = :h"), {"m": mailbox, "h": self.holder}
            )

    def load(self, mailbox: str) -> dict[str, tuple[int, int, int]]:
        """Per folder: (uidvalidity, last_uid, fetched)."""
        with self.store.reader() as session:
            rows = session.execute(
                text("SELECT folder, uidvalidity, last_uid, fetched FROM imap_progress WHERE mailbox = :m"),
                {"m": mailbox},
            ).all()
        return {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}

    def save(self, mailbox: str, folders: Mapping[str, tuple[int, int, int]]) -> bool:
        """Store the progress, only while this node holds the lease; False when it does not
        (another node took it over: this one must stop taking mail)."""
        with self.store.session() as session:
            held = session.execute(
                text("SELECT 1 FROM imap_leases WHERE mailbox = :m AND holder = :h FOR UPDATE"),
                {"m": mailbox, "h": self.holder},
            ).first()
            if held is None:
                return False
            for folder, (uidvalidity, last_uid, fetched) in folders.items():
                session.execute(
                    text(
                        "INSERT INTO imap_progress (mailbox, folder, uidvalidity, last_uid, fetched) "
                        "VALUES (:m, :f, :v, :u, :n) ON CONFLICT (mailbox, folder) DO UPDATE SET "
                        "uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, fetched = excluded.fetched"
                    ),
                    {"m": mailbox, "f": folder, "v": uidvalidity, "u": last_uid, "n": fetched},
                )
        return True


def imap_progress(store: Store) -> dict[tuple[str, str], tuple[int, int]]:
    """(mailbox, folder) → (uidvalidity, last_uid) as the nodes recorded it (PostgreSQL)."""
    if store.is_sqlite:
        return {}
    with store.reader() as session:
        rows = session.execute(text("SELECT mailbox, folder, uidvalidity, last_uid FROM imap_progress")).all()
    return {(str(r[0]), str(r[1])): (int(r[2]), int(r[3])) for r in rows}


def stored_message_ids(store: Store, ids: Sequence[str]) -> set[str]:
    """Those of `ids` (Message-IDs without brackets) stored as mail, in or out."""
    from sqlalchemy import select

    from maildesk.store.models import Message
    from maildesk.store.queries import mid_hash

    found: set[str] = set()
    unique = list(dict.fromkeys(ids))
    with store.reader() as session:
        for start in range(0, len(unique), 500):
            by_hash = {mid_hash(i): i for i in unique[start : start + 500]}
            rows = session.scalars(select(Message.mid_hash).where(Message.mid_hash.in_(list(by_hash)))).all()
            found.update(by_hash[h] for h in rows)
    return found
