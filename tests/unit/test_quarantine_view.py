"""The operator's view of a quarantined message: what of a broken envelope can be read, and
nothing a terminal would obey."""

from __future__ import annotations

import json

from bridge.core.declaration_header import event_kind, read_header
from bridge.core.envelope import EventKind
from bridge.core.quarantine_view import preview, read_envelope_members, safe_text
from tests.conftest import WCO_SAMPLES


def test_event_kind_follows_function_and_type_codes():
    assert event_kind("9", "EXA") is EventKind.RELEASED
    assert event_kind("13", "INV") is EventKind.INVALIDATED
    assert event_kind("13", "COR") is EventKind.AMENDED
    assert event_kind("13", None) is EventKind.AMENDED
    assert event_kind("1", None) is None and event_kind(None, "INV") is None


def test_the_header_of_real_samples_is_read_bare_or_in_metadata():
    cancellation = read_header(
        (WCO_SAMPLES / "TT_EX010a_Cancellation.xml").read_bytes(), max_bytes=10**6
    )
    assert cancellation is not None
    assert (cancellation.event, cancellation.mrn) == (EventKind.INVALIDATED, "24GBDIRIGZ7QLCPAA8")
    amendment = WCO_SAMPLES / "amendments" / "TT_Add_Item_Scenario_Step2_Amendment.xml"
    header = read_header(amendment.read_bytes(), max_bytes=10**6)
    assert (header.function_code, header.type_code, header.country) == ("13", "COR", "GB")
    assert read_header(b"<Declaration>not closed", max_bytes=10**6) is None
    assert read_header(b"<other/>", max_bytes=10**6) is None


def test_members_are_read_only_with_their_contract_types():
    payload = json.dumps(
        {
            "message_id": "m-1\u202e",
            "mrn": 42,
            "event": "released",
            "declaration_version": True,
            "payload": (WCO_SAMPLES / "TT_EX010a_Cancellation.xml").read_text(),
        }
    ).encode()
    view = read_envelope_members(payload, max_bytes=len(payload))
    assert view.message_id == "m-1\\u202e"  # the bidirectional override shown, not obeyed
    assert view.mrn is None and view.declaration_version is None
    assert view.best_mrn == "24GBDIRIGZ7QLCPAA8"  # from the declaration's ID
    assert read_envelope_members(payload, max_bytes=10).message_id is None
    assert read_envelope_members(b"[1, 2]", max_bytes=100).message_id is None


def test_safe_text_and_preview_escape_what_a_terminal_would_act_on():
    assert safe_text("a\x1b[2Jb\x00\ud800", 100) == "a\\x1b[2Jb\\x00\\ud800"
    assert safe_text("line\nnext", 100) == "line\\nnext"
    assert safe_text("line\nnext", 100, multiline=True) == "line\nnext"
    assert safe_text("abcdef", 3) == "abc…"
    shown = preview(b"\xff\xfe<x>" + b"y" * 50, chars=10)
    # Invalid UTF-8 as escapes (each counts as the characters it shows), cut, and said so.
    assert shown == "\\xff\\xfe<x…\n(the first 10 characters of 55 bytes)"
    assert preview(b"short") == "short"
