"""auto_sends.domain: the per-domain limit of automatic mail reads the domain's own rows

The per-domain hourly limit of automatic mail to first-contact recipients counted the last
hour of `auto_sends` with `recipient LIKE '%@domain'`: no index serves a leading wildcard,
so every automatic mail of the hour was read for each acknowledgement, a cost that grew
with the size of a burst. `domain` (lower-case, the part of the recipient after its last
"@", "" without one) is stored with each row and indexed with `at`.

`mail_first` is true on one row of each automatic mail (its first recipient's): the global
hourly count of mails is then a count over `ix_auto_sends_first_at` instead of a
`count(DISTINCT outbox_id)` over the hour, which sorted every row of the hour.

Existing rows (two days at most: older ones are pruned) are filled in batches from Python.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BATCH = 1000


def _domain(address: str) -> str:
    """As `maildesk.store.models.email_domain` (a migration keeps its own copy)."""
    return address.rpartition("@")[2].lower() if "@" in address else ""


def upgrade() -> None:
    op.add_column("auto_sends", sa.Column("domain", sa.String(320), nullable=False, server_default=""))
    conn = op.get_bind()
    sends = sa.table("auto_sends", sa.column("id", sa.Integer), sa.column("recipient", sa.String))
    update = sa.text("UPDATE auto_sends SET domain = :domain WHERE id = :sid")
    last = 0
    while True:
        rows = conn.execute(
            sa.select(sends.c.id, sends.c.recipient).where(sends.c.id > last).order_by(sends.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        changes = [{"sid": sid, "domain": _domain(rcpt or "")} for sid, rcpt in rows]
        changes = [c for c in changes if c["domain"]]
        if changes:
            conn.execute(update, changes)
        last = rows[-1][0]
    op.create_index("ix_auto_sends_domain_at", "auto_sends", ["domain", "at"])
    op.add_column("auto_sends", sa.Column("mail_first", sa.Boolean, nullable=False, server_default=sa.false()))
    conn.execute(
        sa.text(
            "UPDATE auto_sends SET mail_first = :yes WHERE id IN (SELECT min(id) FROM auto_sends GROUP BY outbox_id)"
        ),
        {"yes": True},
    )
    op.create_index("ix_auto_sends_first_at", "auto_sends", ["mail_first", "at"])


def downgrade() -> None:
    op.drop_index("ix_auto_sends_first_at", table_name="auto_sends")
    op.execute("ALTER TABLE auto_sends DROP COLUMN mail_first")
    op.drop_index("ix_auto_sends_domain_at", table_name="auto_sends")
    op.execute("ALTER TABLE auto_sends DROP COLUMN domain")  # SQLite 3.35+ and PostgreSQL
