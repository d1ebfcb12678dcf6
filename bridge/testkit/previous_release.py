"""A ledger as the last release before migrations left it (commit 1fad7cf): its tables
(bridge/adapters/store/migrations/baseline.py) and the triggers that keep line_total, no
alembic_version table, for tests of the upgrade by the migrations."""

from __future__ import annotations

from sqlalchemy import Engine

from bridge.adapters.store.db import make_engine
from bridge.adapters.store.line_totals import install_line_totals
from bridge.adapters.store.migrations.baseline import metadata


def previous_release_ledger(url: str) -> Engine:
    """A new ledger at `url` made as that release made it; an engine on it (nothing migrated)."""
    engine = make_engine(url, create=False)
    metadata.create_all(engine)
    with engine.begin() as conn:
        install_line_totals(conn)
    return engine
