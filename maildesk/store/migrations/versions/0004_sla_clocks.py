"""sla_clocks in the shape of the SLA engine's ClockState; tickets.sla_choice

The first sla_clocks table only knew due/paused/warned/breached/stopped flags and nothing
ever wrote it outside tests. It is rebuilt with the full clock state (started, due, warning,
pause and resume times, counted and paused business seconds, warned/breached/stopped times,
stop reason, policy) and `next_at`, the moment the sweep must next look at a clock, with a
partial index on the clocks that have one. Old rows are carried over (their flags become
times at their due time). `tickets.sla_choice` keeps a rule's `sla: NAME`.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("tickets", sa.Column("sla_choice", sa.String(length=64), nullable=True))
    old = sa.table(
        "sla_clocks",
        sa.column("ticket_number", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("due_at", _TZ),
        sa.column("paused_at", _TZ),
        sa.column("warned", sa.Boolean()),
        sa.column("breached", sa.Boolean()),
        sa.column("stopped", sa.Boolean()),
    )
    bind = op.get_bind()
    kept = bind.execute(sa.select(old)).mappings().all()
    op.drop_table("sla_clocks")
    clocks = op.create_table(
        "sla_clocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("started_at", _TZ, nullable=False),
        sa.Column("due_at", _TZ, nullable=True),
        sa.Column("warn_at", _TZ, nullable=True),
        sa.Column("paused_at", _TZ, nullable=True),
        sa.Column("resumed_at", _TZ, nullable=True),
        sa.Column("paused_total", sa.Float(), nullable=False),
        sa.Column("counted", sa.Float(), nullable=False),
        sa.Column("warned_at", _TZ, nullable=True),
        sa.Column("breached_at", _TZ, nullable=True),
        sa.Column("stopped_at", _TZ, nullable=True),
        sa.Column("stop_reason", sa.String(length=20), nullable=False),
        sa.Column("next_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(["ticket_number"], ["tickets.number"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_number", "kind", name="uq_sla_clock"),
    )
    op.create_index("ix_sla_clocks_due_at", "sla_clocks", ["due_at"], unique=False)
    op.create_index("ix_sla_clocks_ticket_number", "sla_clocks", ["ticket_number"], unique=False)
    op.create_index(
        "ix_sla_clocks_next_at",
        "sla_clocks",
        ["next_at"],
        unique=False,
        postgresql_where=sa.text("next_at IS NOT NULL"),
        sqlite_where=sa.text("next_at IS NOT NULL"),
    )
    rows = []
    for row in kept:
        due = row["due_at"]
        at = due or row["paused_at"]
        if at is None:
            continue  # a clock without any time cannot be carried over
        open_ = not row["stopped"]
        rows.append(
            {
                "ticket_number": row["ticket_number"],
                "kind": row["kind"] if row["kind"] != "update" else "next_response",
                "policy": "",
                "started_at": at,
                "due_at": due,
                "paused_at": row["paused_at"],
                "resumed_at": at if open_ and row["paused_at"] is None else None,
                "paused_total": 0.0,
                "counted": 0.0,
                "warned_at": due if row["warned"] else None,
                "breached_at": due if row["breached"] else None,
                "stopped_at": None if open_ else at,
                "stop_reason": "" if open_ else "resolved",
                "next_at": due if open_ and row["paused_at"] is None and not row["breached"] else None,
            }
        )
    if rows:
        op.bulk_insert(clocks, rows)


def downgrade() -> None:
    op.drop_table("sla_clocks")
    op.create_table(
        "sla_clocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("due_at", _TZ, nullable=True),
        sa.Column("paused_at", _TZ, nullable=True),
        sa.Column("warned", sa.Boolean(), nullable=False),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.Column("stopped", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_number"], ["tickets.number"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_number", "kind", name="uq_sla_clock"),
    )
    op.create_index("ix_sla_clocks_due_at", "sla_clocks", ["due_at"], unique=False)
    op.create_index("ix_sla_clocks_ticket_number", "sla_clocks", ["ticket_number"], unique=False)
    op.drop_column("tickets", "sla_choice")  # ALTER TABLE … DROP COLUMN (SQLite >= 3.35): no table rebuild
