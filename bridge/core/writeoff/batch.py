"""The batch: declaration events applied in order to a snapshot of the ledger, each seeing what
the ones before it wrote. Which event counts (a redelivery, the same MRN and version again, an
older version, an invalidation, an amendment before its release), the declaration each release
or amendment leaves (the release with every amendment merged onto it: bridge.core.acted_on),
and what that declaration writes off: its licence documents, one by one
(bridge.core.writeoff.write_off), after what it no longer writes off was given back. A
declaration quoting no licence document (imports, transit, Y901 only) concerns the bridge not
at all: `ignored`, whatever else it lacks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from bridge.core import acted_on
from bridge.core.codes import NO_LICENCE_NEEDED
from bridge.core.correlation import Correlation
from bridge.core.declaration import DocumentUse, GoodsItem
from bridge.core.documents import NATIONAL_DOCUMENT_CODES, licence_document
from bridge.core.envelope import DeclarationEvent, DocumentResult, DocumentStatus, EventKind
from bridge.core.errors import Problem
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
        self.write_offs = WriteOffs(
            self.ledger,
            snapshot.known_to_customs,
            correlation,
            versions_at_customs=snapshot.versions_at_customs,
        )
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
        if event.kind is EventKind.AMENDED and state.version == 0:
            self.hold(event, state)
            return
        # An amendment older than the ledger's version may still carry sections no newer one
        # set (they arrived out of order): it is merged by version (bridge.core.acted_on).
        late_amendment = (
            event.kind is EventKind.AMENDED
            and event.version < state.version
            and state.acted_on is not None
        )
        if event.version <= state.version and not late_amendment:
            self.outcome(
                event, Outcome.STALE, f"version {event.version}, ledger has {state.version}"
            )
            return
        if self.refuse_unreadable(event, state):
            return
        state = self.apply_event(event, state)
        held, state = state.held, replace(state, held=())
        for amendment in held:
            if amendment.version > event.version:
                if self.ledger.touched:  # the release's status change comes before the amendment's
                    self.ledger.follow_status(event)
                state = self.apply_event(amendment, state, Record.UPDATE)
                if self.ledger.touched:
                    self.ledger.follow_status(amendment)
            else:
                self.outcome(amendment, Outcome.STALE, "older than its release", Record.UPDATE)
        self.set_state(state)

    def hold(self, event: DeclarationEvent, state: DeclarationState) -> None:
        """Keep an amendment until its release; every version (a partial amendment changes
        only its sections, so no held one replaces another)."""
        if any(held.version == event.version for held in state.held):
            self.outcome(event, Outcome.DUPLICATE, f"version {event.version} is held already")
            return
        held = tuple(sorted((*state.held, event), key=lambda held: held.version))
        self.set_state(replace(state, held=held))
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
        for held in state.held:
            self.outcome(held, Outcome.IGNORED, "invalidated before release", Record.UPDATE)
        self.set_state(
            replace(
                state,
                invalidated=True,
                event=str(event.kind),
                message_id=event.message_id,
                held=(),
            )
        )
        detail = (
            f"{len(documents)} write-off(s) reversed"
            if documents
            else "nothing written off yet; remembered so that a later release writes nothing"
        )
        self.outcome(event, Outcome.APPLIED, detail, documents=self.ledger.with_balances(documents))

    def keep(self, country: str | None):
        """Which document codes the declaration acted on keeps: licences (EU dual-use codes
        and the deployment's national ones for `country`) and Y901."""

        def keep(code: str) -> bool:
            return code == NO_LICENCE_NEEDED or licence_document(code, country, self.national)[0]

        return keep

    def apply_event(
        self, event: DeclarationEvent, state: DeclarationState, record: Record = Record.INSERT
    ) -> DeclarationState:
        """Merge a release or amendment onto the declaration acted on and bring the MRN's
        usage to what the merged declaration says; the state after it."""
        declaration = event.declaration
        assert declaration is not None  # released and amended events always carry one
        before = state.acted_on
        country = event.country or (before.country.value if before else None)
        keep = self.keep(country)
        if event.kind is EventKind.RELEASED or before is None:
            # An amendment of a declaration released before the ledger kept what it acts on
            # is taken whole, as the bridge did then (docs/envelope.md).
            merged = acted_on.release(
                declaration,
                version=event.version,
                released_at=event.envelope.event_time,
                country=country,
                keep=keep,
                before=before,
            )
        else:
            merged, newer = acted_on.merge(
                before,
                declaration,
                version=event.version,
                message_id=event.message_id,
                country=event.country,
                keep=keep,
            )
            if not newer:
                self.outcome(
                    event,
                    Outcome.STALE,
                    f"version {event.version}: every section it carries was set by a newer"
                    f" version (ledger has {state.version})",
                    record,
                )
                return state
        # The rules see the merged declaration, and check validity on the release's date.
        released_at = merged.released_at or event.envelope.event_time
        view = replace(
            event,
            envelope=replace(event.envelope, event_time=released_at),
            declaration=acted_on.as_declaration(merged, declaration),
        )
        outcome, detail, documents = self.apply(view)
        held = "held until its release; " if record is Record.UPDATE else ""
        self.outcome(event, outcome, held + detail, record, documents)
        if event.version < state.version:
            return replace(state, acted_on=merged)
        return replace(
            state,
            version=event.version,
            event=str(event.kind),
            message_id=event.message_id,
            acted_on=merged,
        )

    def refuse_unreadable(self, event: DeclarationEvent, state: DeclarationState) -> bool:
        """A licence document the deployment's national table names, which could not be read
        (the reader keeps such problems, not knowing the table): the message is refused whole,
        each such document with its reasons, and nothing of it is applied."""
        declaration = event.declaration
        assert declaration is not None
        country = event.country or (state.acted_on.country.value if state.acted_on else None)
        unreadable = [
            (item, document)
            for item in declaration.goods_items
            for document in item.documents
            if document.problems
            and licence_document(document.document_code, country, self.national)[0]
        ]
        if not unreadable:
            return False
        documents = []
        for item, document in unreadable:
            key = (event.mrn, item.sequence, document.document_code, document.reference)
            reasons = [(p.code, f"{p.path}: {p.reason}") for p in document.problems]
            licence = self.ledger.licences.get(document.reference)
            current = self.ledger.usage.get(key)
            documents.append(
                self.write_offs.refuse(event, item, document, licence, None, current, reasons, [])
            )
        self.outcome(
            event,
            Outcome.REFUSED,
            f"{len(unreadable)} licence document(s) cannot be read: nothing of the message applied",
            documents=tuple(documents),
        )
        return True

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
            elif declaration.exporter_eori is None:
                result = self.write_offs.refuse(
                    event,
                    item,
                    document,
                    self.ledger.licences.get(document.reference),
                    None,
                    self.ledger.usage.get(key),
                    [("missing-exporter", _no_exporter(event, item, document))],
                    [],
                )
                documents.append(result)
                refused += 1
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
        if all(document.document_code == NO_LICENCE_NEEDED for _, document, *_ in planned):
            return Outcome.IGNORED, _NOT_CONCERNED, results
        return Outcome.IGNORED, "no dual-use licence write-off", results


_NOT_CONCERNED = (
    "no dual-use licence document (X002, X060-X072 or a national licence code): the"
    " declaration does not concern the bridge"
)


def _no_exporter(event: DeclarationEvent, item: GoodsItem, document: DocumentUse) -> str:
    what = "the declaration as amended" if event.kind is EventKind.AMENDED else "the declaration"
    return (
        f"goods item {item.sequence} writes off {document.document_code} {document.reference},"
        f" and {what} names no exporter (DE 3/2, Exporter/ID): the licence holder cannot be"
        " checked; nothing written off"
    )


def unreadable_licence_documents(
    event: DeclarationEvent,
    national: Mapping[str, Mapping[str, LicenceType | None]] | None = None,
) -> list[Problem]:
    """What the reader could not read in documents that are licences by the national table
    (for the event's customs country; the reader, not knowing the table, kept those problems
    on the documents): a message with any is quarantined, as one with an unreadable EU
    dual-use document is. Problems on documents of no concern to the bridge are not listed."""
    national = NATIONAL_DOCUMENT_CODES if national is None else national
    if event.declaration is None:
        return []
    return [
        problem
        for item in event.declaration.goods_items
        for document in item.documents
        if document.problems
        and licence_document(document.document_code, event.country, national)[0]
        for problem in document.problems
    ]


def _ignored(item: GoodsItem, document: DocumentUse, detail: str) -> DocumentResult:
    return DocumentResult(
        goods_item=item.sequence,
        document_code=document.document_code,
        reference=document.reference,
        status=DocumentStatus.IGNORED,
        detail=detail,
    )
