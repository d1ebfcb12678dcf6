"""The declaration the bridge acts on, per MRN: what the release said, with every amendment
merged onto it (docs/envelope.md, "Amendments as customs send them").

Customs send an amendment (FunctionCode 13) as the sections it changes, not as the whole
declaration: an `Amendment` (ChangeReasonCode, a path of `Pointer`s to what changed) and the
changed data. So the ledger keeps, per MRN, the state the write-off rules need (exporter,
destination and dispatch countries, customs country, the original release's time, and per goods
item its CN code, own destination and licence documents with their write-offs), merges each
amendment onto it, and the rules check the merged declaration.

Every value carries the declaration version that set it, and an amendment changes only what
it is newer than: amendments that arrive out of order, or twice, end in the same state.

The merge rules (`merge`):

- header data the message carries (exporter, destination, dispatch country, customs country)
  replace the stored; what it does not carry keeps its value;
- a goods item it carries and the state does not hold is added;
- a goods item it carries and the state holds: its CN code and own destination replace the
  stored when carried; each document it carries replaces the stored one of the same code and
  reference (or is added); a stored document it does not carry is removed (given back) when the
  item is sent whole: a Pointer path ending at the item (68A n), or a message without any
  Pointer (a complete declaration resent), or a Pointer to the item's AdditionalDocument
  section without a number; or when a Pointer names its place (68A n, then 02A m: the m-th
  AdditionalDocument of the item as released);
- a goods item it does not carry keeps its value, unless a Pointer path ends at it (68A n):
  then it is removed and everything it wrote off is given back;
- an original declaration (FunctionCode 9) is complete: what it does not carry is removed.

Pure: no clock, no database. The state is stored as JSON (`to_json`, `from_json`) in the
`declaration` table's `acted_on` column."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from bridge.core.declaration import Amendment, Declaration, DocumentUse, GoodsItem, Pointer

SHAPE = 1  # the JSON shape's version (docs/envelope.md)
GOODS_ITEM_SECTION = "68A"  # WCO class GovernmentAgencyGoodsItem
DOCUMENT_SECTION = "02A"  # WCO class AdditionalDocument

Keep = Callable[[str], bool]  # which document codes the state keeps (licences, Y901)


@dataclass(frozen=True, slots=True)
class Stamped:
    """A header value with the declaration version that set it (0: never set)."""

    value: str | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class DocumentState:
    code: str
    reference: str
    version: int  # the declaration version that last set (or removed) it
    quantity: Decimal | None = None
    unit: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    line_item_number: int | None = None
    status: str | None = None
    position: int | None = None  # its place among the item's AdditionalDocuments, as released
    removed: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.code, self.reference)


@dataclass(frozen=True, slots=True)
class ItemState:
    sequence: int
    version: int
    cn_code: str | None = None
    destination: str | None = None  # the item's own (else the declaration's applies)
    documents: tuple[DocumentState, ...] = ()
    removed: bool = False


@dataclass(frozen=True, slots=True)
class AmendmentRecord:
    """The Amendment sections of one amendment merged, as it sent them."""

    version: int
    message_id: str
    sections: tuple[Amendment, ...]


@dataclass(frozen=True, slots=True)
class ActedOn:
    version: int  # the highest declaration version merged
    released_at: datetime | None  # the original release's event time (validity is checked on it)
    exporter: Stamped = Stamped()
    destination: Stamped = Stamped()
    dispatch: Stamped = Stamped()
    country: Stamped = Stamped()
    items: tuple[ItemState, ...] = ()
    amendments: tuple[AmendmentRecord, ...] = ()

    def references(self) -> set[str]:
        """Every document reference the state quotes (the licences an amendment may touch)."""
        return {d.reference for i in self.items for d in i.documents if not d.removed}


def release(
    declaration: Declaration,
    *,
    version: int,
    released_at: datetime,
    country: str | None,
    keep: Keep,
    before: ActedOn | None = None,
) -> ActedOn:
    """The state after an original declaration: complete, so it replaces everything older in
    `before` (a newer original of the same MRN); the first release's time stays the one
    validity is checked on."""
    state = before or ActedOn(version=0, released_at=released_at)
    merged, _ = _merge(state, declaration, version, country, keep, complete=True)
    return replace(merged, released_at=state.released_at or released_at)


def merge(
    state: ActedOn,
    declaration: Declaration,
    *,
    version: int,
    message_id: str,
    country: str | None,
    keep: Keep,
) -> tuple[ActedOn, bool]:
    """`state` with the amendment `declaration` (declaration version `version`) merged onto
    it by the rules of the module docstring, and whether anything in it was newer than what
    the state holds (False: every section it carries was set by a newer version already)."""
    merged, won = _merge(state, declaration, version, country, keep, complete=False)
    if won and declaration.amendments:
        record = AmendmentRecord(version, message_id, declaration.amendments)
        merged = replace(merged, amendments=(*merged.amendments, record))
    return merged, won


def _merge(
    state: ActedOn,
    declaration: Declaration,
    version: int,
    country: str | None,
    keep: Keep,
    *,
    complete: bool,
) -> tuple[ActedOn, bool]:
    won = False

    def stamp(current: Stamped, carried: str | None) -> Stamped:
        nonlocal won
        if (carried is None and not complete) or current.version >= version:
            return current
        won = True
        return Stamped(carried, version)

    whole, documents_whole, places = _pointed(declaration.amendments)
    every_item_whole = complete or not any(a.pointers for a in declaration.amendments)
    items = {item.sequence: item for item in state.items}
    carried = {item.sequence: item for item in declaration.goods_items}
    for sequence, item in carried.items():
        old = items.get(sequence)
        if old is not None and old.removed and old.version >= version:
            continue  # removed by a newer version
        if old is None or old.removed:
            items[sequence] = _new_item(item, version, keep, declaration.destination)
            won = True
            continue
        item_whole = every_item_whole or sequence in whole or sequence in documents_whole
        new, changed = _merge_item(
            old, item, version, keep, item_whole, places.get(sequence), declaration.destination
        )
        items[sequence] = new
        won = won or changed
    for sequence, old in list(items.items()):
        if sequence in carried or old.removed:
            continue
        if complete or sequence in whole:
            if old.version < version:
                items[sequence] = _removed_item(old, version)
                won = True
        elif sequence in places:
            new, changed = _remove_places(old, version, places[sequence])
            items[sequence] = new
            won = won or changed
    for sequence in whole - set(items) - set(carried):
        items[sequence] = ItemState(sequence, version, removed=True)  # stays removed
        won = True
    merged = replace(
        state,
        version=max(state.version, version),
        exporter=stamp(state.exporter, declaration.exporter_eori),
        destination=stamp(state.destination, declaration.destination),
        dispatch=stamp(state.dispatch, declaration.dispatch),
        country=stamp(state.country, country),
        items=tuple(items[n] for n in sorted(items)),
    )
    return merged, won


def _pointed(
    amendments: Iterable[Amendment],
) -> tuple[set[int], set[int], dict[int, set[int]]]:
    """From the Pointer paths: the goods items named whole (the path ends at 68A n), those
    whose AdditionalDocument section is named whole (02A without a number), and the document
    places named per item (68A n, 02A m). A path ending in a TagID names a data element inside
    the section: a change, not a removal."""
    whole: set[int] = set()
    documents_whole: set[int] = set()
    places: dict[int, set[int]] = {}
    for amendment in amendments:
        path = [p for p in amendment.pointers if p.section]
        item = next((i for i, p in enumerate(path) if p.section == GOODS_ITEM_SECTION), None)
        if item is None or path[item].sequence is None:
            continue
        sequence = path[item].sequence
        rest = path[item + 1 :]
        if not rest:
            if path[item].tag is None:
                whole.add(sequence)
            continue
        first: Pointer = rest[0]
        if first.section != DOCUMENT_SECTION or len(rest) > 1 or first.tag is not None:
            continue
        if first.sequence is None:
            documents_whole.add(sequence)
        else:
            places.setdefault(sequence, set()).add(first.sequence)
    return whole, documents_whole, places


def _document(document: DocumentUse, version: int, position: int | None) -> DocumentState:
    return DocumentState(
        code=document.document_code,
        reference=document.reference,
        version=version,
        quantity=document.quantity,
        unit=document.unit,
        amount=document.amount,
        currency=document.currency,
        line_item_number=document.line_item_number,
        status=document.status,
        position=position,
    )


def _own_destination(item: GoodsItem, shipment: str | None) -> str | None:
    # An item read from XML says whether the destination is its own; one built otherwise
    # has its own where it differs from the shipment's.
    if item.own_destination is not None or item.destination == shipment:
        return item.own_destination
    return item.destination


def _new_item(item: GoodsItem, version: int, keep: Keep, shipment: str | None) -> ItemState:
    return ItemState(
        sequence=item.sequence,
        version=version,
        cn_code=item.cn_code,
        destination=_own_destination(item, shipment),
        documents=tuple(
            _document(d, version, d.position) for d in item.documents if keep(d.document_code)
        ),
    )


def _removed_item(old: ItemState, version: int) -> ItemState:
    return replace(
        old,
        version=version,
        removed=True,
        documents=tuple(replace(d, removed=True, version=version) for d in old.documents),
    )


def _merge_item(
    old: ItemState,
    item: GoodsItem,
    version: int,
    keep: Keep,
    whole: bool,
    places: set[int] | None,
    shipment: str | None,
) -> tuple[ItemState, bool]:
    changed = False
    documents = {d.key: d for d in old.documents}
    carried: set[tuple[str, str]] = set()
    for document in item.documents:
        if not keep(document.document_code):
            continue
        key = (document.document_code, document.reference)
        carried.add(key)
        before = documents.get(key)
        if before is not None and before.version >= version:
            continue
        # Sent whole, the item's documents are at their places as released; sent in part,
        # a document keeps the place it had.
        position = document.position if whole else before.position if before else None
        documents[key] = _document(document, version, position)
        changed = True
    for key, before in list(documents.items()):
        if key in carried or before.removed or before.version >= version:
            continue
        if whole or (places and before.position in places):
            documents[key] = replace(before, removed=True, version=version)
            changed = True
    fields = old
    if old.version < version:
        fields = replace(
            old,
            version=version,
            cn_code=item.cn_code or old.cn_code,
            destination=_own_destination(item, shipment) or old.destination,
        )
        changed = True
    return replace(fields, documents=tuple(documents.values())), changed


def _remove_places(old: ItemState, version: int, places: set[int]) -> tuple[ItemState, bool]:
    changed = False
    documents = []
    for document in old.documents:
        if not document.removed and document.version < version and document.position in places:
            document = replace(document, removed=True, version=version)
            changed = True
        documents.append(document)
    return replace(old, documents=tuple(documents)), changed


def as_declaration(state: ActedOn, message: Declaration) -> Declaration:
    """The merged declaration the rules check: the state's header and live goods items and
    documents, with the message's own codes, references and Amendment sections."""
    destination = state.destination.value
    return Declaration(
        function_code=message.function_code,
        type_code=message.type_code,
        lrn=message.lrn,
        mrn=message.mrn,
        exporter_eori=state.exporter.value,
        country=state.country.value or message.country,
        goods_items=tuple(
            GoodsItem(
                sequence=item.sequence,
                cn_code=item.cn_code,
                description=None,
                destination=item.destination or destination,
                documents=tuple(
                    DocumentUse(
                        document_code=d.code,
                        reference=d.reference,
                        status=d.status,
                        quantity=d.quantity,
                        unit=d.unit,
                        amount=d.amount,
                        currency=d.currency,
                        line_item_number=d.line_item_number,
                        path=f"goods item {item.sequence}, as of version {d.version}",
                        position=d.position,
                    )
                    for d in item.documents
                    if not d.removed
                ),
                own_destination=item.destination,
            )
            for item in state.items
            if not item.removed
        ),
        destination=destination,
        dispatch=state.dispatch.value,
        amendments=message.amendments,
    )


# JSON ----------------------------------------------------------------------------------------


def to_json(state: ActedOn) -> str:
    """The state as compact JSON (docs/envelope.md, "The declaration acted on"); members that
    are null or false are left out."""
    try:
        return _written(state)
    except _Unusual:
        return json_by_documents(state)


def json_by_documents(state: ActedOn) -> str:
    """`to_json`'s text, built as the dicts the JSON shape describes and dumped: the
    definition, for any state."""
    document: dict[str, Any] = {
        "shape": SHAPE,
        "version": state.version,
        "released_at": state.released_at.isoformat() if state.released_at else None,
        "exporter": _stamped(state.exporter),
        "destination": _stamped(state.destination),
        "dispatch": _stamped(state.dispatch),
        "country": _stamped(state.country),
        "goods_items": [_item_json(item) for item in state.items],
        "amendments": [
            {
                "version": record.version,
                "message_id": record.message_id,
                "sections": [
                    {
                        "change_reason": section.change_reason,
                        "pointers": [
                            _compact({"section": p.section, "sequence": p.sequence, "tag": p.tag})
                            for p in section.pointers
                        ],
                    }
                    for section in record.sections
                ],
            }
            for record in state.amendments
        ],
    }
    return json.dumps(_compact(document), separators=(",", ":"), ensure_ascii=False)


# The consumer stores a state per declaration event, hundreds per batch: `_written` writes the
# text directly for the types the state holds (text, int, Decimal, datetime, bool, None), which
# costs a fraction of building the dicts and dumping them; any other value raises `_Unusual`
# and `json_by_documents` decides. The two must agree byte for byte
# (tests/unit/test_acted_on_json.py): the stored text is the same either way.
_quote = json.encoder.encode_basestring  # what json.dumps escapes text with, ensure_ascii off


class _Unusual(Exception):
    """A value `_written` does not write itself."""


def _scalar(value: object) -> str:
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    raise _Unusual


def _member(pieces: list[str], name: str, value: object) -> None:
    # `_compact` leaves out null and false; a list it leaves out when empty.
    if value is None or value is False:
        return
    pieces.append(name + _scalar(value))


def _number_member(pieces: list[str], name: str, value: object) -> None:
    if value is None:
        return
    if type(value) is not Decimal:
        raise _Unusual
    pieces.append(name + '"' + format(value, "f") + '"')  # digits, sign, point or NaN/Infinity


def _stamped_member(pieces: list[str], name: str, stamped: Stamped) -> None:
    if type(stamped.version) is not int:
        raise _Unusual
    if stamped.version != 0:
        pieces.append(f"{name}[{_scalar(stamped.value)},{int.__repr__(stamped.version)}]")


# A document's members in order, and whether each is a number (written as text): the loop
# below writes them without a call per member, thousands of documents per batch.
_DOCUMENT_MEMBERS = tuple(
    (f'"{name}":', name in ("quantity", "amount"))
    for name in (
        "code", "reference", "version", "quantity", "unit", "amount", "currency",
        "line_item_number", "status", "position", "removed",
    )
)  # fmt: skip


def _document_written(d: DocumentState) -> str:
    code, reference, version, removed = d.code, d.reference, d.version, d.removed
    if type(code) is not str or type(reference) is not str or type(version) is not int:
        return _document_members(d)
    if type(removed) is not bool:
        return _document_members(d)
    # The usual document, straight through (no call per member).
    text = '{"code":' + _quote(code) + ',"reference":' + _quote(reference)
    text += ',"version":' + int.__repr__(version)
    value = d.quantity
    if value is not None:
        if type(value) is not Decimal:
            raise _Unusual
        text += ',"quantity":"' + format(value, "f") + '"'
    value = d.unit
    if value is not None:
        if type(value) is not str:
            raise _Unusual
        text += ',"unit":' + _quote(value)
    value = d.amount
    if value is not None:
        if type(value) is not Decimal:
            raise _Unusual
        text += ',"amount":"' + format(value, "f") + '"'
    value = d.currency
    if value is not None:
        if type(value) is not str:
            raise _Unusual
        text += ',"currency":' + _quote(value)
    value = d.line_item_number
    if value is not None:
        if type(value) is not int:
            raise _Unusual
        text += ',"line_item_number":' + int.__repr__(value)
    value = d.status
    if value is not None:
        if type(value) is not str:
            raise _Unusual
        text += ',"status":' + _quote(value)
    value = d.position
    if value is not None:
        if type(value) is not int:
            raise _Unusual
        text += ',"position":' + int.__repr__(value)
    return text + (',"removed":true}' if removed else "}")


def _document_members(d: DocumentState) -> str:
    pieces: list[str] = []
    values = (
        d.code, d.reference, d.version, d.quantity, d.unit, d.amount, d.currency,
        d.line_item_number, d.status, d.position, d.removed,
    )  # fmt: skip
    for (name, number), value in zip(_DOCUMENT_MEMBERS, values, strict=True):
        if value is None:
            continue
        kind = type(value)
        if number:
            if kind is not Decimal:
                raise _Unusual
            pieces.append(name + '"' + format(value, "f") + '"')
        elif kind is str:
            pieces.append(name + _quote(value))
        elif kind is int:
            pieces.append(name + int.__repr__(value))
        elif value is True:
            pieces.append(name + "true")
        elif value is not False:
            raise _Unusual
    return "{" + ",".join(pieces) + "}"


def _item_written(item: ItemState) -> str:
    pieces: list[str] = []
    _member(pieces, '"sequence":', item.sequence)
    _member(pieces, '"version":', item.version)
    _member(pieces, '"cn_code":', item.cn_code)
    _member(pieces, '"destination":', item.destination)
    _member(pieces, '"removed":', item.removed)
    if item.documents:
        documents = ",".join([_document_written(d) for d in item.documents])
        pieces.append(f'"documents":[{documents}]')
    return "{" + ",".join(pieces) + "}"


def _pointer_written(p: Pointer) -> str:
    pieces: list[str] = []
    _member(pieces, '"section":', p.section)
    _member(pieces, '"sequence":', p.sequence)
    _member(pieces, '"tag":', p.tag)
    return "{" + ",".join(pieces) + "}"


def _record_written(record: AmendmentRecord) -> str:
    sections = ",".join(
        [
            '{"change_reason":'
            + _scalar(section.change_reason)
            + ',"pointers":['
            + ",".join([_pointer_written(p) for p in section.pointers])
            + "]}"
            for section in record.sections
        ]
    )
    version, message_id = _scalar(record.version), _scalar(record.message_id)
    return f'{{"version":{version},"message_id":{message_id},"sections":[{sections}]}}'


def _written(state: ActedOn) -> str:
    pieces = ['"shape":' + int.__repr__(SHAPE)]
    _member(pieces, '"version":', state.version)
    if state.released_at is not None:
        if type(state.released_at) is not datetime:
            raise _Unusual
        pieces.append('"released_at":' + _quote(state.released_at.isoformat()))
    _stamped_member(pieces, '"exporter":', state.exporter)
    _stamped_member(pieces, '"destination":', state.destination)
    _stamped_member(pieces, '"dispatch":', state.dispatch)
    _stamped_member(pieces, '"country":', state.country)
    if state.items:
        items = ",".join([_item_written(item) for item in state.items])
        pieces.append(f'"goods_items":[{items}]')
    if state.amendments:
        records = ",".join([_record_written(record) for record in state.amendments])
        pieces.append(f'"amendments":[{records}]')
    return "{" + ",".join(pieces) + "}"


def from_json(text: str) -> ActedOn:
    """The state `to_json` wrote. Raises ValueError on another shape."""
    document = json.loads(text)
    if document.get("shape") != SHAPE:
        raise ValueError(f"acted_on has shape {document.get('shape')!r}; expected {SHAPE}")
    released = document.get("released_at")
    return ActedOn(
        version=document["version"],
        released_at=datetime.fromisoformat(released) if released else None,
        exporter=_stamped_from(document.get("exporter")),
        destination=_stamped_from(document.get("destination")),
        dispatch=_stamped_from(document.get("dispatch")),
        country=_stamped_from(document.get("country")),
        items=tuple(_item_from(item) for item in document.get("goods_items", ())),
        amendments=tuple(
            AmendmentRecord(
                record["version"],
                record["message_id"],
                tuple(
                    Amendment(
                        section.get("change_reason"),
                        tuple(
                            Pointer(p.get("section"), p.get("sequence"), p.get("tag"))
                            for p in section.get("pointers", ())
                        ),
                    )
                    for section in record.get("sections", ())
                ),
            )
            for record in document.get("amendments", ())
        ),
    )


def _compact(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if v is not None and v is not False and v != []}


def _number(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _stamped(stamped: Stamped) -> list[Any] | None:
    return None if stamped.version == 0 else [stamped.value, stamped.version]


def _stamped_from(raw: list[Any] | None) -> Stamped:
    return Stamped() if not raw else Stamped(raw[0], raw[1])


def _item_json(item: ItemState) -> dict[str, Any]:
    return _compact(
        {
            "sequence": item.sequence,
            "version": item.version,
            "cn_code": item.cn_code,
            "destination": item.destination,
            "removed": item.removed,
            "documents": [
                _compact(
                    {
                        "code": d.code,
                        "reference": d.reference,
                        "version": d.version,
                        "quantity": _number(d.quantity),
                        "unit": d.unit,
                        "amount": _number(d.amount),
                        "currency": d.currency,
                        "line_item_number": d.line_item_number,
                        "status": d.status,
                        "position": d.position,
                        "removed": d.removed,
                    }
                )
                for d in item.documents
            ],
        }
    )


def _item_from(raw: dict[str, Any]) -> ItemState:
    def number(value: str | None) -> Decimal | None:
        return None if value is None else Decimal(value)

    return ItemState(
        sequence=raw["sequence"],
        version=raw["version"],
        cn_code=raw.get("cn_code"),
        destination=raw.get("destination"),
        removed=raw.get("removed", False),
        documents=tuple(
            DocumentState(
                code=d["code"],
                reference=d["reference"],
                version=d["version"],
                quantity=number(d.get("quantity")),
                unit=d.get("unit"),
                amount=number(d.get("amount")),
                currency=d.get("currency"),
                line_item_number=d.get("line_item_number"),
                status=d.get("status"),
                position=d.get("position"),
                removed=d.get("removed", False),
            )
            for d in raw.get("documents", ())
        ),
    )
