"""A declaration resent as an amendment: the same WCO DEC-DMS document made an additional
message (FunctionCode 13, TypeCode COR) with an `Amendment` section, as customs send a
complete declaration again after release. Partial amendments, carrying only what they change,
are written by bridge.testkit.customs_traffic_xml."""

from __future__ import annotations

from lxml import etree

from bridge.core.declaration import DEC_NS
from bridge.core.xmlsafe import parse_xml

# Declaration's children that come after Amendment in the DMS schema's order.
_AFTER_AMENDMENT = (
    "AuthorisationHolder",
    "BorderTransportMeans",
    "Consignment",
    "CurrencyExchange",
    "Declarant",
    "ExitOffice",
    "Exporter",
    "GoodsShipment",
    "ObligationGuarantee",
    "PresentationOffice",
    "SupervisingOffice",
)


def _d(name: str) -> str:
    return f"{{{DEC_NS}}}{name}"


def as_amendment(
    xml: bytes | str,
    *,
    change_reason: str = "32",
    pointers: tuple[tuple[str, int], ...] = (),
) -> bytes:
    """`xml` (a declaration, bare or in its MetaData) as an amendment: FunctionCode 13,
    TypeCode COR, and one Amendment with `change_reason` and the Pointer path `pointers`
    ((DocumentSectionCode, SequenceNumeric) pairs; none: the whole declaration is resent)."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    root = parse_xml(data, max_bytes=len(data) + 1, what="declaration")
    declaration = root if root.tag == _d("Declaration") else root.find(_d("Declaration"))
    declaration.find(_d("FunctionCode")).text = "13"
    type_code = declaration.find(_d("TypeCode"))
    if type_code is None:
        type_code = etree.SubElement(declaration, _d("TypeCode"))
        declaration.find(_d("FunctionCode")).addnext(type_code)
    type_code.text = "COR"
    for old in declaration.findall(_d("Amendment")):
        declaration.remove(old)
    amendment = etree.Element(_d("Amendment"))
    etree.SubElement(amendment, _d("ChangeReasonCode")).text = change_reason
    for section, sequence in pointers:
        pointer = etree.SubElement(amendment, _d("Pointer"))
        etree.SubElement(pointer, _d("SequenceNumeric")).text = str(sequence)
        etree.SubElement(pointer, _d("DocumentSectionCode")).text = section
    after = next(
        (
            c
            for c in declaration
            if isinstance(c.tag, str) and etree.QName(c).localname in _AFTER_AMENDMENT
        ),
        None,
    )
    if after is not None:
        after.addprevious(amendment)
    else:
        declaration.append(amendment)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
