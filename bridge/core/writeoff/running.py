"""The ledger as a batch changes it: licences, usage per key, line totals, and the decision so
far. Every movement goes through `move`, so the totals the next write-off is checked against
always include what the batch wrote before it; `follow_status` exhausts a licence whose lines
are used up and makes one valid again when quantity comes back."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from bridge.core.envelope import Balance, DeclarationEvent, DocumentResult, DocumentStatus
from bridge.core.ledger_state import (
    ZERO,
    Key,
    LineKey,
    Movement,
    MovementKind,
    StatusChange,
    Totals,
    Usage,
)
from bridge.core.model import Licence, LicenceStatus
from bridge.core.writeoff.checks import remaining, used_up
from bridge.core.writeoff.decision import Decision, LedgerSnapshot

_UNKNOWN = Balance()  # stands for a balance not worked out yet (None is an answer)


class RunningLedger:
    """The snapshot's licences, usage and totals, changed by each movement of the batch."""

    def __init__(self, snapshot: LedgerSnapshot) -> None:
        self.licences: dict[str, Licence] = dict(snapshot.licences)
        self.usage: dict[Key, Usage] = dict(snapshot.usage)
        self.keys_by_mrn: dict[str, set[Key]] = {}
        for key in self.usage:
            self.keys_by_mrn.setdefault(key[0], set()).add(key)
        self.totals: dict[LineKey, Totals] = dict(snapshot.line_totals)
        self.touched: set[str] = set()  # licences the current event moved
        self.decision = Decision()
        # Each line's balance as `balance` last worked it out; dropped when the line moves or
        # its licence changes. An event asks for a line's balance once per document and once
        # more for its result (`with_balances`).
        self.balances: dict[tuple[str, int | None], Balance | None] = {}

    def balance(self, number: str, line_number: int | None) -> Balance | None:
        """What licence `number` line `line_number` has left now (None: no ceiling, no line)."""
        key = (number, line_number)
        found = self.balances.get(key, _UNKNOWN)
        if found is not _UNKNOWN:
            return found
        licence = self.licences.get(number)
        line = licence.line(line_number) if licence and line_number is not None else None
        if licence is None or line is None:
            found = None
        else:
            found = remaining(licence, line, self.totals.get((number, line_number), (ZERO, ZERO)))
        self.balances[key] = found
        return found

    def written_off(self, usage: Usage | None) -> Balance | None:
        if usage is None:
            return None
        licence = self.licences.get(usage.licence_number)
        line = licence.line(usage.line_number) if licence else None
        return Balance(
            usage.quantity,
            line.unit if line else None,
            usage.value,
            line.currency if line else None,
        )

    def reversed_document(self, key: Key, detail: str = "") -> DocumentResult:
        usage = self.usage[key]
        return DocumentResult(
            goods_item=key[1],
            document_code=key[2],
            reference=key[3],
            status=DocumentStatus.REVERSED,
            line_number=usage.line_number,
            detail=f"written off before, given back{f': {detail}' if detail else ''}",
            written_off=self.written_off(usage),
            remaining=self.balance(usage.licence_number, usage.line_number),
        )

    def reverse(self, key: Key, event: DeclarationEvent) -> bool:
        """Give back everything `key` writes off; False when it writes nothing off now."""
        current = self.usage[key]
        if current.quantity == ZERO and current.value == ZERO:
            return False
        self.move(key, current, -current.quantity, -current.value, MovementKind.REVERSAL, event)
        self.set_usage(
            key,
            replace(
                current,
                quantity=ZERO,
                value=ZERO,
                declaration_version=max(current.declaration_version, event.version),
                event=str(event.kind),
            ),
        )
        return True

    def with_balances(self, documents: list[DocumentResult]) -> tuple[DocumentResult, ...]:
        """Each document's line balance as it stands after the whole event. A document gets
        its balance when it is decided; only a later one of the same event can change it."""
        if len(documents) <= 1:
            return tuple(documents)
        settled = []
        for document in documents:
            if document.line_number is not None:
                now = self.balance(document.reference, document.line_number)
                # Most lines are in an event once: the very balance the document got.
                if now is not document.remaining and now != document.remaining:
                    document = replace(document, remaining=now)
            settled.append(document)
        return tuple(settled)

    def follow_status(self, event: DeclarationEvent) -> None:
        """A licence whose every line with a ceiling is used up becomes exhausted; one that an
        amendment or invalidation frees again becomes valid again."""
        for number in sorted(self.touched):
            licence = self.licences.get(number)
            if licence is None:
                continue
            full = used_up(licence, self.totals)
            if licence.status is LicenceStatus.VALID and full:
                to = LicenceStatus.EXHAUSTED
                reason = (
                    f"every line with a ceiling is used up (declaration {event.mrn},"
                    f" {event.kind} v{event.version}, message {event.message_id})"
                )
            elif licence.status is LicenceStatus.EXHAUSTED and not full:
                to = LicenceStatus.VALID
                reason = (
                    f"quantity or value given back by declaration {event.mrn}"
                    f" ({event.kind} v{event.version}, message {event.message_id})"
                )
            else:
                continue
            self.decision.status_changes.append(StatusChange(number, licence.status, to, reason))
            self.licences[number] = replace(licence, status=to)
            self.balances.clear()  # rare; what a balance depends on is the licence's
        self.touched.clear()

    def move(
        self,
        key: Key,
        usage: Usage,
        quantity: Decimal,
        value: Decimal,
        kind: MovementKind,
        event: DeclarationEvent,
        declared: tuple[Decimal | None, str | None] = (None, None),
        *,
        contingency: bool = False,
    ) -> None:
        line_key = (usage.licence_number, usage.line_number)
        used_q, used_v = self.totals.get(line_key, (ZERO, ZERO))
        self.totals[line_key] = (used_q + quantity, used_v + value)
        self.balances.pop(line_key, None)
        self.touched.add(usage.licence_number)
        self.decision.movements.append(
            Movement(
                licence_number=usage.licence_number,
                line_number=usage.line_number,
                kind=kind,
                quantity=quantity,
                value=value,
                mrn=key[0],
                goods_item=key[1],
                document_code=key[2],
                document_ref=key[3],
                message_id=event.message_id,
                reason=f"{event.kind} v{event.version}",
                declared_quantity=declared[0],
                declared_unit=declared[1],
                contingency=contingency,
            )
        )

    def set_usage(self, key: Key, usage: Usage) -> None:
        self.usage[key] = usage
        self.keys_by_mrn.setdefault(key[0], set()).add(key)
        self.decision.usage[key] = usage
