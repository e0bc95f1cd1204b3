"""outbox: `(state, next_try, id)` for the sender's claim of the next due row

`claim_due` asks for the queued row with the earliest `next_try`. With only `state` and
`next_try` indexed apart, SQLite read every queued row and sorted them in a temporary
B-tree for each claim: during a burst of 2,000 acknowledgements the sender spent most of its
time sorting the queue (a cost that grows with the queue, paid once per mail). With the
composite index the first entry of the `queued` range is the answer.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_state_next_try", "outbox", ["state", "next_try", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_state_next_try", table_name="outbox")
