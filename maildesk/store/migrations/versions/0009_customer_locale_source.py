"""customers.locale_source: who set the customer's locale

"" nobody (the desk default), "operator" (`maildesk customer set --locale`: mail never
changes it), "header" (Content-Language / Accept-Language of their mail), "text" (detected
from the text of their mail; the first detection sticks). Existing locales were set by
hand (nothing set them from mail before), so they count as the operator's.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both backends: a batch copy of `customers` on SQLite would drop
    # a table that tickets reference (foreign keys are on).
    op.add_column("customers", sa.Column("locale_source", sa.String(16), nullable=False, server_default=""))
    op.execute("UPDATE customers SET locale_source = 'operator' WHERE locale <> ''")


def downgrade() -> None:
    op.execute("ALTER TABLE customers DROP COLUMN locale_source")  # SQLite 3.35+ and PostgreSQL
