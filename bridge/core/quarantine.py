"""The quarantine's plain data: a quarantined message as the store keeps it (the message byte for
byte, the reasons it was quarantined with, its last replay) and what a replay did with one.
No rules; the store may import this module. The operator's view of it (what of a broken envelope
can be read, safe previews, tables) is bridge.core.quarantine_view."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bridge.core.errors import Problem

QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    """One row of the quarantine: the message byte for byte, the reasons it was quarantined
    with, and its last replay (if any)."""

    id: int
    received_at: datetime
    topic: str | None
    message_id: str | None  # the id read from the envelope when it was quarantined, if any
    payload: bytes
    problems: tuple[Problem, ...]
    replayed_at: datetime | None = None
    replays: int = 0
    replay_outcome: str | None = None
    replay_result_id: str | None = None
    replay_problems: tuple[Problem, ...] = ()
    replayed_by: str | None = None  # who asked for the last replay

    @property
    def settled(self) -> bool:
        """Replayed into the ledger (any outcome but quarantined): never replayed again."""
        return self.replay_outcome not in (None, QUARANTINED)

    @property
    def state(self) -> str:
        if self.replay_outcome is None:
            return QUARANTINED
        if not self.settled:
            return f"{QUARANTINED} (replayed {self.replays}x)"
        return f"replayed: {self.replay_outcome}"

    @property
    def reasons(self) -> tuple[Problem, ...]:
        """Why it is quarantined now: the last replay's reasons when it had some, else those
        it was quarantined with."""
        if self.replay_outcome == QUARANTINED and self.replay_problems:
            return self.replay_problems
        return self.problems


@dataclass(frozen=True, slots=True)
class Replayed:
    """What one replay did with one quarantined message."""

    quarantine_id: int
    outcome: str  # an outcome of processed_message, or `quarantined` (still unreadable)
    message_id: str | None = None
    mrn: str | None = None
    event: str | None = None
    detail: str = ""
    result_id: str | None = None
    problems: tuple[Problem, ...] = ()
    already: bool = False  # settled by an earlier replay: nothing done now

    @property
    def still_quarantined(self) -> bool:
        return self.outcome == QUARANTINED


def problems_from_json(text: str | None) -> tuple[Problem, ...]:
    """Problems as the store keeps them (a JSON list of Problem.as_dict())."""
    if not text:
        return ()
    try:
        items = json.loads(text)
    except ValueError:
        return (Problem(str(text)),)
    known = ("reason", "path", "source", "value", "code")
    return tuple(
        Problem(**{key: item[key] for key in known if item.get(key) is not None})
        for item in items
        if isinstance(item, dict) and isinstance(item.get("reason"), str)
    )


def problems_to_json(problems: Sequence[Problem]) -> str:
    return json.dumps([p.as_dict() for p in problems])
