"""Alembic environment: run by cds_hooks.store.migrate on a connection it opened (no alembic.ini)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
