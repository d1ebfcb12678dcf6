"""Measurement units: EU tariff units and UN/ECE Recommendation 20 codes, with the explicit
conversions the bridge allows. Mass to mass and volume to volume convert exactly in Decimal;
anything else is refused with a reason, never guessed.

A unit may carry a qualifier after '#': `KGM#G` is kilogram gross, `KGM#N` kilogram net."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Unit:
    code: str
    dimension: str  # mass, volume, length, area, items, pairs, energy, fissile
    factor: Decimal  # how many base units of the dimension one of this unit is
    name: str


_UNITS = {
    u.code: u
    for u in (
        Unit("MGM", "mass", Decimal("0.000001"), "milligram"),
        Unit("GRM", "mass", Decimal("0.001"), "gram"),
        Unit("KGM", "mass", Decimal(1), "kilogram"),
        Unit("DTN", "mass", Decimal(100), "decitonne"),
        Unit("TNE", "mass", Decimal(1000), "tonne"),
        Unit("MLT", "volume", Decimal("0.001"), "millilitre"),
        Unit("CLT", "volume", Decimal("0.01"), "centilitre"),
        Unit("LTR", "volume", Decimal(1), "litre"),
        Unit("HLT", "volume", Decimal(100), "hectolitre"),
        Unit("MTQ", "volume", Decimal(1000), "cubic metre"),
        Unit("MMT", "length", Decimal("0.001"), "millimetre"),
        Unit("CMT", "length", Decimal("0.01"), "centimetre"),
        Unit("MTR", "length", Decimal(1), "metre"),
        Unit("KMT", "length", Decimal(1000), "kilometre"),
        Unit("CMK", "area", Decimal("0.0001"), "square centimetre"),
        Unit("MTK", "area", Decimal(1), "square metre"),
        # Items: NAR is the EU tariff unit, C62 ("one") and H87 ("piece") its Rec 20 peers.
        Unit("NAR", "items", Decimal(1), "number of items"),
        Unit("C62", "items", Decimal(1), "one (unit)"),
        Unit("H87", "items", Decimal(1), "piece"),
        Unit("NPR", "pairs", Decimal(1), "number of pairs"),
        Unit("KWH", "energy", Decimal(1), "kilowatt hour"),
        Unit("GFI", "fissile", Decimal(1), "gram of fissile isotopes"),
    )
}

QUALIFIERS = {"G": "gross", "N": "net"}


class UnitError(ValueError):
    """A unit is unknown or two units do not convert."""


@dataclass(frozen=True, slots=True)
class Measure:
    unit: Unit
    qualifier: str | None  # G, N or None

    @property
    def code(self) -> str:
        return f"{self.unit.code}#{self.qualifier}" if self.qualifier else self.unit.code


def known_units() -> tuple[str, ...]:
    return tuple(_UNITS)


@lru_cache(maxsize=512)  # a handful of codes, asked for every write-off
def parse_unit(code: str) -> Measure:
    """`KGM#G` -> kilogram, gross. Raises UnitError with the reason for an unknown code."""
    base, sign, qualifier = (code or "").strip().upper().partition("#")
    unit = _UNITS.get(base)
    if unit is None:
        raise UnitError(f"unknown unit {code!r}; known units: {', '.join(_UNITS)}")
    if sign and not qualifier:
        raise UnitError(f"{code!r} needs a qualifier after '#' (G gross, N net), or no '#'")
    if qualifier and qualifier not in QUALIFIERS:
        raise UnitError(f"unknown unit qualifier {qualifier!r} in {code!r} (G gross, N net)")
    return Measure(unit, qualifier or None)


def unit_problem(code: str) -> str | None:
    try:
        parse_unit(code)
    except UnitError as error:
        return str(error)
    return None


def convert(quantity: Decimal, from_code: str, to_code: str) -> Decimal:
    """`quantity` in `from_code` expressed in `to_code`, exactly. A qualifier on only one side
    (the licence line says `KGM`, the declaration `KGM#G`) is accepted: the line does not
    distinguish. Gross against net, or two dimensions, is refused."""
    source, target = parse_unit(from_code), parse_unit(to_code)
    if source.unit.dimension != target.unit.dimension:
        raise UnitError(
            f"{source.code} ({source.unit.dimension}) does not convert to"
            f" {target.code} ({target.unit.dimension})"
        )
    if source.qualifier and target.qualifier and source.qualifier != target.qualifier:
        raise UnitError(
            f"{source.code} is {QUALIFIERS[source.qualifier]} and {target.code} is"
            f" {QUALIFIERS[target.qualifier]}: gross and net do not convert"
        )
    if source.unit.factor == target.unit.factor:
        return quantity
    return plain(quantity * source.unit.factor / target.unit.factor)


def plain(quantity: Decimal) -> Decimal:
    """The same number without exponent notation or trailing zeros: 1.0200E+5 -> 102000."""
    normal = quantity.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal
