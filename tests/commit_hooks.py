"""Holding a service's own transaction open from a test: the service opens and commits its
transaction itself (bridge.adapters.store.db.run_transaction), so a test that shows what waits
for it runs its look just before that commit, while the transaction still holds its locks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, event


@contextmanager
def before_first_commit(engine: Engine, action: Callable[[], None]) -> Iterator[None]:
    """Within the block, run `action()` once, in the first transaction committed on `engine`,
    after its work and before its commit (later commits, e.g. those `action` waits for, are
    left alone)."""
    fired: list[bool] = []

    def hook(_conn) -> None:
        if not fired:
            fired.append(True)
            action()

    event.listen(engine, "commit", hook)
    try:
        yield
    finally:
        event.remove(engine, "commit", hook)
    assert fired, "nothing was committed on the engine"
