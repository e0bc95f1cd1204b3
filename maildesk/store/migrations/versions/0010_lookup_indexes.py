"""look-ups that stay flat with size: expression indexes on lower(email), assignees lower-case

`customer_by_email` and `agent_by_email` compare `lower(email)`: a plain index on the
column cannot serve the expression, so each was a full scan. These indexes are on exactly
that expression (SQLite 3.9+ and PostgreSQL use them when the query says `lower(email)`).
`least_loaded` counted open tickets by `lower(assignee)` (14-20 ms per message at 100,000
tickets): assignees are now stored lower-case (`services.tickets.change_assignee`), the
stored ones are lowered here, and the count reads index ranges of `(assignee, status)`
alone (a covering index; it replaces the one-column `ix_tickets_assignee`, which SQLite
preferred for `assignee IN (...)` and then read every ticket row of those agents, closed
ones too: 186 ms against 2.3 ms for 200,000 tickets). An expression index on `(status,
lower(assignee))` was measured and not kept: SQLite does not read it as a covering index.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_customers_email_lower", "customers", [sa.text("lower(email)")])
    op.create_index("ix_agents_email_lower", "agents", [sa.text("lower(email)")])
    op.execute("UPDATE tickets SET assignee = lower(assignee) WHERE assignee <> lower(assignee)")
    op.create_index("ix_tickets_assignee_status", "tickets", ["assignee", "status"])
    op.drop_index("ix_tickets_assignee", table_name="tickets")


def downgrade() -> None:
    op.create_index("ix_tickets_assignee", "tickets", ["assignee"])
    op.drop_index("ix_tickets_assignee_status", table_name="tickets")
    # assignees stay lower-case: nothing older read them differently
    op.drop_index("ix_agents_email_lower", table_name="agents")
    op.drop_index("ix_customers_email_lower", table_name="customers")
