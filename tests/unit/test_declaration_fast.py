"""The one-pass reader (bridge.core.declaration_fast) against the full reader, on every
declaration we have: a declaration it reads is one the full reader reads without a problem, into
the same records; and every such declaration (bare or in MetaData) it does read, so that the
comparison covers the corpus and not just the part the one-pass reader happens to accept."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from bridge.core.declaration import (
    _DECLARATION,
    _METADATA,
    Declaration,
    _read_amendments,
    _Reader,
)
from bridge.core.declaration_fast import read_clean
from bridge.core.errors import XmlRefused
from bridge.core.xmlsafe import parse_xml
from bridge.testkit.licences import licences as synthetic_licences
from bridge.testkit.streams import BAD_KINDS, HOSTILE_KINDS, event_stream
from tests.hostile.corpus import declaration_cases

WCO_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "wco-dec-dms"


def _full(root, source: str) -> tuple[Declaration | None, list]:
    """What the full reader makes of `root`: the declaration, and every problem it found
    (those it keeps on the records included)."""
    reader = _Reader(source)
    declaration = reader.read(root)
    problems = list(reader.problems)
    if declaration is not None:
        problems += declaration.problems
        problems += [p for i in declaration.goods_items for d in i.documents for p in d.problems]
    return declaration, problems


def _compare(xml: bytes, source: str) -> str:
    """Both readers over `xml`; which path it took ("fast", "full" or "refused")."""
    try:
        root = parse_xml(xml)
    except XmlRefused:
        return "refused"
    fast = read_clean(root, source, amendments=_read_amendments)
    full, problems = _full(parse_xml(xml), source)
    if fast is not None:
        assert not problems, f"{source}: read in one pass, but the full reader finds {problems}"
        assert fast == full, source
        # repr too: equal Decimals may be written differently (5 and 5.0), and must not be.
        assert repr(fast) == repr(full), source
        return "fast"
    # Only a wrapper, or a declaration with something to report, is left to the full reader.
    assert root.tag not in (_METADATA, _DECLARATION) or problems or full is None, (
        f"{source}: the full reader finds nothing wrong, yet the one-pass reader gave up"
    )
    return "full"


def _payloads(messages: Iterator[bytes]) -> Iterator[bytes]:
    for data in messages:
        try:
            payload = json.loads(data).get("payload")
            yield payload.encode("utf-8")
        except (ValueError, AttributeError, UnicodeEncodeError, RecursionError):
            continue


def test_the_generated_streams_read_the_same_in_one_pass():
    licences = list(synthetic_licences(300, seed=5, scale=1000))
    paths: dict[str, int] = {}
    for seed, minimal in ((1, False), (2, True)):
        stream = event_stream(
            licences,
            400,
            seed=seed,
            minimal=minimal,
            duplicates=0.05,
            reorder=0.05,
            amendments=0.2,
            invalidations=0.05,
            bad=0.1,
            bad_kinds=BAD_KINDS + HOSTILE_KINDS,
        )
        for number, xml in enumerate(_payloads(e.envelope for e in stream)):
            path = _compare(xml, f"stream {seed}/{number}")
            paths[path] = paths.get(path, 0) + 1
    # The valid releases, amendments and cancellations, at least, go the fast way.
    assert paths["fast"] >= 600, paths
    assert paths.get("full", 0) + paths.get("refused", 0) > 0, paths


def test_the_hostile_corpus_reads_the_same_in_one_pass(tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("SECRET")
    cases = declaration_cases(
        WCO_SAMPLES / "samples", canary=canary, listener_url="http://127.0.0.1:9/never"
    )
    paths: dict[str, int] = {}
    for case in cases:
        for xml in _payloads([case.data]):
            path = _compare(xml, case.name)
            paths[path] = paths.get(path, 0) + 1
    assert paths["fast"] > 0 and paths["full"] > 50, paths


def _samples() -> list[Path]:
    return sorted((WCO_SAMPLES / "samples").rglob("*.xml"))


@pytest.mark.parametrize("sample", _samples(), ids=lambda path: path.name)
def test_every_change_to_a_wco_sample_reads_the_same_in_one_pass(sample: Path):
    """Each element of the sample's declaration removed, repeated, or its text replaced by
    blanks, padding, zero, a negative, a decimal, a comma, letters, a CDATA section: every
    variant goes through both readers."""
    base = parse_xml(sample.read_bytes())
    assert _compare(etree.tostring(base), sample.name) == "fast"
    texts = ("", "  ", None, "0", "-1", "1.5", "1,5", "X", "00007", "1234567890123456789")
    count = 0
    for index, element in enumerate(base.iter()):
        if element is base:
            continue
        for change in ("remove", "repeat", *range(len(texts)), "cdata", "padded"):
            root = copy.deepcopy(base)
            target = list(root.iter())[index]
            parent = target.getparent()
            if change == "remove":
                parent.remove(target)
            elif change == "repeat":
                twin = copy.deepcopy(target)
                if twin.text and twin.text.strip():
                    twin.text = twin.text.strip() + "9"
                target.addnext(twin)
            elif change == "cdata":
                if len(target) or not target.text:
                    continue
                target.text = etree.CDATA(target.text)
            elif change == "padded":
                if len(target) or not target.text:
                    continue
                target.text = f"\n\t {target.text} \t"
            else:
                if len(target):
                    continue
                target.text = texts[change]
            _compare(etree.tostring(root), f"{sample.name}/{index}/{change}")
            count += 1
    assert count > 100
