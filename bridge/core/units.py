"""Measurement units: EU tariff units and UN/ECE Recommendation 20 codes, with the explicit
conversions the bridge allows. Mass to mass and volume to volume convert exactly in Decimal;
anything else is refused with a reason, never guessed.

A unit may carry a qualifier after '#': `KGM#G` is kilogram gross, `KGM#N` kilogram net.

The micro units national systems use for toxins, pathogens and reagents (microgram `MC`,
microlitre `4G`, micrometre `4H`, cubic millimetre `MMQ`...) are Rec 20 units like the others.
Their factors are exact powers of ten, so every conversion is exact; but the ledger keeps six
decimals, and `convert_exact` refuses a conversion whose result would need more (one microgram
is 0.000000001 kg): the line must then count in a finer unit, nothing is rounded."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, Inexact
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
        Unit("MC", "mass", Decimal("0.000000001"), "microgram"),
        Unit("MGM", "mass", Decimal("0.000001"), "milligram"),
        Unit("DG", "mass", Decimal("0.0001"), "decigram"),
        Unit("GRM", "mass", Decimal("0.001"), "gram"),
        Unit("HGM", "mass", Decimal("0.1"), "hectogram"),
        Unit("KGM", "mass", Decimal(1), "kilogram"),
        Unit("DTN", "mass", Decimal(100), "decitonne"),
        Unit("TNE", "mass", Decimal(1000), "tonne"),
        Unit("4G", "volume", Decimal("0.000001"), "microlitre"),
        Unit("MMQ", "volume", Decimal("0.000001"), "cubic millimetre"),
        Unit("MLT", "volume", Decimal("0.001"), "millilitre"),
        Unit("CMQ", "volume", Decimal("0.001"), "cubic centimetre"),
        Unit("CLT", "volume", Decimal("0.01"), "centilitre"),
        Unit("DLT", "volume", Decimal("0.1"), "decilitre"),
        Unit("LTR", "volume", Decimal(1), "litre"),
        Unit("DMQ", "volume", Decimal(1), "cubic decimetre"),
        Unit("HLT", "volume", Decimal(100), "hectolitre"),
        Unit("MTQ", "volume", Decimal(1000), "cubic metre"),
        Unit("4H", "length", Decimal("0.000001"), "micrometre"),
        Unit("MMT", "length", Decimal("0.001"), "millimetre"),
        Unit("CMT", "length", Decimal("0.01"), "centimetre"),
        Unit("MTR", "length", Decimal(1), "metre"),
        Unit("KMT", "length", Decimal(1000), "kilometre"),
        Unit("MMK", "area", Decimal("0.000001"), "square millimetre"),
        Unit("CMK", "area", Decimal("0.0001"), "square centimetre"),
        Unit("MTK", "area", Decimal(1), "square metre"),
        # Items: NAR is the EU tariff unit, C62 ("one") and H87 ("piece") its Rec 20 peers.
        Unit("NAR", "items", Decimal(1), "number of items"),
        Unit("C62", "items", Decimal(1), "one (unit)"),
        Unit("H87", "items", Decimal(1), "piece"),
        Unit("NPR", "pairs", Decimal(1), "number of pairs"),
        Unit("KWH", "energy", Decimal(1), "kilowatt hour"),
        Unit("MWH", "energy", Decimal(1000), "megawatt hour"),
        Unit("GFI", "fissile", Decimal(1), "gram of fissile isotopes"),
    )
}

# What a person may type instead of a code (case does not matter): the everyday symbols, each
# meaning exactly one Rec 20 unit. Declarations and national records keep their codes: only
# typed input (`elbridge manual --unit kg`, the console's forms) goes through `from_alias`.
ALIASES = {
    "ug": "MC",
    "µg": "MC",  # the micro sign, and the Greek mu below: keyboards give either
    "μg": "MC",
    "mcg": "MC",
    "mg": "MGM",
    "g": "GRM",
    "kg": "KGM",
    "t": "TNE",
    "tonne": "TNE",
    "ul": "4G",
    "µl": "4G",
    "μl": "4G",
    "ml": "MLT",
    "cl": "CLT",
    "dl": "DLT",
    "l": "LTR",
    "litre": "LTR",
    "liter": "LTR",
    "hl": "HLT",
    "mm3": "MMQ",
    "cm3": "CMQ",
    "dm3": "DMQ",
    "m3": "MTQ",
    "um": "4H",
    "µm": "4H",
    "μm": "4H",
    "mm": "MMT",
    "cm": "CMT",
    "m": "MTR",
    "km": "KMT",
    "mm2": "MMK",
    "cm2": "CMK",
    "m2": "MTK",
    "pcs": "H87",
    "pc": "H87",
    "piece": "H87",
    "pieces": "H87",
    "items": "NAR",
    "pairs": "NPR",
}

QUALIFIERS = {"G": "gross", "N": "net"}
# The ledger keeps quantities in millionths (customs data model: quantity n..16,6).
LEDGER_DECIMALS = 6


class UnitError(ValueError):
    """A unit is unknown or two units do not convert."""


class UnitPrecisionError(UnitError):
    """Two units convert, but this quantity in the target unit needs more decimals than are
    kept (`convert_exact`): refused, never rounded. Carries the figures for a caller's own
    wording."""

    def __init__(
        self,
        quantity: Decimal,
        from_code: str,
        converted: Decimal,
        to_code: str,
        needed: int,
        decimals: int,
    ) -> None:
        self.quantity, self.from_code = quantity, from_code
        self.converted, self.to_code = converted, to_code
        self.needed, self.decimals = needed, decimals
        super().__init__(
            f"{plain(quantity):f} {from_code} is {converted:f} {to_code}, which needs {needed}"
            f" decimals; the ledger keeps {decimals}, and a quantity is never rounded into a"
            f" coarser unit: count it in {from_code} or a unit between"
        )


@dataclass(frozen=True, slots=True)
class Measure:
    unit: Unit
    qualifier: str | None  # G, N or None

    @property
    def code(self) -> str:
        return f"{self.unit.code}#{self.qualifier}" if self.qualifier else self.unit.code


def known_units() -> tuple[str, ...]:
    return tuple(_UNITS)


def accepted_units() -> str:
    """Every code, and every alias with the code it stands for, as one line for a message."""
    aliases = ", ".join(f"{alias}={code}" for alias, code in ALIASES.items())
    return f"{', '.join(_UNITS)} (or {aliases})"


def from_alias(text: str) -> str:
    """The Rec 20 code a person meant: `kg` -> `KGM`, `kg#g` -> `KGM#G`; a code, or text that
    is neither, comes back as it was typed (stripped), for `parse_unit` to accept or refuse."""
    base, sign, qualifier = (text or "").strip().partition("#")
    code = ALIASES.get(base.strip().lower())
    if code is None:
        return (text or "").strip()
    return f"{code}{sign}{qualifier.upper()}"


@lru_cache(maxsize=512)  # a handful of codes, asked for every write-off
def parse_unit(code: str) -> Measure:
    """`KGM#G` -> kilogram, gross. Raises UnitError with the reason for an unknown code."""
    base, sign, qualifier = (code or "").strip().upper().partition("#")
    unit = _UNITS.get(base)
    if unit is None:
        hint = ALIASES.get(base.lower())
        if hint is not None:
            raise UnitError(f"unknown unit {code!r}: the code for {code.strip()!r} is {hint}")
        raise UnitError(f"unknown unit {code!r}; known units: {accepted_units()}")
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


def decimals_needed(quantity: Decimal) -> int:
    """How many decimal places `quantity` needs (trailing zeros need none): 1.50 needs 1."""
    exponent = quantity.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def convert_exact(
    quantity: Decimal, from_code: str, to_code: str, decimals: int = LEDGER_DECIMALS
) -> Decimal:
    """`convert`, refused when the result needs more than `decimals` decimals: UnitError when
    the units do not convert, its subclass UnitPrecisionError when this quantity does not fit.

    The rule: a quantity is never rounded into a coarser unit. 250 MC is 0.25 MGM and
    0.00025 GRM, but 0.00000025 KGM needs eight decimals where the ledger keeps six, so MC to
    KGM is refused for it (while 2500000 MC, 0.0025 KGM, converts). The same rule holds for a
    write-off counted on a licence line (bridge.core.writeoff.checks, bridge.core.manual):
    refused with code `unit-precision`, never charged a rounded quantity."""
    converted = convert(quantity, from_code, to_code)
    needed = decimals_needed(converted)
    if needed > decimals:
        raise UnitPrecisionError(quantity, from_code, converted, to_code, needed, decimals)
    return converted


def scale_exact(quantity: Decimal, factor: Decimal) -> Decimal:
    """`quantity` times `factor`, exactly (Decimal arithmetic with precision to spare; a result
    that would need rounding raises UnitError rather than lose a digit)."""
    context = Context(prec=80, traps=[Inexact])
    try:
        return plain(context.multiply(quantity, factor))
    except Inexact:
        raise UnitError(f"{quantity} times {factor} cannot be computed exactly") from None
