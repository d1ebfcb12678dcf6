"""What a reader hands the engine: the records of one file, each with where it came from."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.core.errors import BridgeError, Problem

Getter = Callable[[Any], Any]


class UnreadableFile(BridgeError, ValueError):
    """A whole file cannot be read (wrong encoding, malformed JSON or XML, a required column
    missing, no mapping for it): nothing in it can be ingested, so it is set aside with this
    reason."""


@dataclass(slots=True)
class RawRecord:
    """One licence as a reader found it, before any field is converted.

    `head` is what licence fields are read from and `lines` what line fields are read from
    (for a CSV grouped by licence number: the first row, and every row). Locations are
    computed only when a problem needs them."""

    source: str  # e.g. "file.csv lines 4-6", "file.json $.licences[3]"
    head: Any
    lines: Sequence[Any]
    head_source: Callable[[], str]
    line_source: Callable[[int], str]
    text: Callable[[], str]  # the record as read, for the rejects store
    problems: list[Problem] = field(default_factory=list)  # found by the reader itself


class Batch(Protocol):
    """The records of one file, and how to read a field reference in them."""

    def records(self) -> Iterator[RawRecord]: ...

    def getter(self, ref: str, many: bool) -> Getter | None:
        """A function reading `ref` from a node, or None when this file lacks it entirely."""
        ...


class RecordReader(Protocol):
    """A reader kind (csv, json, xml), configured by a mapping's `reader` section."""

    def check_ref(self, ref: str) -> None:
        """Raise ValueError when `ref` is not a field reference this reader understands."""
        ...

    def read(self, data: bytes, file_name: str) -> Batch:
        """Parse the file; raise UnreadableFile when it cannot be read at all."""
        ...


def decode(data: bytes, encoding: str, file_name: str) -> str:
    """The file's text; a byte that is not `encoding` makes the whole file unreadable, since
    every later character position would be in doubt."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        bad = data[error.start : error.start + 1]
        raise UnreadableFile(
            f"{file_name} is not {encoding}: byte {error.start} ({bad!r}) {error.reason}"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text
