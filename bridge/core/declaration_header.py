"""What a WCO DEC-DMS message says about itself, read leniently: its FunctionCode and TypeCode
(which event it is), Declaration/ID (the MRN), FunctionalReferenceID (the LRN) and the
responsible country.

For the customs side (the simulator announcing the event a file is) and the operator's view of
a quarantined message: it judges nothing and reads nothing else. The declaration the rules act
on is read by bridge.core.declaration, which refuses what this module shrugs at."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.declaration import (
    DEC_NS,
    METADATA_NS,
)
from bridge.core.envelope import EventKind, event_kind
from bridge.core.errors import XmlRefused
from bridge.core.xmlsafe import parse_xml

ORIGINAL_FUNCTION_CODE = "9"  # WCO message function 9: the original declaration
REQUEST_FUNCTION_CODE = "13"  # 13: an additional message (amendment, or with INV a cancellation)
_TEXT_LIMIT = 70  # an..70 at most for the identifiers read here; longer is cut for display


@dataclass(frozen=True, slots=True)
class DeclarationHeader:
    function_code: str | None
    type_code: str | None
    mrn: str | None  # Declaration/ID
    lrn: str | None  # Declaration/FunctionalReferenceID
    country: str | None  # MetaData/ResponsibleCountryCode

    @property
    def event(self) -> EventKind | None:
        return event_kind(self.function_code, self.type_code)


def read_header(xml: bytes, *, max_bytes: int) -> DeclarationHeader | None:
    """The header of the declaration in `xml` (bare, or inside md:MetaData), or None when `xml`
    is no XML the hardened parser accepts or holds no DEC-DMS Declaration."""
    try:
        root = parse_xml(xml, max_bytes=max_bytes, what="declaration")
    except XmlRefused:
        return None
    declaration = root if root.tag == f"{{{DEC_NS}}}Declaration" else None
    country = None
    if root.tag == f"{{{METADATA_NS}}}MetaData":
        declaration = root.find(f"{{{DEC_NS}}}Declaration")
        country = _text(root.find(f"{{{METADATA_NS}}}ResponsibleCountryCode"))
    if declaration is None:
        return None

    def child(name: str) -> str | None:
        return _text(declaration.find(f"{{{DEC_NS}}}{name}"))

    return DeclarationHeader(
        function_code=child("FunctionCode"),
        type_code=child("TypeCode"),
        mrn=child("ID"),
        lrn=child("FunctionalReferenceID"),
        country=country,
    )


def _text(element) -> str | None:
    if element is None or element.text is None:
        return None
    text = element.text.strip()
    return text[:_TEXT_LIMIT] or None
