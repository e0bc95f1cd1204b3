"""customers.domain: the new-ticket limit counts a domain's new customers, not the hour's tickets

`new_ticket_counts` counted the tickets that first-contact senders of a domain opened in the
last hour with `customers.email LIKE '%@domain'`: no index serves a leading wildcard, so the
plan walked every ticket created in the last hour (`ix_tickets_created_at`) and checked its
customer, a cost that grew with the size of a burst. `domain` (lower-case, the part of the
email after its last "@", "" without one) is stored with each customer and indexed with
`created_at`: the count reads the domain's customers of the last hour, then their tickets
(`ix_tickets_customer_id`).

Existing rows are filled in batches from Python (the same `rpartition` the desk uses; SQLite
has no portable "after the last @" expression).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BATCH = 1000


def _domain(email: str) -> str:
    """As `maildesk.store.models.email_domain` (a migration keeps its own copy)."""
    return email.rpartition("@")[2].lower() if "@" in email else ""


def upgrade() -> None:
    # A plain ADD COLUMN on both backends: a batch copy of `customers` on SQLite would drop
    # a table that tickets reference (foreign keys are on).
    op.add_column("customers", sa.Column("domain", sa.String(320), nullable=False, server_default=""))
    conn = op.get_bind()
    customers = sa.table("customers", sa.column("id", sa.Integer), sa.column("email", sa.String))
    update = sa.text("UPDATE customers SET domain = :domain WHERE id = :cid")
    last = 0
    while True:
        rows = conn.execute(
            sa.select(customers.c.id, customers.c.email)
            .where(customers.c.id > last)
            .order_by(customers.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        changes = [{"cid": cid, "domain": _domain(email or "")} for cid, email in rows]
        changes = [c for c in changes if c["domain"]]
        if changes:
            conn.execute(update, changes)
        last = rows[-1][0]
    op.create_index("ix_customers_domain_created_at", "customers", ["domain", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_customers_domain_created_at", table_name="customers")
    op.execute("ALTER TABLE customers DROP COLUMN domain")  # SQLite 3.35+ and PostgreSQL
