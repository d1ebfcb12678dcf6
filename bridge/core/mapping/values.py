"""How text read from a national record becomes a canonical value.

A mapping compiles each field once into a converter: a plain function from the raw value (a
string from CSV or XML; a string, number or list from JSON) to the canonical value. A converter
returns `MISSING` for an absent or blank value and raises `FieldError` with a reason for a value
it cannot read; it never raises anything else for bad input."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from typing import Any

from bridge.core.codes import normalise_cle, normalise_cn, normalise_eori
from bridge.core.model import LicenceStatus, LicenceType


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_UNKNOWN = object()

Converter = Callable[[Any], Any]


class FieldError(ValueError):
    """A raw value that cannot become the field's value; `code` classifies the reason."""

    def __init__(self, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


# What each canonical field is, so a mapping never has to say it.
KINDS = (
    "text",
    "country",
    "countries",
    "currency",
    "unit",
    "eori",
    "cle",
    "cn",
    "code",
    "date",
    "integer",
    "quantity",
    "money",
    "licence_type",
    "licence_status",
    "scope",  # an open licence's control list entries or categories (a list)
    "control_list",  # the id of a control list (mappings/reference/control-lists.yaml)
)


class Conventions:
    """How one export writes dates, numbers and lists (the mapping's `conventions`)."""

    __slots__ = ("date_format", "decimal_comma", "list_separator", "thousands_separator")

    def __init__(
        self,
        date_format: tuple[str, ...] = ("%Y-%m-%d",),
        decimal_comma: bool = False,
        thousands_separator: str | None = None,
        list_separator: str = ",",
    ) -> None:
        self.date_format = date_format
        self.decimal_comma = decimal_comma
        self.thousands_separator = thousands_separator
        self.list_separator = list_separator


def shown(raw: Any) -> str | None:
    """The raw value as a problem report shows it."""
    if raw is None:
        return None
    text = raw if isinstance(raw, str) else str(raw)
    return text if len(text) <= 200 else text[:197] + "..."


def _scalar(raw: Any) -> Any:
    """A stripped string, MISSING for blank, or the JSON number as it came."""
    if raw is None:
        return MISSING
    if isinstance(raw, str):
        return raw.strip() or MISSING
    if isinstance(raw, bool):
        raise FieldError(f"expected a value, got {str(raw).lower()}", "invalid")
    if isinstance(raw, int | Decimal | float):
        return raw
    if isinstance(raw, list):
        if not raw:
            return MISSING
        if len(raw) == 1:
            return _scalar(raw[0])
        raise FieldError(f"expected one value, got a list of {len(raw)}", "invalid")
    raise FieldError(f"expected a value, got {type(raw).__name__}", "invalid")


def _with_map(
    convert: Callable[[Any], Any], value_map: Mapping[str, str | None] | None, known: str
) -> Callable[[Any], Any]:
    """Look a word up in the mapping's closed word list. The targets are converted here, once
    (a bad target raises FieldError now, when the mapping is compiled)."""
    if value_map is None:
        return convert
    table = {
        key.casefold(): MISSING if value is None else convert(value)
        for key, value in value_map.items()
    }

    def mapped(value: Any) -> Any:
        word = value if isinstance(value, str) else str(value)
        target = table.get(word.casefold(), _UNKNOWN)
        if target is _UNKNOWN:
            raise FieldError(
                f"{shown(word)!r} is not a word this mapping knows (known: {known})", "word"
            )
        return target

    return mapped


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _upper(value: Any) -> str:
    return _text(value).upper()


def _eori(value: Any) -> str:
    return normalise_eori(_text(value))


_normalise_cle = lru_cache(maxsize=8192)(normalise_cle)  # entries repeat across licences


def _cle(value: Any) -> str:
    # As written: the engine spells it as its control list does (Annex I, military, national),
    # and a malformed entry is kept so validation can report it with its reason.
    return _text(value)


def _scope_entry(value: Any) -> str:
    # An Annex I entry in its Annex spelling; a category (5, 5A) or another list's entry as
    # written (the engine spells those by the format's control lists).
    text = _text(value).strip()
    return _normalise_cle(text) or text


def _control_list(value: Any) -> str:
    return _text(value).lower()


def _cn(value: Any) -> str:
    return normalise_cn(_text(value))


_INTEGER = re.compile(r"[+-]?[0-9]+")
_MAX_INTEGER_DIGITS = 100


def _integer(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        # adjusted() first: int() of 1E+999999 would build a million-digit number
        if value.is_finite() and value.adjusted() < 18 and value == value.to_integral_value():
            return int(value)
        raise FieldError(f"{shown(value)} is not a whole number", "not-a-number")
    if _INTEGER.fullmatch(value):
        # Validation says how large each field may be; int() itself refuses 4,300 digits with
        # a ValueError of its own, and no field comes anywhere near this.
        if len(value) > _MAX_INTEGER_DIGITS:
            raise FieldError(
                f"{shown(value)!r} has {len(value)} digits; no whole number read here has more"
                f" than {_MAX_INTEGER_DIGITS}",
                "not-a-number",
            )
        return int(value)
    raise FieldError(f"{shown(value)!r} is not a whole number", "not-a-number")


def _enum_converter(enum: type[StrEnum], what: str) -> Callable[[Any], Any]:
    words = ", ".join(member.value for member in enum)

    def convert(value: Any) -> Any:
        try:
            return enum(_text(value).lower())
        except ValueError:
            raise FieldError(f"{shown(value)!r} is not a {what} (one of {words})", "word") from None

    return convert


def date_converter(formats: tuple[str, ...]) -> Callable[[Any], date]:
    """Dates in any of `formats` (strptime directives), tried in order."""
    expected = " or ".join(formats)

    def parse_one(text: str, fmt: str) -> date:
        # The two commonest formats skip strptime, which is slow.
        if fmt == "%Y-%m-%d" and len(text) == 10 and text[4] == "-" and text[7] == "-":
            return date(int(text[:4]), int(text[5:7]), int(text[8:]))
        if fmt == "%d.%m.%Y":
            day, month, year = text.split(".")
            if len(year) != 4:
                raise ValueError("the year has four digits")
            return date(int(year), int(month), int(day))
        return datetime.strptime(text, fmt).date()

    def convert(value: Any) -> date:
        text = _text(value)
        reason = ""
        for fmt in formats:
            try:
                return parse_one(text, fmt)
            except ValueError as error:
                reason = str(error)
            except OverflowError:  # a day, month or year of twenty digits
                reason = "a number in it is far too large"
        raise FieldError(
            f"{shown(text)!r} is not a date written {expected} ({reason})", "not-a-date"
        )

    return convert


def decimal_converter(conventions: Conventions) -> Callable[[Any], Decimal]:
    """Exact decimals: a point (or, with `decimal_comma`, a comma) before the decimals,
    optionally a thousands separator grouping digits by three; never via float."""
    mark = "," if conventions.decimal_comma else "."
    group = conventions.thousands_separator
    plain = re.compile(rf"[+-]?[0-9]+(?:{re.escape(mark)}[0-9]+)?")
    grouped = (
        re.compile(
            rf"[+-]?[0-9]{{1,3}}(?:{re.escape(group)}[0-9]{{3}})+(?:{re.escape(mark)}[0-9]+)?"
        )
        if group
        else None
    )
    described = f"digits with {mark!r} before the decimals" + (
        f" and {group!r} between groups of three digits" if group else ""
    )

    def convert(value: Any) -> Decimal:
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise FieldError(f"{shown(value)} is not a number", "not-a-number")
            return value
        if isinstance(value, int):
            return Decimal(value)
        if isinstance(value, float):
            return Decimal(repr(value))
        text = value
        if plain.fullmatch(text):
            pass
        elif grouped is not None and grouped.fullmatch(text):
            text = text.replace(group, "")
        else:
            raise FieldError(f"{shown(value)!r} is not a number ({described})", "not-a-number")
        if mark == ",":
            text = text.replace(",", ".")
        try:
            return Decimal(text)
        except InvalidOperation:  # the patterns above make this unreachable; kept as a guard
            raise FieldError(f"{shown(value)!r} is not a number", "not-a-number") from None

    return convert


_MAX_EXPANDED = 24  # far past any valid amount; a larger exponent is left for validation


def canonical_quantity(amount: Decimal) -> Decimal:
    """The same quantity without trailing zeros or exponent (12.750 -> 12.75, 5E+2 -> 500),
    exactly: no rounding context is involved. One spelling per amount keeps a re-sent licence
    from looking changed because its export wrote 500.0 instead of 500."""
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):
        return amount
    end = len(digits)
    while exponent < 0 and end > 1 and digits[end - 1] == 0:
        end -= 1
        exponent += 1
    if 0 < exponent <= _MAX_EXPANDED:
        return Decimal((sign, digits[:end] + (0,) * exponent, 0))
    return Decimal((sign, digits[:end], exponent))


def canonical_money(amount: Decimal) -> Decimal:
    """A value with exactly two decimals (900000.0 -> 900000.00); one with more significant
    decimals is left as it is, for validation to report."""
    plain = canonical_quantity(amount)
    sign, digits, exponent = plain.as_tuple()
    if isinstance(exponent, int) and -2 <= exponent <= 0:
        return Decimal((sign, digits + (0,) * (exponent + 2), -2))
    return plain


def make_converter(
    kind: str,
    conventions: Conventions,
    *,
    value_map: Mapping[str, str | None] | None = None,
) -> Converter:
    """The converter for a field of `kind`: raw value -> value, MISSING or FieldError."""
    known = ", ".join(value_map) if value_map else ""
    if kind in ("countries", "scope"):
        item = _with_map(_upper if kind == "countries" else _scope_entry, value_map, known)
        separator = conventions.list_separator

        def countries(raw: Any) -> Any:
            if raw is None:
                return MISSING
            pieces: list[Any] = []
            for part in raw if isinstance(raw, list) else [raw]:
                if isinstance(part, str):
                    pieces.extend(part.split(separator) if separator else [part])
                elif part is not None:
                    pieces.append(part)
            found = []
            for piece in pieces:
                value = _scalar(piece)
                if value is not MISSING:
                    value = item(value)
                    if value is not MISSING:
                        found.append(value)
            return tuple(found) if found else MISSING

        return countries

    simple: dict[str, Callable[[Any], Any]] = {
        "text": _text,
        "country": _upper,
        "currency": _upper,
        "unit": _upper,
        "eori": _eori,
        "cle": _cle,
        "control_list": _control_list,
        "cn": _cn,
        "code": _upper,
        "integer": _integer,
    }
    if kind in simple:
        convert = simple[kind]
    elif kind == "date":
        convert = date_converter(conventions.date_format)
    elif kind in ("quantity", "money"):
        read = decimal_converter(conventions)
        mark = "," if conventions.decimal_comma else "."
        if kind == "quantity":

            def convert(value: Any) -> Decimal:
                amount = read(value)
                # Text read without a fraction, or whose fraction ends in a digit other than
                # 0, is already canonical (no trailing zero, no exponent): the common case.
                if value.__class__ is str and (mark not in value or value[-1] != "0"):
                    return amount
                return canonical_quantity(amount)

        else:

            def convert(value: Any) -> Decimal:
                amount = read(value)
                # Text read with exactly two decimals is already canonical money.
                if value.__class__ is str and len(value) >= 3 and value[-3] == mark:
                    return amount
                return canonical_money(amount)

    elif kind == "licence_type":
        convert = _enum_converter(LicenceType, "licence type")
    elif kind == "licence_status":
        convert = _enum_converter(LicenceStatus, "licence status")
    else:
        raise ValueError(f"unknown field kind {kind!r}")
    convert = _with_map(convert, value_map, known)
    if convert is _text:

        def text(raw: Any) -> Any:
            if raw.__class__ is str:  # the common case: a string is its own text
                return raw.strip() or MISSING
            value = _scalar(raw)
            return value if value is MISSING else _text(value)

        return text

    def scalar(raw: Any) -> Any:
        if raw.__class__ is str:  # the common case, kept short
            text = raw.strip()
            return convert(text) if text else MISSING
        value = _scalar(raw)
        return value if value is MISSING else convert(value)

    return scalar


# Kinds whose raw words repeat from record to record (codes, dates, words of a closed list);
# amounts and free text are mostly unique, so remembering them would only cost.
MEMO_KINDS = frozenset(KINDS) - {"text", "quantity", "money"}
_MEMO_ENTRIES = 4096  # per field; forgotten all at once when full
_MEMO_LONGEST = 64  # a longer raw value is converted every time rather than kept


def memoised(convert: Converter) -> Converter:
    """`convert`, remembering its results for short raw strings: the same word always gives
    the same value (converters are pure), so a repeated word costs one dictionary lookup.
    A raw value that is refused (FieldError) is never remembered and raises every time; other
    raw values (JSON numbers, lists, None) are converted as they come."""
    memo: dict[str, Any] = {}
    unknown = _UNKNOWN

    def remembered(raw: Any) -> Any:
        if raw.__class__ is not str or len(raw) > _MEMO_LONGEST:
            return convert(raw)
        value = memo.get(raw, unknown)
        if value is unknown:
            value = convert(raw)
            if len(memo) >= _MEMO_ENTRIES:
                memo.clear()
            memo[raw] = value
        return value

    return remembered
