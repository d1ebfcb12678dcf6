"""The mapping language: one YAML document per national format, saying how its records become
canonical licences (docs/mappings.md is the reference).

`parse_mapping` checks the whole document and compiles it once into plain functions: a reader
for the file kind, and per canonical field a getter and a converter. A document that is itself
wrong raises MappingError naming the key (`licence.type.map.EAG: ...`); nothing about a
mapping is looked up or compiled again per record."""

from __future__ import annotations

import codecs
import fnmatch
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import PurePath
from typing import Any

import yaml
from lxml import etree

from bridge.core.control_lists import ControlLists, project_control_lists
from bridge.core.errors import MappingError
from bridge.core.mapping.csv_records import CsvReader
from bridge.core.mapping.json_records import LAYOUTS, JsonReader, parse_path
from bridge.core.mapping.records import RecordReader
from bridge.core.mapping.values import (
    MEMO_KINDS,
    MISSING,
    Conventions,
    Converter,
    FieldError,
    canonical_money,
    canonical_quantity,
    make_converter,
    memoised,
)
from bridge.core.mapping.xml_records import XmlReader
from bridge.core.model import ANNEX_I_LIST, LicenceStatus
from bridge.core.units import UnitError, scale_exact

# Canonical fields: name -> (kind, required by the model).
LICENCE_FIELDS: dict[str, tuple[str, bool]] = {
    "number": ("text", True),
    "type": ("licence_type", True),
    "status": ("licence_status", False),
    "version": ("integer", False),
    "issuing_member_state": ("country", True),
    "issuing_authority": ("text", True),
    "holder_name": ("text", True),
    "holder_eori": ("eori", True),
    "valid_from": ("date", True),
    "valid_to": ("date", False),
    "general_authorisation": ("code", False),
    # An open licence (no goods lines): its scope and optional ceilings, on the licence.
    "control_list_entries": ("scope", False),
    "destinations": ("countries", False),
    "quantity": ("quantity", False),
    "unit": ("unit", False),
    "value": ("money", False),
    "currency": ("currency", False),
}
LINE_FIELDS: dict[str, tuple[str, bool]] = {
    "line_number": ("integer", True),  # unmapped: the line's position in the record, from 1
    "control_list_entry": ("cle", True),
    "description": ("text", True),
    "cn_code": ("cn", False),
    "quantity": ("quantity", False),
    "unit": ("unit", False),
    "value": ("money", False),
    "currency": ("currency", False),
    "destinations": ("countries", False),
    "control_list": ("control_list", False),  # unmapped: the format's lists decide
}
# A party's name is required only when the party is there at all (checked by the engine).
PARTY_FIELDS: dict[str, tuple[str, bool]] = {
    "name": ("text", False),
    "country": ("country", False),
    "address": ("text", False),
}
PARTIES = ("consignee", "end_user")
# What a field the record leaves empty becomes when the mapping gives no default.
MODEL_DEFAULTS: dict[str, Any] = {"status": LicenceStatus.VALID, "version": 1}

_TOP_KEYS = (
    "name",
    "description",
    "files",
    "reader",
    "conventions",
    "control_lists",
    "licence",
    "lines",
)
_READER_KEYS = {
    "csv": ("kind", "encoding", "delimiter", "quote", "header", "group_by"),
    "json": ("kind", "encoding", "layout", "records", "lines"),
    "xml": ("kind", "records", "lines", "namespaces"),
}
_CONVENTION_KEYS = ("date_format", "decimal_comma", "thousands_separator", "list_separator")
_FIELD_KEYS = (
    "from",
    "from_licence",
    "const",
    "default",
    "optional",
    "map",
    "scale",
    *_CONVENTION_KEYS,
)
_KIND_OPTIONS = {
    "date_format": ("date",),
    "decimal_comma": ("quantity", "money"),
    "thousands_separator": ("quantity", "money"),
    "list_separator": ("countries", "scope"),
    "scale": ("quantity", "money"),
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One canonical field, compiled: where it is read (`ref`, None for a constant), how it is
    converted, what it becomes when the record leaves it empty."""

    path: str  # "holder_eori", "quantity", "consignee.name"
    ref: str | None
    many: bool
    convert: Converter
    default: Any  # MISSING when there is none
    required: bool
    # A line field read from the licence record (`from_licence`): alone, or where the line
    # leaves the value empty.
    licence_ref: str | None = None
    # `convert` remembering its results for words that repeat (values.memoised), for the
    # kinds where they do; None where every value is converted anew. Same results as `convert`.
    remembered: Converter | None = None


@dataclass(frozen=True)
class Mapping:
    """A compiled mapping. `explicit_version` is true when the format carries its own licence
    version (then the ledger keeps it; otherwise it numbers changes itself)."""

    name: str
    description: str
    origin: str
    files: tuple[str, ...]
    kind: str
    reader: RecordReader
    licence_fields: tuple[FieldRule, ...]
    line_fields: tuple[FieldRule, ...]
    explicit_version: bool
    line_number_from_position: bool
    control_lists: ControlLists = field(default_factory=project_control_lists)
    lists: tuple[str, ...] = (ANNEX_I_LIST,)  # the lists this format's entries belong to
    has_lines: bool = True  # false: every record is an open licence (no goods lines)
    _patterns: tuple[re.Pattern[str], ...] = field(repr=False, default=())

    def claims(self, file_name: str) -> bool:
        """Whether one of `files` (glob patterns, case-insensitive) matches `file_name`."""
        lowered = file_name.lower()
        return any(pattern.fullmatch(lowered) for pattern in self._patterns)


class _Checker:
    """Reads one mapping document, raising MappingError with the key path of any mistake."""

    def __init__(self, origin: str, control_lists: ControlLists | None = None) -> None:
        self.origin = origin
        self.control_lists = control_lists or project_control_lists()

    def fail(self, key: str, message: str) -> MappingError:
        return MappingError(f"{self.origin}: {key or 'the document'}: {message}")

    def section(self, value: Any, key: str, allowed: tuple[str, ...] | None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping of keys to values, got {type(value).__name__}")
        for name in value:
            if not isinstance(name, str):
                raise self.fail(key, f"keys are text; quote {name!r}")
            if allowed is not None and name not in allowed:
                raise self.fail(
                    f"{key}.{name}" if key else name,
                    f"unknown key (known: {', '.join(allowed)})",
                )
        return value

    def text(self, value: Any, key: str, *, empty: bool = False) -> str:
        if not isinstance(value, str) or (not empty and not value):
            raise self.fail(key, f"must be text, got {value!r}")
        return value

    def flag(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def char(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or len(value) != 1:
            raise self.fail(key, f"must be one character, got {value!r}")
        return value

    def conventions(self, raw: dict[str, Any], key: str, base: Conventions) -> Conventions:
        date_format = base.date_format
        if "date_format" in raw:
            value = raw["date_format"]
            formats = [value] if isinstance(value, str) else value
            if not isinstance(formats, list) or not formats:
                raise self.fail(f"{key}.date_format", "must be a format or a list of formats")
            for fmt in formats:
                self._date_format(fmt, f"{key}.date_format")
            date_format = tuple(formats)
        decimal_comma = base.decimal_comma
        if "decimal_comma" in raw:
            decimal_comma = self.flag(raw["decimal_comma"], f"{key}.decimal_comma")
        thousands = base.thousands_separator
        if "thousands_separator" in raw:
            value = raw["thousands_separator"]
            thousands = None if value is None else self.char(value, f"{key}.thousands_separator")
        if thousands is not None and thousands == ("," if decimal_comma else "."):
            raise self.fail(f"{key}.thousands_separator", "is the same as the decimal mark")
        separator = base.list_separator
        if "list_separator" in raw:
            separator = self.text(raw["list_separator"], f"{key}.list_separator")
        return Conventions(date_format, decimal_comma, thousands, separator)

    def _date_format(self, fmt: Any, key: str) -> None:
        if not isinstance(fmt, str) or "%" not in fmt:
            raise self.fail(key, f"{fmt!r} is not a strptime format such as %d.%m.%Y")
        if not re.search(r"%[Yy]", fmt) or not re.search(r"%[mbB]", fmt):
            raise self.fail(key, f"{fmt!r} must contain a year and a month")
        try:
            probe = datetime(2024, 11, 28, 13, 45, 30)
            if datetime.strptime(probe.strftime(fmt), fmt).date() != probe.date():
                raise ValueError("does not read back the date it writes")
        except ValueError as error:
            raise self.fail(key, f"{fmt!r}: {error}") from None


def _patterns(checker: _Checker, raw: Any) -> tuple[tuple[str, ...], tuple[re.Pattern[str], ...]]:
    globs = [raw] if isinstance(raw, str) else raw
    if not isinstance(globs, list) or not globs:
        raise checker.fail("files", "must list at least one file-name pattern, e.g. bafa_*.csv")
    for index, glob in enumerate(globs):
        checker.text(glob, f"files[{index}]")
    return tuple(globs), tuple(re.compile(fnmatch.translate(g.lower())) for g in globs)


def _reader(checker: _Checker, raw: Any) -> tuple[str, RecordReader]:
    section = checker.section(raw, "reader", None)
    kind = section.get("kind")
    if kind not in _READER_KEYS:
        raise checker.fail("reader.kind", f"must be one of csv, json, xml (got {kind!r})")
    checker.section(section, "reader", _READER_KEYS[kind])
    encoding = "utf-8"
    if "encoding" in section:
        encoding = checker.text(section["encoding"], "reader.encoding")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise checker.fail("reader.encoding", f"{encoding!r} is not a known encoding") from None
    if kind == "csv":
        header = section.get("header", True)
        if header is not True:
            if not isinstance(header, list) or not header:
                raise checker.fail(
                    "reader.header", "must be true (the first row) or the list of column names"
                )
            header = tuple(checker.text(c, f"reader.header[{i}]") for i, c in enumerate(header))
        group_by = section.get("group_by")
        if group_by is not None:
            checker.text(group_by, "reader.group_by")
            if isinstance(header, tuple) and group_by not in header:
                raise checker.fail(
                    "reader.group_by", f"column {group_by!r} is not in reader.header"
                )
        return kind, CsvReader(
            encoding=encoding,
            delimiter=checker.char(section.get("delimiter", ","), "reader.delimiter"),
            quote=checker.char(section.get("quote", '"'), "reader.quote"),
            header=header,
            group_by=group_by,
            head_refs={},
        )
    # Without reader.lines every record is an open licence (no goods lines).
    lines = checker.text(section["lines"], "reader.lines") if "lines" in section else None
    if kind == "json":
        records = checker.text(section.get("records", "$"), "reader.records")
        layout = section.get("layout", "list")
        if layout not in LAYOUTS:
            raise checker.fail("reader.layout", f"must be one of {', '.join(LAYOUTS)}")
        for key, path, rooted in (("records", records, True), ("lines", lines, False)):
            if path is None:
                continue
            try:
                parse_path(path, rooted=rooted)
            except ValueError as error:
                raise checker.fail(f"reader.{key}", str(error)) from None
        return kind, JsonReader(encoding=encoding, records=records, lines=lines, layout=layout)
    if "records" not in section:
        raise checker.fail("reader.records", "is required for xml: the XPath of licence elements")
    namespaces = checker.section(section.get("namespaces", {}), "reader.namespaces", None)
    for prefix, uri in namespaces.items():
        checker.text(uri, f"reader.namespaces.{prefix}")
    for key in ("records", "lines"):
        if key not in section:
            continue
        expression = checker.text(section[key], f"reader.{key}")
        try:
            # XPath reports an undeclared prefix only when evaluated: probe once here.
            etree.XPath(expression, namespaces=namespaces)(etree.Element("probe"))
        except (etree.XPathSyntaxError, etree.XPathEvalError) as error:
            raise checker.fail(
                f"reader.{key}", f"{expression!r} is not usable XPath: {error}"
            ) from None
    reader = XmlReader(records=section["records"], lines=lines, namespaces=dict(namespaces))
    return kind, reader


def _factor(checker: _Checker, key: str, raw: Any) -> Decimal:
    """A scale factor: a positive exact decimal (0.001, "1000"; a YAML float as written)."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise checker.fail(key, f"must be a positive decimal number, got {raw!r}")
    try:
        factor = Decimal(repr(raw) if isinstance(raw, float) else str(raw).strip())
    except InvalidOperation:
        raise checker.fail(key, f"{raw!r} is not a decimal number") from None
    if not factor.is_finite() or factor <= 0:
        raise checker.fail(key, f"must be more than zero, got {raw!r}")
    return factor


def _scaled(convert: Converter, factor: Decimal, kind: str) -> Converter:
    """`convert`, its result multiplied by `factor` exactly (no rounding: a result with more
    decimals than the field holds is reported by validation, with the value)."""
    canonical = canonical_quantity if kind == "quantity" else canonical_money

    def scaled(raw: Any) -> Any:
        value = convert(raw)
        if value is MISSING or value is None:
            return value
        try:
            return canonical(scale_exact(value, factor))
        except UnitError as error:
            raise FieldError(str(error), "not-a-number") from None

    return scaled


def _rule(
    checker: _Checker,
    key: str,
    path: str,
    kind: str,
    model_required: bool,
    raw: Any,
    conventions: Conventions,
    reader: RecordReader,
    path_is_line: bool = False,
) -> FieldRule:
    spec = {"from": raw} if isinstance(raw, str) else checker.section(raw, key, _FIELD_KEYS)
    for option, kinds in _KIND_OPTIONS.items():
        if option in spec and kind not in kinds:
            raise checker.fail(f"{key}.{option}", f"does not apply to a {kind} field")
    reads = "from" in spec or "from_licence" in spec
    if reads == ("const" in spec):
        raise checker.fail(
            key, "give from: (where the value is), from_licence: (lines only), or const:"
        )
    if "from_licence" in spec and not path_is_line:
        raise checker.fail(f"{key}.from_licence", "is for line fields: read from: instead")
    required = model_required
    if "optional" in spec:
        optional = checker.flag(spec["optional"], f"{key}.optional")
        if optional and model_required and "default" not in spec:
            raise checker.fail(
                f"{key}.optional", "this field is required by every licence; give a default:"
            )
        required = not optional
    value_map = None
    if "map" in spec:
        value_map = {}
        for word, target in checker.section(spec["map"], f"{key}.map", None).items():
            if target is not None and not isinstance(target, str | int):
                raise checker.fail(f"{key}.map.{word}", f"must map to text, got {target!r}")
            value_map[word] = None if target is None else str(target)
    local = checker.conventions(spec, key, conventions)
    plain = make_converter(kind, local)
    for word, target in (value_map or {}).items():
        if target is not None:
            try:
                plain(target)
            except FieldError as error:
                raise checker.fail(f"{key}.map.{word}", error.reason) from None
    convert = make_converter(kind, local, value_map=value_map)
    if kind == "control_list":
        for option, target in [*((f"map.{w}", t) for w, t in (value_map or {}).items())] + [
            (option, spec[option]) for option in ("const", "default") if option in spec
        ]:
            if target is not None and checker.control_lists.get(str(target)) is None:
                raise checker.fail(
                    f"{key}.{option}",
                    f"{target!r} is not a control list (known: {checker.control_lists.ids()})",
                )
    if "scale" in spec:
        convert = _scaled(convert, _factor(checker, f"{key}.scale", spec["scale"]), kind)

    def constant(value: Any, option: str) -> Any:
        if isinstance(value, dict | list) and kind not in ("countries", "scope"):
            raise checker.fail(f"{key}.{option}", f"must be a single value, got {value!r}")
        if kind == "date" and isinstance(value, date):
            return value  # YAML reads an unquoted 2026-01-01 as a date already
        try:
            converted = plain(value)  # a constant is already a canonical value: no map
        except FieldError as error:
            raise checker.fail(f"{key}.{option}", error.reason) from None
        if converted is MISSING:
            raise checker.fail(f"{key}.{option}", "is empty")
        return converted

    default = MODEL_DEFAULTS.get(path, MISSING)
    if "default" in spec:
        default = constant(spec["default"], "default")
    ref = licence_ref = None
    if "const" in spec:
        default = constant(spec["const"], "const")
    for option in ("from", "from_licence"):
        if option in spec:
            try:
                reader.check_ref(spec[option])
            except ValueError as error:
                raise checker.fail(f"{key}.{option}", str(error)) from None
    ref = spec.get("from")
    licence_ref = spec.get("from_licence")
    many = kind in ("countries", "scope")
    remembered = memoised(convert) if kind in MEMO_KINDS else None
    return FieldRule(path, ref, many, convert, default, required, licence_ref, remembered)


def _rules(
    checker: _Checker,
    section_key: str,
    raw: Any,
    catalogue: dict[str, tuple[str, bool]],
    conventions: Conventions,
    reader: RecordReader,
) -> tuple[FieldRule, ...]:
    allowed = tuple(catalogue) + (PARTIES if section_key == "lines" else ())
    section = checker.section(raw, section_key, allowed)
    rules = []
    for name, spec in section.items():
        key = f"{section_key}.{name}"
        if name in PARTIES:
            party = checker.section(spec, key, tuple(PARTY_FIELDS))
            for part, part_spec in party.items():
                kind, required = PARTY_FIELDS[part]
                rules.append(
                    _rule(
                        checker,
                        f"{key}.{part}",
                        f"{name}.{part}",
                        kind,
                        required,
                        part_spec,
                        conventions,
                        reader,
                        True,
                    )
                )
            if "name" not in party:
                raise checker.fail(f"{key}.name", "a consignee or end user needs a name")
            continue
        kind, required = catalogue[name]
        in_lines = section_key == "lines"
        rules.append(_rule(checker, key, name, kind, required, spec, conventions, reader, in_lines))
    for name, (_, required) in catalogue.items():
        if required and name not in section and name != "line_number":
            raise checker.fail(
                f"{section_key}.{name}",
                "is missing; every licence needs it (read it with from:, or give const:)",
            )
    return tuple(rules)


def compile_mapping(
    document: Any,
    origin: str,
    default_name: str | None = None,
    control_lists: ControlLists | None = None,
) -> Mapping:
    """Check and compile a mapping document (already parsed from YAML); `control_lists` are the
    lists it may name (the project's table by default)."""
    checker = _Checker(origin, control_lists)
    top = checker.section(document, "", _TOP_KEYS)
    name = top.get("name", default_name or PurePath(origin).stem)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise checker.fail("name", f"must be a name of letters, digits, . _ - (got {name!r})")
    description = checker.text(top.get("description", ""), "description", empty=True)
    if "files" not in top:
        raise checker.fail("files", "is required: the file-name patterns this mapping reads")
    files, patterns = _patterns(checker, top["files"])
    for required in ("reader", "licence"):
        if required not in top:
            raise checker.fail(required, "is required")
    kind, reader = _reader(checker, top["reader"])
    # A CSV row is a licence line when the mapping maps lines; JSON and XML say where lines are.
    has_lines = "lines" in top if kind == "csv" else reader.lines_path is not None
    if has_lines != ("lines" in top):
        raise checker.fail(
            "lines",
            "is required: the licence-line fields (reader.lines says where lines are)"
            if has_lines
            else "the reader has no reader.lines, so records have no lines to read these from",
        )
    lists = _lists(checker, top.get("control_lists"))
    conventions = checker.conventions(
        checker.section(top.get("conventions", {}), "conventions", _CONVENTION_KEYS),
        "conventions",
        Conventions(),
    )
    licence_rules = _rules(checker, "licence", top["licence"], LICENCE_FIELDS, conventions, reader)
    line_rules = (
        _rules(checker, "lines", top["lines"], LINE_FIELDS, conventions, reader)
        if has_lines
        else ()
    )
    if isinstance(reader, CsvReader):
        # Licence fields repeat on every row of a grouped licence and must agree.
        reader.head_refs = {rule.ref: rule.path for rule in licence_rules if rule.ref}
    return Mapping(
        name=name,
        description=description,
        origin=origin,
        files=files,
        kind=kind,
        reader=reader,
        licence_fields=licence_rules,
        line_fields=line_rules,
        explicit_version=any(r.path == "version" and r.ref for r in licence_rules),
        line_number_from_position=not any(r.path == "line_number" for r in line_rules),
        control_lists=checker.control_lists,
        lists=lists,
        has_lines=has_lines,
        _patterns=patterns,
    )


def _lists(checker: _Checker, raw: Any) -> tuple[str, ...]:
    """The control lists a format's entries belong to (`control_lists:`), default Annex I."""
    if raw is None:
        return (checker.control_lists.default,)
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names:
        raise checker.fail("control_lists", "must list control list ids, e.g. [eu-dual-use]")
    for index, name in enumerate(names):
        if not isinstance(name, str) or checker.control_lists.get(name) is None:
            raise checker.fail(
                f"control_lists[{index}]",
                f"{name!r} is not a control list (known: {checker.control_lists.ids()})",
            )
    return tuple(names)


def parse_mapping(
    text: str,
    origin: str,
    default_name: str | None = None,
    control_lists: ControlLists | None = None,
) -> Mapping:
    """Compile a mapping from its YAML text; `origin` names it in errors (usually the file),
    `default_name` is its name when the document gives none (else the stem of `origin`)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MappingError(f"{origin}: not valid YAML: {error}") from None
    return compile_mapping(document, origin, default_name, control_lists)
