"""Every check on a canonical licence, reporting all problems at once.

`licence_problems` never stops at the first problem and never raises for bad content: each
problem names the field (`lines[1].quantity`, with lines counted from 0 in the licence's
order), says why, and carries a stable `code` for reports and tests. A field that is None
because it could not be read is reported as missing here, unless the caller already reported
why (the mapping engine drops the duplicates)."""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bridge.core import codes, units
from bridge.core.codes import UNION_GENERAL_AUTHORISATIONS
from bridge.core.control_lists import ControlLists, project_control_lists
from bridge.core.errors import Problem
from bridge.core.model import (
    ANNEX_I_LIST,
    OPEN_TYPES,
    Licence,
    LicenceLine,
    LicenceStatus,
    LicenceType,
    Party,
)

# Code lists repeat across licences (a few hundred countries, units, CLEs, CN codes): the
# answers are cached, which keeps validation cheap at tens of thousands of licences a second.
country_problem = lru_cache(maxsize=1024)(codes.country_problem)
currency_problem = lru_cache(maxsize=512)(codes.currency_problem)
unit_problem = lru_cache(maxsize=256)(units.unit_problem)
cn_problem = lru_cache(maxsize=8192)(codes.cn_problem)
normalise_cle = lru_cache(maxsize=8192)(codes.normalise_cle)
cle_problem = codes.cle_problem
eori_problem = lru_cache(maxsize=8192)(codes.eori_problem)

# Field lengths the ledger and the customs data model hold (data element 12 03: reference an..70).
MAX_NUMBER = 70
MAX_NAME = 200
MAX_CLE = 40
MAX_GENERAL_AUTHORISATION = 10
MAX_LINE_NUMBER = 99999  # document line item number n..5
MAX_ADDRESS = 500
MAX_VERSION = 2**31 - 1  # the ledger's integer column (PostgreSQL `integer`)
# Customs data model: quantity n..16,6 (so 10 digits before the point), amount n..16,2. The
# ledger stores millionths in a 64-bit integer, which caps amounts below 9.2e12: 12 digits.
QUANTITY_DECIMALS, QUANTITY_INTEGER_DIGITS = 6, 10
VALUE_DECIMALS, VALUE_INTEGER_DIGITS = 2, 12


# What the certificate (XML 1.0, schemas/certex-certificate-1.0.xsd) can carry: no control
# characters but tab and line breaks, no lone surrogates, no U+FFFE or U+FFFF.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# The certificate's ReferenceType: no blank at either end, no tab or line break inside.
_XSD_BLANK = " \t\n\r"
_GENERAL_AUTHORISATION = re.compile(r"[A-Z0-9][A-Z0-9.\-/]{1,9}")


def not_xml_text(value: str) -> str | None:
    """Why `value` cannot be text of an XML 1.0 document (the certificate), or None."""
    found = _NOT_XML_CHAR.search(value)
    if found is None:
        return None
    return (
        f"holds U+{ord(found.group()):04X} at character {found.start()}, which XML 1.0 (the"
        " certificate) cannot carry: control characters, NUL, lone surrogates"
    )


def _plain_text(value: Any, limit: int) -> bool:
    """True when `_Found.text` would find nothing wrong with `value`: checked first, so that a
    good value costs no path string and no call (the common case, licence after licence)."""
    return (
        isinstance(value, str)
        and len(value) <= limit
        and bool(value.strip())
        and _NOT_XML_CHAR.search(value) is None
    )


def _plain_amount(amount: Any, decimals: int, integer_digits: int) -> bool:
    """True when `_amount` would find nothing wrong with `amount` (a finite positive Decimal with
    at most `decimals` decimal places as written and at most `integer_digits` digits before the
    point). False says only "look closer": `_amount` then gives the verdict."""
    if not (amount.__class__ is Decimal and amount.is_finite() and amount > 0):
        return False
    # The places as written, read off the text (as_tuple builds a named tuple in Python); an
    # exponent in the text (1E+3, 1E-7) leaves the verdict to _amount.
    text = str(amount)
    if "E" in text or "e" in text:
        return False
    point = text.find(".")
    places = 0 if point < 0 else len(text) - point - 1
    return places <= decimals and amount.adjusted() < integer_digits


class _Found:
    """Collects problems for one licence from one source."""

    __slots__ = ("problems", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, path: str, reason: str, code: str, value: Any = None) -> None:
        shown = None if value is None else str(value)
        self.problems.append(Problem(reason, path, self.source, shown, code))

    def text(self, path: str, value: Any, what: str, limit: int) -> None:
        if value is None or (isinstance(value, str) and not value.strip()):
            self.add(path, f"{what} is missing", "missing")
        elif not isinstance(value, str):
            self.add(path, f"{what} must be text", "invalid", value)
        elif len(value) > limit:
            self.add(path, f"{what} is {len(value)} characters; at most {limit}", "too-long", value)
        elif reason := not_xml_text(value):
            self.add(path, f"{what} {reason}", "not-xml-text", repr(value)[:120])

    def country(self, path: str, value: Any, what: str) -> None:
        if value is None:
            self.add(path, f"{what} is missing", "missing")
            return
        reason = country_problem(value)
        if reason:
            self.add(path, f"{what}: {reason}", "country", value)


def _decimals(amount: Decimal) -> int:
    """Decimal places that carry a non-zero digit (trailing zeros change nothing)."""
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    index = len(digits) - 1
    while exponent < 0 and index > 0 and digits[index] == 0:
        exponent += 1
        index -= 1
    return max(0, -exponent)


def _amount(
    found: _Found, path: str, amount: Any, what: str, decimals: int, integer_digits: int
) -> bool:
    """Check a quantity or value; True when it is a usable positive Decimal."""
    if isinstance(amount, int) and not isinstance(amount, bool):
        amount = Decimal(amount)
    if not isinstance(amount, Decimal) or not amount.is_finite():
        found.add(path, f"{what} must be an exact decimal number", "invalid", amount)
        return False
    ok = True
    if amount <= 0:
        found.add(path, f"{what} must be more than zero", "not-positive", amount)
        ok = False
    if _decimals(amount) > decimals:
        found.add(path, f"{what} has more than {decimals} decimals", "too-many-decimals", amount)
        ok = False
    if amount and amount.adjusted() + 1 > integer_digits:
        found.add(
            path,
            f"{what} has more than {integer_digits} digits before the decimal point",
            "too-large",
            amount,
        )
        ok = False
    return ok


def _party(found: _Found, path: str, party: Party | None, what: str) -> None:
    if party is None:
        return
    if not _plain_text(party.name, MAX_NAME):
        found.text(f"{path}.name", party.name, f"the {what}'s name", MAX_NAME)
    if party.country is not None and country_problem(party.country):
        found.country(f"{path}.country", party.country, f"the {what}'s country")
    if party.address is not None and not _plain_text(party.address, MAX_ADDRESS):
        found.text(f"{path}.address", party.address, f"the {what}'s address", MAX_ADDRESS)


def _line(
    found: _Found, path: str, line: LicenceLine, licence_type: Any, lists: ControlLists
) -> None:
    number = line.line_number
    if number is None:
        found.add(f"{path}.line_number", "the line number is missing", "missing")
    elif (
        not isinstance(number, int)
        or isinstance(number, bool)
        or not 1 <= number <= MAX_LINE_NUMBER
    ):
        found.add(
            f"{path}.line_number",
            f"a line number is a whole number from 1 to {MAX_LINE_NUMBER}",
            "line-number",
            number,
        )

    cle = line.control_list_entry
    control_list = lists.get(line.control_list) if isinstance(line.control_list, str) else None
    normal = control_list.normalise(cle) if control_list and isinstance(cle, str) else None
    if control_list is None:
        found.add(
            f"{path}.control_list",
            f"{line.control_list!r} is not a known control list (known: {lists.ids()})",
            "control-list",
            line.control_list,
        )
    elif cle is None or (isinstance(cle, str) and not cle.strip()):
        found.add(f"{path}.control_list_entry", "the control list entry is missing", "missing")
    elif normal is None:
        found.add(f"{path}.control_list_entry", control_list.problem(str(cle)) or "", "cle", cle)
    elif normal != cle:
        spelling = "Annex I" if control_list.id == ANNEX_I_LIST else f"{control_list.id} list's"
        found.add(
            f"{path}.control_list_entry",
            f"a control list entry is stored in the {spelling} spelling ({normal})",
            "cle",
            cle,
        )
    elif len(cle) > MAX_CLE:
        found.add(
            f"{path}.control_list_entry", f"longer than {MAX_CLE} characters", "too-long", cle
        )

    if not _plain_text(line.description, 10_000):
        found.text(f"{path}.description", line.description, "the description", 10_000)
    if line.cn_code is not None:
        reason = cn_problem(line.cn_code)
        if reason:
            found.add(f"{path}.cn_code", reason, "cn", line.cn_code)

    if line.quantity is not None:
        if not _plain_amount(line.quantity, QUANTITY_DECIMALS, QUANTITY_INTEGER_DIGITS):
            _amount(
                found,
                f"{path}.quantity",
                line.quantity,
                "the quantity",
                QUANTITY_DECIMALS,
                QUANTITY_INTEGER_DIGITS,
            )
        if line.unit is None:
            found.add(f"{path}.unit", "a quantity needs its unit", "unit-missing")
    if line.unit is not None:
        reason = unit_problem(line.unit)
        if reason:
            found.add(f"{path}.unit", reason, "unit", line.unit)

    if line.value is not None:
        if not _plain_amount(line.value, VALUE_DECIMALS, VALUE_INTEGER_DIGITS):
            _amount(
                found,
                f"{path}.value",
                line.value,
                "the value",
                VALUE_DECIMALS,
                VALUE_INTEGER_DIGITS,
            )
        if line.currency is None:
            found.add(f"{path}.currency", "a value needs its currency", "currency-missing")
    if line.currency is not None:
        reason = currency_problem(line.currency)
        if reason:
            found.add(f"{path}.currency", reason, "currency", line.currency)

    for index, country in enumerate(line.destinations or ()):
        if country is None or country_problem(country):
            found.country(f"{path}.destinations[{index}]", country, "a destination")
    if line.consignee is not None:
        _party(found, f"{path}.consignee", line.consignee, "consignee")
    if line.end_user is not None:
        _party(found, f"{path}.end_user", line.end_user, "end user")

    if (
        isinstance(licence_type, LicenceType)
        and licence_type.has_ceiling
        and line.quantity is None
        and line.value is None
    ):
        found.add(
            path,
            f"a line of a{'n' if licence_type is LicenceType.INDIVIDUAL else ''}"
            f" {licence_type.value} licence needs a quantity or a value ceiling",
            "no-ceiling",
        )


# A scope entry of an open licence that is not an Annex I entry: a category (`5`), a category
# and group (`5A`), or an entry of a national or military list (`ML1.a`, `PL5001`).
_SCOPE_CATEGORY = re.compile(r"[0-9][A-E]?")
_SCOPE_OTHER = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-/]*")
_ANNEX_LOOK = re.compile(r"[0-9][A-Ea-e][0-9]")


def _open_scope(found: _Found, licence: Licence, kind: Any, has_lines: bool) -> None:
    """An open licence (no lines) is a global licence or a general authorisation, with its
    scope and ceilings on the licence; a licence with lines carries them on its lines."""
    scope = {
        "control_list_entries": licence.control_list_entries,
        "destinations": licence.destinations,
        "quantity": licence.quantity,
        "unit": licence.unit,
        "value": licence.value,
        "currency": licence.currency,
    }
    if has_lines:
        for name, value in scope.items():
            if value not in (None, ()):
                found.add(
                    name,
                    f"a licence with lines carries its {name.replace('_', ' ')} on its lines;"
                    " licence-level scope and ceilings are for open licences (no lines)",
                    "open-scope-with-lines",
                )
        return
    if isinstance(kind, LicenceType) and kind not in OPEN_TYPES:
        found.add(
            "lines",
            f"a{'n' if kind is LicenceType.INDIVIDUAL else ''} {kind.value} licence has at"
            " least one line; only global licences and general authorisations may be open"
            " (no lines: items by category or destination)",
            "no-lines",
        )
    for index, entry in enumerate(licence.control_list_entries or ()):
        path = f"control_list_entries[{index}]"
        if not isinstance(entry, str) or not entry.strip():
            found.add(path, "a control list entry or category is missing", "missing")
        elif len(entry) > MAX_CLE:
            found.add(path, f"longer than {MAX_CLE} characters", "too-long", entry)
        elif _ANNEX_LOOK.match(entry) and normalise_cle(entry) != entry:
            annex = normalise_cle(entry)
            found.add(
                path,
                f"an Annex I entry is stored in its Annex I spelling ({annex})"
                if annex
                else cle_problem(entry) or "not an Annex I control list entry",
                "cle",
                entry,
            )
        elif not (
            _SCOPE_CATEGORY.fullmatch(entry)
            or normalise_cle(entry) == entry
            or _SCOPE_OTHER.fullmatch(entry)
        ):
            found.add(
                path,
                "a scope entry is an Annex I entry (5A002.a), a category (5) or category and"
                " group (5A), or a national or military list entry (ML1.a, PL5001)",
                "cle",
                entry,
            )
    for index, country in enumerate(licence.destinations or ()):
        found.country(f"destinations[{index}]", country, "a destination")
    if licence.quantity is not None:
        _amount(
            found,
            "quantity",
            licence.quantity,
            "the licence's quantity ceiling",
            QUANTITY_DECIMALS,
            QUANTITY_INTEGER_DIGITS,
        )
        if licence.unit is None:
            found.add("unit", "a quantity ceiling needs its unit", "unit-missing")
    if licence.unit is not None and (reason := unit_problem(licence.unit)):
        found.add("unit", reason, "unit", licence.unit)
    if licence.value is not None:
        _amount(
            found,
            "value",
            licence.value,
            "the licence's value ceiling",
            VALUE_DECIMALS,
            VALUE_INTEGER_DIGITS,
        )
        if licence.currency is None:
            found.add("currency", "a value ceiling needs its currency", "currency-missing")
    if licence.currency is not None and (reason := currency_problem(licence.currency)):
        found.add("currency", reason, "currency", licence.currency)


def licence_problems(
    licence: Licence, source: str, control_lists: ControlLists | None = None
) -> list[Problem]:
    """Everything wrong with `licence` (read from `source`), all at once; [] when it is valid.
    A line's control list entry is checked against its list in `control_lists` (the project's
    table, mappings/reference/control-lists.yaml, by default)."""
    found = _Found(source)
    lists = control_lists or project_control_lists()
    number = licence.number
    found.text("number", number, "the licence number", MAX_NUMBER)
    if isinstance(number, str) and number.strip():
        if number != number.strip(_XSD_BLANK):
            found.add("number", "a licence number has no blank at either end", "reference", number)
        elif "\t" in number or "\n" in number or "\r" in number:
            found.add(
                "number", "a licence number has no tab or line break inside", "reference", number
            )

    kind = licence.type
    if kind is None:
        found.add("type", "the licence type is missing", "missing")
    elif not isinstance(kind, LicenceType):
        found.add("type", "unknown licence type", "invalid", kind)
    if licence.status is None:
        found.add("status", "the licence status is missing", "missing")
    elif not isinstance(licence.status, LicenceStatus):
        found.add("status", "unknown licence status", "invalid", licence.status)
    version = licence.version
    if version is None:
        found.add("version", "the version is missing", "missing")
    elif (
        not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION
    ):
        found.add(
            "version", f"a version is a whole number from 1 to {MAX_VERSION}", "invalid", version
        )

    found.country("issuing_member_state", licence.issuing_member_state, "the issuing member state")
    found.text("issuing_authority", licence.issuing_authority, "the issuing authority", MAX_NAME)
    found.text("holder_name", licence.holder_name, "the holder's name", MAX_NAME)
    if licence.holder_eori is None:
        found.add("holder_eori", "the holder's EORI is missing", "missing")
    else:
        reason = eori_problem(licence.holder_eori)
        if reason:
            found.add("holder_eori", reason, "eori", licence.holder_eori)

    if licence.valid_from is None:
        found.add("valid_from", "the first day of validity is missing", "missing")
    elif licence.valid_to is not None and licence.valid_to < licence.valid_from:
        found.add(
            "valid_to",
            f"the licence ends ({licence.valid_to}) before it starts ({licence.valid_from})",
            "dates-reversed",
            licence.valid_to,
        )

    general = licence.general_authorisation
    if general is not None and len(general) > MAX_GENERAL_AUTHORISATION:
        found.add(
            "general_authorisation",
            f"at most {MAX_GENERAL_AUTHORISATION} characters",
            "too-long",
            general,
        )
    elif general is not None and not (
        isinstance(general, str) and _GENERAL_AUTHORISATION.fullmatch(general)
    ):
        found.add(
            "general_authorisation",
            "a general authorisation is 2 to 10 capital letters, digits, '.', '-' or '/',"
            " led by a letter or digit (EU001, DK002, OGEL-CRYP)",
            "general-authorisation",
            general,
        )
    if kind is LicenceType.UNION_GENERAL and general not in UNION_GENERAL_AUTHORISATIONS:
        found.add(
            "general_authorisation",
            "a Union general authorisation must name one of EU001 to EU008",
            "general-authorisation",
            general,
        )
    elif kind is LicenceType.NATIONAL_GENERAL and general in UNION_GENERAL_AUTHORISATIONS:
        found.add(
            "general_authorisation",
            f"{general} is a Union general authorisation, not a national one",
            "general-authorisation",
            general,
        )

    lines = licence.lines or ()
    _open_scope(found, licence, kind, bool(lines))
    first_index: dict[Any, int] = {}
    for index, line in enumerate(lines):
        path = f"lines[{index}]"
        _line(found, path, line, kind, lists)
        number = line.line_number
        if number is None:
            continue
        if number in first_index:
            found.add(
                f"{path}.line_number",
                f"line number {number} is also used by lines[{first_index[number]}]",
                "duplicate-line",
                number,
            )
        else:
            first_index[number] = index
    return found.problems
