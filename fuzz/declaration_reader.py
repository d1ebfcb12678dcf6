"""Fuzz target: the declaration event reader, bytes in.

Each input is read three ways: as an MQTT message (bridge.core.envelope.read_event, which runs
parse_envelope and then the WCO reader on the payload), as a bare WCO DEC-DMS declaration
(bridge.core.declaration.read_declaration), and, when it is UTF-8, as the payload of a well-formed
`released` envelope (so the checks between envelope and declaration run on it too). Whatever
reads is then handed to the write-off rules (bridge.core.writeoff.decide) against a ledger holding
the licences the samples quote, and the result is checked: no line of a licence with a ceiling
is written off beyond it.

Only the documented errors may escape a reader: the BridgeError family (errors.Rejected,
errors.XmlRefused, ...). Any other exception, and any broken check, is a finding: atheris
prints the traceback and writes the input to the artifact prefix. Checked besides: what the
ledger will store of a message (the message id of one that reads, every problem of one that
does not) must be text every ledger database can store (UTF-8 encodable, no NUL; the message
id has no control character at all), and a declaration version must fit the ledger's integers.

    python -m fuzz.declaration_reader --write-seeds build/fuzz/declaration/corpus
    python -m fuzz.declaration_reader -max_total_time=60 build/fuzz/declaration/corpus
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import atheris

with atheris.instrument_imports(include=["bridge"]):
    from bridge.core.declaration import read_declaration
    from bridge.core.envelope import build_envelope, mrn_from_lrn, read_event
    from bridge.core.errors import BridgeError, Rejected
    from bridge.core.writeoff.batch import decide
    from bridge.core.writeoff.decision import LedgerSnapshot

from bridge.testkit.amendments import as_amendment
from bridge.testkit.sample_licences import TT_EX010A_MRN, sample_licences
from fuzz import Known, declaration_samples, run, signature

MAX_BYTES = 2 * 1024 * 1024  # the consumer's default (Settings.max_message_bytes)
EVENT_TIME = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
WRAP_MRN = TT_EX010A_MRN
DOCUMENTED = (BridgeError,)
# Tokens libFuzzer splices into inputs (scripts/fuzz.sh passes them with -dict): what byte
# flips rarely reach on their own, such as JSON escapes and markup declarations.
DICTIONARY = (
    '"message_id"',
    '"declaration_version"',
    '"event_time"',
    '"payload"',
    '"country"',
    '"invalidated"',
    '"amended"',
    "\\ud800",
    "\\udfff",
    "\\u0000",
    "\\n",
    "1e400",
    "NaN",
    "-Infinity",
    "9223372036854775808",
    "<!DOCTYPE",
    "<!ENTITY",
    "&#x0;",
    ' encoding="UTF-7"',
    "+ADw-",
    "<![CDATA[",
    "</QuantityQuantity>",
    'unitCode="',
    'currencyID="',
    "<SequenceNumeric>",
    "<LineNumeric>",
    "<CategoryCode>X</CategoryCode>",
    "<TypeCode>INV</TypeCode>",
    "<FunctionCode>13</FunctionCode>",
    "2026-02-29T10:00:00+24:00",
)


class Finding(AssertionError):
    """A check on what the reader and the rules produced failed."""


# The licences the sample declarations write off against, small enough that over-use happens.
LICENCES = {licence.number: licence for licence in sample_licences()}
SNAPSHOT = LedgerSnapshot(licences=LICENCES)


def _check_rules(events: list) -> None:
    """The rules must cope with anything the reader lets through, and never overdraw."""
    decision = decide(events, SNAPSHOT)
    used: dict[tuple[str, int], Decimal] = {}
    for movement in decision.movements:
        if movement.licence_number not in LICENCES:
            raise Finding(f"a movement on a licence the ledger does not hold: {movement}")
        if not movement.quantity.is_finite() or not movement.value.is_finite():
            raise Finding(f"a movement that is not a finite number: {movement}")
        key = (movement.licence_number, movement.line_number)
        used[key] = used.get(key, Decimal(0)) + movement.quantity
    for (number, line_number), quantity in used.items():
        line = LICENCES[number].line(line_number)
        if line is None or (line.quantity is not None and quantity > line.quantity):
            raise Finding(f"{number} line {line_number} written off {quantity}, over its ceiling")


# Findings pinned by a strict xfail test, reported once instead of stopping the run. Empty:
# the payload's lone surrogate (UnicodeEncodeError out of read_event) is fixed, and its input is
# a case of the hostile corpus.
KNOWN = Known({})
# What the ledger's integer columns hold (declaration versions; PostgreSQL `integer`).
LEDGER_INTEGER = 2**31 - 1


def _storable(kind: str, what: str, text: str | None, *, key: bool = False) -> None:
    """`text` must be what every ledger database stores as text: UTF-8 encodable (no lone
    surrogates) and, for PostgreSQL, without NUL; a key (the message id) holds no control
    character at all."""
    if text is None:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        if not KNOWN.tolerated(kind, f"{what}: {error}"):
            raise Finding(f"{what} cannot be stored as UTF-8 text: {error}") from None
    bad = _KEY_CONTROL if key else _NUL
    if bad.search(text) and not KNOWN.tolerated(kind, f"{what}: {text!r}"):
        raise Finding(f"{what} holds a character the ledger cannot store as it is: {text!r}")


_NUL = re.compile("\x00")
_KEY_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _read(reader, data: bytes, **options):
    """`reader(data)`, or None when it refuses in a documented way (or a known finding)."""
    try:
        return reader(data, **options)
    except Rejected as rejected:
        for problem in rejected.problems:  # the quarantine's reason: str() of each
            _storable("problem-not-text", "a problem", str(problem))
    except DOCUMENTED:
        pass
    except Exception as error:
        if not KNOWN.tolerated(signature(error), repr(error)[:300]):
            raise
    return None


def one_input(data: bytes) -> None:
    """Read `data` every way the bridge may meet it; only documented errors may escape."""
    events = []
    event = _read(read_event, data, max_bytes=MAX_BYTES, source="fuzz")
    if event is not None:
        _storable("message-id-not-text", "the message id", event.message_id, key=True)
        if not 1 <= event.version <= LEDGER_INTEGER:
            raise Finding(f"declaration_version {event.version} does not fit the ledger")
        events.append(event)
    _read(read_declaration, data, max_bytes=MAX_BYTES, source="fuzz")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and len(data) <= MAX_BYTES:
        message = build_envelope(
            message_id="fuzz-wrapped",
            mrn=WRAP_MRN,
            event="released",
            event_time=EVENT_TIME,
            payload=text,
        )
        event = _read(read_event, message, max_bytes=MAX_BYTES * 2, source="fuzz")
        if event is not None:
            events.append(event)
    if events:
        _check_rules(events)


def seeds() -> Iterator[tuple[str, bytes]]:
    """The real sample declarations, bare and as the events the publisher would send."""
    folder = declaration_samples()
    files = sorted(folder.glob("*.xml"))
    if not files:
        raise SystemExit(f"no sample declarations in {folder} (set ELBRIDGE_DECLARATION_SAMPLES)")
    for path in files:
        xml = path.read_bytes()
        yield f"bare-{path.stem}.xml", xml
        cancellation = b"<TypeCode>INV</TypeCode>" in xml
        event = "invalidated" if cancellation else "released"
        mrn = WRAP_MRN if b"TT_EX010" in path.name.encode() or cancellation else None
        mrn = mrn or mrn_from_lrn(path.stem, year=26, country="GB")
        message = build_envelope(
            message_id=f"{mrn}-{event}-v1",
            mrn=mrn,
            event=event,
            event_time=EVENT_TIME,
            payload=xml,
        )
        yield f"event-{path.stem}.json", message
        # The same message as a sender escaping every non-ASCII character would write it.
        yield f"ascii-{path.stem}.json", json.dumps(json.loads(message)).encode("ascii")
        if not cancellation:
            yield (
                f"amended-{path.stem}.json",
                build_envelope(
                    message_id=f"{mrn}-amended-v2",
                    mrn=mrn,
                    event="amended",
                    event_time=EVENT_TIME,
                    declaration_version=2,
                    # An amendment as customs send it: FunctionCode 13, TypeCode COR.
                    payload=as_amendment(xml),
                    country="GB",
                ),
            )


if __name__ == "__main__":
    raise SystemExit(run(sys.argv, one_input, seeds))
