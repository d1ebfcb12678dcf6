"""Customs document codes the bridge acts on: which code on a declaration's goods item is a
dual-use licence (the EU's X002, X060-X072 from the code list; national codes, four characters
starting with a digit, defined per customs country) and which licence type it asserts.

A deployment adds its own national codes as `COUNTRY:CODE=TYPE` entries
(ELBRIDGE_NATIONAL_DOCUMENT_CODES) over the built-in table."""

from __future__ import annotations

from collections.abc import Mapping

from bridge.core.codes import DUAL_USE_DOCUMENT_CODES
from bridge.core.errors import ConfigError
from bridge.core.model import LicenceType

ANY_COUNTRY = "*"

# National document codes (first character a digit) mean something only in the customs
# country that defines them. The value is the licence type the code asserts (None: any).
NATIONAL_DOCUMENT_CODES: dict[str, dict[str, LicenceType | None]] = {
    # UK: 9104 is a standard individual export licence (SIEL) for military and dual-use goods.
    "GB": {"9104": LicenceType.INDIVIDUAL},
}


def parse_national_document_codes(spec: str) -> dict[str, dict[str, LicenceType | None]]:
    """`GB:9104=individual,DE:8123=global,9999=any` as a table by customs country. An entry
    without country applies in every country; `any` means the licence's own type decides."""
    table: dict[str, dict[str, LicenceType | None]] = {}
    for entry in filter(None, (part.strip() for part in (spec or "").split(","))):
        target, sep, kind = entry.partition("=")
        country, colon, code = target.strip().rpartition(":")
        country = country.strip().upper() if colon else ANY_COUNTRY
        code = code.strip().upper()
        kind = kind.strip().lower()
        if not sep or len(code) != 4 or not code[0].isdigit():
            raise ConfigError(
                f"national document code {entry!r}: write COUNTRY:CODE=TYPE, e.g."
                " GB:9104=individual (a national code is four characters starting with a digit)"
            )
        if kind in ("any", "unknown"):
            licence_type = None
        else:
            try:
                licence_type = LicenceType(kind)
            except ValueError:
                kinds = ", ".join([*LicenceType, "any"])
                raise ConfigError(
                    f"national document code {entry!r}: type must be one of {kinds}"
                ) from None
        table.setdefault(country, {})[code] = licence_type
    return table


def national_document_codes(spec: str = "") -> dict[str, dict[str, LicenceType | None]]:
    """The built-in national table with a deployment's own entries (Settings) over it."""
    merged = {country: dict(codes) for country, codes in NATIONAL_DOCUMENT_CODES.items()}
    for country, codes in parse_national_document_codes(spec).items():
        merged.setdefault(country, {}).update(codes)
    return merged


def licence_document(
    code: str, country: str | None, national: Mapping[str, Mapping[str, LicenceType | None]]
) -> tuple[bool, LicenceType | None]:
    """(is this document code a dual-use licence, the licence type it asserts or None)."""
    if code in DUAL_USE_DOCUMENT_CODES:
        return True, DUAL_USE_DOCUMENT_CODES[code]
    if code[:1].isdigit():
        for table in (national.get(country or "", {}), national.get(ANY_COUNTRY, {})):
            if code in table:
                return True, table[code]
    return False, None
