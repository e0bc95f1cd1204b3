"""report indexes: tickets by resolution time, events by type and time

`maildesk report` reads the tickets resolved in a period (`tickets.resolved_at`) and the
agent replies of a period (`events.type = 'agent-replied' AND events.at` in it); without
these two indexes both are full scans of a million-row table.

Revision ID: 0006
Revises: 0003
"""

from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tickets_resolved_at", "tickets", ["resolved_at"])
    op.create_index("ix_events_type_at", "events", ["type", "at"])


def downgrade() -> None:
    op.drop_index("ix_events_type_at", table_name="events")
    op.drop_index("ix_tickets_resolved_at", table_name="tickets")
