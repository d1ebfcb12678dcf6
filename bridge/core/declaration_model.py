"""The records the bridge reads from a WCO DEC-DMS customs declaration, and the element names
and limits they are read with: shared by the one-pass reader (bridge.core.declaration_fast) and
the full reader that words every problem (bridge.core.declaration)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from bridge.core.codes import DUAL_USE_DOCUMENT_CODES
from bridge.core.errors import Problem

DEC_NS = "urn:wco:datamodel:WCO:DEC-DMS:2"
METADATA_NS = "urn:wco:datamodel:WCO:DocumentMetaData-DMS:2"

ORIGINAL_FUNCTION_CODE = "9"  # an original declaration (what a release carries)
REQUEST_FUNCTION_CODE = "13"  # an additional message: an amendment or a cancellation
CANCELLATION_FUNCTION_CODE = REQUEST_FUNCTION_CODE
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
_EXPORT_COUNTRY = _d("ExportCountry")
_AMENDMENT = _d("Amendment")
_CHANGE_REASON = _d("ChangeReasonCode")
_POINTER = _d("Pointer")
_SECTION_CODE = _d("DocumentSectionCode")
_TAG_ID = _d("TagID")
_WRITE_OFF = _d("WriteOff")
_WRITE_OFF_QUANTITY = _d("QuantityQuantity")
_WRITE_OFF_AMOUNT = _d("AmountAmount")


# DocumentUse and GoodsItem are read by the dozen per message: plain slotted dataclasses, whose
# __init__ costs a third of a frozen one's. Nothing changes one once read; they still compare
# and hash by value.
@dataclass(slots=True, unsafe_hash=True)
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
    position: int | None = None  # its place among the goods item's AdditionalDocuments (1..)
    # What could not be read in it, when its code is no EU dual-use code (for those the whole
    # message is refused): the rules refuse it if the deployment's national table makes it a
    # licence, and ignore it otherwise.
    problems: tuple[Problem, ...] = ()

    @property
    def writes_off(self) -> bool:
        return self.quantity is not None or self.amount is not None


@dataclass(slots=True, unsafe_hash=True)
class GoodsItem:
    sequence: int  # DE 1/6 goods item number
    cn_code: str | None
    description: str | None
    destination: str | None  # the item's own, else the shipment's (DE 5/8)
    documents: tuple[DocumentUse, ...]
    own_destination: str | None = None  # the item's own Destination, when it carries one


@dataclass(frozen=True, slots=True)
class Pointer:
    """One step of an amendment's path to what it changes (WCO 97A): the section (EDIFACT
    1049 code of the WCO class: 42A Declaration, 67A GoodsShipment, 68A goods item, 02A
    AdditionalDocument...), which occurrence of it, and the data element tag when it names one."""

    section: str | None
    sequence: int | None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Amendment:
    """An `Amendment` section (WCO 06A): why (ChangeReasonCode) and the path of Pointers to
    what changed."""

    change_reason: str | None
    pointers: tuple[Pointer, ...] = ()


@dataclass(frozen=True, slots=True)
class Declaration:
    function_code: str
    type_code: str | None
    lrn: str | None  # DE 2/5, the declarant's own reference
    mrn: str | None  # Declaration/ID: the MRN customs assigned (or the one a cancellation names)
    exporter_eori: str | None
    country: str | None  # MetaData ResponsibleCountryCode: whose customs rules apply
    goods_items: tuple[GoodsItem, ...]
    destination: str | None = None  # GoodsShipment/Destination/CountryCode (DE 5/8)
    dispatch: str | None = None  # GoodsShipment/ExportCountry/ID (DE 5/14)
    amendments: tuple[Amendment, ...] = ()
    # What could not be read outside the documents (an exporter ID that is no EORI) of a
    # declaration quoting no EU dual-use document: the rules decide whether it matters.
    problems: tuple[Problem, ...] = ()

    @property
    def is_cancellation(self) -> bool:
        return (
            self.function_code == CANCELLATION_FUNCTION_CODE
            and self.type_code == CANCELLATION_TYPE_CODE
        )

    @property
    def is_amendment(self) -> bool:
        """An additional message (FunctionCode 13) of any type but a cancellation."""
        return self.function_code == REQUEST_FUNCTION_CODE and not self.is_cancellation

    @property
    def is_original(self) -> bool:
        return self.function_code == ORIGINAL_FUNCTION_CODE

    @property
    def kind_of_message(self) -> str:
        """What the payload says it is, in words for messages: the codes with their meaning."""
        codes = f"FunctionCode {self.function_code or '-'}, TypeCode {self.type_code or '-'}"
        if self.is_original:
            return f"an original declaration ({codes})"
        if self.is_cancellation:
            return f"a cancellation ({codes})"
        if self.is_amendment:
            return f"an amendment ({codes})"
        return f"a declaration message of unknown function ({codes})"

    @property
    def quotes_dual_use(self) -> bool:
        """Whether a goods item quotes an EU dual-use document code (X002, X060-X072)."""
        return any(
            document.document_code in DUAL_USE_DOCUMENT_CODES
            for item in self.goods_items
            for document in item.documents
        )

    def write_offs(self) -> Iterator[tuple[GoodsItem, DocumentUse]]:
        """Every (goods item, document) pair that writes something off, in document order."""
        for item in self.goods_items:
            for document in item.documents:
                if document.writes_off:
                    yield item, document


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
