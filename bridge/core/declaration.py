"""Reading a WCO DEC-DMS customs declaration: the few things the bridge needs from it.

Pure: bytes in, a `Declaration` out, or `Rejected` listing every problem found. The subset read
(and why) is described in schemas/wco-dec-dms-subset.md. Every outside XML goes through the one
hardened parser (`bridge.core.xmlsafe.parse_xml`): no DTD, no entities, a size limit.

The reader is tolerant where the bridge may have nothing to do: it does not know the national
document codes a deployment declares, so a problem on a document that is no EU dual-use code
(or on the exporter of a declaration quoting none) stays with the declaration
(`Declaration.problems`, `DocumentUse.problems`) for the write-off rules, which decide whether
the declaration concerns the bridge at all; only what cannot be read, or a problem on an EU
dual-use document (X002, X060-X072), refuses the whole message.

Two readers, one answer: a declaration with nothing to report (nearly every one) is read in one
pass by bridge.core.declaration_fast; any other is read by `_Reader` below, which finds and words
every problem. tests/unit/test_declaration_fast.py holds them to the same records."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from bridge.core import declaration_fast
from bridge.core.codes import (
    country_problem,
    eori_problem,
    normalise_eori,
)
from bridge.core.declaration_fast import element_text, read_commodity
from bridge.core.declaration_model import (  # noqa: F401 - re-exported: the records' home for callers
    _ADDITIONAL_DOCUMENT,
    _AMENDMENT,
    _CATEGORY_CODE,
    _CHANGE_REASON,
    _CLASSIFICATION,
    _COMMA_DECIMAL,
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
    _POINTER,
    _RESPONSIBLE_COUNTRY,
    _SECTION_CODE,
    _SEQUENCE,
    _TAG_ID,
    _TYPE_CODE,
    _WRITE_OFF,
    _WRITE_OFF_AMOUNT,
    _WRITE_OFF_QUANTITY,
    _XSD_DECIMAL,
    AMOUNT_DECIMALS,
    CANCELLATION_FUNCTION_CODE,
    CANCELLATION_TYPE_CODE,
    CN_CLASSIFICATION,
    DEC_NS,
    MAX_REFERENCE,
    METADATA_NS,
    ORIGINAL_FUNCTION_CODE,
    QUANTITY_DECIMALS,
    REQUEST_FUNCTION_CODE,
    TOTAL_DIGITS,
    Amendment,
    Declaration,
    DocumentUse,
    GoodsItem,
    Pointer,
    _d,
    parse_write_off_decimal,
)
from bridge.core.errors import Problem, Rejected, XmlRefused
from bridge.core.xmlsafe import DEFAULT_MAX_BYTES, parse_xml


def read_declaration(
    xml: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, source: str = ""
) -> Declaration:
    """The declaration in `xml` (a WCO DEC-DMS Declaration, bare or inside md:MetaData).

    Raises `Rejected` listing every problem at once: unreadable or unsafe XML (code
    xml-refused), a root outside urn:wco:datamodel:WCO:DEC-DMS:2, no FunctionCode, goods items
    without or with repeated numbers, an amendment Pointer without a number; and, when the
    declaration quotes an EU dual-use document, write-off quantities or amounts that are not
    plain positive decimals within the schema's digits and an exporter ID that is no EORI.
    Otherwise those stay in `problems` (see the module docstring). A missing exporter is no
    problem here: the rules need one only for a licence they write off. Paths are relative to
    Declaration, e.g. GoodsShipment/GovernmentAgencyGoodsItem[2]/AdditionalDocument[5]."""
    try:
        root = parse_xml(xml, max_bytes=max_bytes, what="declaration")
    except XmlRefused as refused:
        problem = Problem(str(refused), path="/", source=source, code="xml-refused")
        raise Rejected([problem], summary="declaration refused") from None
    # Most declarations have nothing to report: read in one pass. Any other is read again in
    # full, which finds and words every problem (bridge.core.declaration_fast).
    clean = declaration_fast.read_clean(root, source, amendments=_read_amendments)
    if clean is not None:
        return clean
    reader = _Reader(source)
    declaration = reader.read(root)
    problems = list(reader.problems)
    if declaration is not None and declaration.quotes_dual_use:
        problems += declaration.problems
        problems += [p for _, d in _all_documents(declaration) for p in d.problems]
    if problems or declaration is None:
        raise Rejected(problems, summary=f"declaration refused ({source or 'payload'})")
    return declaration


def _all_documents(declaration: Declaration) -> Iterator[tuple[GoodsItem, DocumentUse]]:
    for item in declaration.goods_items:
        for document in item.documents:
            yield item, document


class _Reader:
    """Walks one declaration, collecting problems instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def problem(self, reason: str, path: str, value: str | None = None, code: str = "invalid"):
        self.problems.append(Problem(reason, path, self.source, value, code))

    def read(self, root) -> Declaration | None:
        country = None
        if root.tag == _METADATA:
            country = element_text(root.find(_RESPONSIBLE_COUNTRY))
            if country is not None and (reason := country_problem(country)):
                self.problem(reason, "MetaData/ResponsibleCountryCode", country)
            element = root.find(_DECLARATION)
            if element is None:
                found = ", ".join(child.tag for child in root if _is_element(child))
                self.problem(
                    f"MetaData holds no Declaration in namespace {DEC_NS} (found: {found or '-'})",
                    "MetaData",
                    code="wrong-namespace",
                )
                return None
        elif root.tag == _DECLARATION:
            element = root
        elif (inner := self.unwrap(root)) is not None:
            return self.read(inner)
        else:
            if not self.problems:  # else unwrap found several declarations, and said so
                self.problem(
                    f"the root element is {root.tag}; expected Declaration in namespace"
                    f" {DEC_NS}, bare or inside MetaData of {METADATA_NS}",
                    "/",
                    code="wrong-namespace",
                )
            return None
        return self.read_declaration(element, country)

    def unwrap(self, root):
        """The one MetaData or Declaration inside a transport wrapper of another namespace (a
        national gateway's envelope, a SOAP body), or None when it holds none; several are
        refused (one declaration per message)."""
        found = [
            e for e in root.iterdescendants(_METADATA, _DECLARATION) if e.getparent() is not None
        ]
        outer = [e for e in found if not any(a.tag == _METADATA for a in e.iterancestors())]
        if len(outer) > 1:
            self.problem(
                f"the {root.tag} wrapper holds {len(outer)} declarations; a message carries one",
                "/",
                code="several-declarations",
            )
            return None
        return outer[0] if outer else None

    def read_declaration(self, element, country: str | None) -> Declaration:
        function_code = element_text(element.find(_FUNCTION_CODE))
        type_code = element_text(element.find(_TYPE_CODE))
        if function_code is None:
            self.problem("a declaration needs its FunctionCode (9 original, 13 request)", "")
        mrn = element_text(element.find(_ID))
        cancellation = (
            function_code == CANCELLATION_FUNCTION_CODE and type_code == CANCELLATION_TYPE_CODE
        )
        if cancellation and mrn is None:
            self.problem("a cancellation names the MRN it cancels in Declaration/ID", "ID")
        exporter = element.find(_EXPORTER)
        exporter_id = element_text(exporter.find(_ID)) if exporter is not None else None
        exporter_eori = normalise_eori(exporter_id) if exporter_id else None
        deferred = []
        if exporter_eori is not None and (reason := eori_problem(exporter_eori)):
            deferred.append(Problem(reason, "Exporter/ID", self.source, exporter_id, "invalid"))
        goods_items: tuple[GoodsItem, ...] = ()
        destination = dispatch = None
        shipment = element.find(_GOODS_SHIPMENT)
        if shipment is not None:
            goods_items = self.read_goods_items(shipment)
            destination = _destination(shipment)
            export_country = shipment.find(_EXPORT_COUNTRY)
            if export_country is not None:
                found = element_text(export_country.find(_ID))
                dispatch = found.upper() if found else None
        return Declaration(
            function_code=function_code or "",
            type_code=type_code,
            lrn=element_text(element.find(_LRN)),
            mrn=mrn,
            exporter_eori=exporter_eori,
            country=country,
            goods_items=goods_items,
            destination=destination,
            dispatch=dispatch,
            amendments=self.read_amendments(element),
            problems=tuple(deferred),
        )

    def read_amendments(self, element) -> tuple[Amendment, ...]:
        amendments = []
        for position, section in enumerate(element.iterchildren(_AMENDMENT), start=1):
            pointers = []
            for number, pointer in enumerate(section.iterchildren(_POINTER), start=1):
                path = f"Amendment[{position}]/Pointer[{number}]/SequenceNumeric"
                raw = element_text(pointer.find(_SEQUENCE))
                sequence = None
                if raw is not None:
                    if raw.isascii() and raw.isdigit() and len(raw) <= 5:
                        sequence = int(raw)
                    else:
                        self.problem(
                            "a Pointer's SequenceNumeric is a whole number of up to 5 digits"
                            " (which occurrence of the section it names)",
                            path,
                            raw,
                        )
                section_code = element_text(pointer.find(_SECTION_CODE))
                pointers.append(
                    Pointer(
                        section_code.upper() if section_code else None,
                        sequence,
                        element_text(pointer.find(_TAG_ID)),
                    )
                )
            amendments.append(
                Amendment(element_text(section.find(_CHANGE_REASON)), tuple(pointers))
            )
        return tuple(amendments)

    def read_goods_items(self, shipment) -> tuple[GoodsItem, ...]:
        shipment_destination = _destination(shipment)
        items: list[GoodsItem] = []
        first_path: dict[int, str] = {}
        for position, element in enumerate(shipment.iterchildren(_GOODS_ITEM), start=1):
            path = f"GoodsShipment/GovernmentAgencyGoodsItem[{position}]"
            # One pass over the item's children: a goods item has many we do not read.
            raw_sequence = cn_code = description = destination = None
            documents: list = []
            for child in element:
                tag = child.tag
                if tag == _ADDITIONAL_DOCUMENT:
                    documents.append(child)
                elif tag == _SEQUENCE:
                    raw_sequence = element_text(child)
                elif tag == _COMMODITY:
                    cn_code, description = read_commodity(child)
                elif tag == _DESTINATION:
                    destination = _country(child)
            sequence = self.goods_item_number(raw_sequence, path)
            if sequence is not None:
                if sequence in first_path:
                    self.problem(
                        f"goods item number {sequence} is used twice (also {first_path[sequence]})",
                        f"{path}/SequenceNumeric",
                        str(sequence),
                        code="duplicate-goods-item",
                    )
                else:
                    first_path[sequence] = path
            items.append(
                GoodsItem(
                    sequence=sequence or 0,
                    cn_code=cn_code,
                    description=description,
                    destination=destination or shipment_destination,
                    documents=self.read_documents(documents, path),
                    own_destination=destination,
                )
            )
        return tuple(items)

    def goods_item_number(self, raw: str | None, path: str) -> int | None:
        if raw is None:
            self.problem(
                "a goods item needs its item number (DE 1/6, SequenceNumeric)",
                f"{path}/SequenceNumeric",
                code="missing-goods-item-number",
            )
            return None
        if not raw.isascii() or not raw.isdigit() or len(raw) > 5 or int(raw) == 0:
            self.problem(
                "a goods item number is a whole number from 1 to 99999",
                f"{path}/SequenceNumeric",
                raw,
            )
            return None
        return int(raw)

    def read_documents(self, elements: list, item_path: str) -> tuple[DocumentUse, ...]:
        documents: list[DocumentUse] = []
        written_off: dict[tuple[str, str], str] = {}
        for position, element in enumerate(elements, start=1):
            # A document's problems are its own (see the module docstring): collected apart.
            outer, self.problems = self.problems, []
            path = f"{item_path}/AdditionalDocument[{position}]"
            category = type_code = reference = status = raw_line = None
            write_off = None
            for child in element:
                tag = child.tag
                if tag == _CATEGORY_CODE:
                    category = element_text(child)
                elif tag == _TYPE_CODE:
                    type_code = element_text(child)
                elif tag == _ID:
                    reference = element_text(child)
                elif tag == _LPCO_EXEMPTION:
                    status = element_text(child)
                elif tag == _WRITE_OFF:
                    write_off = child
                elif tag == _LINE_NUMERIC:
                    # Not in the DMS customisation; read when a national one carries it.
                    raw_line = element_text(child)
            code = (category or "") + (type_code or "")
            quantity = unit = amount = currency = None
            if write_off is not None:
                quantity, unit = self.write_off_quantity(write_off, path)
                amount, currency = self.write_off_amount(write_off, path)
            writes_off = quantity is not None or amount is not None
            if writes_off and (not category or not type_code):
                self.problem(
                    "a document used for a write-off needs CategoryCode and TypeCode"
                    " (together the document code, e.g. X + 002)",
                    path,
                    code or None,
                )
            if writes_off and reference is None:
                self.problem(
                    "a document used for a write-off needs its reference (ID)", f"{path}/ID"
                )
            elif writes_off and len(reference) > MAX_REFERENCE:
                self.problem(
                    f"a document reference is at most {MAX_REFERENCE} characters (the data model"
                    f" allows 70); this one has {len(reference)}",
                    f"{path}/ID",
                    reference[:70] + "...",
                    code="bad-reference",
                )
            if writes_off and code and reference is not None:
                key = (code, reference)
                if key in written_off:
                    self.problem(
                        f"document {code} {reference} is written off twice on one goods item"
                        f" (also {written_off[key]})",
                        path,
                        code="duplicate-document",
                    )
                written_off[key] = path
            line_item_number = self.line_item_number(raw_line, path)
            found, self.problems = self.problems, outer
            if not (category and type_code):
                # Nothing the bridge can act on, unless it writes off: then what it writes
                # off against cannot be told, and the message cannot be read.
                self.problems += found
                continue
            documents.append(
                DocumentUse(
                    document_code=code,
                    reference=reference or "",
                    status=status,
                    quantity=quantity,
                    unit=unit,
                    amount=amount,
                    currency=currency,
                    line_item_number=line_item_number,
                    path=path,
                    position=position,
                    problems=tuple(found),
                )
            )
        return tuple(documents)

    def write_off_quantity(self, write_off, path: str) -> tuple[Decimal | None, str | None]:
        element = write_off.find(_WRITE_OFF_QUANTITY)
        if element is None:
            return None, None
        where = f"{path}/WriteOff/QuantityQuantity"
        quantity = self.decimal(element.text, where, "write-off quantity", QUANTITY_DECIMALS)
        unit = (element.get("unitCode") or "").strip() or None
        if unit is None:
            self.problem("a write-off quantity needs its unit (unitCode, e.g. KGM#G)", where)
        return quantity, unit

    def write_off_amount(self, write_off, path: str) -> tuple[Decimal | None, str | None]:
        element = write_off.find(_WRITE_OFF_AMOUNT)
        if element is None:
            return None, None
        where = f"{path}/WriteOff/AmountAmount"
        amount = self.decimal(element.text, where, "write-off amount", AMOUNT_DECIMALS)
        currency = (element.get("currencyID") or "").strip() or None
        if currency is None:
            self.problem("a write-off amount needs its currency (currencyID, e.g. EUR)", where)
        return amount, currency

    def line_item_number(self, raw: str | None, path: str) -> int | None:
        if raw is None:
            return None
        if not raw.isascii() or not raw.isdigit() or len(raw) > 5:
            self.problem(
                "a document line item number is a whole number of up to 5 digits",
                f"{path}/LineNumeric",
                raw,
            )
            return None
        return int(raw)

    def decimal(self, raw: str | None, path: str, what: str, decimals: int) -> Decimal | None:
        value, reason = parse_write_off_decimal(raw, decimals=decimals)
        if reason is not None:
            self.problem(f"the {what} {reason}", path, raw, code="bad-quantity")
        return value


def _destination(parent) -> str | None:
    destination = parent.find(_DESTINATION)
    return None if destination is None else _country(destination)


def _country(destination) -> str | None:
    code = element_text(destination.find(_COUNTRY_CODE))
    return code.upper() if code else None


def _is_element(node) -> bool:
    return isinstance(node.tag, str)


def _read_amendments(element, source: str):
    """The amendments of a declaration as the full reader reads them, and whether it found
    a problem in them (the one-pass reader then gives the declaration to the full reader)."""
    reader = _Reader(source)
    return reader.read_amendments(element), bool(reader.problems)
