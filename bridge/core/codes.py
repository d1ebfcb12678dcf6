"""Code lists and identifier syntax of the field: CLE, EORI, countries, currencies, CN codes,
customs document codes. Pure functions; every check returns a reason or None."""

from __future__ import annotations

import itertools
import re
from functools import cache

import pycountry

from bridge.core.model import LicenceType

# Customs-specific country codes that ISO 3166-1 does not list but declarations use:
# XI = Northern Ireland (customs), XK = Kosovo (user-assigned, used by the EU).
_EXTRA_COUNTRIES = frozenset({"XI", "XK"})


@cache
def countries() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries) | _EXTRA_COUNTRIES


@cache
def currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)


def country_problem(code: str) -> str | None:
    if code == "EL":
        return "EL is the VAT prefix for Greece; customs and ISO 3166 use GR"
    if not re.fullmatch(r"[A-Z]{2}", code or ""):
        return "a country is two capital letters (ISO 3166-1 alpha-2)"
    if code not in countries():
        return f"{code} is not an ISO 3166-1 alpha-2 country code"
    return None


def currency_problem(code: str) -> str | None:
    if not re.fullmatch(r"[A-Z]{3}", code or ""):
        return "a currency is three capital letters (ISO 4217)"
    if code not in currencies():
        return f"{code} is not an ISO 4217 currency code"
    return None


_EORI = re.compile(r"([A-Z]{2})([A-Z0-9]{1,15})")


def normalise_eori(raw: str) -> str:
    return re.sub(r"[\s-]", "", raw or "").upper()


def eori_problem(eori: str) -> str | None:
    """EORI: an ISO 3166 alpha-2 prefix (GR for Greece, XI for Northern Ireland) then 1-15
    letters or digits."""
    match = _EORI.fullmatch(eori or "")
    if not match:
        return "an EORI is a two-letter country prefix followed by 1 to 15 letters or digits"
    prefix_problem = country_problem(match.group(1))
    return f"EORI prefix: {prefix_problem}" if prefix_problem else None


# Control list entry: category 0-9, product group A-E, regime digit, two item digits, then
# sub-items alternating letters and numbers. Annex I writes `5A002.a.1`, tariff footnotes
# `5A002a1`; both normalise to the dotted Annex form.
_CLE_STEM = re.compile(r"([0-9])([A-Ea-e])([0-9]{3})")
_CLE_TOKEN = re.compile(r"[a-z]|[0-9]+")
_CLE_REST = re.compile(r"[a-z0-9.]*")
# Far past any Annex I entry (the certificate holds 40 characters): longer text is refused
# before it is looked at.
MAX_CLE_TEXT = 64


def normalise_cle(raw: str) -> str | None:
    """The Annex I spelling of a control list entry, or None when it is not one.

    Linear in the length of `raw`: no pattern here can backtrack, and text longer than
    MAX_CLE_TEXT characters (blanks aside) is refused outright."""
    text = re.sub(r"\s+", "", raw or "")
    if len(text) > MAX_CLE_TEXT:
        return None
    stem = _CLE_STEM.match(text)
    if not stem:
        return None
    rest = text[stem.end() :].lower()
    # Sub-items, each after at most one dot: letters, digits and single dots, no dot last.
    if not _CLE_REST.fullmatch(rest) or ".." in rest or rest.endswith("."):
        return None
    tokens = _CLE_TOKEN.findall(rest)
    # Sub-items alternate letter and number: "a1" and "a.1" are the same, "aa" or "11" is not.
    for left, right in itertools.pairwise(tokens):
        if left.isdigit() == right.isdigit():
            return None
    head = f"{stem.group(1)}{stem.group(2).upper()}{stem.group(3)}"
    return ".".join([head, *tokens])


def cle_problem(raw: str) -> str | None:
    if normalise_cle(raw) is None:
        length = len(re.sub(r"\s+", "", raw or ""))
        if length > MAX_CLE_TEXT:
            return f"a control list entry has at most 40 characters, not {length}"
        return (
            "a control list entry is category 0-9, group A-E, three digits, then sub-items"
            " (e.g. 5A002.a.1 or 5A002a1)"
        )
    return None


def cn_problem(code: str) -> str | None:
    """CN codes are 8 digits; 6 (HS) or 10 (TARIC) are accepted as written."""
    if not re.fullmatch(r"[0-9]{6}|[0-9]{8}|[0-9]{10}", code or ""):
        return "a CN code is 8 digits (6-digit HS and 10-digit TARIC codes are also accepted)"
    return None


def normalise_cn(raw: str) -> str:
    return re.sub(r"[\s.]", "", raw or "")


UNION_GENERAL_AUTHORISATIONS = tuple(f"EU00{n}" for n in range(1, 9))

# Data element 12 03 document codes for dual-use exports (since 9 September 2021), and the
# legacy X002. The value is the licence type the code asserts (None = look it up).
DUAL_USE_DOCUMENT_CODES: dict[str, LicenceType | None] = {
    "X002": None,
    "X060": LicenceType.INDIVIDUAL,
    **{f"X06{n}": LicenceType.UNION_GENERAL for n in range(1, 9)},
    "X070": LicenceType.GLOBAL,
    "X071": LicenceType.NATIONAL_GENERAL,
    "X072": LicenceType.INDIVIDUAL,  # transit authorisation: an individual decision
}
NO_LICENCE_NEEDED = "Y901"


def union_general_authorisation_for(code: str) -> str | None:
    """X061..X068 stand for EU001..EU008."""
    if re.fullmatch(r"X06[1-8]", code):
        return f"EU00{code[-1]}"
    return None
