"""What a reader hands the engine: the records of one file, each with where it came from."""

from __future__ import annotations

import codecs
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
    # The reader could not read the record at all (a JSON Lines line that is not JSON): its
    # problems are the reader's, and no field is looked for in it.
    unreadable: bool = False


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


class EncodingProblem(UnreadableFile):
    """A file in another encoding than its mapping reads (a byte order mark of another
    encoding, UTF-16 without one, bytes the encoding does not have, UTF-8 read as a one-byte
    encoding): reported as such, never as a missing column or a malformed document."""


_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian)", "utf-32"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian)", "utf-32"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian)", "utf-16"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian)", "utf-16"),
    (codecs.BOM_UTF8, "UTF-8", "utf-8"),
)
_SAMPLE = 4096  # enough of the file to tell UTF-16 by its NUL bytes


def _family(encoding: str) -> str:
    name = codecs.lookup(encoding).name  # "utf-8-sig" -> "utf-8-sig", "latin1" -> "iso8859-1"
    return name.replace("-sig", "").split("-le")[0].split("-be")[0]


def _wrong_encoding(file_name: str, encoding: str, why: str) -> EncodingProblem:
    return EncodingProblem(f"encoding problem: {file_name} is not {encoding}: {why}")


def decode(data: bytes, encoding: str, file_name: str) -> str:
    """The file's text; a file in another encoding raises EncodingProblem saying which.

    A byte order mark names its encoding: a mark of another one than `encoding` is refused (a
    UTF-8 mark is dropped when reading UTF-8). UTF-16 without a mark shows as NUL bytes between
    ASCII characters. A byte that is not `encoding` makes the whole file unreadable, since every
    later character position would be in doubt."""
    family = _family(encoding)
    for mark, name, mark_family in _BOMS:
        if data.startswith(mark):
            if mark_family != family:
                raise _wrong_encoding(
                    file_name, encoding, f"it starts with a {name} byte order mark"
                )
            break
    sample = data[:_SAMPLE]
    if family not in ("utf-16", "utf-32") and sample.count(0) * 4 >= len(sample) > 0:
        raise _wrong_encoding(
            file_name,
            encoding,
            f"{sample.count(0)} of its first {len(sample)} bytes are NUL, as in UTF-16 or UTF-32",
        )
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        bad = data[error.start : error.start + 1]
        line = data.count(b"\n", 0, error.start) + 1
        hint = ""
        if family == "utf-8":
            hint = "; it may be Latin-1 or Windows-1252: set reader.encoding"
        raise _wrong_encoding(
            file_name, encoding, f"byte {error.start} ({bad!r}, line {line}) {error.reason}{hint}"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def mojibake(text: str, encoding: str) -> str | None:
    """What `text` reads as when it is UTF-8 that was decoded as `encoding` ("GÃ¼ltig" is
    "Gültig"), or None when it is not that. UTF-8 read as a one-byte encoding decodes without an
    error, so this is how such a file shows: its non-ASCII letters in pairs."""
    if text.isascii() or _family(encoding) == "utf-8":
        return None
    try:
        meant = text.encode(encoding).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    return meant if meant != text else None


def check_names(names: Sequence[str], encoding: str, file_name: str, what: str) -> None:
    """Raise EncodingProblem when one of `names` (a CSV header, say) is UTF-8 read as
    `encoding`: reported as an encoding problem, not as columns that are missing."""
    for name in names:
        meant = mojibake(name, encoding)
        if meant is not None:
            raise _wrong_encoding(
                file_name,
                encoding,
                f"the {what} {name!r} reads as UTF-8 {meant!r}: the file is UTF-8; set"
                " reader.encoding: utf-8",
            )
