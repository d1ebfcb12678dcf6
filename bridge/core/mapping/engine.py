"""The mapping engine: one national file in, one result per licence record out.

For each record the compiled field rules are applied, the canonical licence is assembled and
validated, and every problem found on the way (reading, converting, validating) is reported
together. A record with any problem yields no licence; its neighbours are unaffected."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from bridge.core.errors import MappingError, Problem
from bridge.core.mapping.language import MODEL_DEFAULTS, PARTIES, FieldRule, Mapping
from bridge.core.mapping.records import Batch, RawRecord, UnreadableFile
from bridge.core.mapping.values import MISSING, FieldError, shown
from bridge.core.model import (
    Licence,
    LicenceLine,
    Party,
    assemble_licence,
    assemble_line,
    assemble_party,
)
from bridge.core.validation import licence_problems

# (path, getter, licence getter, convert, default, required, ref) bound to one file; the
# licence getter reads a line field's value from the licence record (`from_licence`).
_Getter = Callable[[Any], Any] | None
_Bound = tuple[str, _Getter, _Getter, Callable[[Any], Any], Any, bool, str | None]


@dataclass(frozen=True, slots=True)
class MappedRecord:
    """One licence record of a national file: the canonical licence, or the problems that
    keep it out (every one found), with where it came from and, on demand, its text as read."""

    source: str
    licence: Licence | None
    problems: tuple[Problem, ...]
    number: str | None
    read_text: Callable[[], str]

    @property
    def accepted(self) -> bool:
        return self.licence is not None

    @property
    def text(self) -> str:
        return self.read_text()


def mapping_for(
    file_name: str, mappings: Iterable[Mapping], mapping_name: str | None = None
) -> Mapping:
    """The mapping named `mapping_name`, or else the one whose file patterns claim the file.

    A file no mapping claims, or that several claim, raises UnreadableFile saying which
    mappings were tried; an unknown `mapping_name` raises MappingError."""
    known = list(mappings)
    if mapping_name is not None:
        for mapping in known:
            if mapping.name == mapping_name:
                return mapping
        names = ", ".join(m.name for m in known) or "none"
        raise MappingError(f"no mapping is named {mapping_name!r} (known: {names})")
    claiming = [mapping for mapping in known if mapping.claims(file_name)]
    if len(claiming) == 1:
        return claiming[0]
    tried = "; ".join(f"{m.name} ({', '.join(m.files)})" for m in known) or "no mappings at all"
    if not claiming:
        raise UnreadableFile(f"no mapping claims the file {file_name!r}; tried: {tried}")
    names = ", ".join(m.name for m in claiming)
    raise UnreadableFile(f"several mappings claim the file {file_name!r}: {names}; name one")


def _bind(
    rules: tuple[FieldRule, ...], batch: Batch, file_name: str, compiled: bool
) -> list[_Bound]:
    bound: list[_Bound] = []
    # A reader may offer getters compiled for this batch (the XML reader's indexed children).
    getter = getattr(batch, "compiled_getter", batch.getter) if compiled else batch.getter
    for rule in rules:
        getters = []
        for ref in (rule.ref, rule.licence_ref):
            get = None if ref is None else getter(ref, rule.many)
            getters.append(get)
        get, head_get = getters
        absent = [ref for ref, g in zip((rule.ref, rule.licence_ref), getters, strict=True) if ref]
        if (
            absent
            and get is None
            and head_get is None
            and rule.required
            and rule.default is MISSING
        ):
            where = getattr(batch, "missing_column", None)
            ref = absent[0]
            reason = where(ref, rule.path) if where else f"{file_name} lacks {ref!r} ({rule.path})"
            raise UnreadableFile(reason)
        shown_ref = rule.ref or (f"licence {rule.licence_ref}" if rule.licence_ref else None)
        convert = (rule.remembered if compiled else None) or rule.convert
        bound.append((rule.path, get, head_get, convert, rule.default, rule.required, shown_ref))
    return bound


def _read(
    bound: list[_Bound],
    node: Any,
    where: Callable[[], str],
    prefix: str,
    problems: list[Problem],
    failed: set[str],
    head: Any = None,
    head_where: Callable[[], str] | None = None,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, get, head_get, convert, default, required, ref in bound:
        raw = get(node) if get is not None else None
        at = where
        try:
            value = convert(raw)
            if value is MISSING and head_get is not None:
                # The line leaves it empty (or does not carry it): the licence's value holds.
                raw, at = head_get(head), head_where or where
                value = convert(raw)
        except FieldError as error:
            path = prefix + name
            problems.append(Problem(error.reason, path, at(), shown(raw), error.code))
            failed.add(path)
            values[name] = None
            continue
        if value is MISSING:
            if default is not MISSING:
                value = default
            else:
                value = None
                if required:
                    path = prefix + name
                    problems.append(
                        Problem(
                            f"no value: {ref!r} is absent or empty", path, where(), None, "missing"
                        )
                    )
                    failed.add(path)
        values[name] = value
    return values


_PARTY_KEYS = {role: (f"{role}.name", f"{role}.country", f"{role}.address") for role in PARTIES}


def _party(
    values: dict[str, Any],
    role: str,
    prefix: str,
    where: Callable[[], str],
    problems: list[Problem],
    failed: set[str],
    make: Callable[..., Party] = Party,
) -> Party | None:
    name_key, country_key, address_key = _PARTY_KEYS[role]
    name = values.get(name_key)
    country = values.get(country_key)
    address = values.get(address_key)
    if name is None and country is None and address is None:
        return None
    path = prefix + name_key
    if name is None and path not in failed:
        problems.append(
            Problem(f"the {role.replace('_', ' ')} has no name", path, where(), None, "missing")
        )
        failed.add(path)
    return make(name, country, address)


def _covered(path: str, failed: set[str]) -> bool:
    """A validation problem on a field (or a parent of a field) that could not be read repeats
    what the mapping already said."""
    if path in failed:
        return True
    return any(f.startswith(path) and f[len(path) : len(path) + 1] in (".", "[") for f in failed)


def _located(found: list[Problem], failed: set[str], record: RawRecord) -> Iterator[Problem]:
    """Validation problems minus those the mapping already reported, each line's problems
    pointed at the line's own location (a CSV row, a JSON object, an XML element)."""
    for problem in found:
        if failed and _covered(problem.path, failed):
            continue
        if problem.path.startswith("lines["):
            index = int(problem.path[6 : problem.path.index("]")])
            problem = replace(problem, source=record.line_source(index))
        yield problem


_Accepting = Callable[[str], list[tuple[str, str]]]


def _accepting(mapping: Mapping, compiled: bool) -> _Accepting:
    """(list id, spelling) of each of the format's lists that accepts an entry; compiled, the
    answers are remembered (entries repeat from line to line, and the lists do not change)."""
    lists, among = mapping.control_lists, mapping.lists
    if not compiled:
        return lambda raw: lists.accepting(raw, among)
    memo: dict[str, list[tuple[str, str]]] = {}

    def accepting(raw: str) -> list[tuple[str, str]]:
        if raw.__class__ is not str:
            return lists.accepting(raw, among)
        found = memo.get(raw)
        if found is None:
            found = lists.accepting(raw, among)
            if len(raw) <= 64:
                if len(memo) >= 4096:
                    memo.clear()
                memo[raw] = found
        return found

    return accepting


def _entry(
    mapping: Mapping,
    accepting: _Accepting,
    row: dict[str, Any],
    prefix: str,
    where: Callable[[], str],
    problems: list[Problem],
    failed: set[str],
) -> tuple[Any, str]:
    """(the control list entry in its list's spelling, the list) of one line. A list the line
    names is taken; otherwise the one of the format's lists whose syntax accepts the entry. An
    entry no list accepts is kept as written (validation says why for a one-list format); one
    that two lists accept is refused, never guessed."""
    raw, named = row.get("control_list_entry"), row.get("control_list")
    lists = mapping.control_lists
    if not isinstance(raw, str):
        return raw, named or mapping.lists[0]
    if named is not None:
        control_list = lists.get(named)
        return (control_list.normalise(raw) if control_list else None) or raw, named
    found = accepting(raw)
    if len(found) == 1:
        list_id, normal = found[0]
        return normal, list_id
    path = prefix + "control_list_entry"
    if len(found) > 1:
        problems.append(
            Problem(
                f"{raw!r} is an entry of several of this format's control lists"
                f" ({', '.join(i for i, _ in found)}): map control_list to say which",
                path,
                where(),
                shown(raw),
                "cle-ambiguous",
            )
        )
        failed.add(path)
    elif len(mapping.lists) > 1:
        syntaxes = "; ".join(
            f"{control_list.id}: {control_list.syntax}"
            for control_list in (lists.get(i) for i in mapping.lists)
            if control_list is not None
        )
        problems.append(
            Problem(
                f"{raw!r} is an entry of none of this format's control lists ({syntaxes})",
                path,
                where(),
                shown(raw),
                "cle",
            )
        )
        failed.add(path)
    return raw, mapping.lists[0]


def _scope(accepting: _Accepting, entries: Any) -> tuple[str, ...]:
    """An open licence's scope entries, each in the spelling of the one list that accepts it
    (categories such as 5 or 5A, and entries no list knows, as written)."""
    spelt = []
    for entry in entries or ():
        found = accepting(entry)
        spelt.append(found[0][1] if len(found) == 1 else entry)
    return tuple(spelt)


def _translate(
    mapping: Mapping,
    batch: Batch,
    head: list[_Bound],
    line: list[_Bound],
    accepting: _Accepting,
    compiled: bool,
):
    # Each list of fields is read by one loop over the getters and converters bound to it at
    # compile time (a function generated per mapping instead measured 0.4% faster: not kept).
    read_head = partial(_read, head)
    read_line = partial(_read, line)
    # Compiled, the licence and its lines are stored field by field (model._assembler), not
    # through the frozen dataclasses' __init__: the same objects.
    make_party = assemble_party if compiled else Party
    make_line = assemble_line if compiled else LicenceLine
    make_licence = assemble_licence if compiled else Licence
    position_numbers = mapping.line_number_from_position
    has_parties = [role for role in PARTIES if any(b[0].startswith(role + ".") for b in line)]
    for record in batch.records():
        if record.unreadable:
            yield MappedRecord(record.source, None, tuple(record.problems), None, record.text)
            continue
        problems = list(record.problems)
        failed: set[str] = set()
        values = read_head(record.head, record.head_source, "", problems, failed)
        lines = []
        for j, node in enumerate(record.lines if mapping.has_lines else ()):
            prefix = f"lines[{j}]."

            def where(j: int = j, record: RawRecord = record) -> str:
                return record.line_source(j)

            row = read_line(node, where, prefix, problems, failed, record.head, record.head_source)
            entry, control_list = _entry(mapping, accepting, row, prefix, where, problems, failed)
            number = row.get("line_number")
            if position_numbers and number is None:
                number = j + 1
            parties = {
                role: _party(row, role, prefix, where, problems, failed, make_party)
                for role in has_parties
            }
            lines.append(
                make_line(
                    line_number=number,
                    control_list_entry=entry,
                    description=row.get("description"),
                    cn_code=row.get("cn_code"),
                    quantity=row.get("quantity"),
                    unit=row.get("unit"),
                    value=row.get("value"),
                    currency=row.get("currency"),
                    destinations=row.get("destinations") or (),
                    consignee=parties.get("consignee"),
                    end_user=parties.get("end_user"),
                    control_list=control_list,
                )
            )
        licence = make_licence(
            number=values.get("number"),
            type=values.get("type"),
            issuing_member_state=values.get("issuing_member_state"),
            issuing_authority=values.get("issuing_authority"),
            holder_name=values.get("holder_name"),
            holder_eori=values.get("holder_eori"),
            valid_from=values.get("valid_from"),
            valid_to=values.get("valid_to"),
            lines=tuple(lines),
            status=values.get("status", MODEL_DEFAULTS["status"]),
            version=values.get("version", MODEL_DEFAULTS["version"]),
            general_authorisation=values.get("general_authorisation"),
            control_list_entries=_scope(accepting, values.get("control_list_entries")),
            destinations=values.get("destinations") or (),
            quantity=values.get("quantity"),
            unit=values.get("unit"),
            value=values.get("value"),
            currency=values.get("currency"),
        )
        found = licence_problems(licence, record.source, mapping.control_lists)
        if found:
            problems.extend(_located(found, failed, record))
        number = values.get("number")
        yield MappedRecord(
            source=record.source,
            licence=None if problems else licence,
            problems=tuple(problems),
            number=number if isinstance(number, str) else None,
            read_text=record.text,
        )


def translate(
    mapping: Mapping, data: bytes, file_name: str, *, compiled: bool = True
) -> Iterator[MappedRecord]:
    """The licence records of one national file, mapped and validated, in file order.

    The file is parsed before this returns: a file that cannot be read at all raises
    UnreadableFile here, before any record is produced. Bad records never raise.
    `compiled=False` reads every field through the generic path, converting every value anew:
    the same records and problems, slower (kept as the oracle the compiled path is tested
    against)."""
    batch = mapping.reader.read(data, file_name)
    head = _bind(mapping.licence_fields, batch, file_name, compiled)
    line = _bind(mapping.line_fields, batch, file_name, compiled)
    return _translate(mapping, batch, head, line, _accepting(mapping, compiled), compiled)
