"""CERTEX-style certificates: a canonical licence as XML (schemas/certex-certificate-1.0.xsd),
and back.

A certificate is one licence at one version, written so that customs can check data element
12 03 of a declaration against it. It is built as Exclusive XML C14N 1.0 in UTF-8, indented two
spaces: the same licence always gives the same bytes, the bytes customs store can be compared
with the bytes built, and a validation error's line number points at one element.

Pure: the only files read are the project's own XSDs (the certificate's and the XML Signature
schema it imports for the optional ds:Signature, 1.4), compiled once per thread. Signing and
verifying are bridge.adapters.signing's: a certificate validates the same signed or not."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache

from lxml import etree

from bridge.core.certificate_plain import date_text, decimal_text, plain_certificate
from bridge.core.codes import UNION_GENERAL_AUTHORISATIONS, union_general_authorisation_for
from bridge.core.errors import Problem, Rejected, XmlRefused
from bridge.core.model import (
    ANNEX_I_LIST,
    Licence,
    LicenceLine,
    LicenceStatus,
    LicenceType,
    Party,
)
from bridge.core.paths import SCHEMAS_DIR
from bridge.core.xmlsafe import parse_project_file, parse_xml, schema_from_file

NAMESPACE = "urn:elicensing-bridge:certex:certificate:1.0"
SCHEMA_FILE = "certex-certificate-1.0.xsd"
SCHEMA_VERSION = "1.0"  # the instances' fixed attribute; the schema itself is 1.4
MAX_CERTIFICATE_BYTES = 8 * 1024 * 1024  # 99,999 lines at their longest stay far below

_DOCUMENT_CODES = {
    LicenceType.INDIVIDUAL: "X060",
    LicenceType.GLOBAL: "X070",
    LicenceType.NATIONAL_GENERAL: "X071",
}
_TYPES_BY_CODE = {code: kind for kind, code in _DOCUMENT_CODES.items()} | {
    f"X06{n}": LicenceType.UNION_GENERAL for n in range(1, 9)
}


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


# Qualified names for reading, computed once.
_CERTIFICATE = _q("Certificate")
_DOCUMENT_CODE = _q("DocumentCode")
_REFERENCE = _q("Reference")
_VERSION = _q("Version")
_STATUS = _q("Status")
_ISSUING_AUTHORITY = _q("IssuingAuthority")
_MEMBER_STATE = _q("MemberState")
_NAME = _q("Name")
_HOLDER = _q("Holder")
_EORI = _q("EORI")
_VALIDITY = _q("Validity")
_FROM = _q("From")
_TO = _q("To")
_GENERAL_AUTHORISATION = _q("GeneralAuthorisation")
_LINE = _q("Line")
_LINE_NUMBER = _q("LineNumber")
_CLE = _q("ControlListEntry")
_CN_CODE = _q("CNCode")
_DESCRIPTION = _q("Description")
_QUANTITY = _q("Quantity")
_USAGE_UNIT = _q("UsageUnit")
_VALUE = _q("Value")
_USAGE_CURRENCY = _q("UsageCurrency")
_DESTINATION = _q("DestinationCountry")
_CONSIGNEE = _q("Consignee")
_END_USER = _q("EndUser")
_COUNTRY = _q("Country")
_ADDRESS = _q("Address")
_OPEN_SCOPE = _q("OpenScope")
_SCOPE_ENTRY = _q("ScopeEntry")


def document_code_for(licence: Licence) -> str:
    """The data element 12 03 document code customs expect for this licence: X060 individual,
    X061-X068 for EU001-EU008, X070 global, X071 national general.

    Raises Rejected when a Union general authorisation does not name one of EU001-EU008."""
    code = _DOCUMENT_CODES.get(licence.type)
    if code is not None:
        return code
    general = licence.general_authorisation
    if licence.type is LicenceType.UNION_GENERAL and general in UNION_GENERAL_AUTHORISATIONS:
        return f"X06{general[-1]}"
    raise Rejected(
        [
            Problem(
                "a Union general export authorisation must name one of EU001 to EU008 to have"
                " a document code",
                "general_authorisation",
                _source(licence),
                None if general is None else str(general),
                "document-code",
            )
        ],
        summary=f"no document code for licence {licence.number}",
    )


def _source(licence: Licence) -> str:
    return f"licence {licence.number} v{licence.version}"


# ---------------------------------------------------------------------------------- building

# The certificate is written directly in its canonical form (Exclusive C14N 1.0): building an
# lxml tree element by element costs several times more than the whole XSD validation, and the
# canonical form is simple enough to write exactly. Tests check the bytes are their own C14N.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_SPECIAL = re.compile("[&<>\r]")
# Either of the two above in one search: most text needs neither, and is written as it is.
_TEXT_CARE = re.compile("[&<>\r]|[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"})
_ATTRIBUTE_SPECIAL = re.compile('[&<"\t\n\r]')
_ATTRIBUTE_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}
)


class _Writer:
    """Writes indented canonical XML, collecting text XML 1.0 cannot carry instead of stopping
    at it."""

    __slots__ = ("parts", "problems", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.parts: list[str] = []
        self.problems: list[Problem] = []

    def _clean(self, value: object, path: str) -> str:
        text = value if isinstance(value, str) else str(value)
        if _NOT_XML_CHAR.search(text):
            self.problems.append(
                Problem(
                    "contains characters XML 1.0 cannot carry (control characters, NUL,"
                    " unpaired surrogates, U+FFFE/U+FFFF)",
                    path,
                    self.source,
                    repr(value)[:120],
                    "not-xml-text",
                )
            )
            return ""
        return text

    def leaf(
        self,
        indent: str,
        name: str,
        value: object,
        path: str,
        attribute: tuple[str, str | None, str] | None = None,
    ) -> None:
        text = value if value.__class__ is str else str(value)
        if _TEXT_CARE.search(text):  # rare: text to escape, or text XML cannot carry
            text = self._clean(value, path)
            if _TEXT_SPECIAL.search(text):
                text = text.translate(_TEXT_ESCAPES)
        start = name
        if attribute is not None and attribute[1] is not None:
            key, raw, attribute_path = attribute
            shown = self._clean(raw, attribute_path)
            if _ATTRIBUTE_SPECIAL.search(shown):
                shown = shown.translate(_ATTRIBUTE_ESCAPES)
            start = f'{name} {key}="{shown}"'
        self.parts.append(f"\n{indent}<{start}>{text}</{name}>")

    def party(self, indent: str, name: str, party: Party, path: str) -> None:
        self.parts.append(f"\n{indent}<{name}>")
        inner = indent + "  "
        self.leaf(inner, "Name", party.name, f"{path}.name")
        if party.country is not None:
            self.leaf(inner, "Country", party.country, f"{path}.country")
        if party.address is not None:
            self.leaf(inner, "Address", party.address, f"{path}.address")
        self.parts.append(f"\n{indent}</{name}>")


def _line(writer: _Writer, line: LicenceLine, index: int) -> None:
    path = f"lines[{index}]"
    leaf = writer.leaf
    ind = "    "
    writer.parts.append("\n  <Line>")
    leaf(ind, "LineNumber", line.line_number, f"{path}.line_number")
    # The list is named only when it is not the EU dual-use list (1.3): an Annex I line is
    # written exactly as before, so its certificate keeps its bytes.
    listed = None if line.control_list == ANNEX_I_LIST else line.control_list
    cle_list = ("list", listed, f"{path}.control_list")
    leaf(ind, "ControlListEntry", line.control_list_entry, f"{path}.control_list_entry", cle_list)
    if line.cn_code is not None:
        leaf(ind, "CNCode", line.cn_code, f"{path}.cn_code")
    leaf(ind, "Description", line.description, f"{path}.description")
    _measures(writer, ind, line, f"{path}.")
    for position, country in enumerate(line.destinations):
        leaf(ind, "DestinationCountry", country, f"{path}.destinations[{position}]")
    if line.consignee is not None:
        writer.party(ind, "Consignee", line.consignee, f"{path}.consignee")
    if line.end_user is not None:
        writer.party(ind, "EndUser", line.end_user, f"{path}.end_user")
    writer.parts.append("\n  </Line>")


def _measures(
    writer: _Writer,
    ind: str,
    figures: LicenceLine | Licence,
    path: str,
) -> None:
    """The quantity ceiling (or the unit usage is recorded in) and the value ceiling (or the
    currency), of a line or of an open licence."""
    leaf = writer.leaf
    if figures.quantity is not None:
        # Without a unit the XSD reports the missing unitCode, with line and path.
        unit = ("unitCode", figures.unit, f"{path}unit")
        leaf(ind, "Quantity", decimal_text(figures.quantity), f"{path}quantity", unit)
    elif figures.unit is not None:
        leaf(ind, "UsageUnit", figures.unit, f"{path}unit")
    if figures.value is not None:
        currency = ("currencyID", figures.currency, f"{path}currency")
        leaf(ind, "Value", decimal_text(figures.value), f"{path}value", currency)
    elif figures.currency is not None:
        leaf(ind, "UsageCurrency", figures.currency, f"{path}currency")


def _open_scope(writer: _Writer, licence: Licence) -> None:
    ind = "    "
    writer.parts.append("\n  <OpenScope>")
    for position, entry in enumerate(licence.control_list_entries):
        writer.leaf(ind, "ScopeEntry", entry, f"control_list_entries[{position}]")
    for position, country in enumerate(licence.destinations):
        writer.leaf(ind, "DestinationCountry", country, f"destinations[{position}]")
    _measures(writer, ind, licence, "")
    writer.parts.append("\n  </OpenScope>")


def build_certificate(licence: Licence) -> bytes:
    """The certificate of `licence`: UTF-8, Exclusive C14N 1.0, indented two spaces; the same
    licence always gives the same bytes. Validate with `certificate_problems` before sending.

    Raises Rejected, listing every problem, when no certificate can be written at all: no
    document code for the licence, or text XML cannot carry. Anything else the contract forbids
    is left for `certificate_problems` to report with its line and path."""
    code = _DOCUMENT_CODES.get(licence.type)
    if code is None:
        general = licence.general_authorisation
        if licence.type is LicenceType.UNION_GENERAL and general in UNION_GENERAL_AUTHORISATIONS:
            code = f"X06{general[-1]}"
    if code is not None:
        plain = plain_certificate(licence, code, NAMESPACE, SCHEMA_VERSION)
        if plain is not None:
            return plain.encode("utf-8")
    return _write_certificate(licence)


def _write_certificate(licence: Licence) -> bytes:
    """build_certificate through _Writer, value by value: escapes what needs it and collects
    every value XML cannot carry (the path of the rare licence, and the oracle of the plain
    one)."""
    writer = _Writer(_source(licence))
    try:
        code = document_code_for(licence)
    except Rejected as refused:
        writer.problems.extend(refused.problems)
        code = ""
    leaf = writer.leaf
    parts = writer.parts
    parts.append(f'<Certificate xmlns="{NAMESPACE}" schemaVersion="{SCHEMA_VERSION}">')
    leaf("  ", "DocumentCode", code, "type")
    leaf("  ", "Reference", licence.number, "number")
    leaf("  ", "Version", licence.version, "version")
    leaf("  ", "Status", getattr(licence.status, "value", licence.status), "status")
    parts.append("\n  <IssuingAuthority>")
    leaf("    ", "MemberState", licence.issuing_member_state, "issuing_member_state")
    leaf("    ", "Name", licence.issuing_authority, "issuing_authority")
    parts.append("\n  </IssuingAuthority>\n  <Holder>")
    leaf("    ", "Name", licence.holder_name, "holder_name")
    leaf("    ", "EORI", licence.holder_eori, "holder_eori")
    parts.append("\n  </Holder>\n  <Validity>")
    leaf("    ", "From", date_text(licence.valid_from), "valid_from")
    if licence.valid_to is not None:
        leaf("    ", "To", date_text(licence.valid_to), "valid_to")
    parts.append("\n  </Validity>")
    if licence.general_authorisation is not None:
        leaf("  ", "GeneralAuthorisation", licence.general_authorisation, "general_authorisation")
    for index, line in enumerate(licence.lines):
        _line(writer, line, index)
    if not licence.lines:
        _open_scope(writer, licence)
    parts.append("\n</Certificate>")
    if writer.problems:
        raise Rejected(writer.problems, summary=f"no certificate for {_source(licence)}")
    return "".join(parts).encode("utf-8")


# -------------------------------------------------------------------------------- validating

_local = threading.local()


def _schema() -> etree.XMLSchema:
    # An XMLSchema keeps its error log on itself, so each thread gets its own compiled copy.
    schema = getattr(_local, "schema", None)
    if schema is None:
        schema = schema_from_file(str(SCHEMAS_DIR / SCHEMA_FILE))
        _local.schema = schema
    return schema


_CLARK = re.compile(r"\{[A-Za-z][A-Za-z0-9+.\-]*:[^}\s']*\}")  # "{urn:...}Name" -> "Name"
_QUOTED_VALUE = re.compile(r"The value '([^']*)'")


def _readable_path(element: etree._Element) -> str:
    """`/Certificate/Line[2]/Quantity`: local names, positions among same-named siblings."""
    steps = []
    node: etree._Element | None = element
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is not None:
            before = sum(1 for _ in node.itersiblings(node.tag, preceding=True))
            if before or next(node.itersiblings(node.tag), None) is not None:
                name = f"{name}[{before + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))


def _schema_problems(root: etree._Element, source: str) -> list[Problem]:
    return xsd_problems(_schema(), root, source)


def xsd_problems(schema: etree.XMLSchema, root: etree._Element, source: str) -> list[Problem]:
    """Every error of `root` against `schema`, each with its reason (namespaces left out), a
    readable path and line (`/Certificate/Line[2]/Quantity (line 31)`) and the offending value
    when the validator names it; [] when valid. `schema` must not be shared between threads."""
    if schema.validate(root):
        return []
    namespaces = {}
    for element in root.iter(etree.Element):
        namespaces.update((prefix, uri) for prefix, uri in element.nsmap.items() if prefix)
    problems = []
    for error in schema.error_log:
        path = error.path or ""
        # The validator's path starts at `root` itself ("/m:Submit/*[4]/*"), even when `root`
        # sits inside a larger document (a SOAP body): resolve the rest relative to it.
        rest = path[path.find("/", 1) :] if path.count("/") > 1 else ""
        try:
            found = root.xpath("." + rest, namespaces=namespaces) if path else []
        except etree.XPathError:
            found = []
        if found and isinstance(found[0], etree._Element):
            path = _readable_path(found[0])
        quoted = _QUOTED_VALUE.search(error.message)
        problems.append(
            Problem(
                _CLARK.sub("", error.message).strip(),
                f"{path} (line {error.line})",
                source,
                quoted.group(1) if quoted else None,
                "schema",
            )
        )
    return problems


@cache
def _annex_i_spelling() -> re.Pattern[str]:
    """The schema's own AnnexIEntryType pattern (read from the XSD, not restated here)."""
    xsd = "{http://www.w3.org/2001/XMLSchema}"
    tree = parse_project_file(SCHEMAS_DIR / SCHEMA_FILE)
    (pattern,) = tree.getroot().iterfind(
        f"{xsd}simpleType[@name='AnnexIEntryType']/{xsd}restriction/{xsd}pattern"
    )
    # An XSD pattern is anchored at both ends (fullmatch) and this one uses no syntax Python
    # reads differently.
    return re.compile(pattern.get("value") or "")


def _first(parent: etree._Element, tag: str) -> etree._Element | None:
    """The first child of `parent` named `tag` (what parent.find(tag) returns for a plain
    qualified name, without ElementPath's work in Python)."""
    for child in parent.iterchildren(tag):
        return child
    return None


def _first_text(parent: etree._Element, tag: str) -> str | None:
    """What parent.findtext(tag) returns for a plain qualified name: the first such child's
    text ("" for none), or None when there is no such child."""
    for child in parent.iterchildren(tag):
        return child.text or ""
    return None


@lru_cache(maxsize=8192)  # entries repeat across certificates
def _in_annex_i_spelling(text: str) -> bool:
    return _annex_i_spelling().fullmatch(text) is not None


def _entry_problems(root: etree._Element, source: str) -> list[Problem]:
    """An entry of the EU dual-use list (no list attribute, or list="eu-dual-use") must be in
    the Annex I spelling; XSD 1.0 cannot tie the pattern to the attribute."""
    problems = []
    for position, line in enumerate(root.iterchildren(_LINE), start=1):
        entry = _first(line, _CLE)
        if entry is None or entry.get("list", ANNEX_I_LIST) != ANNEX_I_LIST:
            continue
        text = entry.text or ""
        if not _in_annex_i_spelling(text):
            problems.append(
                Problem(
                    f"an entry of the EU dual-use list ({ANNEX_I_LIST}) is written in the"
                    " Annex I spelling (AnnexIEntryType, such as 6A003.b.4.b); an entry of"
                    ' another list names it in the list attribute (list="eu-military")',
                    f"/Certificate/Line[{position}]/ControlListEntry (line {entry.sourceline})",
                    source,
                    text,
                    "schema",
                )
            )
    return problems


def _contract_problems(root: etree._Element, source: str) -> list[Problem]:
    """Rules XSD 1.0 cannot say: an entry without a list is in the Annex I spelling, and the
    document code and the general authorisation agree."""
    return _entry_problems(root, source) + _authorisation_problems(root, source)


def _authorisation_problems(root: etree._Element, source: str) -> list[Problem]:
    code = _first_text(root, _DOCUMENT_CODE)
    general = _first_text(root, _GENERAL_AUTHORISATION)
    expected = union_general_authorisation_for(code or "")
    if expected and general != expected:
        return [
            Problem(
                f"document code {code} is the Union general authorisation {expected}, but"
                f" GeneralAuthorisation says {general or 'nothing'}",
                "/Certificate/GeneralAuthorisation",
                source,
                general,
                "document-code",
            )
        ]
    if code in ("X060", "X070") and general in UNION_GENERAL_AUTHORISATIONS:
        return [
            Problem(
                f"document code {code} is a licence granted to one exporter, but"
                f" GeneralAuthorisation names the Union general authorisation {general}",
                "/Certificate/GeneralAuthorisation",
                source,
                general,
                "document-code",
            )
        ]
    return []


def _element_problems(root: etree._Element, source: str) -> list[Problem]:
    if root.tag != _CERTIFICATE:
        return [
            Problem(
                f"the root element is {root.tag}, not {_CERTIFICATE}",
                "/",
                source,
                None,
                "schema",
            )
        ]
    return _schema_problems(root, source) or _contract_problems(root, source)


def certificate_problems(xml: bytes, *, source: str = "certificate") -> list[Problem]:
    """Every way `xml` breaks the certificate contract, each with its reason, its path and line
    (`/Certificate/Line[2]/Quantity (line 31)`), and the offending value when there is one;
    [] when the certificate is valid."""
    try:
        root = parse_xml(xml, max_bytes=MAX_CERTIFICATE_BYTES, what=source)
    except XmlRefused as refused:
        return [Problem(str(refused), "", source, None, "not-xml")]
    return _element_problems(root, source)


def certified(licence: Licence, *, source: str = "certificate") -> tuple[bytes, list[Problem]]:
    """`build_certificate(licence)` and, from one parse of those bytes, what
    `certificate_problems` says of them: the same bytes, the same problems (raises Rejected
    as build_certificate does)."""
    xml = build_certificate(licence)
    # The writer escapes every "<" of a value, so "<!" (a DOCTYPE, an entity) never appears
    # in what it wrote; the checks parse_xml makes for foreign documents are then only
    # repeated (through certificate_problems) in the case that cannot happen.
    if len(xml) > MAX_CERTIFICATE_BYTES or b"<!" in xml:
        return xml, certificate_problems(xml, source=source)
    try:
        root = etree.fromstring(xml, parser=_own_parser())
    except etree.XMLSyntaxError:
        return xml, certificate_problems(xml, source=source)
    return xml, _element_problems(root, source)


def _own_parser() -> etree.XMLParser:
    # The same settings as xmlsafe's parser (comments and processing instructions dropped,
    # no entities, no network), one per thread: lxml parsers are not thread-safe.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
    return parser


# --------------------------------------------------------------------------------- reading


def _text(parent: etree._Element, tag: str) -> str | None:
    child = parent.find(tag)
    return None if child is None else (child.text or "")


def _party(element: etree._Element | None) -> Party | None:
    if element is None:
        return None
    return Party(
        name=_text(element, _NAME) or "",
        country=_text(element, _COUNTRY),
        address=_text(element, _ADDRESS),
    )


def _decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text.strip())
    except InvalidOperation:  # the XSD rules this out; kept so a bug cannot pass silently
        raise ValueError(f"{text!r} is not a decimal") from None


def _read_measures(
    element: etree._Element,
) -> tuple[Decimal | None, str | None, Decimal | None, str | None]:
    """(quantity, unit, value, currency) of a Line or an OpenScope element."""
    quantity_element = element.find(_QUANTITY)
    value_element = element.find(_VALUE)
    if quantity_element is not None:
        quantity, unit = _decimal(quantity_element.text), quantity_element.get("unitCode")
    else:
        quantity, unit = None, _text(element, _USAGE_UNIT)
    if value_element is not None:
        value, currency = _decimal(value_element.text), value_element.get("currencyID")
    else:
        value, currency = None, _text(element, _USAGE_CURRENCY)
    return quantity, unit, value, currency


def _read_open_scope(root: etree._Element) -> dict:
    """An open licence's scope and ceilings as Licence keywords ({} for a licence with lines)."""
    element = root.find(_OPEN_SCOPE)
    if element is None:
        return {}
    quantity, unit, value, currency = _read_measures(element)
    return {
        "control_list_entries": tuple(c.text or "" for c in element.iterchildren(_SCOPE_ENTRY)),
        "destinations": tuple(c.text or "" for c in element.iterchildren(_DESTINATION)),
        "quantity": quantity,
        "unit": unit,
        "value": value,
        "currency": currency,
    }


def _read_line(element: etree._Element) -> LicenceLine:
    quantity, unit, value, currency = _read_measures(element)
    entry = element.find(_CLE)
    return LicenceLine(
        line_number=int((_text(element, _LINE_NUMBER) or "").strip()),
        control_list_entry=(entry.text or "") if entry is not None else "",
        control_list=(entry.get("list") if entry is not None else None) or ANNEX_I_LIST,
        description=_text(element, _DESCRIPTION) or "",
        cn_code=_text(element, _CN_CODE),
        quantity=quantity,
        unit=unit,
        value=value,
        currency=currency,
        destinations=tuple(child.text or "" for child in element.iterchildren(_DESTINATION)),
        consignee=_party(element.find(_CONSIGNEE)),
        end_user=_party(element.find(_END_USER)),
    )


def licence_from_certificate_element(root: etree._Element, *, source: str) -> Licence:
    """The canonical licence a valid certificate element carries; Rejected when it is not
    valid."""
    problems = _element_problems(root, source)
    if problems:
        raise Rejected(problems, summary=f"{source} breaks the certificate contract")
    code = root.findtext(_DOCUMENT_CODE) or ""
    authority = root.find(_ISSUING_AUTHORITY)
    holder = root.find(_HOLDER)
    validity = root.find(_VALIDITY)
    valid_to = _text(validity, _TO)
    return Licence(
        number=root.findtext(_REFERENCE) or "",
        type=_TYPES_BY_CODE[code],
        issuing_member_state=_text(authority, _MEMBER_STATE) or "",
        issuing_authority=_text(authority, _NAME) or "",
        holder_name=_text(holder, _NAME) or "",
        holder_eori=_text(holder, _EORI) or "",
        valid_from=date.fromisoformat((_text(validity, _FROM) or "").strip()),
        valid_to=None if valid_to is None else date.fromisoformat(valid_to.strip()),
        lines=tuple(_read_line(line) for line in root.iterchildren(_LINE)),
        status=LicenceStatus(root.findtext(_STATUS)),
        version=int((root.findtext(_VERSION) or "").strip()),
        general_authorisation=root.findtext(_GENERAL_AUTHORISATION),
        **_read_open_scope(root),
    )


def parse_certificate(xml: bytes, *, source: str = "certificate") -> Licence:
    """The canonical licence `xml` was built from: `parse_certificate(build_certificate(l))`
    equals `l`. Raises XmlRefused for XML that cannot be read safely, and Rejected (with every
    problem) for a certificate that breaks the contract."""
    root = parse_xml(xml, max_bytes=MAX_CERTIFICATE_BYTES, what=source)
    return licence_from_certificate_element(root, source=source)


# --------------------------------------------------------------------------- status updates

_CERTIFICATE_STATUS = _q("CertificateStatus")
_SEQUENCE = _q("Sequence")
_REASON = _q("Reason")
_EFFECTIVE_AT = _q("EffectiveAt")
STATUS_SCHEMA_VERSION = "1.1"
MAX_STATUS_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A status change of one certificate (`reference` at `version`) customs already hold:
    the `sequence`-th status change of that reference, in force from `effective_at` (UTC)."""

    reference: str
    version: int
    sequence: int
    status: LicenceStatus
    reason: str
    effective_at: datetime


def build_status_update(update: StatusUpdate) -> bytes:
    """The CertificateStatus document of `update` (schemas/certex-certificate-1.0.xsd, 1.1):
    UTF-8, Exclusive C14N 1.0; the same update always gives the same bytes. Raises Rejected
    for text XML cannot carry or a time without its zone; validate with
    `status_update_problems` before sending."""
    source = f"status update {update.reference} v{update.version} #{update.sequence}"
    if update.effective_at.tzinfo is None:
        raise Rejected(
            [Problem("must carry its time zone", "effective_at", source, None, "schema")],
            summary=f"no status update for {source}",
        )
    writer = _Writer(source)
    writer.parts.append(
        f'<CertificateStatus xmlns="{NAMESPACE}" schemaVersion="{STATUS_SCHEMA_VERSION}">'
    )
    at = update.effective_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    writer.leaf("  ", "Reference", update.reference, "reference")
    writer.leaf("  ", "Version", update.version, "version")
    writer.leaf("  ", "Sequence", update.sequence, "sequence")
    writer.leaf("  ", "Status", getattr(update.status, "value", update.status), "status")
    writer.leaf("  ", "Reason", update.reason, "reason")
    writer.leaf("  ", "EffectiveAt", at, "effective_at")
    writer.parts.append("\n</CertificateStatus>")
    if writer.problems:
        raise Rejected(writer.problems, summary=f"no status update for {source}")
    return "".join(writer.parts).encode("utf-8")


def _status_element_problems(root: etree._Element, source: str) -> list[Problem]:
    if root.tag != _CERTIFICATE_STATUS:
        return [
            Problem(
                f"the root element is {root.tag}, not {_CERTIFICATE_STATUS}",
                "/",
                source,
                None,
                "schema",
            )
        ]
    return _schema_problems(root, source)


def status_update_problems(xml: bytes, *, source: str = "status update") -> list[Problem]:
    """Every way `xml` breaks the CertificateStatus contract, with reason, path and line;
    [] when it is valid."""
    try:
        root = parse_xml(xml, max_bytes=MAX_STATUS_BYTES, what=source)
    except XmlRefused as refused:
        return [Problem(str(refused), "", source, None, "not-xml")]
    return _status_element_problems(root, source)


def status_update_from_element(root: etree._Element, *, source: str) -> StatusUpdate:
    """The StatusUpdate a valid CertificateStatus element carries; Rejected when invalid."""
    problems = _status_element_problems(root, source)
    if problems:
        raise Rejected(problems, summary=f"{source} breaks the certificate status contract")
    at = datetime.fromisoformat((root.findtext(_EFFECTIVE_AT) or "").strip().replace("Z", "+00:00"))
    return StatusUpdate(
        reference=root.findtext(_REFERENCE) or "",
        version=int((root.findtext(_VERSION) or "").strip()),
        sequence=int((root.findtext(_SEQUENCE) or "").strip()),
        status=LicenceStatus(root.findtext(_STATUS)),
        reason=root.findtext(_REASON) or "",
        effective_at=at.astimezone(UTC),
    )


def parse_status_update(xml: bytes, *, source: str = "status update") -> StatusUpdate:
    """`parse_status_update(build_status_update(u))` equals `u` (times in UTC). Raises
    XmlRefused for unsafe XML, Rejected (every problem) for an invalid document."""
    root = parse_xml(xml, max_bytes=MAX_STATUS_BYTES, what=source)
    return status_update_from_element(root, source=source)
