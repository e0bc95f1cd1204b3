"""auto_sends: one row per automatic mail and recipient, for the loop limits

The limits used to count automatic outbox rows of the last day whose JSON recipient list
contained the address: a scan of every such row for every automatic mail. This table is
indexed by (recipient, at), (ticket_number, at) and (at). It is filled here from the
outbox rows of the last day that still count (queued, sending, sent).

Revision ID: 0003
Revises: 0002
"""

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    auto_sends = op.create_table(
        "auto_sends",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("ticket_number", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_auto_sends_recipient_at", "auto_sends", ["recipient", "at"])
    op.create_index("ix_auto_sends_ticket_at", "auto_sends", ["ticket_number", "at"])
    op.create_index("ix_auto_sends_at", "auto_sends", ["at"])
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.Integer()),
        sa.column("ticket_number", sa.Integer()),
        sa.column("recipients", sa.JSON()),
        sa.column("automatic", sa.Boolean()),
        sa.column("state", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    since = datetime.now(UTC) - timedelta(days=1)
    rows = (
        op.get_bind()
        .execute(
            sa.select(outbox.c.id, outbox.c.ticket_number, outbox.c.recipients, outbox.c.created_at).where(
                outbox.c.automatic.is_(True),
                outbox.c.state.in_(("queued", "sending", "sent")),
                outbox.c.created_at >= since,
            )
        )
        .all()
    )
    fill = []
    for outbox_id, ticket_number, recipients, created_at in rows:
        if isinstance(recipients, str):
            recipients = json.loads(recipients)
        for recipient in dict.fromkeys(str(r).lower() for r in recipients or []):
            fill.append(
                {"outbox_id": outbox_id, "recipient": recipient, "ticket_number": ticket_number, "at": created_at}
            )
    if fill:
        op.bulk_insert(auto_sends, fill)


def downgrade() -> None:
    op.drop_table("auto_sends")
