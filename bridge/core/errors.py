"""One error family for the bridge, and the shape of a reported problem.

Every rejected record, message or certificate is described by one or more `Problem`s: what is
wrong (reason), where in the record (path), and which record it was (source). A rejection
carries all of its problems at once, never only the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one input: `reason` (what and why), `path` (where), `source` (which)."""

    reason: str
    path: str = ""
    source: str = ""
    value: str | None = None
    code: str = "invalid"

    def __str__(self) -> str:
        where = " ".join(part for part in (self.source, self.path) if part)
        shown = f" (got {self.value!r})" if self.value is not None else ""
        return f"{where}: {self.reason}{shown}" if where else f"{self.reason}{shown}"

    def as_dict(self) -> dict[str, str | None]:
        return {
            "code": self.code,
            "reason": self.reason,
            "path": self.path,
            "source": self.source,
            "value": self.value,
        }


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


@dataclass
class Rejected(BridgeError, ValueError):
    """An input was refused; `problems` lists every reason found, not only the first."""

    problems: Sequence[Problem] = field(default_factory=tuple)
    summary: str = "input rejected"

    def __post_init__(self) -> None:
        super().__init__(self.summary)
        self.problems = tuple(self.problems)

    def __str__(self) -> str:
        lines = [self.summary, *(f"  - {problem}" for problem in self.problems)]
        return "\n".join(lines)


class ConfigError(BridgeError, ValueError):
    """A setting is missing or malformed."""


class MappingError(BridgeError, ValueError):
    """A mapping file (mappings/*.yaml) is itself wrong, as opposed to a record it reads."""


class XmlRefused(BridgeError, ValueError):
    """An XML document was refused before or while parsing (too large, DTD, entity, malformed)."""


class DeliveryError(BridgeError):
    """A certificate could not be delivered; `transient` says whether retrying may help."""

    def __init__(self, reason: str, *, transient: bool, code: str = "delivery-failed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.code = code


def reasons(problems: Iterable[Problem]) -> str:
    """All problems as one human-readable paragraph, one per line."""
    return "\n".join(str(problem) for problem in problems)
