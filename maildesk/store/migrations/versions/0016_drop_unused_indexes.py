"""drop two indexes no query uses

- `ix_messages_message_id`: every look-up of a message by its Message-ID goes through the
  unique `mid_hash` (threading, deduplication, `explain`, the sender's bookkeeping); this
  index of up to 998 characters was written for every stored and every sent mail and read
  by nothing.
- `ix_events_type`: `ix_events_type_at` (0006) starts with the same column and serves every
  look-up by type; the events table takes six or seven rows per mail.

Each index entry is written with its row (SQLite: about 1 µs of the worker's CPU per event,
measured on 60,000 events in batches; PostgreSQL: its WAL as well). Issue 17.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_messages_message_id", table_name="messages")
    op.drop_index("ix_events_type", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_type", "events", ["type"], unique=False)
    op.create_index("ix_messages_message_id", "messages", ["message_id"], unique=False, mysql_length=255)
