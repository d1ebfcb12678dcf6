"""The one-pass reader of a declaration that has nothing to report.

`bridge.core.declaration.read_declaration` asks `read_clean` first. It reads the parsed tree in
one pass over the children of each element it needs (plain iteration and tag comparison:
lxml's tag-filtered `find` and `iterchildren` cost more per call than the few children they
skip) and builds the records the full reader (`declaration._Reader`) would build. The moment it
meets anything the full reader would report, or a shape it does not read itself (a transport
wrapper around the declaration), it gives up and returns None; the full reader then reads the
message and says what, where and why, exactly as before. So a declaration read here is one the
full reader reads without a single problem, into equal records: tests/unit/
test_declaration_fast.py runs both over the generated corpus, the hostile corpus and the WCO
samples changed element by element."""

from __future__ import annotations

from decimal import Decimal

from bridge.core.codes import country_problem, eori_problem, normalise_cn, normalise_eori
from bridge.core.declaration_model import (
    _ADDITIONAL_DOCUMENT,
    _AMENDMENT,
    _CATEGORY_CODE,
    _CLASSIFICATION,
    _COMMODITY,
    _COUNTRY_CODE,
    _DECLARATION,
    _DESCRIPTION,
    _DESTINATION,
    _EXPORT_COUNTRY,
    _EXPORTER,
    _FUNCTION_CODE,
    _GOODS_ITEM,
    _GOODS_SHIPMENT,
    _ID,
    _IDENTIFICATION_TYPE,
    _LINE_NUMERIC,
    _LPCO_EXEMPTION,
    _LRN,
    _METADATA,
    _RESPONSIBLE_COUNTRY,
    _SEQUENCE,
    _TYPE_CODE,
    _WRITE_OFF,
    _WRITE_OFF_AMOUNT,
    _WRITE_OFF_QUANTITY,
    AMOUNT_DECIMALS,
    CANCELLATION_FUNCTION_CODE,
    CANCELLATION_TYPE_CODE,
    CN_CLASSIFICATION,
    MAX_REFERENCE,
    QUANTITY_DECIMALS,
    TOTAL_DIGITS,
    Declaration,
    DocumentUse,
    GoodsItem,
    parse_write_off_decimal,
)

# CN codes and EORIs repeat from message to message; their normal forms are remembered (a
# bounded cache: cleared when full, so hostile traffic cannot grow it).
_CACHE_LIMIT = 4096
_cn_codes: dict[str, str] = {}
_exporters: dict[str, str | None] = {}  # raw Exporter/ID -> EORI, None when it has a problem


class _Unclean(Exception):
    """Something the full reader would report: it reads the message instead."""


def read_clean(root, source: str, *, amendments) -> Declaration | None:
    """The declaration `root` holds, when the full reader would find no problem in it at all
    (and it is not inside a transport wrapper); otherwise None. `amendments(element, source)`
    reads a declaration's Amendment elements as the full reader does: (amendments, whether it
    found a problem)."""
    try:
        return _read(root, source, amendments)
    except _Unclean:
        return None


def element_text(element) -> str | None:
    """An element's text, stripped; None for no element, no text or only blanks (both
    readers read every text this way)."""
    if element is None:
        return None
    text = element.text
    if text is None:
        return None
    return text.strip() or None


def _read(root, source: str, read_amendments) -> Declaration | None:
    tag = root.tag
    country = None
    if tag == _METADATA:
        found = _firsts(root, _METADATA_CHILDREN)
        country = element_text(found.get(_RESPONSIBLE_COUNTRY))
        if country is not None and country_problem(country):
            return None
        element = found.get(_DECLARATION)
        if element is None:
            return None
    elif tag == _DECLARATION:
        element = root
    else:
        return None  # a wrapper, or no declaration: the full reader says which
    found = _firsts(element, _DECLARATION_CHILDREN)
    function_code = element_text(found.get(_FUNCTION_CODE))
    if function_code is None:
        return None
    type_code = element_text(found.get(_TYPE_CODE))
    mrn = element_text(found.get(_ID))
    cancellation = (
        function_code == CANCELLATION_FUNCTION_CODE and type_code == CANCELLATION_TYPE_CODE
    )
    if cancellation and mrn is None:
        return None
    exporter = found.get(_EXPORTER)
    exporter_eori = None
    if exporter is not None:
        exporter_id = element_text(_first(exporter, _ID))
        if exporter_id:
            exporter_eori = _eori(exporter_id)
    goods_items: tuple[GoodsItem, ...] = ()
    destination = dispatch = None
    shipment = found.get(_GOODS_SHIPMENT)
    if shipment is not None:
        destination = _destination(shipment)
        goods_items = _goods_items(shipment, destination)
        export_country = _first(shipment, _EXPORT_COUNTRY)
        if export_country is not None:
            code = element_text(_first(export_country, _ID))
            dispatch = code.upper() if code else None
    amendments = ()
    if _AMENDMENT in found:
        # Amendments are few and short: the full reader's own code reads them.
        amendments, unclean = read_amendments(element, source)
        if unclean:
            return None
    return Declaration(
        function_code,
        type_code,
        element_text(found.get(_LRN)),
        mrn,
        exporter_eori,
        country,
        goods_items,
        destination,
        dispatch,
        amendments,
    )


_METADATA_CHILDREN = frozenset({_RESPONSIBLE_COUNTRY, _DECLARATION})
_DECLARATION_CHILDREN = frozenset(
    {_FUNCTION_CODE, _TYPE_CODE, _ID, _LRN, _EXPORTER, _GOODS_SHIPMENT, _AMENDMENT}
)


def _firsts(parent, tags: frozenset[str]) -> dict:
    """The first child of `parent` with each of `tags` (what Element.find answers for each)."""
    found: dict = {}
    for child in parent:
        tag = child.tag
        if tag in tags and tag not in found:
            found[tag] = child
    return found


def _eori(raw: str) -> str:
    eori = _exporters.get(raw, "")
    if eori == "":
        eori = normalise_eori(raw)
        if eori_problem(eori):
            eori = None
        if len(_exporters) >= _CACHE_LIMIT:
            _exporters.clear()
        _exporters[raw] = eori
    if eori is None:
        raise _Unclean
    return eori


def _first(parent, tag: str):
    """The first child of `parent` with `tag` (Element.find's answer), or None."""
    for child in parent:
        if child.tag == tag:
            return child
    return None


def _destination(parent) -> str | None:
    destination = _first(parent, _DESTINATION)
    if destination is None:
        return None
    code = element_text(_first(destination, _COUNTRY_CODE))
    return code.upper() if code else None


def _goods_items(shipment, shipment_destination: str | None) -> tuple[GoodsItem, ...]:
    items = []
    seen: set[int] = set()
    for position, element in enumerate(shipment.iterchildren(_GOODS_ITEM), start=1):
        raw_sequence = cn_code = description = destination = None
        documents = []
        # The last of each wins, as in the full reader (it keeps overwriting).
        for child in element:
            tag = child.tag
            if tag == _ADDITIONAL_DOCUMENT:
                documents.append(child)
            elif tag == _SEQUENCE:
                raw_sequence = child.text
            elif tag == _COMMODITY:
                cn_code, description = read_commodity(child)
            elif tag == _DESTINATION:
                code = element_text(_first(child, _COUNTRY_CODE))
                destination = code.upper() if code else None
        sequence = _sequence(raw_sequence)
        if sequence in seen:
            raise _Unclean
        seen.add(sequence)
        items.append(
            GoodsItem(
                sequence,
                cn_code,
                description,
                destination or shipment_destination,
                _documents(documents, position) if documents else (),
                destination,
            )
        )
    return tuple(items)


def _sequence(raw: str | None) -> int:
    text = raw.strip() if raw is not None else ""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 5:
        raise _Unclean
    sequence = int(text)
    if sequence == 0:
        raise _Unclean
    return sequence


def read_commodity(commodity) -> tuple[str | None, str | None]:
    """(CN code normalised, description) of a Commodity element: the first classification
    of type TSP (CN), the last description (both readers read it so)."""
    cn_code = description = None
    for child in commodity:
        tag = child.tag
        if tag == _DESCRIPTION:
            description = element_text(child)
        elif (
            tag == _CLASSIFICATION
            and cn_code is None
            and element_text(_first(child, _IDENTIFICATION_TYPE)) == CN_CLASSIFICATION
        ):
            found = element_text(_first(child, _ID))
            if found:
                cn_code = _cn_codes.get(found)
                if cn_code is None:
                    cn_code = normalise_cn(found)
                    if len(_cn_codes) >= _CACHE_LIMIT:
                        _cn_codes.clear()
                    _cn_codes[found] = cn_code
    return cn_code, description


def _documents(elements: list, item: int) -> tuple[DocumentUse, ...]:
    documents = []
    written_off: set[tuple[str, str]] = set()
    for position, element in enumerate(elements, start=1):
        category = type_code = reference = status = raw_line = write_off = None
        # Texts are read as the full reader's _text does (stripped; blank is None), inline:
        # this loop runs for every child of every document.
        for child in element:
            tag = child.tag
            if tag == _CATEGORY_CODE:
                text = child.text
                category = (text.strip() or None) if text else None
            elif tag == _ID:
                text = child.text
                reference = (text.strip() or None) if text else None
            elif tag == _TYPE_CODE:
                text = child.text
                type_code = (text.strip() or None) if text else None
            elif tag == _LPCO_EXEMPTION:
                text = child.text
                status = (text.strip() or None) if text else None
            elif tag == _WRITE_OFF:
                write_off = child
            elif tag == _LINE_NUMERIC:
                raw_line = element_text(child)
        quantity = unit = amount = currency = None
        if write_off is not None:
            for child in write_off:
                tag = child.tag
                if tag == _WRITE_OFF_QUANTITY:
                    if quantity is None:  # the first, as Element.find
                        quantity = _decimal(child.text, QUANTITY_DECIMALS)
                        unit = _attribute(child, "unitCode")
                elif tag == _WRITE_OFF_AMOUNT and amount is None:
                    amount = _decimal(child.text, AMOUNT_DECIMALS)
                    currency = _attribute(child, "currencyID")
        line_item_number = None
        if raw_line is not None:
            if not raw_line.isascii() or not raw_line.isdigit() or len(raw_line) > 5:
                raise _Unclean
            line_item_number = int(raw_line)
        if not (category and type_code):
            if quantity is not None or amount is not None:
                raise _Unclean  # a write-off against a document that cannot be told
            continue
        code = category + type_code
        if quantity is not None or amount is not None:
            if reference is None or len(reference) > MAX_REFERENCE:
                raise _Unclean
            key = (code, reference)
            if key in written_off:
                raise _Unclean
            written_off.add(key)
        documents.append(
            DocumentUse(
                code,
                reference or "",
                status,
                quantity,
                unit,
                amount,
                currency,
                line_item_number,
                f"GoodsShipment/GovernmentAgencyGoodsItem[{item}]/AdditionalDocument[{position}]",
                position,
            )
        )
    return tuple(documents)


def _attribute(element, name: str) -> str:
    value = (element.get(name) or "").strip()
    if not value:
        raise _Unclean  # a write-off quantity without its unit, an amount without currency
    return value


def _decimal(raw: str | None, decimals: int) -> Decimal:
    if raw is None:
        raise _Unclean
    text = raw.strip()
    # The usual case, whole digits: positive when not all zeros, and within the schema's
    # digits when no longer than them; anything else is checked in full.
    if text.isascii() and text.isdigit() and len(text) <= TOTAL_DIGITS:
        value = Decimal(text)
        if value == 0:
            raise _Unclean
        return value
    value, reason = parse_write_off_decimal(raw, decimals=decimals)
    if reason is not None:
        raise _Unclean
    return value
