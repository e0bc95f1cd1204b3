"""tickets.ask: guided information collection (a rule's `ask:`)

One JSON column on the ticket holds what the desk asked the customer for and where that
stands: `{rule, fields: {name: capture pattern}, template, again, handoff, missing: [...],
asked: 1|2, state: waiting|answered|handed-off, asked_at, message}`. The captured values go
to `tickets.fields` like any rule field, so notifications and `ticket show` list them.
NULL: nothing was asked. A plain ADD COLUMN (no SQLite batch copy, which would drop the
search triggers of 0002).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("ask", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("tickets", "ask")
