"""Reading a WCO DEC-DMS customs declaration: the few things the bridge needs from it.

Pure: bytes in, a `Declaration` out, or `Rejected` listing every problem found. The subset read
(and why) is described in schemas/wco-dec-dms-subset.md. Every outside XML goes through the one
hardened parser (`bridge.core.xmlsafe.parse_xml`): no DTD, no entities, a size limit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from bridge.core.codes import country_problem, eori_problem, normalise_cn, normalise_eori
from bridge.core.errors import Problem, Rejected, XmlRefused
from bridge.core.xmlsafe import DEFAULT_MAX_BYTES, parse_xml

DEC_NS = "urn:wco:datamodel:WCO:DEC-DMS:2"
METADATA_NS = "urn:wco:datamodel:WCO:DocumentMetaData-DMS:2"

CANCELLATION_FUNCTION_CODE = "13"
CANCELLATION_TYPE_CODE = "INV"
CN_CLASSIFICATION = "TSP"  # Classification/IdentificationTypeCode of the CN code (DE 6/14)

QUANTITY_DECIMALS = 6  # WriteOff/QuantityQuantity is n..16,6
AMOUNT_DECIMALS = 3  # WriteOff/AmountAmount is n..16,3 in the DMS schema
TOTAL_DIGITS = 16
# DE 12 03 document references are an..70; a longer one quotes no licence and is refused by the
# rules, but past this it is no reference at all (and the ledger indexes what it refuses).
MAX_REFERENCE = 256


def _d(name: str) -> str:
    return f"{{{DEC_NS}}}{name}"


_METADATA = f"{{{METADATA_NS}}}MetaData"
_RESPONSIBLE_COUNTRY = f"{{{METADATA_NS}}}ResponsibleCountryCode"
_DECLARATION = _d("Declaration")
_FUNCTION_CODE = _d("FunctionCode")
_TYPE_CODE = _d("TypeCode")
_LRN = _d("FunctionalReferenceID")
_ID = _d("ID")
_EXPORTER = _d("Exporter")
_GOODS_SHIPMENT = _d("GoodsShipment")
_GOODS_ITEM = _d("GovernmentAgencyGoodsItem")
_SEQUENCE = _d("SequenceNumeric")
_DESTINATION = _d("Destination")
_COUNTRY_CODE = _d("CountryCode")
_COMMODITY = _d("Commodity")
_DESCRIPTION = _d("Description")
_CLASSIFICATION = _d("Classification")
_IDENTIFICATION_TYPE = _d("IdentificationTypeCode")
_ADDITIONAL_DOCUMENT = _d("AdditionalDocument")
_CATEGORY_CODE = _d("CategoryCode")
_LPCO_EXEMPTION = _d("LPCOExemptionCode")
_LINE_NUMERIC = _d("LineNumeric")
_WRITE_OFF = _d("WriteOff")
_WRITE_OFF_QUANTITY = _d("QuantityQuantity")
_WRITE_OFF_AMOUNT = _d("AmountAmount")


@dataclass(frozen=True, slots=True)
class DocumentUse:
    """One supporting document quoted on a goods item (DE 2/3, AdditionalDocument), with what
    the declaration writes off against it (DE 8/7, WriteOff) when it writes anything off."""

    document_code: str  # CategoryCode + TypeCode, e.g. X002, 9104
    reference: str  # the document's ID: for a licence, the licence number
    status: str | None = None  # LPCOExemptionCode, e.g. EA, ES, XX
    quantity: Decimal | None = None
    unit: str | None = None  # as written, qualifier included: KGM#G
    amount: Decimal | None = None
    currency: str | None = None
    line_item_number: int | None = None  # only when the message carries one
    path: str = ""  # where it sits in the declaration

    @property
    def writes_off(self) -> bool:
        return self.quantity is not None or self.amount is not None


@dataclass(frozen=True, slots=True)
class GoodsItem:
    sequence: int  # DE 1/6 goods item number
    cn_code: str | None
    description: str | None
    destination: str | None  # the item's own, else the shipment's (DE 5/8)
    documents: tuple[DocumentUse, ...]


@dataclass(frozen=True, slots=True)
class Declaration:
    function_code: str
    type_code: str | None
    lrn: str | None  # DE 2/5, the declarant's own reference
    mrn: str | None  # Declaration/ID: the MRN customs assigned (or the one a cancellation names)
    exporter_eori: str | None
    country: str | None  # MetaData ResponsibleCountryCode: whose customs rules apply
    goods_items: tuple[GoodsItem, ...]

    @property
    def is_cancellation(self) -> bool:
        return (
            self.function_code == CANCELLATION_FUNCTION_CODE
            and self.type_code == CANCELLATION_TYPE_CODE
        )

    def write_offs(self) -> Iterator[tuple[GoodsItem, DocumentUse]]:
        """Every (goods item, document) pair that writes something off, in document order."""
        for item in self.goods_items:
            for document in item.documents:
                if document.writes_off:
                    yield item, document


def read_declaration(
    xml: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, source: str = ""
) -> Declaration:
    """The declaration in `xml` (a WCO DEC-DMS Declaration, bare or inside md:MetaData).

    Raises `Rejected` listing every problem at once: unreadable or unsafe XML (code
    xml-refused), a root outside urn:wco:datamodel:WCO:DEC-DMS:2, goods items without or with
    repeated numbers, write-off quantities or amounts that are not plain positive decimals
    within the schema's digits, a release without an exporter. Paths are relative to
    Declaration, e.g. GoodsShipment/GovernmentAgencyGoodsItem[2]/AdditionalDocument[5]."""
    try:
        root = parse_xml(xml, max_bytes=max_bytes, what="declaration")
    except XmlRefused as refused:
        problem = Problem(str(refused), path="/", source=source, code="xml-refused")
        raise Rejected([problem], summary="declaration refused") from None
    reader = _Reader(source)
    declaration = reader.read(root)
    if reader.problems or declaration is None:
        raise Rejected(reader.problems, summary=f"declaration refused ({source or 'payload'})")
    return declaration


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
            country = _text(root.find(_RESPONSIBLE_COUNTRY))
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
        else:
            self.problem(
                f"the root element is {root.tag}; expected Declaration in namespace"
                f" {DEC_NS}, bare or inside MetaData of {METADATA_NS}",
                "/",
                code="wrong-namespace",
            )
            return None
        return self.read_declaration(element, country)

    def read_declaration(self, element, country: str | None) -> Declaration:
        function_code = _text(element.find(_FUNCTION_CODE))
        type_code = _text(element.find(_TYPE_CODE))
        if function_code is None:
            self.problem("a declaration needs its FunctionCode (9 original, 13 request)", "")
        mrn = _text(element.find(_ID))
        cancellation = (
            function_code == CANCELLATION_FUNCTION_CODE and type_code == CANCELLATION_TYPE_CODE
        )
        if cancellation and mrn is None:
            self.problem("a cancellation names the MRN it cancels in Declaration/ID", "ID")
        exporter = element.find(_EXPORTER)
        exporter_id = _text(exporter.find(_ID)) if exporter is not None else None
        exporter_eori = normalise_eori(exporter_id) if exporter_id else None
        if exporter_eori is None and not cancellation:
            self.problem(
                "a released declaration needs the exporter's EORI (DE 3/2, Exporter/ID)",
                "Exporter/ID",
                code="missing-exporter",
            )
        elif exporter_eori is not None and (reason := eori_problem(exporter_eori)):
            self.problem(reason, "Exporter/ID", exporter_id)
        goods_items: tuple[GoodsItem, ...] = ()
        shipment = element.find(_GOODS_SHIPMENT)
        if shipment is not None:
            goods_items = self.read_goods_items(shipment)
        return Declaration(
            function_code=function_code or "",
            type_code=type_code,
            lrn=_text(element.find(_LRN)),
            mrn=mrn,
            exporter_eori=exporter_eori,
            country=country,
            goods_items=goods_items,
        )

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
                    raw_sequence = _text(child)
                elif tag == _COMMODITY:
                    cn_code, description = _commodity(child)
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
            path = f"{item_path}/AdditionalDocument[{position}]"
            category = type_code = reference = status = raw_line = None
            write_off = None
            for child in element:
                tag = child.tag
                if tag == _CATEGORY_CODE:
                    category = _text(child)
                elif tag == _TYPE_CODE:
                    type_code = _text(child)
                elif tag == _ID:
                    reference = _text(child)
                elif tag == _LPCO_EXEMPTION:
                    status = _text(child)
                elif tag == _WRITE_OFF:
                    write_off = child
                elif tag == _LINE_NUMERIC:
                    # Not in the DMS customisation; read when a national one carries it.
                    raw_line = _text(child)
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
            if not code:
                continue  # a document without a code is nothing the bridge can act on
            documents.append(
                DocumentUse(
                    document_code=code,
                    reference=reference or "",
                    status=status,
                    quantity=quantity,
                    unit=unit,
                    amount=amount,
                    currency=currency,
                    line_item_number=self.line_item_number(raw_line, path),
                    path=path,
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


_XSD_DECIMAL = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_COMMA_DECIMAL = re.compile(r"[+-]?[0-9]+,[0-9]+")


def parse_write_off_decimal(
    raw: str | None, *, decimals: int = QUANTITY_DECIMALS
) -> tuple[Decimal | None, str | None]:
    """A write-off quantity or amount as Decimal, or (None, why not). Accepted: a positive
    xs:decimal with at most `decimals` decimals and 16 digits; no sign, comma, exponent or NaN."""
    text = (raw or "").strip()
    if not text:
        return None, "is empty"
    if _COMMA_DECIMAL.fullmatch(text):
        return None, "uses a comma as decimal separator; write a point (10.5, not 10,5)"
    if text.startswith("-"):
        return None, "is negative; a write-off is more than zero"
    if not _XSD_DECIMAL.fullmatch(text):
        return None, "is not a plain decimal number (digits with an optional point)"
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return None, "is not a plain decimal number"
    if value == 0:
        return None, "is zero; a write-off is more than zero"
    # Trailing zeros do not count, as in the schema's value space (102.00 has no decimals).
    _sign, digits, exponent = value.normalize().as_tuple()
    fraction = max(0, -int(exponent))
    if fraction > decimals:
        return None, f"has more than {decimals} decimals"
    if max(len(digits), fraction) + max(0, int(exponent)) > TOTAL_DIGITS:
        return None, f"has more than {TOTAL_DIGITS} digits"
    return value, None


def _text(element) -> str | None:
    if element is None or element.text is None:
        return None
    text = element.text.strip()
    return text or None


def _destination(parent) -> str | None:
    destination = parent.find(_DESTINATION)
    return None if destination is None else _country(destination)


def _country(destination) -> str | None:
    code = _text(destination.find(_COUNTRY_CODE))
    return code.upper() if code else None


def _commodity(commodity) -> tuple[str | None, str | None]:
    cn_code = description = None
    for child in commodity:
        tag = child.tag
        if tag == _DESCRIPTION:
            description = _text(child)
        elif (
            tag == _CLASSIFICATION
            and cn_code is None
            and _text(child.find(_IDENTIFICATION_TYPE)) == CN_CLASSIFICATION
        ):
            found = _text(child.find(_ID))
            cn_code = normalise_cn(found) if found else None
    return cn_code, description


def _is_element(node) -> bool:
    return isinstance(node.tag, str)
