"""The canonical licence: what every national format is translated into. Pure data, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING as NO_FACTORY
from dataclasses import dataclass, field, fields, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any


class LicenceType(StrEnum):
    INDIVIDUAL = "individual"
    GLOBAL = "global"
    NATIONAL_GENERAL = "national_general"
    UNION_GENERAL = "union_general"

    @property
    def has_ceiling(self) -> bool:
        """General authorisations record usage; only individual and global licences decrement."""
        return self in (LicenceType.INDIVIDUAL, LicenceType.GLOBAL)


class LicenceStatus(StrEnum):
    VALID = "valid"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    ANNULLED = "annulled"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"


# The id of the EU dual-use list (Annex I to Regulation (EU) 2021/821) among the control lists.
ANNEX_I_LIST = "eu-dual-use"


@dataclass(frozen=True, slots=True)
class Party:
    """A consignee or end user as the licence names it."""

    name: str
    country: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class LicenceLine:
    """One authorised item. A line has a quantity ceiling, a value ceiling, both, or neither
    (general authorisations); quantities and values are Decimal, units UN/ECE Rec 20 codes."""

    line_number: int
    control_list_entry: str
    description: str
    cn_code: str | None = None
    quantity: Decimal | None = None
    unit: str | None = None
    value: Decimal | None = None
    currency: str | None = None
    destinations: tuple[str, ...] = ()
    consignee: Party | None = None
    end_user: Party | None = None
    # The control list the entry belongs to (mappings/reference/control-lists.yaml):
    # the EU dual-use list (Annex I) unless the national record says otherwise.
    control_list: str = ANNEX_I_LIST


# The ledger records an open licence's usage on this line number: the licence as a whole.
OPEN_LINE = 0
# Which licence types may be open (no goods lines): those granted for types or categories of
# items rather than named goods. An individual licence names its goods, line by line.
OPEN_TYPES = frozenset(
    {LicenceType.GLOBAL, LicenceType.NATIONAL_GENERAL, LicenceType.UNION_GENERAL}
)


@dataclass(frozen=True, slots=True)
class Licence:
    """A licence header with its lines, at one version.

    An open licence (global or general authorisation) has no lines: it covers items by
    category or control list entry (`control_list_entries`: Annex I entries, a category `5`, a
    category and group `5A`, national or military list entries) and/or destinations, with
    optional licence-level ceilings (`quantity` in `unit`, `value` in `currency`; a `unit` or
    `currency` alone records usage in it without a ceiling). Its usage is recorded on line
    `OPEN_LINE` (`open_line`). A licence with lines carries all of this on its lines."""

    number: str
    type: LicenceType
    issuing_member_state: str
    issuing_authority: str
    holder_name: str
    holder_eori: str
    valid_from: date
    valid_to: date | None
    lines: tuple[LicenceLine, ...]
    status: LicenceStatus = LicenceStatus.VALID
    version: int = 1
    general_authorisation: str | None = None  # e.g. EU001, DK002 for general authorisations
    # An open licence's scope and ceilings (see the class docstring); empty on other licences.
    control_list_entries: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    quantity: Decimal | None = None
    unit: str | None = None
    value: Decimal | None = None
    currency: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_open(self) -> bool:
        """No goods lines: the licence covers items by category or destination."""
        return not self.lines

    def open_line(self) -> LicenceLine:
        """The licence as a whole, as the line its usage is recorded on (`OPEN_LINE`): the
        licence-level ceilings and destinations, the scope as its control list entry."""
        return LicenceLine(
            line_number=OPEN_LINE,
            control_list_entry=" ".join(self.control_list_entries),
            description="open licence: the licence as a whole",
            quantity=self.quantity,
            unit=self.unit,
            value=self.value,
            currency=self.currency,
            destinations=self.destinations,
        )

    @property
    def ledger_lines(self) -> tuple[LicenceLine, ...]:
        """The lines usage is recorded on: the licence's lines, or its `open_line`."""
        return self.lines if self.lines else (self.open_line(),)

    def line(self, line_number: int) -> LicenceLine | None:
        if not self.lines:
            return self.open_line() if line_number == OPEN_LINE else None
        for line in self.lines:  # a plain loop: the rules ask this for every write-off
            if line.line_number == line_number:
                return line
        return None

    def with_version(self, version: int) -> Licence:
        return replace(self, version=version)


def _assembler(cls: type) -> Callable[..., Any]:
    """A function taking every field of the frozen, slotted dataclass `cls` (in declaration
    order, by position or name, none optional but those with a default factory) and returning
    the instance `cls(...)` would: the same values, a fresh default for each factory field.

    Why: a frozen dataclass's __init__ stores each field through object.__setattr__, a generic
    attribute look-up per field; this stores each through the field's own slot descriptor,
    about three times faster, which matters for the mapping engine's thousands of licences a
    second. Only field names (Python identifiers, from the class itself) enter the code."""
    names = [f.name for f in fields(cls)]
    given = [f.name for f in fields(cls) if f.default_factory is NO_FACTORY]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    body = []
    for i, f in enumerate(fields(cls)):
        assert f.name.isidentifier() and f.init
        namespace[f"set{i}"] = getattr(cls, f.name).__set__
        if f.default_factory is NO_FACTORY:
            body.append(f"    set{i}(made, {f.name})")
        else:
            namespace[f"factory{i}"] = f.default_factory
            body.append(f"    set{i}(made, factory{i}())")
    source = "\n".join(
        [f"def assemble({', '.join(given)}):", "    made = new(cls)", *body, "    return made"]
    )
    exec(compile(source + "\n", f"<assemble {cls.__name__}>", "exec"), namespace)
    assert len(names) == len(body)
    return namespace["assemble"]


# Every field given, nothing checked: what the class's constructor stores (see _assembler).
assemble_party = _assembler(Party)
assemble_line = _assembler(LicenceLine)
assemble_licence = _assembler(Licence)


def licence_to_dict(licence: Licence) -> dict[str, Any]:
    """A JSON-ready dict (Decimals and dates as strings) that `licence_from_dict` reads back."""

    def party(p: Party | None) -> dict[str, Any] | None:
        return None if p is None else {"name": p.name, "country": p.country, "address": p.address}

    def dec(d: Decimal | None) -> str | None:
        return None if d is None else str(d)

    return {
        "number": licence.number,
        "type": licence.type.value,
        "issuing_member_state": licence.issuing_member_state,
        "issuing_authority": licence.issuing_authority,
        "holder_name": licence.holder_name,
        "holder_eori": licence.holder_eori,
        "valid_from": licence.valid_from.isoformat(),
        "valid_to": licence.valid_to.isoformat() if licence.valid_to else None,
        "status": licence.status.value,
        "version": licence.version,
        "general_authorisation": licence.general_authorisation,
        **_open_scope_to_dict(licence),
        "lines": [
            {
                "line_number": line.line_number,
                "control_list_entry": line.control_list_entry,
                "description": line.description,
                "cn_code": line.cn_code,
                "quantity": dec(line.quantity),
                "unit": line.unit,
                "value": dec(line.value),
                "currency": line.currency,
                "destinations": list(line.destinations),
                "consignee": party(line.consignee),
                "end_user": party(line.end_user),
                # Only when not Annex I: a line's document (and so the content hash that
                # decides whether a record is a new version) stays what it was before.
                **(
                    {} if line.control_list == ANNEX_I_LIST else {"control_list": line.control_list}
                ),
            }
            for line in licence.lines
        ],
    }


def licence_from_dict(data: dict[str, Any]) -> Licence:
    def party(p: dict[str, Any] | None) -> Party | None:
        return None if p is None else Party(p["name"], p.get("country"), p.get("address"))

    def dec(s: str | None) -> Decimal | None:
        return None if s is None else Decimal(s)

    return Licence(
        number=data["number"],
        type=LicenceType(data["type"]),
        issuing_member_state=data["issuing_member_state"],
        issuing_authority=data["issuing_authority"],
        holder_name=data["holder_name"],
        holder_eori=data["holder_eori"],
        valid_from=date.fromisoformat(data["valid_from"]),
        valid_to=date.fromisoformat(data["valid_to"]) if data.get("valid_to") else None,
        status=LicenceStatus(data.get("status", "valid")),
        version=int(data.get("version", 1)),
        general_authorisation=data.get("general_authorisation"),
        control_list_entries=tuple(data.get("control_list_entries") or ()),
        destinations=tuple(data.get("destinations") or ()),
        quantity=dec(data.get("quantity")),
        unit=data.get("unit"),
        value=dec(data.get("value")),
        currency=data.get("currency"),
        lines=tuple(
            LicenceLine(
                line_number=int(line["line_number"]),
                control_list_entry=line["control_list_entry"],
                description=line["description"],
                cn_code=line.get("cn_code"),
                quantity=dec(line.get("quantity")),
                unit=line.get("unit"),
                value=dec(line.get("value")),
                currency=line.get("currency"),
                destinations=tuple(line.get("destinations") or ()),
                consignee=party(line.get("consignee")),
                end_user=party(line.get("end_user")),
                control_list=line.get("control_list") or ANNEX_I_LIST,
            )
            for line in data["lines"]
        ),
    )


def _open_scope_to_dict(licence: Licence) -> dict[str, Any]:
    # Only what an open licence says: a licence with lines keeps the document (and so its
    # content hash, which decides whether a record is a new version) it had before open
    # licences existed.
    scope: dict[str, Any] = {}
    if licence.control_list_entries:
        scope["control_list_entries"] = list(licence.control_list_entries)
    if licence.destinations:
        scope["destinations"] = list(licence.destinations)
    for name in ("quantity", "unit", "value", "currency"):
        figure = getattr(licence, name)
        if figure is not None:
            scope[name] = str(figure)
    return scope
