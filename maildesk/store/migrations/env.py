"""Alembic environment: runs migrations on the connection maildesk hands it."""

from alembic import context

from maildesk.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("maildesk migrations run through maildesk.store.db.Store.migrate()")


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    """Search objects made by migration 0002 live outside the models: leave them alone."""
    if name and (name == "search_vector" or name == "ix_messages_search" or str(name).startswith("messages_fts")):
        return False
    return True


context.configure(
    connection=connection, target_metadata=Base.metadata, render_as_batch=True, include_object=include_object
)
with context.begin_transaction():
    context.run_migrations()
