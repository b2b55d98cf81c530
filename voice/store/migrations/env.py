"""Alembic environment. Migrations run on a connection handed in by `voice.store.database`
(`config.attributes["connection"]`), so they work inside the running event loop for both
SQLite and PostgreSQL."""

from alembic import context

from voice.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
