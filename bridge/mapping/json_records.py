"""The JSON reader: a list of licence objects somewhere in the document, lines nested in each.

Numbers are read as exact Decimals (never float), and a rejected record is stored as JSON with
its numbers written as they came."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from bridge.errors import Problem
from bridge.mapping.records import Getter, RawRecord, UnreadableFile, decode

_STEP = re.compile(r"\.([^.\[\]]+)|\[([0-9]+)\]")


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
            return found.get(inner) if found.__class__ is dict else None

        return get_nested
    return lambda node: _follow(node, steps)


class _Literal(str):
    """NaN, Infinity or -Infinity as written in the JSON text (not valid JSON, but seen)."""

    __slots__ = ()


def dump_json(value: Any) -> str:
    """JSON text with Decimals written as the numbers they were read from."""
    try:
        return _dump(value)
    except RecursionError:  # absurdly deep nesting: keep the record, numbers quoted
        return json.dumps(value, default=str, ensure_ascii=False)


def _dump(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(
            f"{json.dumps(k, ensure_ascii=False)}: {_dump(v)}" for k, v in value.items()
        )
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(item) for item in value) + "]"
    if isinstance(value, Decimal | _Literal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


class JsonReader:
    """Configured from a mapping's `reader` section (kind: json)."""

    def __init__(self, *, encoding: str, records: str, lines: str) -> None:
        self.encoding = encoding
        self.records_path = records
        self.records_steps = parse_path(records, rooted=True)
        self.lines_path = lines
        self.lines_steps = parse_path(lines, rooted=False)
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
        try:
            # NaN and Infinity stay text, so the field that holds one is reported, not the file.
            document = json.loads(text, parse_float=Decimal, parse_constant=_Literal)
        except json.JSONDecodeError as error:
            raise UnreadableFile(
                f"{file_name} is not well-formed JSON: {error.msg} at line {error.lineno}"
                f" column {error.colno}"
            ) from None
        except (ValueError, RecursionError) as error:  # e.g. a 5,000-digit integer, deep nesting
            raise UnreadableFile(f"{file_name} cannot be read as JSON: {error}") from None
        found = _follow(document, self.records_steps) if self.records_steps else document
        if not isinstance(found, list):
            what = "absent" if found is None else f"a {type(found).__name__}"
            raise UnreadableFile(
                f"{file_name}: {self.records_path} should be the list of licences but is {what}"
            )
        return _JsonBatch(self, file_name, found)


class _JsonBatch:
    def __init__(self, reader: JsonReader, file_name: str, found: list[Any]) -> None:
        self.reader = reader
        self.file_name = file_name
        self.found = found

    def getter(self, ref: str, many: bool) -> Getter:
        return self.reader.getter(ref, many)

    def records(self) -> Iterator[RawRecord]:
        reader = self.reader
        base = f"{self.file_name} {reader.records_path}"
        lines_path = reader.lines_path
        lines_steps = reader.lines_steps
        for index, item in enumerate(self.found):
            where = f"{base}[{index}]"
            problems: list[Problem] = []
            if isinstance(item, dict):
                head = item
                lines = _follow(item, lines_steps)
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
            nodes = []
            for j, line in enumerate(lines):
                if isinstance(line, dict):
                    nodes.append(line)
                else:
                    problems.append(
                        Problem(
                            "a licence line is a JSON object",
                            f"lines[{j}]",
                            f"{where}.{lines_path}[{j}]",
                            code="shape",
                        )
                    )
                    nodes.append({})
            yield RawRecord(
                source=where,
                head=head,
                lines=nodes,
                head_source=lambda where=where: where,
                line_source=lambda j, where=where: f"{where}.{lines_path}[{j}]",
                text=lambda item=item: dump_json(item),
                problems=problems,
            )
