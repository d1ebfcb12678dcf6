"""The write-off rules, one function per rule: may this licence be used on this day, does the
document code agree with it, is the exporter its holder, which line the goods use, may they go
there, what the write-off counts in the line's terms, would it exceed a ceiling, what remains.

Shared by the batch (bridge.core.writeoff.batch) and the dry run (bridge.core.writeoff.dry_run),
so that an answer "available" means the same write-off is accepted. Each returns findings
(code, reason), never raises, and knows no ledger beyond the totals it is given."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from functools import lru_cache

from bridge.core.codes import normalise_cle, normalise_eori, union_general_authorisation_for
from bridge.core.correlation import WARNING as CORRELATION_WARNING
from bridge.core.correlation import Correlation
from bridge.core.envelope import Balance, Reason
from bridge.core.ledger_state import LEDGER_LIMIT, ZERO, Finding, LineKey, Totals
from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType
from bridge.core.units import UnitError, UnitPrecisionError, convert_exact, plain

# Every write-off asks these of the same few texts (the batch's holders and document codes):
# each text is worked out once.
_holder_eori = lru_cache(maxsize=4096)(normalise_eori)
_authorisation_for = lru_cache(maxsize=256)(union_general_authorisation_for)

# Union general export authorisations (Regulation (EU) 2021/821, Annex II): the destinations
# each covers, where the bridge can state them. EU001 covers exports to these countries only.
# EU002-EU008 have conditions (item lists, excluded destinations, the purpose of the export)
# the bridge does not enforce from a declaration: None. The registration record's own line
# destinations, when it lists any, still apply to every authorisation.
UNION_GENERAL_DESTINATIONS: dict[str, frozenset[str] | None] = {
    # Australia, Canada, Iceland, Japan, New Zealand, Norway, Switzerland incl. Liechtenstein,
    # United Kingdom, United States.
    "EU001": frozenset({"AU", "CA", "IS", "JP", "NZ", "NO", "CH", "LI", "GB", "US"}),
    "EU002": None,
    "EU003": None,
    "EU004": None,
    "EU005": None,
    "EU006": None,
    "EU007": None,
    "EU008": None,
}


def licence_state_problems(licence: Licence, *, on: date, known_to_customs: bool) -> list[Finding]:
    """Whether the licence may be used on `on`: customs know it (a certificate of it was
    acknowledged), its status is valid, `on` is within its validity."""
    number = licence.number
    problems: list[Finding] = []
    if not known_to_customs:
        problems.append(
            (
                "not-known-to-customs",
                f"customs have acknowledged no certificate of licence {number}: they cannot"
                " have checked it, so it cannot be written off",
            )
        )
    if licence.status is not LicenceStatus.VALID:
        problems.append(
            ("licence-not-valid", f"licence {number} is {licence.status}, not valid, on {on}")
        )
    if on < licence.valid_from or (licence.valid_to is not None and on > licence.valid_to):
        until = licence.valid_to.isoformat() if licence.valid_to else "open end"
        problems.append(
            (
                "outside-validity",
                f"the event date {on} is outside licence {number}'s validity"
                f" {licence.valid_from} to {until}",
            )
        )
    return problems


def document_type_problems(
    licence: Licence, document_code: str, asserted: LicenceType | None
) -> list[Finding]:
    """Whether the document code agrees with the licence: X060 individual, X061-X068 the Union
    general authorisation EU001-EU008 the licence registers, X070 global, X071 national
    general; X002 (and national codes of type `any`) take the licence's own type."""
    number = licence.number
    problems: list[Finding] = []
    if asserted is not None and licence.type is not asserted:
        problems.append(
            (
                "document-type-mismatch",
                f"document code {document_code} is for a {asserted} licence;"
                f" {number} is {licence.type}",
            )
        )
    authorisation = _authorisation_for(document_code)
    registered = licence.general_authorisation
    if (
        authorisation
        and (licence.type is LicenceType.UNION_GENERAL or registered)
        and registered != authorisation
    ):
        problems.append(
            (
                "document-type-mismatch",
                f"document code {document_code} stands for {authorisation};"
                f" {number} is {registered or 'registered for no Union general authorisation'}",
            )
        )
    return problems


def exporter_problems(licence: Licence, exporter: str | None) -> list[Finding]:
    """The exporter must be the licence's holder; for a general authorisation, the one its
    registration record names."""
    holder = _holder_eori(licence.holder_eori)
    if exporter == holder:
        return []
    if licence.type.has_ceiling:
        reason = (
            f"the exporter {exporter or '(none)'} is not the holder of licence {licence.number}"
            f" ({licence.holder_eori})"
        )
    else:
        reason = (
            f"the exporter {exporter or '(none)'} is not registered for"
            f" {licence.general_authorisation or 'this general authorisation'}: registration"
            f" {licence.number} is {licence.holder_eori}'s"
        )
    return [("wrong-exporter", reason)]


def match_line(
    licence: Licence, *, line_number: int | None, cn_code: str | None
) -> tuple[LicenceLine | None, Finding | None]:
    """The licence line a goods item uses: the document line item number when given; else the
    one line whose CN code covers the declared one (a 6- or 8-digit line code covers the
    longer codes under it). The declaration carries no CLE, so CN is all there is to match: two
    lines under one CN are ambiguous, and a licence of one line without a CN code takes it. An
    open licence (no lines) is used as a whole (`Licence.open_line`), whatever line item number
    the declaration gives: it has no lines to number."""
    number = licence.number
    if licence.is_open:
        return licence.open_line(), None
    if line_number is not None:
        line = licence.line(line_number)
        if line is None:
            lines = ", ".join(str(x.line_number) for x in licence.lines)
            return None, (
                "no-matching-line",
                f"licence {number} has no line {line_number} (lines {lines})",
            )
        return line, None
    if cn_code:
        matches = [line for line in licence.lines if _cn_covers(line.cn_code, cn_code)]
        if len(matches) == 1:
            return matches[0], None
        if len(matches) > 1:
            return None, (
                "ambiguous-line",
                f"CN code {cn_code} matches lines"
                f" {', '.join(str(x.line_number) for x in matches)} of licence {number}; the"
                " declaration must give the document line item number",
            )
        if len(licence.lines) == 1 and not licence.lines[0].cn_code:
            return licence.lines[0], None
        return None, (
            "no-matching-line",
            f"CN code {cn_code} matches no line of licence {number}"
            f" (lines: {_line_codes(licence)})",
        )
    if len(licence.lines) == 1:
        return licence.lines[0], None
    return None, (
        "no-matching-line",
        f"the goods item declares neither a CN code nor a document line item number, and"
        f" licence {number} has {len(licence.lines)} lines",
    )


def where(licence: Licence, line: LicenceLine) -> str:
    """`licence N line L`, or `open licence N` for the licence as a whole."""
    if licence.is_open:
        return f"open licence {licence.number}"
    return f"licence {licence.number} line {line.line_number}"


def allowed_destinations(licence: Licence) -> frozenset[str] | None:
    """The destinations a Union general authorisation covers (None: not enforced here)."""
    if licence.type is not LicenceType.UNION_GENERAL or not licence.general_authorisation:
        return None
    return UNION_GENERAL_DESTINATIONS.get(licence.general_authorisation)


def destination_problems(
    licence: Licence, line: LicenceLine, destination: str | None
) -> list[Finding]:
    """The destination must be among the line's (when it lists any) and, for EU001, among the
    countries the authorisation covers."""
    shown = destination or "(none declared)"
    problems: list[Finding] = []
    if line.destinations and destination not in line.destinations:
        whose = (
            f"open licence {licence.number}'s"
            if licence.is_open
            else f"licence {licence.number} line {line.line_number}'s"
        )
        problems.append(
            (
                "destination-not-allowed",
                f"destination {shown} is not among {whose} {', '.join(line.destinations)}",
            )
        )
    covered = allowed_destinations(licence)
    if covered is not None and destination not in covered:
        problems.append(
            (
                "destination-not-allowed",
                f"{licence.general_authorisation} covers exports to"
                f" {', '.join(sorted(covered))} only; the destination is {shown}",
            )
        )
    return problems


def line_measures(
    licence: Licence,
    line: LicenceLine,
    *,
    quantity: Decimal | None,
    unit: str | None,
    amount: Decimal | None,
    currency: str | None,
) -> tuple[Decimal, Decimal, list[Finding]]:
    """(quantity in the line's unit, value in its currency, problems). Units convert exactly by
    the explicit table (bridge.core.units) or are refused: `unit-mismatch` when they do not
    convert, `unit-precision` when the quantity in the line's unit needs more decimals than the
    ledger keeps (never rounded, `units.convert_exact`); the currency must be the line's; a
    write-off of a licence with ceilings must give something the line counts."""
    problems: list[Finding] = []
    in_line_unit = ZERO
    if quantity is not None and line.unit:
        try:
            in_line_unit = plain(convert_exact(quantity, unit or "", line.unit))
        except UnitPrecisionError as error:
            problems.append(("unit-precision", precision_reason(error, where(licence, line))))
        except UnitError as error:
            problems.append(("unit-mismatch", f"{error} (licence line unit {line.unit})"))
    for figure in (quantity, in_line_unit):
        if figure is not None and figure >= LEDGER_LIMIT:
            problems.append(
                (
                    "out-of-range",
                    f"a write-off quantity of {figure} is beyond what the ledger keeps",
                )
            )
            break
    value = ZERO
    if amount is not None and line.currency:
        if currency != line.currency:
            problems.append(
                (
                    "currency-mismatch",
                    f"the write-off is in {currency}; {where(licence, line)} is in {line.currency}",
                )
            )
        elif amount >= LEDGER_LIMIT:
            problems.append(
                ("out-of-range", f"a write-off amount of {amount} is beyond the ledger")
            )
        else:
            value = plain(amount)
    counts_quantity = line.quantity is not None
    counts_value = line.value is not None
    if (
        licence.type.has_ceiling
        and (counts_quantity or counts_value)
        and (quantity is not None or amount is not None)
        and not (quantity is not None and counts_quantity)
        and not (amount is not None and counts_value)
    ):
        if counts_value:
            problems.append(
                (
                    "unit-mismatch",
                    f"{where(licence, line)} counts value in {line.currency},"
                    " not quantity; the write-off gives a quantity only",
                )
            )
        else:
            problems.append(
                (
                    "currency-mismatch",
                    f"{where(licence, line)} counts quantity in {line.unit},"
                    " not value; the write-off gives an amount only",
                )
            )
    return in_line_unit, value, problems


def precision_reason(error: UnitPrecisionError, place: str) -> str:
    """Why a write-off of `error.quantity` cannot be counted on `place` (a line counting in
    `error.to_code`): both units, the decimals it needs and those the ledger keeps."""
    return (
        f"{plain(error.quantity):f} {error.from_code} is {error.converted:f} {error.to_code},"
        f" which needs {error.needed} decimals; {place} counts in {error.to_code} and the ledger"
        f" keeps {error.decimals} decimals: a write-off is never rounded (the line would have to"
        f" count in {error.from_code} or a unit between)"
    )


def ceiling_excess(
    licence: Licence, line: LicenceLine, used: Totals, delta_q: Decimal, delta_v: Decimal
) -> list[tuple[str, str]]:
    """(`quantity` or `value`, why) for each ceiling of the line an increase of (delta_q,
    delta_v) over `used` would exceed. General authorisations have no ceiling; a decrease is
    always allowed; a line with both ceilings must respect both. The one ceiling rule, for
    customs write-offs and manual movements alike."""
    if not licence.type.has_ceiling:
        return []
    used_q, used_v = used
    place = where(licence, line)
    excess = []
    if line.quantity is not None and delta_q > ZERO and used_q + delta_q > line.quantity:
        excess.append(
            (
                "quantity",
                f"{plain(delta_q)} {line.unit} more exceeds the {plain(line.quantity - used_q)}"
                f" {line.unit} remaining on {place}",
            )
        )
    if line.value is not None and delta_v > ZERO and used_v + delta_v > line.value:
        excess.append(
            (
                "value",
                f"{plain(delta_v)} {line.currency} more exceeds the"
                f" {plain(line.value - used_v)} {line.currency} remaining on {place}",
            )
        )
    return excess


def over_use(
    licence: Licence, line: LicenceLine, used: Totals, delta_q: Decimal, delta_v: Decimal
) -> str | None:
    """Why an increase of (delta_q, delta_v) would exceed what remains on the line, or None
    (`ceiling_excess`, as one reason)."""
    reasons = [why for _, why in ceiling_excess(licence, line, used, delta_q, delta_v)]
    return "; ".join(reasons) + " (nothing written off)" if reasons else None


def remaining(licence: Licence, line: LicenceLine, used: Totals) -> Balance | None:
    """What the line has left; None when it has no ceiling (general authorisations)."""
    if not licence.type.has_ceiling or (line.quantity is None and line.value is None):
        return None
    used_q, used_v = used
    return Balance(
        quantity=None if line.quantity is None else plain(line.quantity - used_q),
        unit=line.unit if line.quantity is not None else None,
        value=None if line.value is None else plain(line.value - used_v),
        currency=line.currency if line.value is not None else None,
    )


def used_up(licence: Licence, totals: Mapping[LineKey, Totals]) -> bool:
    """Every line with a ceiling has nothing left (its remaining quantity or its remaining
    value is 0 or less). False for a licence without ceilings."""
    lines = [x for x in licence.ledger_lines if x.quantity is not None or x.value is not None]
    if not licence.type.has_ceiling or not lines:
        return False
    for line in lines:
        used_q, used_v = totals.get((licence.number, line.line_number), (ZERO, ZERO))
        if not (
            (line.quantity is not None and used_q >= line.quantity)
            or (line.value is not None and used_v >= line.value)
        ):
            return False
    return True


def correlation_warnings(
    correlation: Correlation | None, licence: Licence, line: LicenceLine, cn_code: str | None
) -> list[Finding]:
    """A warning when the declared CN code is indicatively linked to other CLEs than the
    line's (never a refusal: the correlation is indicative only)."""
    if correlation is None:
        return []
    if licence.is_open:
        return scope_warnings(correlation, licence, cn_code)
    why = correlation.warning(cn_code, line.control_list_entry)
    if why is None:
        return []
    return [(CORRELATION_WARNING, f"licence {licence.number} line {line.line_number}: {why}")]


def scope_covers(scope: str, entry: str) -> bool | None:
    """Whether an open licence's scope entry covers control list entry `entry` (Annex I
    spelling): the same entry or one of its sub-items, or an entry of the category (`5`) or
    category and group (`5A`) it names. None when the scope entry is not of Annex I (a national
    or military list entry): the Annex I entry cannot be compared with it."""
    if scope[:1].isdigit() and len(scope) <= 2:
        return entry.startswith(scope)
    annex = normalise_cle(scope)
    if annex is None:
        return None
    return entry == annex or entry.startswith(annex + ".")


def scope_problems(licence: Licence, control_list_entry: str | None) -> list[Finding]:
    """An open licence with a scope covers `control_list_entry` (when given: a query names one,
    a declaration does not) only when one of its scope entries does. Entries of other lists
    than Annex I are compared as written."""
    entries = licence.control_list_entries
    if not licence.is_open or not entries or not control_list_entry:
        return []
    asked = normalise_cle(control_list_entry)
    for scope in entries:
        covered = scope_covers(scope, asked) if asked else None
        if covered or (covered is None and scope == control_list_entry.strip()):
            return []
    return [
        (
            "outside-scope",
            f"control list entry {control_list_entry} is outside open licence"
            f" {licence.number}'s scope ({', '.join(entries)})",
        )
    ]


def scope_warnings(
    correlation: Correlation, licence: Licence, cn_code: str | None
) -> list[Finding]:
    """A declaration names no control list entry, so an open licence's scope can only be
    checked indicatively: a warning when the declared CN code is linked to entries none of which
    the scope covers (never a refusal; nothing said when a scope entry is of another list)."""
    entries = licence.control_list_entries
    found = correlation.entries_for(cn_code) if cn_code and entries else None
    if found is None:
        return []
    prefix, cles = found
    verdicts = [scope_covers(scope, cle) for scope in entries for cle in cles]
    if any(verdict is None or verdict for verdict in verdicts):
        return []
    return [
        (
            CORRELATION_WARNING,
            f"open licence {licence.number}: CN {cn_code} is indicatively linked to"
            f" {', '.join(sorted(cles))} (table entry {prefix}), none of them within its scope"
            f" {', '.join(entries)}; indicative only, nothing refused",
        )
    ]


def merged_reasons(findings: Iterable[Finding]) -> tuple[Reason, ...]:
    """One reason per code, in the order the codes first came, their reasons together."""
    if not findings:  # most write-offs: nothing to say
        return ()
    merged: dict[str, str] = {}
    for code, reason in findings:
        merged[code] = f"{merged[code]}; {reason}" if code in merged else reason
    return tuple(Reason(code, reason) for code, reason in merged.items())


def _line_codes(licence: Licence) -> str:
    return ", ".join(f"{x.line_number} CN {x.cn_code or '-'}" for x in licence.lines)


def _cn_covers(line_cn: str | None, declared_cn: str) -> bool:
    # A line's 6- or 8-digit code covers the longer TARIC codes under it.
    return bool(line_cn) and declared_cn.startswith(line_cn)
