"""The ledger's Alembic migrations: `env.py` and `versions/`, run by
bridge.adapters.store.migrate (configured in code, no alembic.ini), so that they work from an
installed package. `baseline.py` is the schema of the last release before them, frozen."""
