"""look-ups that stay flat with size: expression indexes on lower(e-mail) and lower(assignee)

`customer_by_email` and `agent_by_email` compare `lower(email)`, and `least_loaded`
counts open tickets by `lower(assignee)`: a plain index on the column cannot serve an
expression, so each was a full scan (14-20 ms per message at 100,000 tickets). These
indexes are on exactly those expressions (SQLite 3.9+ and PostgreSQL use them when the
query says `lower(column)`); the open-ticket count per agent becomes index ranges of
`(status, lower(assignee))` for the open statuses and the group's members.

Revision ID: 0015
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_customers_email_lower", "customers", [sa.text("lower(email)")])
    op.create_index("ix_agents_email_lower", "agents", [sa.text("lower(email)")])
    op.create_index("ix_tickets_status_assignee_lower", "tickets", ["status", sa.text("lower(assignee)")])


def downgrade() -> None:
    op.drop_index("ix_tickets_status_assignee_lower", table_name="tickets")
    op.drop_index("ix_agents_email_lower", table_name="agents")
    op.drop_index("ix_customers_email_lower", table_name="customers")
