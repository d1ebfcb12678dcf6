"""The XML reader: licence elements chosen by an XPath (with namespaces), lines nested in each.

Parsing goes through the one hardened parser (bridge.core.xmlsafe). Field references that are plain
child paths (`elic:Holder/elic:EORI`, `elic:Quantity/@unit`) are read with ElementPath, which
is several times faster than XPath; anything else is compiled once as XPath."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from lxml import etree

from bridge.core.errors import XmlRefused
from bridge.core.mapping.records import Getter, RawRecord, UnreadableFile
from bridge.core.xmlsafe import parse_xml

MAX_EXPORT_BYTES = 256 * 1024 * 1024  # a national export is far larger than one message

_NAME = r"[A-Za-z_][\w.-]*"
_STEP = re.compile(rf"(?:({_NAME}):)?({_NAME})")
_SIMPLE = re.compile(rf"(?:{_NAME}:)?{_NAME}(?:/(?:{_NAME}:)?{_NAME})*")


def _clark(step: str, namespaces: dict[str, str]) -> str:
    match = _STEP.fullmatch(step)
    assert match is not None  # callers pass only steps _SIMPLE accepted
    prefix, local = match.groups()
    if prefix is None:
        return local
    if prefix not in namespaces:
        raise ValueError(f"prefix {prefix!r} is not declared in reader.namespaces")
    return f"{{{namespaces[prefix]}}}{local}"


def _xpath_value(item: Any) -> Any:
    if isinstance(item, etree._Element):
        return item.text
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, float):
        return format(item, "g")
    return str(item)


def _first_match(tags: tuple[str, ...], attribute: str | None) -> Getter:
    """Read the first element along `tags` (child by child), its text or `attribute`.
    iterchildren runs in C and is about twice as fast as findtext for these short paths."""
    if len(tags) == 1 and attribute is None:
        (tag,) = tags

        def child_text(node: Any) -> Any:
            for child in node.iterchildren(tag):
                return child.text
            return None

        return child_text

    def along(node: Any) -> Any:
        for tag in tags:
            for child in node.iterchildren(tag):
                node = child
                break
            else:
                return None
        return node.text if attribute is None else node.get(attribute)

    return along


def _child_path(ref: str, namespaces: dict[str, str]) -> tuple[tuple[str, ...], str | None] | None:
    """(the element tags stepped through, child by child; the attribute read at the end or
    None for the text) of a plain child path such as elic:Quantity/@unit, or None for a
    reference that needs XPath. Raises ValueError for an undeclared prefix."""
    elements, attribute = ref, None
    if ref.startswith("@"):
        elements, attribute = "", ref[1:]
    elif "/@" in ref:
        elements, attribute = ref.rsplit("/@", 1)
    simple_elements = elements == "" or _SIMPLE.fullmatch(elements)
    simple_attribute = attribute is None or _STEP.fullmatch(attribute)
    if not (simple_elements and simple_attribute):
        return None
    tags = tuple(_clark(step, namespaces) for step in elements.split("/")) if elements else ()
    return tags, _clark(attribute, namespaces) if attribute else None


def compile_getter(ref: str, namespaces: dict[str, str], many: bool) -> Getter:
    """A function reading `ref` (relative to a record or line element): its text, or for
    `many` the texts of every match. Raises ValueError for a reference that is not XPath."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError("an XML field reference is a relative path such as elic:Holder/elic:Name")
    path = _child_path(ref, namespaces)
    if path is not None:
        tags, name = path
        if many:
            path = "/".join(tags) or "."
            if name is None:
                return lambda node: [found.text for found in node.iterfind(path)]
            return lambda node: [found.get(name) for found in node.iterfind(path)]
        return _first_match(tags, name)
    try:
        xpath = etree.XPath(ref, namespaces=namespaces, smart_strings=False)
    except etree.XPathSyntaxError as error:
        raise ValueError(f"{ref!r} is not an XPath expression: {error}") from None

    def evaluate(node: Any) -> Any:
        try:
            result = xpath(node)
        except etree.XPathEvalError as error:
            # e.g. an undeclared prefix: only visible when evaluated
            raise ValueError(f"XPath {ref!r} fails: {error}") from None
        if isinstance(result, list):
            values = [_xpath_value(item) for item in result]
            return values if many else (values[0] if values else None)
        return _xpath_value(result)

    return evaluate


def _first_step(records: str) -> str | None:
    """The root element an absolute records path such as /elic:Export/elic:Item names, or None
    when the path is not of that simple form."""
    if not records.startswith("/") or records.startswith("//"):
        return None
    step = records[1:].split("/", 1)[0]
    return step if _STEP.fullmatch(step) else None


class _Paths:
    """Positional paths such as /LicenceExport/Authorisation[2]; sibling positions are counted
    once per parent, so locating every record of a large file stays linear."""

    def __init__(self) -> None:
        self._paths: dict[Any, str] = {}
        self._positions: dict[Any, dict[Any, tuple[int, int]]] = {}

    def _position(self, element: Any, parent: Any) -> tuple[int, int]:
        positions = self._positions.get(parent)
        if positions is None:
            counts: dict[Any, int] = {}
            numbered = []
            for child in parent:
                counts[child.tag] = counts.get(child.tag, 0) + 1
                numbered.append((child, counts[child.tag]))
            positions = {child: (n, counts[child.tag]) for child, n in numbered}
            self._positions[parent] = positions
        return positions[element]

    def of(self, element: Any, *, indexed: bool = False) -> str:
        cached = self._paths.get(element) if not indexed else None
        if cached is not None:
            return cached
        local = _split(element.tag)[1]
        parent = element.getparent()
        if parent is None:
            return "/" + local
        number, siblings = self._position(element, parent)
        step = f"{local}[{number}]" if indexed or siblings > 1 else local
        path = f"{self.of(parent)}/{step}"
        if not indexed:
            self._paths[element] = path
        return path


class XmlReader:
    """Configured from a mapping's `reader` section (kind: xml)."""

    def __init__(self, *, records: str, lines: str | None, namespaces: dict[str, str]) -> None:
        self.namespaces = namespaces
        self.records = records
        self.records_xpath = etree.XPath(records, namespaces=namespaces)
        self.lines_path = lines  # None: open licences, no goods lines
        self.lines_xpath = None if lines is None else etree.XPath(lines, namespaces=namespaces)
        self._getters: dict[tuple[str, bool], Getter] = {}

    def check_ref(self, ref: str) -> None:
        # Evaluated once on an empty element: XPath reports an undeclared prefix only then.
        probe = etree.Element("probe")
        self.getter(ref, False)(probe)
        self.getter(ref, True)(probe)

    def getter(self, ref: str, many: bool) -> Getter:
        getter = self._getters.get((ref, many))
        if getter is None:
            getter = self._getters[ref, many] = compile_getter(ref, self.namespaces, many)
        return getter

    def read(self, data: bytes, file_name: str) -> _XmlBatch:
        try:
            root = parse_xml(data, max_bytes=MAX_EXPORT_BYTES, what=file_name)
        except XmlRefused as error:
            raise UnreadableFile(str(error)) from None
        try:
            found = self.records_xpath(root)
        except etree.XPathEvalError as error:
            raise UnreadableFile(f"{file_name}: reader.records fails: {error}") from None
        if not isinstance(found, list) or not all(isinstance(e, etree._Element) for e in found):
            raise UnreadableFile(f"{file_name}: reader.records {self.records} selects no elements")
        if not found:
            self._check_root(root, file_name)
        return _XmlBatch(self, file_name, found)

    def _check_root(self, root: Any, file_name: str) -> None:
        """A file in which no licence is found must at least be an export of the kind the
        mapping reads: another document, or the same one in another namespace, would otherwise
        pass for an empty export."""
        namespace, local = _split(root.tag)
        first = _first_step(self.records)
        try:
            expected = _clark(first, self.namespaces) if first else None
        except ValueError:  # an undeclared prefix: reader.records itself failed above
            expected = None
        if expected is not None:
            if expected == root.tag:
                return
            expected_namespace, expected_local = _split(expected)
            if expected_local == local:
                raise UnreadableFile(
                    f"{file_name}: the root element {local} is in namespace"
                    f" {namespace or '(none)'}, not {expected_namespace or '(none)'}:"
                    " this is not the export the mapping reads"
                )
            raise UnreadableFile(
                f"{file_name}: the root element is {root.tag}, not the {expected} that"
                f" reader.records {self.records} starts from"
            )
        namespaces = set(self.namespaces.values()) or {None}
        if namespace not in namespaces:
            raise UnreadableFile(
                f"{file_name}: the root element {root.tag} is in no namespace the mapping reads"
                f" ({', '.join(sorted(n or '(none)' for n in namespaces))})"
            )


def _split(tag: str) -> tuple[str | None, str]:
    """(namespace, local name) of an lxml tag. Not etree.QName, which refuses a namespace URI
    with braces in it: the parser accepts one, and a name has none."""
    if tag.startswith("{"):
        namespace, local = tag[1:].rsplit("}", 1)
        return namespace, local
    return None, tag


class _Children:
    """Each element's children by tag, the first of each tag (what iterchildren(tag) finds
    first), listed once per element: a record's fields then cost a dictionary lookup each. The
    elements listed are kept alive by the table (so none is mistaken for another), and the
    table is emptied when it grows past a few records' worth."""

    __slots__ = ("known",)
    LIMIT = 256

    def __init__(self) -> None:
        self.known: dict[Any, dict[Any, Any]] = {}

    def of(self, element: Any) -> dict[Any, Any]:
        children = self.known.get(element)
        if children is None:
            if len(self.known) >= self.LIMIT:
                self.known.clear()
            # Last to first, so that the first child of each tag is the one kept.
            children = {child.tag: child for child in element.iterchildren(reversed=True)}
            self.known[element] = children
        return children


def _every_match(tags: tuple[str, ...], attribute: str | None) -> Getter:
    """The texts (or `attribute`s) of every element along `tags`, in document order: what
    iterfind("a/b") finds, walked child by child with iterchildren, which runs in C without
    ElementPath's per-call path handling."""
    if len(tags) == 1:
        (tag,) = tags
        if attribute is None:
            return lambda node: [child.text for child in node.iterchildren(tag)]
        return lambda node: [child.get(attribute) for child in node.iterchildren(tag)]

    def every(node: Any) -> list[Any]:
        found = [node]
        for tag in tags:
            found = [child for parent in found for child in parent.iterchildren(tag)]
        if attribute is None:
            return [element.text for element in found]
        return [element.get(attribute) for element in found]

    return every


class _XmlBatch:
    def __init__(self, reader: XmlReader, file_name: str, found: list[Any]) -> None:
        self.reader = reader
        self.file_name = file_name
        self.found = found
        self.paths = _Paths()
        self.children = _Children()

    def getter(self, ref: str, many: bool) -> Getter:
        return self.reader.getter(ref, many)

    def compiled_getter(self, ref: str, many: bool) -> Getter:
        """What `getter` reads, for a plain child path through each element's children indexed
        once (`_Children`) instead of a walk of the children per field, and for a list of
        matches along a plain child path with iterchildren (`_every_match`); other references
        (XPath) as `getter` reads them."""
        path = _child_path(ref, self.reader.namespaces)
        if path is None or (many and not path[0]):
            return self.reader.getter(ref, many)
        tags, attribute = path
        if many:
            return _every_match(tags, attribute)
        known, children = self.children.known, self.children.of
        if not tags:
            return lambda node: node.get(attribute)
        if len(tags) == 1:
            (tag,) = tags
            if attribute is None:

                def text(node: Any) -> Any:
                    # The commonest field: the table looked up here, indexed on a miss.
                    listed = known.get(node)
                    found = (children(node) if listed is None else listed).get(tag)
                    return None if found is None else found.text

                return text

            def attribute_of(node: Any) -> Any:
                found = children(node).get(tag)
                return None if found is None else found.get(attribute)

            return attribute_of

        def along(node: Any) -> Any:
            for tag in tags:
                node = children(node).get(tag)
                if node is None:
                    return None
            return node.text if attribute is None else node.get(attribute)

        return along

    def _where(self, element: Any) -> str:
        return (
            f"{self.file_name} {self.paths.of(element, indexed=True)} (line {element.sourceline})"
        )

    def records(self) -> Iterator[RawRecord]:
        lines_xpath = self.reader.lines_xpath
        for element in self.found:
            where = self._where(element)
            lines = (
                [line for line in lines_xpath(element) if isinstance(line, etree._Element)]
                if lines_xpath is not None
                else []
            )
            yield RawRecord(
                source=where,
                head=element,
                lines=lines,
                head_source=lambda where=where: where,
                line_source=lambda j, lines=lines: self._where(lines[j]),
                text=lambda element=element: etree.tostring(
                    element, encoding="unicode", with_tail=False
                ),
            )
