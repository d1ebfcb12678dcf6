"""Manual quantity management: what an authority may write off, correct or reverse by hand.

Pure: the rules take the licence, the line's totals so far and the request, and return the
movement to append, or refuse with every reason at once (bridge.core.errors.Rejected, one Problem
per reason with a machine-readable code). Nothing here edits or deletes a movement: a mistake is
undone by another movement.

The rules:
- a reason and the person's identity are mandatory;
- the licence and the line exist; quantities convert into the line's unit exactly (never
  guessed) and keep at most six decimals there; values are in the line's currency;
- a manual write-off is positive and is refused on a suspended, revoked or annulled licence;
  a correction is signed and may move either way;
- a reversal undoes one earlier manual write-off or correction, once; customs movements follow
  their declaration (an amendment or invalidation adjusts them) and are corrected, not reversed;
- no manual movement takes an individual or global licence's line beyond its ceiling unless
  forced (the movement then says why, and the caller raises an alert); none leaves less than
  nothing written off on a line."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bridge.core.errors import Problem, Rejected
from bridge.core.ledger_state import LEDGER_LIMIT
from bridge.core.model import Licence, LicenceLine, LicenceStatus
from bridge.core.movements import ManualKind, ManualMovement, RecordedMovement, reversal_mark
from bridge.core.units import UnitError, UnitPrecisionError, convert_exact, parse_unit
from bridge.core.writeoff.checks import ceiling_excess, precision_reason

QUANTITY_DECIMALS = 6  # n..16,6, what the ledger keeps (store.schema.Micro)
VALUE_DECIMALS = 2  # n..16,2: amounts as customs write them
ACTOR_MAX = 200  # the movement table's actor column
REFERENCE_MAX = 70  # the movement table's document_ref column
ZERO = Decimal(0)
MANUAL_OVER_USE = "manual-over-use"  # alert kind: a forced manual movement beyond a ceiling
MANUAL_OVERRIDE = "manual-override"  # alert kind: a forced write-off on a licence not valid


# What a reversal by hand may undo: the authority's own movements.
REVERSIBLE = frozenset({ManualKind.WRITE_OFF.value, ManualKind.CORRECTION.value})
# A write-off on these is refused unless forced; an expired or exhausted licence may still
# need a late record of an export made while it was valid (over-use is checked apart).
WRITE_OFF_REFUSED_STATUSES = frozenset(
    {LicenceStatus.SUSPENDED, LicenceStatus.REVOKED, LicenceStatus.ANNULLED}
)


@dataclass(frozen=True, slots=True)
class ManualRequest:
    """A manual write-off or correction as the authority asks for it."""

    kind: ManualKind  # WRITE_OFF or CORRECTION
    licence_number: str
    line_number: int
    quantity: Decimal  # in `unit`; signed for a correction
    unit: str
    reason: str
    actor: str
    value: Decimal | None = None  # in `currency`, which must be the line's
    currency: str | None = None
    reference: str | None = None  # the authority's own reference (audit file, paper declaration)
    force: bool = False  # record it even beyond the ceiling or on a suspended licence


def decide_manual(
    request: ManualRequest, licence: Licence | None, written_off: tuple[Decimal, Decimal]
) -> ManualMovement:
    """The movement a manual write-off or correction appends, given the licence (current
    version, current status) and what its line has written off so far (quantity, value).
    Raises Rejected with every reason when it may not happen."""
    what = "manual write-off" if request.kind is ManualKind.WRITE_OFF else "correction"
    where = f"licence {request.licence_number} line {request.line_number}"
    problems = _who(request.reason, request.actor)
    if request.kind not in (ManualKind.WRITE_OFF, ManualKind.CORRECTION):
        problems.append(Problem(f"{request.kind} is not a manual write-off or correction"))
    if request.reference is not None and len(request.reference) > REFERENCE_MAX:
        problems.append(
            Problem(
                f"the reference has more than {REFERENCE_MAX} characters",
                path="reference",
                code="reference-too-long",
            )
        )
    line = _line(licence, request.licence_number, request.line_number, problems)
    quantity = _quantity(request, line, problems)
    value = _value(request, line, problems)
    forced_status = None
    if (
        request.kind is ManualKind.WRITE_OFF
        and licence is not None
        and licence.status in WRITE_OFF_REFUSED_STATUSES
    ):
        if request.force:
            forced_status = f"licence {licence.number} is {licence.status}"
        else:
            problems.append(
                Problem(
                    f"licence {licence.number} is {licence.status}; a write-off needs force"
                    " (with the reason) to be recorded on it",
                    path="licence",
                    code="licence-not-valid",
                )
            )
    if quantity == ZERO and value == ZERO:
        counted = f"{line.unit}" if line is not None and line.unit else "no quantity (no unit)"
        problems.append(
            Problem(
                f"this moves nothing: {where} counts {counted} and no value was given",
                path="quantity",
                code="nothing-to-move",
            )
        )
    forced_over_use: list[str] = []
    if line is not None and quantity is not None and value is not None:
        forced_over_use = _balance(
            licence, line, written_off, quantity, value, request.force, problems
        )
    if problems:
        raise Rejected(problems, summary=f"{what} on {where} refused")
    assert line is not None and quantity is not None and value is not None
    return ManualMovement(
        licence_number=request.licence_number,
        line_number=request.line_number,
        kind=request.kind,
        quantity=quantity,
        value=value,
        declared_quantity=request.quantity,
        declared_unit=parse_unit(request.unit).code,
        actor=request.actor.strip(),
        reason=request.reason.strip(),
        document_ref=request.reference or None,
        forced_over_use=tuple(forced_over_use),
        forced_status=forced_status,
    )


def decide_reversal(
    movement_id: int,
    original: RecordedMovement | None,
    *,
    reversed_by: RecordedMovement | None,
    licence: Licence | None,
    written_off: tuple[Decimal, Decimal],
    reason: str,
    actor: str,
    force: bool = False,
) -> ManualMovement:
    """The movement that undoes `original` (the movement with id `movement_id`, None when the
    ledger has none), given the reversal already recorded for it (`reversed_by`), its licence
    and what its line has written off so far. Raises Rejected with every reason."""
    problems = _who(reason, actor)
    summary = f"reversal of movement {movement_id} refused"
    if original is None:
        problems.append(
            Problem(f"the ledger has no movement {movement_id}", code="movement-unknown")
        )
        raise Rejected(problems, summary=summary)
    if original.kind not in REVERSIBLE:
        problems.append(Problem(_why_not_reversible(original), code="not-reversible"))
    if reversed_by is not None:
        problems.append(
            Problem(
                f"movement {movement_id} was reversed already by movement {reversed_by.id}"
                f" ({reversed_by.actor}, {reversed_by.at:%Y-%m-%d %H:%M}): a movement is"
                " reversed once",
                code="already-reversed",
            )
        )
    line = licence.line(original.line_number) if licence is not None else None
    quantity, value = -original.quantity, -original.value
    forced_over_use: list[str] = []
    if original.kind in REVERSIBLE and reversed_by is None:  # else the balance is beside the point
        forced_over_use = _balance(
            licence, line, written_off, quantity, value, force, problems, original
        )
    if problems:
        raise Rejected(problems, summary=summary)
    return ManualMovement(
        licence_number=original.licence_number,
        line_number=original.line_number,
        kind=ManualKind.REVERSAL,
        quantity=quantity,
        value=value,
        declared_quantity=(
            -original.declared_quantity if original.declared_quantity is not None else None
        ),
        declared_unit=original.declared_unit,
        actor=actor.strip(),
        reason=reason.strip(),
        mrn=original.mrn,
        goods_item=original.goods_item,
        document_code=original.document_code,
        document_ref=original.document_ref,
        message_id=reversal_mark(original.id),
        forced_over_use=tuple(forced_over_use),
    )


@dataclass(frozen=True, slots=True)
class ManualAlert:
    """What the authority is told about a manual movement that `force` let through."""

    kind: str  # MANUAL_OVER_USE or MANUAL_OVERRIDE
    message: str


def forced_alerts(movement: ManualMovement) -> list[ManualAlert]:
    """The alerts a decided movement raises: one per thing `force` let through (a ceiling
    exceeded, a licence not valid), each naming the person and the reason they gave."""
    alerts = []
    if movement.forced_over_use:
        alerts.append(
            ManualAlert(
                MANUAL_OVER_USE,
                f"{movement.kind} by {movement.actor} forced beyond the ceiling: "
                + "; ".join(movement.forced_over_use)
                + f". Reason given: {movement.reason}",
            )
        )
    if movement.forced_status:
        alerts.append(
            ManualAlert(
                MANUAL_OVERRIDE,
                f"{movement.kind} by {movement.actor} forced although {movement.forced_status}."
                f" Reason given: {movement.reason}",
            )
        )
    return alerts


def _why_not_reversible(original: RecordedMovement) -> str:
    if original.kind == ManualKind.REVERSAL and original.reverses is not None:
        return (
            f"movement {original.id} is itself the reversal of movement {original.reverses};"
            " record a manual write-off or correction instead"
        )
    declaration = f" for MRN {original.mrn}" if original.mrn else ""
    return (
        f"movement {original.id} is a customs {original.kind}{declaration}: customs movements"
        " follow their declaration (an amendment or invalidation adjusts them); record a"
        " correction instead"
    )


def _who(reason: str | None, actor: str | None) -> list[Problem]:
    problems = []
    if not (reason or "").strip():
        problems.append(
            Problem(
                "a reason is mandatory for a manual movement", path="reason", code="reason-missing"
            )
        )
    if not (actor or "").strip():
        problems.append(
            Problem(
                "the person's identity is mandatory for a manual movement",
                path="actor",
                code="actor-missing",
            )
        )
    elif len(actor.strip()) > ACTOR_MAX:
        problems.append(
            Problem(
                f"the actor has more than {ACTOR_MAX} characters",
                path="actor",
                code="actor-too-long",
            )
        )
    return problems


def _line(
    licence: Licence | None, number: str, line_number: int, problems: list[Problem]
) -> LicenceLine | None:
    if licence is None:
        problems.append(
            Problem(
                f"licence {number} is not in the ledger", path="licence", code="licence-unknown"
            )
        )
        return None
    line = licence.line(line_number)
    if line is None:
        problems.append(
            Problem(
                f"licence {number} has no line {line_number}"
                f" (lines {', '.join(str(x.line_number) for x in licence.lines)})",
                path="line",
                code="no-such-line",
            )
        )
    return line


def _decimals(amount: Decimal, places: int) -> bool:
    """True when `amount` has at most `places` decimals."""
    scaled = amount.scaleb(places)
    return scaled == scaled.to_integral_value()


def _finite(amount: Decimal, what: str, problems: list[Problem]) -> bool:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        problems.append(
            Problem(f"the {what} must be an exact number", path=what, value=str(amount))
        )
        return False
    if abs(amount) >= LEDGER_LIMIT:
        problems.append(
            Problem(
                f"a {what} of {amount} is beyond what the ledger keeps",
                path=what,
                code="out-of-range",
            )
        )
        return False
    return True


def _quantity(
    request: ManualRequest, line: LicenceLine | None, problems: list[Problem]
) -> Decimal | None:
    """The request's quantity in the line's unit (0 on a line without one: the declared
    quantity is kept, the value moves), or None when it cannot be."""
    declared = request.quantity
    if not _finite(declared, "quantity", problems):
        return None
    ok = True
    if request.kind is ManualKind.WRITE_OFF and declared <= ZERO:
        problems.append(
            Problem(
                "a manual write-off quantity must be greater than zero (to give back, reverse"
                " or correct)",
                path="quantity",
                value=f"{declared:f}",
                code="quantity-not-positive",
            )
        )
        ok = False
    if not _decimals(declared, QUANTITY_DECIMALS):
        problems.append(
            Problem(
                f"a quantity has at most {QUANTITY_DECIMALS} decimals",
                path="quantity",
                value=f"{declared:f}",
                code="too-many-decimals",
            )
        )
        ok = False
    try:
        parse_unit(request.unit)
    except UnitError as error:
        problems.append(Problem(str(error), path="unit", code="unit-unknown"))
        return None
    if line is None or not ok:
        return None
    if not line.unit:
        return ZERO
    place = f"licence {request.licence_number} line {line.line_number}"
    try:
        # The write-off rules' own exactness rule (units.convert_exact): never rounded.
        return convert_exact(declared, request.unit, line.unit, QUANTITY_DECIMALS)
    except UnitPrecisionError as error:
        problems.append(
            Problem(
                precision_reason(error, place),
                path="quantity",
                value=f"{declared:f}",
                code="unit-precision",
            )
        )
    except UnitError as error:
        problems.append(
            Problem(f"{error} ({place} counts in {line.unit})", path="unit", code="unit-mismatch")
        )
    return None


def _value(
    request: ManualRequest, line: LicenceLine | None, problems: list[Problem]
) -> Decimal | None:
    """The request's value in the line's currency (0 when none is given), or None."""
    amount, currency = request.value, (request.currency or "").strip().upper() or None
    if amount is None:
        if currency is not None:
            problems.append(
                Problem(
                    f"a currency ({currency}) without a value", path="value", code="value-missing"
                )
            )
            return None
        return ZERO
    if not _finite(amount, "value", problems):
        return None
    ok = True
    if request.kind is ManualKind.WRITE_OFF and amount <= ZERO:
        problems.append(
            Problem(
                "a manual write-off value must be greater than zero",
                path="value",
                value=f"{amount:f}",
                code="value-not-positive",
            )
        )
        ok = False
    if not _decimals(amount, VALUE_DECIMALS):
        problems.append(
            Problem(
                f"a value has at most {VALUE_DECIMALS} decimals",
                path="value",
                value=f"{amount:f}",
                code="too-many-decimals",
            )
        )
        ok = False
    if currency is None:
        problems.append(
            Problem("a value needs its currency", path="currency", code="currency-missing")
        )
        return None
    if line is None:
        return None
    if not line.currency:
        problems.append(
            Problem(
                f"licence {request.licence_number} line {line.line_number} has no value or"
                " currency: write off its quantity",
                path="value",
                code="currency-mismatch",
            )
        )
        return None
    if currency != line.currency:
        problems.append(
            Problem(
                f"the value is in {currency}; licence {request.licence_number} line"
                f" {line.line_number} is in {line.currency}",
                path="currency",
                code="currency-mismatch",
            )
        )
        return None
    return amount if ok else None


def _balance(
    licence: Licence | None,
    line: LicenceLine | None,
    written_off: tuple[Decimal, Decimal],
    quantity: Decimal,
    value: Decimal,
    force: bool,
    problems: list[Problem],
    original: RecordedMovement | None = None,
) -> list[str]:
    """Check the line's totals after the movement: never below zero; beyond the ceiling of an
    individual or global licence (`bridge.core.writeoff.checks.ceiling_excess`) only when
    forced. Returns what force let through."""
    used_q, used_v = written_off
    number = licence.number if licence else (original.licence_number if original else "?")
    line_number = line.line_number if line else (original.line_number if original else "?")
    where = f"licence {number} line {line_number}"
    unit = line.unit if line and line.unit else ""
    currency = line.currency if line and line.currency else ""
    for delta, used, what, measure in (
        (quantity, used_q, "quantity", unit),
        (value, used_v, "value", currency),
    ):
        if delta < ZERO and used + delta < ZERO:
            problems.append(
                Problem(
                    f"{-delta:f} {measure} less would leave {used + delta:f} {measure} written"
                    f" off on {where} (only {used:f} {measure} is written off)",
                    path=what,
                    code="below-zero",
                )
            )
    forced: list[str] = []
    if licence is None or line is None:
        return forced
    # The ceiling rule is the write-off rules' own (general authorisations have none).
    for what, why in ceiling_excess(licence, line, written_off, quantity, value):
        if force:
            forced.append(why)
        else:
            problems.append(
                Problem(
                    f"{why}; nothing written off (force, with the reason, records it anyway)",
                    path=what,
                    code="over-use",
                )
            )
    return forced
