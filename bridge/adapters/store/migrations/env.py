"""Alembic's environment for the ledger: run by bridge.adapters.store.migrate on a connection it
opened, inside a transaction it holds (with the lock that keeps two processes from migrating at
once), so every revision to head commits or none does."""

from __future__ import annotations

from alembic import context

from bridge.adapters.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the ledger's migrations run through `elbridge db upgrade`"
        " (bridge.adapters.store.migrate), which hands them a connection"
    )
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
