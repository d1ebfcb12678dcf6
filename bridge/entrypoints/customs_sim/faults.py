"""The simulator's fault injection: which requests get which fault, planned at start (flags or
ELBRIDGE_SIM_FAULTS as JSON) or through `POST /admin/faults`."""

from __future__ import annotations

import json
import os
import random
import threading
from dataclasses import asdict, dataclass
from typing import Any

FAULT_KINDS = ("http503", "transient_fault", "timeout", "drop")  # the default mix
# Known too, used only when asked for: a reverse proxy's HTML 502 page, and a connection that
# drops after the certificate was stored (the bridge never hears the answer).
EXTRA_FAULT_KINDS = ("http502", "drop_after_store")
KNOWN_FAULT_KINDS = FAULT_KINDS + EXTRA_FAULT_KINDS
FAULTS_ENV = "ELBRIDGE_SIM_FAULTS"


@dataclass(frozen=True)
class FaultPlan:
    """Which requests get which fault: the `next` N requests one each, kinds in turn; after
    that each request with probability `rate`, kind at random. `slow_seconds` is how long a
    "timeout" answer is held back; `seed` makes the random draws repeatable."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    next: int = 0
    slow_seconds: float = 5.0
    seed: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        """A plan from JSON-like data; ValueError naming every bad field."""
        unknown = set(data) - {"rate", "kinds", "next", "slow_seconds", "seed"}
        problems = [f"unknown field {name!r}" for name in sorted(unknown)]
        rate = data.get("rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            problems.append("rate must be a number from 0 to 1")
        kinds = data.get("kinds", FAULT_KINDS)
        if isinstance(kinds, str):
            kinds = [kind.strip() for kind in kinds.split(",") if kind.strip()]
        if not isinstance(kinds, list | tuple) or not kinds:
            problems.append(f"kinds must be a non-empty list of {', '.join(KNOWN_FAULT_KINDS)}")
            kinds = FAULT_KINDS
        bad = [kind for kind in kinds if kind not in KNOWN_FAULT_KINDS]
        if bad:
            problems.append(f"unknown fault kinds {bad}; known: {', '.join(KNOWN_FAULT_KINDS)}")
        upcoming = data.get("next", 0)
        if isinstance(upcoming, bool) or not isinstance(upcoming, int) or upcoming < 0:
            problems.append("next must be a whole number from 0")
        slow = data.get("slow_seconds", 5.0)
        if isinstance(slow, bool) or not isinstance(slow, int | float) or slow < 0:
            problems.append("slow_seconds must be a number from 0")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            problems.append("seed must be a whole number")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(float(rate), tuple(kinds), upcoming, float(slow), seed)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        return data


def fault_plan_from_env() -> FaultPlan:
    """The plan in ELBRIDGE_SIM_FAULTS (JSON), or no faults."""
    raw = os.environ.get(FAULTS_ENV, "").strip()
    return FaultPlan.from_dict(json.loads(raw)) if raw else FaultPlan()


class LiveFaults:
    """The live plan: thread-safe draws, and what was injected."""

    def __init__(self, plan: FaultPlan) -> None:
        self._lock = threading.Lock()
        self.set(plan)

    def set(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan
            self._remaining = plan.next
            self._turn = 0
            self._random = random.Random(plan.seed)

    def draw(self) -> str | None:
        with self._lock:
            plan = self.plan
            if self._remaining > 0:
                self._remaining -= 1
                kind = plan.kinds[self._turn % len(plan.kinds)]
                self._turn += 1
                return kind
            if plan.rate and self._random.random() < plan.rate:
                return self._random.choice(plan.kinds)
            return None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {**self.plan.as_dict(), "remaining": self._remaining}
