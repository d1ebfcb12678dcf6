"""The one XML parser factory: no DTDs, no entity resolution, no network, a size limit.

Every XML the bridge reads from outside (declarations, national XML exports, SOAP messages)
goes through `parse_xml`. A DTD is refused outright, so neither external entities (a file, a
URL) nor entity-expansion bombs can do anything."""

from __future__ import annotations

import threading

from lxml import etree

from bridge.core.errors import XmlRefused

DEFAULT_MAX_BYTES = 2 * 1024 * 1024

_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers are not thread-safe; one per thread, reused (building one costs more than
    # parsing a small document).
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        _local.parser = parser
    return parser


def parse_xml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "document"):
    """Parse `data` into an lxml element, or raise XmlRefused saying why.

    Refused: more than `max_bytes` (checked before parsing), a DOCTYPE (DTDs carry entities),
    malformed XML or invalid encoding."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > max_bytes:
        raise XmlRefused(f"{what} is {len(data)} bytes, over the limit of {max_bytes} bytes")
    # Both markers hold a "!", which most documents lack: one memchr-fast scan for it first
    # (the two pattern scans cost 15 us on a 20 KB declaration, a byte scan a fortieth of it).
    if b"!" in data and (b"<!DOCTYPE" in data or b"<!ENTITY" in data):
        raise XmlRefused(f"{what} declares a DTD or entities, which are not accepted")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as error:
        raise XmlRefused(f"{what} is not well-formed XML: {error}") from None
    if root is None:
        raise XmlRefused(f"{what} is empty")
    if root.getroottree().docinfo.doctype:  # e.g. a DOCTYPE in UTF-16 that the byte check missed
        raise XmlRefused(f"{what} declares a DTD or entities, which are not accepted")
    return root


def parse_project_file(path) -> etree._ElementTree:
    """One of the project's own XML files (schemas/, trusted and local): no network, no
    entities, but imports and includes resolve against the file's folder."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.parse(str(path), parser)


# libxml2 sets up its built-in XSD types the first time a schema is compiled, without a lock:
# two threads compiling their first schemas at once get "Document is not valid XML Schema",
# a schema that fails every later validation with "the given type is not a built-in type", or
# a segfault (the customs simulator's handler threads did, when four senders opened four
# connections to a fresh simulator). Schemas are compiled one at a time.
_COMPILING = threading.Lock()


def schema_from_file(path) -> etree.XMLSchema:
    """An XSD loaded from our own schemas/ and compiled (one compilation at a time in the
    process; the compiled schema is then used by one thread at a time, its caller's)."""
    document = parse_project_file(path)
    with _COMPILING:
        return etree.XMLSchema(document)
