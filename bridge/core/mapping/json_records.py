"""The JSON reader: licence objects with their lines nested in each, in one of three layouts:
a list somewhere in the document (`list`), one licence per document (`one`), or JSON Lines, one
licence document per line (`json-lines`).

Numbers are read as exact Decimals (never float), and a rejected record is stored as JSON with
its numbers written as they came."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from bridge.core.errors import Problem
from bridge.core.mapping.records import Getter, RawRecord, UnreadableFile, decode

_STEP = re.compile(r"\.([^.\[\]]+)|\[([0-9]+)\]")
LAYOUTS = ("list", "one", "json-lines")


def parse_path(path: str, *, rooted: bool) -> tuple[str | int, ...]:
    """`$.licences` (rooted) or `holder.eori`, `names[0]` (relative) as keys and indices."""
    if not isinstance(path, str):
        raise ValueError("a JSON path is a string such as $.licences or holder.eori")
    if rooted:
        if not path.startswith("$"):
            raise ValueError(f"{path!r} must start at the document root: $ or $.key")
        rest = path[1:]
    else:
        if not path or path.startswith(("$", ".", "[")):
            raise ValueError(f"{path!r} must be relative to the record, e.g. holder.eori")
        rest = "." + path
    steps: list[str | int] = []
    position = 0
    while position < len(rest):
        match = _STEP.match(rest, position)
        if not match:
            raise ValueError(f"{path!r} is not a path of .keys and [indices]")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    return tuple(steps)


def _follow(node: Any, steps: tuple[str | int, ...]) -> Any:
    for step in steps:
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and step < len(node) else None
        else:
            node = node.get(step) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def _compile_getter(steps: tuple[str | int, ...]) -> Getter:
    # Records and lines are always objects; one or two keys (`reference`, `holder.eori`) are
    # by far the commonest references, so they get their own short functions.
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]

        def get_key(node: dict) -> Any:
            return node.get(key)

        return get_key
    if len(steps) == 2 and all(isinstance(step, str) for step in steps):
        outer, inner = steps

        def get_nested(node: dict) -> Any:
            found = node.get(outer)
            return found.get(inner) if isinstance(found, dict) else None

        return get_nested
    return lambda node: _follow(node, steps)


class _Duplicated(dict):
    """A JSON object that names a member more than once: the first value is kept, and
    `duplicates` holds (member, every value after the first) for the record's problem."""

    __slots__ = ("duplicates",)


def _object_reader(duplicated: list[_Duplicated]):
    """An object_pairs_hook that builds plain dicts, and notes each object with a member twice
    in `duplicated` (json.loads alone would silently keep the last value)."""

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) == len(pairs):
            return result
        found = _Duplicated()
        found.duplicates = []
        for key, value in pairs:
            if key in found:
                found.duplicates.append((key, value))
            else:
                found[key] = value
        duplicated.append(found)
        return found

    return build


def _duplicate_paths(item: Any, wanted: set[int]) -> Iterator[tuple[str, _Duplicated]]:
    """(path relative to `item`, object) for every object of `wanted` (by id) inside `item`.
    Iterative, since the parser admits nesting deeper than Python's recursion limit."""
    stack: list[tuple[str, Any]] = [("", item)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            if id(node) in wanted:
                yield path, node
            stack.extend(
                (f"{path}.{key}" if path else str(key), child) for key, child in node.items()
            )
        elif isinstance(node, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(node))


class _Literal(str):
    """NaN, Infinity or -Infinity as written in the JSON text (not valid JSON, but seen), or a
    number Decimal cannot hold: kept as text for the field that holds it to report."""

    __slots__ = ()


def _json_number(text: str) -> Decimal | _Literal:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent past Decimal's range, such as 1e40044444444444444444
        return _Literal(text)


def _shown_json(value: Any) -> str:
    text = dump_json(value)
    return text if len(text) <= 80 else text[:77] + "..."


def dump_json(value: Any) -> str:
    """JSON text with Decimals written as the numbers they were read from."""
    try:
        return _dump(value)
    except RecursionError:  # absurdly deep nesting: keep the record, numbers quoted
        return json.dumps(value, default=str, ensure_ascii=False)


def _dump(value: Any) -> str:
    if isinstance(value, dict):
        pairs = list(value.items())
        if isinstance(value, _Duplicated):  # as read: every value of a member named twice
            pairs += value.duplicates
        inner = ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_dump(v)}" for k, v in pairs)
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(item) for item in value) + "]"
    if isinstance(value, Decimal | _Literal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


class JsonReader:
    """Configured from a mapping's `reader` section (kind: json)."""

    def __init__(
        self, *, encoding: str, records: str, lines: str | None, layout: str = "list"
    ) -> None:
        self.encoding = encoding
        self.layout = layout
        self.records_path = records
        self.records_steps = parse_path(records, rooted=True)
        self.lines_path = lines  # None: open licences, no goods lines
        self.lines_steps = None if lines is None else parse_path(lines, rooted=False)
        self._getters: dict[str, Getter] = {}

    def check_ref(self, ref: str) -> None:
        parse_path(ref, rooted=False)

    def getter(self, ref: str, many: bool) -> Getter:
        getter = self._getters.get(ref)
        if getter is None:
            getter = self._getters[ref] = _compile_getter(parse_path(ref, rooted=False))
        return getter

    def read(self, data: bytes, file_name: str) -> _JsonBatch:
        text = decode(data, self.encoding, file_name)
        duplicated: list[_Duplicated] = []
        if self.layout == "json-lines":
            return _JsonBatch(self, file_name, self._lines(text, duplicated, file_name), duplicated)
        document = self._parse(text, duplicated, file_name)
        found = self._records(document, file_name)
        if self.layout == "one":
            if not isinstance(found, dict):
                what = "absent" if found is None else f"a {type(found).__name__}"
                raise UnreadableFile(
                    f"{file_name}: {self.records_path} should be one licence (a JSON object;"
                    f" reader.layout: one) but is {what}"
                )
            entries = [_Entry(found, f"{file_name} {self.records_path}")]
        elif not isinstance(found, list):
            what = "absent" if found is None else f"a {type(found).__name__}"
            raise UnreadableFile(
                f"{file_name}: {self.records_path} should be the list of licences but is {what}"
            )
        else:
            base = f"{file_name} {self.records_path}"
            entries = [_Entry(item, f"{base}[{index}]") for index, item in enumerate(found)]
        return _JsonBatch(self, file_name, entries, duplicated)

    def _parse(self, text: str, duplicated: list[_Duplicated], what: str) -> Any:
        try:
            # NaN and Infinity stay text, so the field that holds one is reported, not the file.
            return json.loads(
                text,
                parse_float=_json_number,
                parse_constant=_Literal,
                object_pairs_hook=_object_reader(duplicated),
            )
        except json.JSONDecodeError as error:
            raise UnreadableFile(
                f"{what} is not well-formed JSON: {error.msg} at line {error.lineno}"
                f" column {error.colno}"
            ) from None
        except (ValueError, RecursionError) as error:  # e.g. a 5,000-digit integer, deep nesting
            raise UnreadableFile(f"{what} cannot be read as JSON: {error}") from None

    def _records(self, document: Any, file_name: str) -> Any:
        node, path = document, "$"
        for step in self.records_steps:  # the way to the licences must not be in doubt
            if isinstance(node, _Duplicated):
                key = node.duplicates[0][0]
                raise UnreadableFile(
                    f"{file_name}: member {key!r} appears more than once in {path}, so which"
                    " one holds the licences cannot be told"
                )
            node = _follow(node, (step,))
            path += f"[{step}]" if isinstance(step, int) else f".{step}"
        return node

    def _lines(self, text: str, duplicated: list[_Duplicated], file_name: str) -> list[_Entry]:
        """JSON Lines: each non-blank line one licence document. A line that cannot be read is
        that record's problem; its neighbours are read as usual."""
        entries = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{file_name} line {number}"
            try:
                found = self._records(self._parse(line, duplicated, where), where)
            except UnreadableFile as error:
                entries.append(_Entry({}, where, str(error), line))
                continue
            if not isinstance(found, dict):
                shape = "absent" if found is None else f"a {type(found).__name__}"
                reason = f"{self.records_path} should be one licence (a JSON object) but is {shape}"
                entries.append(_Entry({}, where, reason, line))
                continue
            entries.append(_Entry(found, where, None, line))
        return entries


class _Entry:
    """One licence object as found, where it is, and (JSON Lines) why its line cannot be read
    and the line as written."""

    __slots__ = ("item", "problem", "text", "where")

    def __init__(
        self, item: Any, where: str, problem: str | None = None, text: str | None = None
    ) -> None:
        self.item = item
        self.where = where
        self.problem = problem
        self.text = text


class _JsonBatch:
    def __init__(
        self,
        reader: JsonReader,
        file_name: str,
        entries: list[_Entry],
        duplicated: list[_Duplicated],
    ) -> None:
        self.reader = reader
        self.file_name = file_name
        self.entries = entries
        self.duplicated = {id(d) for d in duplicated}  # the objects that name a member twice

    def getter(self, ref: str, many: bool) -> Getter:
        return self.reader.getter(ref, many)

    def records(self) -> Iterator[RawRecord]:
        reader = self.reader
        lines_path = reader.lines_path
        lines_steps = reader.lines_steps
        for entry in self.entries:
            item, where = entry.item, entry.where
            # A JSON Lines record is found by its line; its lines by their path in it.
            at = f"{where} $" if reader.layout == "json-lines" else where
            problems: list[Problem] = []
            if entry.problem is not None:
                problems.append(Problem(entry.problem, "", where, code="shape"))
            if isinstance(item, dict):
                head = item
                lines = None if lines_steps is None else _follow(item, lines_steps)
                if lines is None:
                    lines = []
                elif not isinstance(lines, list):
                    problems.append(
                        Problem(
                            f"{lines_path} should be a list of lines", "lines", where, code="shape"
                        )
                    )
                    lines = []
            else:
                problems.append(
                    Problem(
                        f"a licence record is a JSON object, not {type(item).__name__}",
                        "",
                        where,
                        code="shape",
                    )
                )
                head, lines = {}, []
            if self.duplicated:
                for path, node in _duplicate_paths(item, self.duplicated):
                    for key, value in node.duplicates:
                        member = f"{path}.{key}" if path else key
                        problems.append(
                            Problem(
                                f"member {key!r} appears more than once in one object (first"
                                f" {_shown_json(node[key])}, then {_shown_json(value)}): which"
                                " one is meant cannot be told",
                                member,
                                where,
                                code="duplicate-member",
                            )
                        )
            nodes = []
            for j, line in enumerate(lines):
                if isinstance(line, dict):
                    nodes.append(line)
                else:
                    problems.append(
                        Problem(
                            "a licence line is a JSON object",
                            f"lines[{j}]",
                            f"{at}.{lines_path}[{j}]",
                            code="shape",
                        )
                    )
                    nodes.append({})
            yield RawRecord(
                source=where,
                head=head,
                lines=nodes,
                head_source=lambda where=where: where,
                line_source=lambda j, at=at: f"{at}.{lines_path}[{j}]",
                text=(
                    (lambda text=entry.text: text)
                    if entry.text is not None and entry.problem is not None
                    else (lambda item=item: dump_json(item))
                ),
                problems=problems,
                unreadable=entry.problem is not None,
            )
