"""The batch: declaration events applied in order to a snapshot of the ledger, each seeing what
the ones before it wrote. Which event counts (a redelivery, the same MRN and version again, an
older version, an invalidation, an amendment before its release), and what each version of a
declaration writes off: its documents, one by one (bridge.core.writeoff.write_off), after what
it no longer writes off was given back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from bridge.core.codes import NO_LICENCE_NEEDED
from bridge.core.correlation import Correlation
from bridge.core.declaration import DocumentUse, GoodsItem
from bridge.core.documents import NATIONAL_DOCUMENT_CODES, licence_document
from bridge.core.envelope import DeclarationEvent, DocumentResult, DocumentStatus, EventKind
from bridge.core.ledger_state import Key, Outcome, Record
from bridge.core.model import LicenceType
from bridge.core.writeoff.decision import (
    Decision,
    DeclarationState,
    LedgerSnapshot,
    MessageOutcome,
)
from bridge.core.writeoff.running import RunningLedger
from bridge.core.writeoff.write_off import WriteOffs


def decide(
    events: Sequence[DeclarationEvent],
    snapshot: LedgerSnapshot,
    *,
    national: Mapping[str, Mapping[str, LicenceType | None]] | None = None,
    correlation: Correlation | None = None,
) -> Decision:
    """What the batch does to the ledger, event after event in order; each event sees what the
    ones before it wrote (two write-offs on one licence line in one batch add up, and a
    licence used up by one is exhausted for the next)."""
    national = NATIONAL_DOCUMENT_CODES if national is None else national
    return _Batch(snapshot, national, correlation).run(events)


class _Batch:
    """The events of one batch, in order, against the ledger as the batch changes it."""

    def __init__(self, snapshot: LedgerSnapshot, national, correlation) -> None:
        self.ledger = RunningLedger(snapshot)
        self.write_offs = WriteOffs(self.ledger, snapshot.known_to_customs, correlation)
        self.national = national
        self.states: dict[str, DeclarationState] = dict(snapshot.declarations)
        self.recorded = set(snapshot.seen_message_ids)

    def run(self, events: Sequence[DeclarationEvent]) -> Decision:
        for event in events:
            self.one(event)
            if self.ledger.touched:
                self.ledger.follow_status(event)
        return self.ledger.decision

    def outcome(
        self,
        event: DeclarationEvent,
        outcome: Outcome,
        detail: str = "",
        record=Record.INSERT,
        documents: tuple[DocumentResult, ...] = (),
    ) -> None:
        self.ledger.decision.outcomes.append(
            MessageOutcome(
                event.message_id,
                event.mrn,
                str(event.kind),
                outcome,
                detail,
                record,
                event.version,
                documents,
            )
        )
        self.recorded.add(event.message_id)

    def set_state(self, state: DeclarationState) -> None:
        self.states[state.mrn] = state
        self.ledger.decision.declarations[state.mrn] = state

    def one(self, event: DeclarationEvent) -> None:
        if event.message_id in self.recorded:
            self.outcome(event, Outcome.DUPLICATE, "message already processed", Record.NONE)
            return
        state = self.states.get(event.mrn) or DeclarationState(event.mrn)
        if event.kind is EventKind.INVALIDATED:
            self.invalidate(event, state)
            return
        if state.invalidated:
            self.outcome(event, Outcome.IGNORED, "the declaration was invalidated")
            return
        if event.version == state.version and str(event.kind) == state.event:
            self.outcome(event, Outcome.DUPLICATE, f"version {event.version} already applied")
            return
        if event.version <= state.version:
            self.outcome(
                event, Outcome.STALE, f"version {event.version}, ledger has {state.version}"
            )
            return
        if event.kind is EventKind.AMENDED and state.version == 0:
            self.hold(event, state)
            return
        outcome, detail, documents = self.apply(event)
        self.outcome(event, outcome, detail, documents=documents)
        state = replace(
            state, version=event.version, event=str(event.kind), message_id=event.message_id
        )
        held = state.held
        if held is not None:
            state = replace(state, held=None)
            if held.version > event.version:
                if self.ledger.touched:  # the release's status change comes before the amendment's
                    self.ledger.follow_status(event)
                outcome, detail, documents = self.apply(held)
                self.outcome(
                    held, outcome, f"held until its release; {detail}", Record.UPDATE, documents
                )
                state = replace(
                    state, version=held.version, event=str(held.kind), message_id=held.message_id
                )
                if self.ledger.touched:
                    self.ledger.follow_status(held)
            else:
                self.outcome(held, Outcome.STALE, "older than its release", Record.UPDATE)
        self.set_state(state)

    def hold(self, event: DeclarationEvent, state: DeclarationState) -> None:
        if state.held is not None and state.held.version >= event.version:
            self.outcome(event, Outcome.STALE, f"a held version {state.held.version} is newer")
            return
        if state.held is not None:
            self.outcome(state.held, Outcome.STALE, "replaced by a newer amendment", Record.UPDATE)
        self.set_state(replace(state, held=event))
        self.outcome(event, Outcome.HELD, "amendment before its release: held")

    def invalidate(self, event: DeclarationEvent, state: DeclarationState) -> None:
        if state.invalidated:
            self.outcome(event, Outcome.DUPLICATE, "already invalidated")
            return
        documents = [
            self.ledger.reversed_document(key)
            for key in sorted(self.ledger.keys_by_mrn.get(event.mrn, ()))
            if self.ledger.reverse(key, event)
        ]
        if state.held is not None:
            self.outcome(state.held, Outcome.IGNORED, "invalidated before release", Record.UPDATE)
        self.set_state(
            replace(
                state,
                invalidated=True,
                event=str(event.kind),
                message_id=event.message_id,
                held=None,
            )
        )
        detail = (
            f"{len(documents)} write-off(s) reversed"
            if documents
            else "nothing written off yet; remembered so that a later release writes nothing"
        )
        self.outcome(event, Outcome.APPLIED, detail, documents=self.ledger.with_balances(documents))

    def apply(self, event: DeclarationEvent) -> tuple[Outcome, str, tuple[DocumentResult, ...]]:
        """Bring the MRN's usage to what this declaration version says; a result for every
        dual-use (or Y901) document it quotes and every write-off it no longer makes.

        What the version no longer writes off is given back first, so that goods renumbered
        or quoted under another document code are not counted twice on their way."""
        declaration = event.declaration
        assert declaration is not None  # released and amended events always carry one
        planned: list[tuple[GoodsItem, DocumentUse, LicenceType | None, Key | None]] = []
        for item in declaration.goods_items:
            for document in item.documents:
                is_licence, asserted = licence_document(
                    document.document_code, event.country, self.national
                )
                if not is_licence and document.document_code != NO_LICENCE_NEEDED:
                    continue
                key = None
                if is_licence and document.writes_off:
                    key = (event.mrn, item.sequence, document.document_code, document.reference)
                planned.append((item, document, asserted if is_licence else None, key))
        present = {key for *_, key in planned if key is not None}
        gone = self.ledger.keys_by_mrn.get(event.mrn, set()) - present
        reversed_documents = [
            self.ledger.reversed_document(key, "no longer in the declaration")
            for key in sorted(gone)
            if self.ledger.reverse(key, event)
        ]
        documents: list[DocumentResult] = []
        refused = applied = 0
        for item, document, asserted, key in planned:
            if document.document_code == NO_LICENCE_NEEDED:
                documents.append(
                    _ignored(
                        item,
                        document,
                        f"{NO_LICENCE_NEEDED}: the goods need no dual-use licence;"
                        " nothing written off",
                    )
                )
            elif key is None:
                documents.append(
                    _ignored(
                        item,
                        document,
                        "quoted without a write-off quantity or amount: nothing written off",
                    )
                )
            else:
                result = self.write_offs.write_off(event, item, document, asserted, key)
                documents.append(result)
                if result.status is DocumentStatus.REFUSED:
                    refused += 1
                else:
                    applied += 1
        documents.extend(reversed_documents)
        results = self.ledger.with_balances(documents)
        if refused:
            return Outcome.REFUSED, f"{refused} write-off(s) refused, {applied} applied", results
        if applied or reversed_documents:
            detail = f"{applied} write-off(s), {len(reversed_documents)} reversed"
            return Outcome.APPLIED, detail, results
        return Outcome.IGNORED, "no dual-use licence write-off", results


def _ignored(item: GoodsItem, document: DocumentUse, detail: str) -> DocumentResult:
    return DocumentResult(
        goods_item=item.sequence,
        document_code=document.document_code,
        reference=document.reference,
        status=DocumentStatus.IGNORED,
        detail=detail,
    )
