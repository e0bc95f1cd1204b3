"""report indexes: tickets by resolution time and by open status, events by type and time

`maildesk report` reads the tickets resolved in a period (`tickets.resolved_at`), the
agent replies of a period (`events.type = 'agent-replied' AND events.at` in it), and the
open tickets counted by queue (or assignee); without these indexes each is a full scan of
a million-row table (the open backlog: `(status, queue)` / `(status, assignee)`, read as
index ranges of the open statuses, instead of a walk of the whole queue index).

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
    op.create_index("ix_tickets_status_queue", "tickets", ["status", "queue"])
    op.create_index("ix_tickets_status_assignee", "tickets", ["status", "assignee"])


def downgrade() -> None:
    op.drop_index("ix_tickets_status_assignee", table_name="tickets")
    op.drop_index("ix_tickets_status_queue", table_name="tickets")
    op.drop_index("ix_events_type_at", table_name="events")
    op.drop_index("ix_tickets_resolved_at", table_name="tickets")
