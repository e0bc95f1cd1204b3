"""Alembic environment: runs migrations on the connection maildesk hands it."""

from alembic import context

from maildesk.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("maildesk migrations run through maildesk.store.db.Store.migrate()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
