"""several nodes: IMAP leases and the IMAP progress shared by the nodes

`imap_leases`: one row per IMAP mailbox naming the node that polls it and until when (the
holder renews it; another node takes an expired row over). `imap_progress`: per mailbox
folder the UIDVALIDITY and highest UID taken, so the node that takes over goes on from
there. The shared signing secret lives in the existing `kv` table (key `desk.secret`).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imap_leases",
        sa.Column("mailbox", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "imap_progress",
        sa.Column("mailbox", sa.String(200), primary_key=True),
        sa.Column("folder", sa.String(500), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("fetched", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("imap_progress")
    op.drop_table("imap_leases")
