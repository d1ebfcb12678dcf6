"""Customs traffic written as XML: WCO DEC-DMS declarations in the shapes customs systems send
(bridge.testkit.customs_traffic plans them).

Shapes, each in the element order of the DMS schema (WCO_DEC_2_DMS.xsd): an original
declaration (FunctionCode 9: exports pre-lodged or arrived, imports, transit), a post-clearance
amendment (FunctionCode 13, TypeCode COR) carrying only what it changes, with `Amendment`
(ChangeReasonCode, Pointer by DocumentSectionCode and SequenceNumeric) and the AES statements
pointing at them, and a cancellation request (FunctionCode 13, TypeCode INV). Around the
declaration, the transport wrappers met in the field: the usual md:MetaData, a bare
Declaration, a national gateway's own envelope element, a SOAP body."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr

from bridge.core.declaration import DEC_NS, METADATA_NS

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
# A national gateway's transport envelope: another namespace's element around the WCO document,
# as national systems add one (a message header of their own, the declaration in a body).
GATEWAY_NS = "urn:example:national-customs-gateway:transmission:1"
WRAPPERS = ("metadata", "bare", "gateway", "gateway-bare", "soap")

# WCO DocumentSectionCode of the sections an amendment points at (the samples' own codes).
DECLARATION_SECTION = "42A"
AMENDMENT_SECTION = "06A"
GOODS_SHIPMENT_SECTION = "67A"
GOODS_ITEM_SECTION = "68A"
ADDITIONAL_DOCUMENT_SECTION = "02A"
EXPORTER_SECTION = "57A"


@dataclass(frozen=True, slots=True)
class Doc:
    """An AdditionalDocument of a goods item (DE 2/3, EU CDM 12 03). `line_number` is ground
    truth only (the licence line it is meant to write off against); it is not written."""

    code: str  # CategoryCode + TypeCode, four characters
    reference: str
    status: str | None = None
    name: str | None = None
    quantity: Decimal | None = None
    unit: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    line_number: int | None = None

    @property
    def writes_off(self) -> bool:
        return self.quantity is not None or self.amount is not None


@dataclass(frozen=True, slots=True)
class Item:
    """A GovernmentAgencyGoodsItem. In an amendment, only `sequence` and `documents` are
    written unless `full`."""

    sequence: int
    cn: str
    description: str
    documents: tuple[Doc, ...] = ()
    destination: str | None = None  # the item's own (DE 5/8), when it has one
    procedure: tuple[str, str] = ("10", "00")
    additional_procedure: str = "000"
    gross_mass: Decimal = Decimal("25.5")
    packages: int = 1
    origin: str | None = None
    value: Decimal = Decimal("12500")
    full: bool = True  # written with commodity, procedure, packaging (not in an amendment)


@dataclass(frozen=True, slots=True)
class Pointer:
    section: str
    sequence: int
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class AmendmentNote:
    """One `Amendment` (ChangeReasonCode, the Pointer path to what changed) and the AES
    statement that describes it."""

    reason_code: str
    pointers: tuple[Pointer, ...]
    description: str


@dataclass(frozen=True, slots=True)
class WcoDeclaration:
    function_code: str  # 9 original, 13 request (amendment, cancellation)
    type_code: str  # EXA, EXD, IMZ, T1, COR, INV...
    lrn: str
    mrn: str | None
    country: str  # the customs country (ResponsibleCountryCode)
    items: tuple[Item, ...] = ()
    exporter: str | None = None  # EORI
    exporter_name: str | None = None
    exporter_address: tuple[str, str, str, str] | None = None  # city, country, line, postcode
    importer: str | None = None
    declarant: str | None = None
    destination: str | None = None  # GoodsShipment/Destination
    export_country: str | None = None
    total_packages: int | None = None
    amendments: tuple[AmendmentNote, ...] = ()
    currency: str = "GBP"
    wrapper: str = "metadata"
    consignor: str | None = None  # transit: the consignor's name
    full: bool = True  # agent, transport, consignment... (not in a request)


def _el(out: list[str], depth: int, tag: str, text: object, **attributes: str | None) -> None:
    if text is None:
        return
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in attributes.items() if v)
    out.append(f"{chr(9) * depth}<{tag}{attrs}>{escape(str(text))}</{tag}>")


def _open(out: list[str], depth: int, tag: str) -> None:
    out.append(f"{chr(9) * depth}<{tag}>")


def _close(out: list[str], depth: int, tag: str) -> None:
    out.append(f"{chr(9) * depth}</{tag}>")


def _plain(value: Decimal) -> str:
    return format(value, "f")


def _pointers(out: list[str], depth: int, pointers: tuple[Pointer, ...]) -> None:
    for pointer in pointers:
        _open(out, depth, "Pointer")
        _el(out, depth + 1, "SequenceNumeric", pointer.sequence)
        _el(out, depth + 1, "DocumentSectionCode", pointer.section)
        _el(out, depth + 1, "TagID", pointer.tag)
        _close(out, depth, "Pointer")


def _address(out: list[str], depth: int, address: tuple[str, str, str, str]) -> None:
    city, country, line, postcode = address
    _open(out, depth, "Address")
    _el(out, depth + 1, "CityName", city)
    _el(out, depth + 1, "CountryCode", country)
    _el(out, depth + 1, "Line", line)
    _el(out, depth + 1, "PostcodeID", postcode)
    _close(out, depth, "Address")


def declaration_lines(d: WcoDeclaration, depth: int, *, namespace: bool) -> list[str]:
    """The Declaration element of `d`, one line per element, at `depth` tabs (with its
    default namespace declared when it is not inside a MetaData that declares it)."""
    out: list[str] = []
    tab = chr(9) * depth
    out.append(f'{tab}<Declaration xmlns="{DEC_NS}">' if namespace else f"{tab}<Declaration>")
    n = depth + 1
    _el(out, n, "FunctionCode", d.function_code)
    _el(out, n, "FunctionalReferenceID", d.lrn)
    _el(out, n, "ID", d.mrn)
    _el(out, n, "TypeCode", d.type_code)
    if d.full and d.items:
        _el(out, n, "GoodsItemQuantity", len(d.items))
        total = sum((item.value for item in d.items), Decimal(0))
        _el(out, n, "InvoiceAmount", _plain(total), currencyID=d.currency)
    _el(out, n, "TotalPackageQuantity", d.total_packages)
    for position, note in enumerate(d.amendments, start=1):
        # The AES statement points at the declaration and at the Amendment it explains.
        _open(out, n, "AdditionalInformation")
        _el(out, n + 1, "StatementDescription", note.description)
        _el(out, n + 1, "StatementTypeCode", "AES")
        _pointers(
            out, n + 1, (Pointer(DECLARATION_SECTION, 1), Pointer(AMENDMENT_SECTION, position))
        )
        _close(out, n, "AdditionalInformation")
    if d.full and d.declarant:
        _open(out, n, "Agent")
        _el(out, n + 1, "ID", d.declarant)
        _el(out, n + 1, "FunctionCode", "2")
        _close(out, n, "Agent")
    for note in d.amendments:
        _open(out, n, "Amendment")
        _el(out, n + 1, "ChangeReasonCode", note.reason_code)
        _pointers(out, n + 1, note.pointers)
        _close(out, n, "Amendment")
    if d.full:
        if d.declarant:
            _open(out, n, "AuthorisationHolder")
            _el(out, n + 1, "ID", d.declarant)
            _el(out, n + 1, "CategoryCode", "EXRR" if d.type_code.startswith("EX") else "CGU")
            _close(out, n, "AuthorisationHolder")
        _open(out, n, "BorderTransportMeans")
        _el(out, n + 1, "ID", "MSCCARGOVESSEL")
        _el(out, n + 1, "IdentificationTypeCode", "11")
        _el(out, n + 1, "RegistrationNationalityCode", d.country)
        _el(out, n + 1, "ModeCode", "1")
        _close(out, n, "BorderTransportMeans")
        if d.declarant:
            _open(out, n, "Declarant")
            _el(out, n + 1, "ID", d.declarant)
            _close(out, n, "Declarant")
        if d.type_code.startswith("EX"):
            _open(out, n, "ExitOffice")
            _el(out, n + 1, "ID", f"{d.country}000051")
            _close(out, n, "ExitOffice")
    if d.exporter or d.exporter_name:
        _open(out, n, "Exporter")
        _el(out, n + 1, "Name", d.exporter_name)
        _el(out, n + 1, "ID", d.exporter)
        if d.exporter_address:
            _address(out, n + 1, d.exporter_address)
        _close(out, n, "Exporter")
    if d.items or d.destination or d.importer:
        _goods_shipment(out, n, d)
    if d.full and d.type_code.startswith(("IM", "T")):
        _open(out, n, "ObligationGuarantee")
        _el(out, n + 1, "ID", "Guaranteenotrequired")
        _el(out, n + 1, "SecurityDetailsCode", "1")
        _close(out, n, "ObligationGuarantee")
    if d.full and d.type_code.startswith("IM"):
        _open(out, n, "SupervisingOffice")
        _el(out, n + 1, "ID", f"{d.country}BFSHAN6")
        _close(out, n, "SupervisingOffice")
    _close(out, depth, "Declaration")
    return out


def _goods_shipment(out: list[str], n: int, d: WcoDeclaration) -> None:
    _open(out, n, "GoodsShipment")
    g = n + 1
    if d.full:
        _el(out, g, "TransactionNatureCode", "1")
        first = d.destination or next((i.destination for i in d.items if i.destination), None)
        if first and not d.type_code.startswith("IM"):
            _open(out, g, "Consignee")
            _el(out, g + 1, "Name", f"Consignee in {first}")
            _address(out, g + 1, ("Port City", first, "1 Harbour Road", "PC1 234"))
            _close(out, g, "Consignee")
        _open(out, g, "Consignment")
        _el(out, g + 1, "ContainerCode", "1")
        _open(out, g + 1, "GoodsLocation")
        _el(out, g + 2, "Name", "PORTLOCATION1")
        _el(out, g + 2, "TypeCode", "A")
        _open(out, g + 2, "Address")
        _el(out, g + 3, "TypeCode", "U")
        _el(out, g + 3, "CountryCode", d.country)
        _close(out, g + 2, "Address")
        _close(out, g + 1, "GoodsLocation")
        _close(out, g, "Consignment")
        if d.consignor:
            _open(out, g, "Consignor")
            _el(out, g + 1, "Name", d.consignor)
            _close(out, g, "Consignor")
    if d.destination:
        _open(out, g, "Destination")
        _el(out, g + 1, "CountryCode", d.destination)
        _close(out, g, "Destination")
    if d.export_country:
        _open(out, g, "ExportCountry")
        _el(out, g + 1, "ID", d.export_country)
        _close(out, g, "ExportCountry")
    for item in d.items:
        _goods_item(out, g, item, d.currency)
    if d.importer:
        _open(out, g, "Importer")
        _el(out, g + 1, "ID", d.importer)
        _close(out, g, "Importer")
    if d.full:
        _open(out, g, "PreviousDocument")
        _el(out, g + 1, "CategoryCode", "Z")
        _el(out, g + 1, "ID", f"{d.lrn}-DUCR")
        _el(out, g + 1, "TypeCode", "DCR")
        _close(out, g, "PreviousDocument")
    _close(out, n, "GoodsShipment")


def _goods_item(out: list[str], g: int, item: Item, currency: str) -> None:
    _open(out, g, "GovernmentAgencyGoodsItem")
    i = g + 1
    _el(out, i, "SequenceNumeric", item.sequence)
    if item.full:
        _el(out, i, "StatisticalValueAmount", _plain(item.value), currencyID=currency)
    for doc in item.documents:
        _open(out, i, "AdditionalDocument")
        _el(out, i + 1, "CategoryCode", doc.code[0])
        _el(out, i + 1, "ID", doc.reference)
        _el(out, i + 1, "Name", doc.name)
        _el(out, i + 1, "TypeCode", doc.code[1:])
        _el(out, i + 1, "LPCOExemptionCode", doc.status)
        if doc.writes_off:
            _open(out, i + 1, "WriteOff")
            if doc.quantity is not None:
                _el(out, i + 2, "QuantityQuantity", _plain(doc.quantity), unitCode=doc.unit)
            if doc.amount is not None:
                _el(out, i + 2, "AmountAmount", _plain(doc.amount), currencyID=doc.currency)
            _close(out, i + 1, "WriteOff")
        _close(out, i, "AdditionalDocument")
    if item.full:
        _open(out, i, "Commodity")
        _el(out, i + 1, "Description", item.description)
        _open(out, i + 1, "Classification")
        _el(out, i + 2, "ID", item.cn)
        _el(out, i + 2, "IdentificationTypeCode", "TSP")
        _close(out, i + 1, "Classification")
        _open(out, i + 1, "GoodsMeasure")
        _el(out, i + 2, "GrossMassMeasure", _plain(item.gross_mass))
        _close(out, i + 1, "GoodsMeasure")
        _close(out, i, "Commodity")
    if item.destination:
        _open(out, i, "Destination")
        _el(out, i + 1, "CountryCode", item.destination)
        _close(out, i, "Destination")
    if item.full:
        _open(out, i, "GovernmentProcedure")
        _el(out, i + 1, "CurrentCode", item.procedure[0])
        _el(out, i + 1, "PreviousCode", item.procedure[1])
        _close(out, i, "GovernmentProcedure")
        _open(out, i, "GovernmentProcedure")
        _el(out, i + 1, "CurrentCode", item.additional_procedure)
        _close(out, i, "GovernmentProcedure")
        if item.origin:
            _open(out, i, "Origin")
            _el(out, i + 1, "CountryCode", item.origin)
            _el(out, i + 1, "TypeCode", "1")
            _close(out, i, "Origin")
        _open(out, i, "Packaging")
        _el(out, i + 1, "SequenceNumeric", 1)
        _el(out, i + 1, "MarksNumbersID", f"MK-{item.sequence:03d}")
        _el(out, i + 1, "QuantityQuantity", item.packages)
        _el(out, i + 1, "TypeCode", "CT")
        _close(out, i, "Packaging")
    _close(out, g, "GovernmentAgencyGoodsItem")


def _metadata(d: WcoDeclaration, depth: int, *, namespaces: bool = True) -> list[str]:
    tab = chr(9) * depth
    declared = f' xmlns:md="{METADATA_NS}" xmlns="{DEC_NS}"' if namespaces else ""
    out = [f"{tab}<md:MetaData{declared}>"]
    _el(out, depth + 1, "md:WCODataModelVersionCode", "3.6")
    _el(out, depth + 1, "md:WCOTypeName", "DEC")
    _el(out, depth + 1, "md:ResponsibleCountryCode", d.country)
    _el(out, depth + 1, "md:ResponsibleAgencyName", "Customs")
    _el(out, depth + 1, "md:AgencyAssignedCustomizationVersionCode", "v2.1")
    out += declaration_lines(d, depth + 1, namespace=False)
    out.append(f"{tab}</md:MetaData>")
    return out


def render(d: WcoDeclaration, *, message_ref: str = "") -> bytes:
    """`d` as the bytes a customs system sends, inside its wrapper (`d.wrapper`, one of
    WRAPPERS)."""
    head = ['<?xml version="1.0" encoding="UTF-8"?>']
    if d.wrapper == "metadata":
        body = _metadata(d, 0)
    elif d.wrapper == "bare":
        body = declaration_lines(d, 0, namespace=True)
    elif d.wrapper in ("gateway", "gateway-bare"):
        inner = (
            _metadata(d, 2) if d.wrapper == "gateway" else declaration_lines(d, 2, namespace=True)
        )
        body = [
            f'<gw:Transmission xmlns:gw="{GATEWAY_NS}">',
            "\t<gw:Header>",
            f"\t\t<gw:MessageReference>{escape(message_ref or d.lrn)}</gw:MessageReference>",
            f"\t\t<gw:SenderSystem>{d.country}-CUSTOMS-EXPORT</gw:SenderSystem>",
            "\t\t<gw:MessageType>DEC-DMS</gw:MessageType>",
            "\t</gw:Header>",
            "\t<gw:Body>",
            *inner,
            "\t</gw:Body>",
            "</gw:Transmission>",
        ]
    elif d.wrapper == "soap":
        body = [
            f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}">',
            "\t<soapenv:Header/>",
            "\t<soapenv:Body>",
            *_metadata(d, 2),
            "\t</soapenv:Body>",
            "</soapenv:Envelope>",
        ]
    else:
        raise ValueError(f"unknown wrapper {d.wrapper!r}; one of {', '.join(WRAPPERS)}")
    return "\n".join([*head, *body, ""]).encode("utf-8")
