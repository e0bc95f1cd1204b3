"""agent_loads: open tickets per assignee, kept as counters for `least_loaded`

`least_loaded` counted each member's open tickets over index ranges of `(assignee,
status)`: its cost grew with the members' open tickets (1.31x per message at 100,000
against 1,000 stored tickets, 20% open). The counters are kept by every flush that changes
a ticket's status or assignee (`store.routing_queries`), and read by primary key.

Filled here from the stored tickets (tickets new, open or pending, per lower(assignee),
assignees neither NULL nor empty: what `store.routing_queries.recount_agent_loads`
counts); the downgrade drops the table.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OPEN_STATUSES = ("new", "open", "pending")  # maildesk.domain.OPEN_STATUSES when written


def upgrade() -> None:
    op.create_table(
        "agent_loads",
        sa.Column("assignee", sa.String(length=320), nullable=False),
        sa.Column("open_tickets", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("assignee"),
    )
    statuses = ", ".join(f"'{s}'" for s in OPEN_STATUSES)
    op.execute(
        "INSERT INTO agent_loads (assignee, open_tickets) "
        "SELECT lower(assignee), count(*) FROM tickets "
        f"WHERE status IN ({statuses}) AND assignee IS NOT NULL AND assignee <> '' "
        "GROUP BY lower(assignee)"
    )


def downgrade() -> None:
    op.drop_table("agent_loads")
