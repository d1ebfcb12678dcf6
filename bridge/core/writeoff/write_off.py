"""One document's write-off in a batch: which line, quantity and value it means, every reason
it may not happen (bridge.core.writeoff.checks), and then either the movement and the key's new
usage, or the refusals, with the over-use and CN/CLE alerts for the authority."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from bridge.core.correlation import Correlation
from bridge.core.declaration import DocumentUse, GoodsItem
from bridge.core.envelope import DeclarationEvent, DocumentResult, DocumentStatus
from bridge.core.ledger_state import (
    ZERO,
    Alert,
    Finding,
    Key,
    MovementKind,
    Refusal,
    Usage,
)
from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType
from bridge.core.writeoff.checks import (
    correlation_warnings,
    destination_problems,
    document_type_problems,
    exporter_problems,
    licence_state_problems,
    line_measures,
    match_line,
    merged_reasons,
    over_use,
    remaining,
    used_up,
)
from bridge.core.writeoff.running import RunningLedger


@dataclass(frozen=True, slots=True)
class _Target:
    line: LicenceLine
    quantity: Decimal
    value: Decimal


class WriteOffs:
    """The write-offs of one batch against its running ledger; CN/CLE warnings are raised once
    per batch and line and CN code."""

    def __init__(
        self,
        ledger: RunningLedger,
        known_to_customs: frozenset[str] | None,
        correlation: Correlation | None,
        *,
        versions_at_customs: Mapping[str, int] | None = None,
    ) -> None:
        self.ledger = ledger
        self.known = known_to_customs
        self.versions = versions_at_customs
        self.correlation = correlation
        self.warned: set[tuple[str, int, str]] = set()  # CN/CLE alerts raised in this batch
        self.correlated: dict[tuple[str, int, str | None], list[Finding]] = {}
        # The table's answers for this batch's CN codes and CLEs, each asked once.
        self.table = None if correlation is None else _RememberedCorrelation(correlation)

    def write_off(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        document: DocumentUse,
        asserted: LicenceType | None,
        key: Key,
    ) -> DocumentResult:
        licence = self.ledger.licences.get(document.reference)
        current = self.ledger.usage.get(key)
        target, problems, warnings = self.evaluate(
            event, item, document, asserted, licence, current
        )
        self.warn(event, item, licence, target, warnings)
        held = self.version_at_customs(licence)
        if held is not None and target is not None and not _codes(problems) & UNRECORDABLE:
            # Customs released on the version they hold, not the bridge's newer one: whatever
            # the newer version says, the goods have left on the older (docs/contingency.md).
            contingency = True
            problems = [(VERSION_BEHIND, _behind(licence, held)), *problems]
        else:
            contingency = bool(problems) and contingency_write_off(problems, licence, target)
        if problems and not contingency:
            return self.refuse(event, item, document, licence, target, current, problems, warnings)
        assert target is not None and licence is not None
        line_number = target.line.line_number
        declared = (document.quantity, document.unit)
        if current is None:
            kind = MovementKind.WRITE_OFF if licence.type.has_ceiling else MovementKind.RECORD
        else:
            kind = MovementKind.ADJUSTMENT
        base_q = base_v = ZERO
        if current is not None:
            if current.line_key != (document.reference, line_number):
                # The goods now fall on another line (or licence): undo the old line first.
                self.ledger.move(
                    key, current, -current.quantity, -current.value, MovementKind.REVERSAL, event
                )
            else:
                base_q, base_v = current.quantity, current.value
        delta_q = target.quantity - base_q
        delta_v = target.value - base_v
        new = Usage(
            document.reference,
            line_number,
            target.quantity,
            target.value,
            event.version,
            str(event.kind),
        )
        if delta_q != ZERO or delta_v != ZERO or current is None:
            self.ledger.move(
                key, new, delta_q, delta_v, kind, event, declared, contingency=bool(contingency)
            )
        self.ledger.set_usage(key, new)
        if contingency:
            recorded = self.alert_contingency(event, item, document, licence, target, problems)
            warnings = [*recorded, *warnings]
        status = DocumentStatus.ACCEPTED if licence.type.has_ceiling else DocumentStatus.RECORDED
        return DocumentResult(
            goods_item=item.sequence,
            document_code=document.document_code,
            reference=document.reference,
            status=status,
            line_number=line_number,
            warnings=merged_reasons(warnings),
            written_off=self.ledger.written_off(new),
            remaining=self.ledger.balance(document.reference, line_number),
        )

    def refuse(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        document: DocumentUse,
        licence: Licence | None,
        target: _Target | None,
        current: Usage | None,
        problems: list[Finding],
        warnings: list[Finding],
    ) -> DocumentResult:
        """Write nothing off; record one refusal per code with every reason, and raise an
        over-use to the authority."""
        line_number = target.line.line_number if target else None
        reasons = merged_reasons(problems)
        for reason in reasons:
            self.ledger.decision.refusals.append(
                Refusal(
                    event.mrn,
                    item.sequence,
                    document.document_code,
                    document.reference,
                    document.reference,
                    line_number,
                    reason.code,
                    reason.reason,
                    event.message_id,
                )
            )
        over = next((r for r in reasons if r.code == "over-use"), None)
        if over is not None and licence is not None and target is not None:
            self.alert_over_use(event, item, document, licence, target, current, over.reason)
        if line_number is None and current is not None:
            line_number = current.line_number  # what it still writes off is on its old line
        return DocumentResult(
            goods_item=item.sequence,
            document_code=document.document_code,
            reference=document.reference,
            status=DocumentStatus.REFUSED,
            line_number=line_number,
            refusals=reasons,
            warnings=merged_reasons(warnings),
            detail="nothing written off" if current is None else "the earlier write-off stands",
            written_off=self.ledger.written_off(current),
            remaining=self.ledger.balance(document.reference, line_number),
        )

    def version_at_customs(self, licence: Licence | None) -> int | None:
        """The version of `licence` customs hold when it is older than the bridge's, else None
        (customs hold the current version, none at all, or the ledger cannot say)."""
        if licence is None or self.versions is None:
            return None
        held = self.versions.get(licence.number)
        return held if held is not None and held < licence.version else None

    def alert_contingency(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        document: DocumentUse,
        licence: Licence,
        target: _Target,
        problems: list[Finding],
    ) -> list[Finding]:
        """A contingency write-off was recorded: an alert for the authority when it overdraws
        the licence (`contingency-over-use`) and when the licence did not allow it otherwise
        (`contingency-not-allowed`: not valid, outside validity, another exporter or
        destination...); the findings the result carries as warnings."""
        line = target.line
        findings = [
            (code, why) for code, why in problems if code not in (NOT_KNOWN, VERSION_BEHIND)
        ]
        over = [why for code, why in findings if code == "over-use"]
        other = [(code, why) for code, why in findings if code != "over-use"]
        left = remaining(
            licence, line, self.ledger.totals.get((licence.number, line.line_number), (ZERO, ZERO))
        )
        details = {
            "message_id": event.message_id,
            "event": str(event.kind),
            "declaration_version": event.version,
            "goods_item": item.sequence,
            "document_code": document.document_code,
            "written_off_quantity": str(target.quantity),
            "unit": line.unit,
            "written_off_value": str(target.value),
            "currency": line.currency,
            "remaining_quantity": _text(left.quantity if left else None),
            "remaining_value": _text(left.value if left else None),
            "declared_quantity": _text(document.quantity),
            "declared_unit": document.unit,
            "reasons": [f"{code}: {why}" for code, why in findings],
        }
        held = self.version_at_customs(licence)
        how = (
            f"on version {held} of licence {licence.number}, the one customs held (the bridge"
            f" has version {licence.version})"
            if held is not None
            else f"without customs holding licence {licence.number}'s certificate"
        )
        head = (
            f"{event.mrn} goods item {item.sequence} ({document.document_code}) was released"
            f" {how}; its write-off is recorded as a contingency write-off"
        )
        alerts = []
        if over:
            alerts.append(("contingency-over-use", f"{head}, and overdraws it: {'; '.join(over)}"))
        if other:
            why = "; ".join(reason for _, reason in other)
            alerts.append(
                ("contingency-not-allowed", f"{head}, which the licence did not allow: {why}")
            )
        for kind, message in alerts:
            self.ledger.decision.alerts.append(
                Alert(
                    kind=kind,
                    message=message,
                    licence_number=licence.number,
                    line_number=line.line_number,
                    mrn=event.mrn,
                    details=details,
                )
            )
        return [
            (
                CONTINGENCY,
                f"released {how}: recorded as a contingency write-off for the authority to"
                " reconcile",
            ),
            *findings,
        ]

    def alert_over_use(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        document: DocumentUse,
        licence: Licence,
        target: _Target,
        current: Usage | None,
        reason: str,
    ) -> None:
        line = target.line
        used = self.ledger.totals.get((licence.number, line.line_number), (ZERO, ZERO))
        same = current is not None and current.line_key == (licence.number, line.line_number)
        base_q, base_v = (current.quantity, current.value) if same and current else (ZERO, ZERO)
        left = remaining(licence, line, used)
        self.ledger.decision.alerts.append(
            Alert(
                kind="over-use",
                message=(
                    f"{event.mrn} goods item {item.sequence} ({document.document_code}) asked"
                    f" more than licence {licence.number} line {line.line_number} has left:"
                    f" {reason}"
                ),
                licence_number=licence.number,
                line_number=line.line_number,
                mrn=event.mrn,
                details={
                    "message_id": event.message_id,
                    "event": str(event.kind),
                    "declaration_version": event.version,
                    "goods_item": item.sequence,
                    "document_code": document.document_code,
                    "requested_quantity": str(target.quantity - base_q),
                    "unit": line.unit,
                    "remaining_quantity": _text(left.quantity if left else None),
                    "requested_value": str(target.value - base_v),
                    "currency": line.currency,
                    "remaining_value": _text(left.value if left else None),
                    "declared_quantity": _text(document.quantity),
                    "declared_unit": document.unit,
                },
            )
        )

    def warn(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        licence: Licence | None,
        target: _Target | None,
        warnings: list[Finding],
    ) -> None:
        """A CN/CLE warning goes to the authority once per batch and line and CN code."""
        if not warnings or licence is None or target is None:
            return
        seen = (licence.number, target.line.line_number, item.cn_code or "")
        if seen in self.warned:
            return
        self.warned.add(seen)
        for code, reason in warnings:
            self.ledger.decision.alerts.append(
                Alert(
                    kind=code,
                    message=reason,
                    licence_number=licence.number,
                    line_number=target.line.line_number,
                    mrn=event.mrn,
                    details={
                        "message_id": event.message_id,
                        "goods_item": item.sequence,
                        "cn_code": item.cn_code,
                        "control_list_entry": target.line.control_list_entry,
                    },
                )
            )

    def evaluate(
        self,
        event: DeclarationEvent,
        item: GoodsItem,
        document: DocumentUse,
        asserted: LicenceType | None,
        licence: Licence | None,
        current: Usage | None,
    ) -> tuple[_Target | None, list[Finding], list[Finding]]:
        """The line, quantity and value this write-off means, every reason it may not happen,
        and warnings. A write-off that only lowers what its key already writes off on the same
        line (an amendment down) is not held to the licence's state: that was checked when it
        was released, and giving back is always allowed."""
        number = document.reference
        if licence is None:
            return None, [("licence-unknown", f"licence {number} is not in the ledger")], []
        if (
            licence.status is LicenceStatus.EXHAUSTED
            and number in self.ledger.touched
            and not used_up(licence, self.ledger.totals)
        ):
            # This event gave back to the licence (goods renumbered, say): it is exhausted no
            # longer, which follow_status settles once the event is done. Over-use is apart.
            licence = replace(licence, status=LicenceStatus.VALID)
        day = event.envelope.event_time.date()
        known = self.known is None or number in self.known
        exporter = event.declaration.exporter_eori if event.declaration else None
        problems = document_type_problems(licence, document.document_code, asserted)
        problems += exporter_problems(licence, exporter)
        line, unmatched = match_line(
            licence, line_number=document.line_item_number, cn_code=item.cn_code
        )
        if line is None:
            assert unmatched is not None
            problems += licence_state_problems(licence, on=day, known_to_customs=known)
            problems.append(unmatched)
            return None, problems, []
        problems += destination_problems(licence, line, item.destination)
        quantity, value, measure = line_measures(
            licence,
            line,
            quantity=document.quantity,
            unit=document.unit,
            amount=document.amount,
            currency=document.currency,
        )
        problems += measure
        same_line = current is not None and current.line_key == (number, line.line_number)
        base_q = current.quantity if same_line and current else ZERO
        base_v = current.value if same_line and current else ZERO
        delta_q, delta_v = quantity - base_q, value - base_v
        if not same_line or delta_q > ZERO or delta_v > ZERO:
            problems[:0] = licence_state_problems(licence, on=day, known_to_customs=known)
        if not measure:
            used = self.ledger.totals.get((number, line.line_number), (ZERO, ZERO))
            if why := over_use(licence, line, used, delta_q, delta_v):
                problems.append(("over-use", why))
        return _Target(line, quantity, value), problems, self.correlate(licence, line, item.cn_code)

    def correlate(self, licence: Licence, line: LicenceLine, cn_code: str | None) -> list[Finding]:
        # A batch sees the same licence line and CN code again and again: look it up once.
        seen = (licence.number, line.line_number, cn_code)
        found = self.correlated.get(seen)
        if found is None:
            found = self.correlated[seen] = correlation_warnings(self.table, licence, line, cn_code)
        return found


class _RememberedCorrelation:
    """A correlation table that answers each question once (its answers are pure functions of
    the question): many lines of a batch share a CN code and CLE."""

    __slots__ = ("entries", "table", "warnings")

    def __init__(self, table: Correlation) -> None:
        self.table = table
        self.warnings: dict[tuple[str | None, str | None], str | None] = {}
        self.entries: dict[str, tuple[str, frozenset[str]] | None] = {}

    def warning(self, cn_code: str | None, control_list_entry: str | None) -> str | None:
        key = (cn_code, control_list_entry)
        if key not in self.warnings:
            self.warnings[key] = self.table.warning(cn_code, control_list_entry)
        return self.warnings[key]

    def entries_for(self, cn_code: str) -> tuple[str, frozenset[str]] | None:
        if cn_code not in self.entries:
            self.entries[cn_code] = self.table.entries_for(cn_code)
        return self.entries[cn_code]


CONTINGENCY = "contingency"
NOT_KNOWN = "not-known-to-customs"
VERSION_BEHIND = "version-not-at-customs"  # customs hold an older version of the licence
# What a contingency write-off cannot do without: the licence and its line, and a quantity or
# amount the line counts. Without them nothing can be recorded, and the write-off is refused
# (kept as a refusal with the declaration's figures).
UNRECORDABLE = frozenset(
    {
        "licence-unknown",
        "no-matching-line",
        "ambiguous-line",
        "unit-mismatch",
        "unit-precision",
        "currency-mismatch",
        "out-of-range",
    }
)


def contingency_write_off(
    problems: list[Finding], licence: Licence | None, target: _Target | None
) -> bool:
    """Whether a released (or amended) write-off the checks refuse is a contingency write-off:
    customs released the goods without holding the licence's certificate (the bridge or the
    link was down, or the certificate was not yet delivered), so customs could not have asked
    the bridge, and the goods have left. Its write-off is recorded whatever else the checks
    say, as long as it can be counted on a line of a known licence (docs/contingency.md)."""
    codes = {code for code, _ in problems}
    return (
        licence is not None
        and target is not None
        and NOT_KNOWN in codes
        and not codes & UNRECORDABLE
    )


def _codes(problems: list[Finding]) -> set[str]:
    return {code for code, _ in problems}


def _behind(licence: Licence, held: int) -> str:
    return (
        f"customs hold version {held} of licence {licence.number}; the bridge has version"
        f" {licence.version}, which customs have not acknowledged yet"
    )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
