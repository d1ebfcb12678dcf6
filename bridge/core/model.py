"""The canonical licence: what every national format is translated into. Pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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


@dataclass(frozen=True, slots=True)
class Licence:
    """A licence header with its lines, at one version."""

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
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def line(self, line_number: int) -> LicenceLine | None:
        for line in self.lines:  # a plain loop: the rules ask this for every write-off
            if line.line_number == line_number:
                return line
        return None

    def with_version(self, version: int) -> Licence:
        return replace(self, version=version)


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
            )
            for line in data["lines"]
        ),
    )
