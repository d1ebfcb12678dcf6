"""The CSV reader: one row per licence, or one row per licence line grouped by licence number.

Each row keeps the physical lines it came from, so a rejected record is stored exactly as the
export wrote it and every problem names its line number."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from bridge.core.errors import Problem
from bridge.core.mapping.records import Getter, RawRecord, UnreadableFile, check_names, decode

# More unclosed quotes than this, and the file is taken to use another quote character.
MAX_UNCLOSED_QUOTES = 100


class CsvReader:
    """Configured from a mapping's `reader` section (kind: csv)."""

    def __init__(
        self,
        *,
        encoding: str,
        delimiter: str,
        quote: str,
        header: bool | tuple[str, ...],
        group_by: str | None,
        head_refs: dict[str, str],
    ) -> None:
        self.encoding = encoding
        self.delimiter = delimiter
        self.quote = quote
        self.header = header
        self.group_by = group_by
        self.head_refs = head_refs  # column -> licence field path, for the rows-agree check
        self.lines_path = None  # a CSV row is a licence line (when the mapping maps lines)

    def check_ref(self, ref: str) -> None:
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError("a CSV field reference is a column name")
        if isinstance(self.header, tuple) and ref not in self.header:
            raise ValueError(f"column {ref!r} is not in reader.header")

    def read(self, data: bytes, file_name: str) -> _CsvBatch:
        text = decode(data, self.encoding, file_name)
        physical = io.StringIO(text, newline="").readlines()
        rows, unclosed = self._rows(physical, file_name)
        if self.header is True:
            if not rows:
                raise UnreadableFile(f"{file_name} has no header row")
            if 0 in unclosed:
                raise UnreadableFile(
                    f"{file_name} line {rows[0][1] + 1}: a quote in the header row is never closed"
                )
            columns = tuple(value.strip() for value in rows[0][0])
            check_names(columns, self.encoding, file_name, "column name")
            rows = rows[1:]
            unclosed = {index - 1 for index in unclosed}
        else:
            columns = self.header or ()
        return _CsvBatch(self, file_name, physical, columns, rows, unclosed)

    def _rows(
        self, physical: list[str], file_name: str
    ) -> tuple[list[tuple[list[str], int, int]], set[int]]:
        """The non-blank rows as (values, first line index, end line index), and the positions
        of the rows whose opening quote is never properly closed.

        The file is read strictly: a quoted field that runs to the end of the file, or whose
        closing quote is followed by anything but the delimiter, is a quote opened by mistake,
        and a lenient reader would take every line up to the next stray quote (or to the end)
        into that one field. Such a row is cut at the end of its first line and reading starts
        again on the next one. A malformed quote within one line is read leniently, as before."""
        rows: list[tuple[list[str], int, int]] = []
        unclosed: set[int] = set()
        begin = 0
        while begin < len(physical):
            lines = iter(physical)
            lines.__setstate__(begin)  # at once; islice would step through the lines before
            reader = csv.reader(
                lines,
                delimiter=self.delimiter,
                quotechar=self.quote,
                strict=True,
            )
            start = begin
            try:
                while True:
                    start = begin + reader.line_num
                    try:
                        values = next(reader)
                    except StopIteration:
                        break
                    if any(value.strip() for value in values):
                        rows.append((values, start, begin + reader.line_num))
                break
            except csv.Error as error:
                message = str(error)
                if "expected after" not in message and "unexpected end of data" not in message:
                    where = begin + reader.line_num
                    raise UnreadableFile(f"{file_name} line {where}: {message}") from None
                spans = begin + reader.line_num - start
                (values,) = csv.reader(
                    [physical[start]], delimiter=self.delimiter, quotechar=self.quote
                )
                if any(value.strip() for value in values):
                    if spans > 1 or "unexpected end of data" in message:
                        if len(unclosed) >= MAX_UNCLOSED_QUOTES:
                            raise UnreadableFile(
                                f"{file_name}: more than {MAX_UNCLOSED_QUOTES} quotes are never"
                                f" closed (the last on line {start + 1}); is {self.quote!r} the"
                                " quote character of this file?"
                            ) from None
                        unclosed.add(len(rows))
                    rows.append((values, start, start + 1))
                begin = start + 1
        return rows, unclosed


class _CsvBatch:
    def __init__(
        self,
        reader: CsvReader,
        file_name: str,
        physical: list[str],
        columns: Sequence[str],
        rows: list[tuple[list[str], int, int]],
        unclosed: set[int],
    ) -> None:
        self.reader = reader
        self.unclosed = unclosed  # rows whose last field opens a quote that is never closed
        self.file_name = file_name
        self.physical = physical
        self.columns = columns
        self.index: dict[str, int] = {}
        for position, name in enumerate(columns):
            self.index.setdefault(name, position)
        self.rows = rows
        if reader.group_by is not None and reader.group_by not in self.index:
            raise UnreadableFile(self.missing_column(reader.group_by, "reader.group_by"))

    def missing_column(self, column: str, purpose: str) -> str:
        return (
            f"{self.file_name} has no column {column!r} (needed for {purpose});"
            f" its columns are: {'; '.join(self.columns)}"
        )

    def getter(self, ref: str, many: bool) -> Getter | None:
        position = self.index.get(ref)
        if position is None:
            return None

        def get(row: list[str], position: int = position) -> Any:
            return row[position] if position < len(row) else None

        return get

    def _where(self, row: int) -> str:
        return f"{self.file_name} line {self.rows[row][1] + 1}"

    def _text(self, members: Sequence[int]) -> str:
        return "".join("".join(self.physical[self.rows[m][1] : self.rows[m][2]]) for m in members)

    def _record(self, members: list[int]) -> RawRecord:
        rows = self.rows
        first = rows[members[0]][1] + 1
        if len(members) == 1:
            source = f"{self.file_name} line {first}"
        else:
            numbers = [rows[m][1] + 1 for m in members]
            contiguous = all(rows[b][1] == rows[a][2] for a, b in itertools.pairwise(members))
            shown = f"{first}-{numbers[-1]}" if contiguous else ", ".join(map(str, numbers))
            source = f"{self.file_name} lines {shown}"
        head = rows[members[0]][0]
        record = RawRecord(
            source=source,
            head=head,
            lines=[rows[m][0] for m in members],
            head_source=lambda: self._where(members[0]),
            line_source=lambda j: self._where(members[j]),
            text=lambda: self._text(members),
        )
        width = len(self.columns)
        for m in members:
            values = rows[m][0]
            if m in self.unclosed:
                field = len(values)
                column = self.columns[field - 1] if 0 < field <= width else None
                named = f" ({column!r})" if column else ""
                record.problems.append(
                    Problem(
                        f"field {field}{named} opens a quote that is never closed: the row is"
                        " cut at the end of its line, and the lines after it are read as rows",
                        "",
                        self._where(m),
                        code="unclosed-quote",
                    )
                )
            if width and len(values) > width and any(v.strip() for v in values[width:]):
                record.problems.append(
                    Problem(
                        f"the row has {len(values)} fields but the header names {width} columns",
                        "",
                        self._where(m),
                        code="ragged-row",
                    )
                )
        if len(members) > 1:
            self._check_rows_agree(record, members)
        return record

    def _check_rows_agree(self, record: RawRecord, members: list[int]) -> None:
        """Licence fields repeat on every row of a licence; rows that disagree are an error in
        the export, and picking one of them would be a guess."""
        head = self.rows[members[0]][0]
        for column, path in self.reader.head_refs.items():
            position = self.index.get(column)
            if position is None:
                continue
            expected = head[position].strip() if position < len(head) else ""
            for m in members[1:]:
                values = self.rows[m][0]
                found = values[position].strip() if position < len(values) else ""
                if found != expected:
                    record.problems.append(
                        Problem(
                            f"the rows of one licence disagree on column {column!r}:"
                            f" {self._where(members[0])} says {expected!r}",
                            path,
                            self._where(m),
                            found,
                            "inconsistent",
                        )
                    )

    def records(self) -> Iterator[RawRecord]:
        group_by = self.reader.group_by
        if group_by is None:
            for row in range(len(self.rows)):
                yield self._record([row])
            return
        key_at = self.index[group_by]
        groups: dict[Any, list[int]] = {}
        for row, (values, _, _) in enumerate(self.rows):
            key: Any = values[key_at].strip() if key_at < len(values) else ""
            groups.setdefault(key or object(), []).append(row)  # a blank key groups with nothing
        for members in groups.values():
            yield self._record(members)
