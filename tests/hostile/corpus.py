"""The hostile-input corpus: generated cases for the three kinds of outside input, each with
the fate it must meet and the reason it must be given.

- Declaration events (MQTT envelope + WCO DEC-DMS payload), built from the real sample
  declarations (TT_EX004a, TT_EX010a, read from the shared fixtures, mutated with lxml and as
  bytes): `declaration_cases`. Fates: QUARANTINED (with reason and problem code), REFUSED (a
  readable declaration whose every write-off breaks a rule: refusal code), IGNORED.
- National licence records in the three formats of mappings/*.yaml: `national_record_cases`
  (a record among valid neighbours: REJECTED into the rejects store with a reason) and
  `national_file_cases` (a file that cannot be read at all: UNREADABLE with its reason).
- SOAP answers to the bridge's zeep client: `soap_cases` (DELIVERY_ERROR with code, transient
  flag and reason), served by a hostile HTTP server of the test's own.

Cases of bugs found and fixed stay in the corpus as ordinary cases: each must meet its fate like
any other. Every case is deterministic: the same corpus each run."""

from __future__ import annotations

import base64
import codecs
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from lxml import etree

from bridge.core.model import Licence
from bridge.testkit.envelopes import (
    ENVELOPE_MEMBERS,
    REQUIRED_MEMBERS,
    dump_envelope,
    dump_members,
    envelope_document,
    with_member_twice,
)
from bridge.testkit.sample_licences import sample_licences

DEC_NS = "urn:wco:datamodel:WCO:DEC-DMS:2"
METADATA_NS = "urn:wco:datamodel:WCO:DocumentMetaData-DMS:2"
RELEASED_AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
# Far past any write-off the corpus's valid events make: the valid ones never run out.
CEILING = Decimal(1_000_000)
VALUE_CEILING = Decimal(1_000_000_000)
# What the entities point at: a file holding a secret, a local URL. Neither may ever be read.
SECRET = "elbridge-hostile-canary-7d1f0b"
PASSWD = "file:///etc/passwd"
DISCARD_URL = "http://127.0.0.1:9/x"


class Fate(StrEnum):
    QUARANTINED = "quarantined"  # stored byte for byte in quarantine with every reason
    REFUSED = "refused"  # readable; every write-off refused (refusal table), nothing moves
    IGNORED = "ignored"  # readable; nothing in it concerns a dual-use licence
    REJECTED = "rejected"  # a national record kept in the rejects store
    UNREADABLE = "unreadable"  # a national file that cannot be read at all
    DELIVERY_ERROR = "delivery-error"  # a SOAP answer the client turns into a DeliveryError


def _d(name: str) -> str:
    return f"{{{DEC_NS}}}{name}"


# ============================================================================ declarations


@dataclass(frozen=True)
class DeclarationCase:
    name: str  # family/variant, unique
    data: bytes  # the MQTT message, as published
    fate: Fate
    reason: str  # a substring of the quarantine reason, or of the refusal's reason
    code: str | None = None  # a problem code (quarantine) or the refusal code
    message_id: str | None = None  # for readable cases: where the outcome is recorded

    @property
    def family(self) -> str:
        return self.name.split("/", 1)[0]


def hostile_licences() -> list[Licence]:
    """The licences the sample declarations write off against, with ceilings far beyond what
    the valid events use, values in GBP (so that currencies are checked) and the samples'
    holders and destinations."""
    return sample_licences(quantity=CEILING, value=VALUE_CEILING, currency="GBP")


# What one valid release of each base sample writes off (licence, line) -> KGM.
WRITES_OFF = {
    "TT_EX004a": {
        ("GBSIEXYK3ZZZ-0001", 1): Decimal(5),
        ("GBSIEXYK3ZZZPADR-0002", 1): Decimal(102),
        ("GBSIEXYK3ZZZ-0001", 2): Decimal(5),
    },
    "TT_EX010a": {("GBSIEE2E350001-0001", 1): Decimal(10)},
}


def mrn(tag: str, number: int) -> str:
    """A well-formed MRN of the corpus: 26GB, then 4 letters of `tag` and 10 digits."""
    return f"26GB{(tag.upper() + 'XXXX')[:4]}{number:010d}"


class _Declarations:
    """The base declarations and how to mutate them."""

    def __init__(self, samples: Path) -> None:
        parser = etree.XMLParser(remove_comments=True, resolve_entities=False, no_network=True)
        self.trees = {
            name: etree.parse(str(samples / f"{name}.xml"), parser).getroot()
            for name in ("TT_EX004a", "TT_EX010a", "TT_EX010a_Cancellation")
        }
        self.original = (samples / "TT_EX004a.xml").read_bytes()  # comments and all

    def copy(self, name: str = "TT_EX004a") -> etree._Element:
        return etree.fromstring(etree.tostring(self.trees[name]))

    def text(self, name: str = "TT_EX004a") -> str:
        return etree.tostring(self.trees[name], encoding="unicode")


def _xml(root: etree._Element) -> str:
    return etree.tostring(root, encoding="unicode")


def _all(root: etree._Element, path: str) -> list[etree._Element]:
    return root.findall(path, {"d": DEC_NS})


def _writeoff_documents(root: etree._Element) -> list[etree._Element]:
    return [
        doc for doc in _all(root, ".//d:AdditionalDocument") if doc.find(_d("WriteOff")) is not None
    ]


def _quantities(root: etree._Element) -> list[etree._Element]:
    return _all(root, ".//d:WriteOff/d:QuantityQuantity")


def valid_events(samples: Path, count: int, *, start: int = 0) -> list[tuple[str, bytes]]:
    """`count` valid releases (alternately of TT_EX004a and TT_EX010a) as (base sample, bytes),
    each with an MRN and message id of its own."""
    base = _Declarations(samples)
    texts = {name: base.text(name) for name in WRITES_OFF}
    events = []
    for number in range(start, start + count):
        name = "TT_EX004a" if number % 2 == 0 else "TT_EX010a"
        events.append(
            (
                name,
                dump_envelope(
                    envelope_document(
                        message_id=f"valid-{number:05d}",
                        mrn=mrn("GOOD", number),
                        payload=texts[name],
                    )
                ),
            )
        )
    return events


@dataclass
class _Builder:
    """Collects declaration cases, giving each an MRN and message id of its own."""

    base: _Declarations
    cases: list[DeclarationCase] = field(default_factory=list)

    def next_ids(self) -> tuple[str, str]:
        number = len(self.cases)
        return f"hostile-{number:05d}", mrn("EVIL", number)

    def raw(self, name: str, data: bytes, reason: str, code: str | None = None, **extra) -> None:
        """A message given as bytes: it must be quarantined."""
        self.cases.append(DeclarationCase(name, data, Fate.QUARANTINED, reason, code, **extra))

    def message(
        self,
        name: str,
        change: Callable[[dict[str, Any]], Any] | None = None,
        *,
        payload: str | None = None,
        fate: Fate = Fate.QUARANTINED,
        reason: str,
        code: str | None = None,
        dump: Callable[[Any], bytes] = dump_envelope,
    ) -> None:
        """An envelope around `payload` (default: TT_EX004a as is), changed by `change`."""
        message_id, mrn_ = self.next_ids()
        document = envelope_document(
            message_id=message_id,
            mrn=mrn_,
            payload=self.base.text() if payload is None else payload,
        )
        if change is not None:
            replaced = change(document)
            if replaced is not None:
                document = replaced
        readable = fate in (Fate.REFUSED, Fate.IGNORED)
        self.cases.append(
            DeclarationCase(
                name,
                dump(document),
                fate,
                reason,
                code,
                message_id if readable else None,
            )
        )


def _set(member: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document[member] = value

    return change


def _drop(member: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document.pop(member, None)

    return change


def _envelope_cases(b: _Builder) -> None:
    # --- not JSON, not an object
    for number, data in enumerate(
        [
            b"",
            b" ",
            b"\n\n",
            b"not json at all",
            b"<md:MetaData/>",
            b"{",
            b"}",
            b'{"envelope": ',
            b"{'envelope': 'elbridge.declaration-event/1'}",
            b'{"envelope": "elbridge.declaration-event/1",}',
            b"\xef\xbb\xbf{}",  # a byte order mark before the object
            b"{} {}",
            b'{"a": 1} trailing',
            b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the recursion limit
            b'{"x":' * 50_000 + b"1" + b"}" * 50_000,
            b'{"envelope": NaN',
            b"\x00" * 64,
            b"\x1b[31mred\x1b[0m",
        ]
    ):
        b.raw(f"not-json/{number}", data, "is not a JSON document", "bad-envelope")
    for number, data in enumerate(
        [
            b"null",
            b"true",
            b"123",
            b"-1e400",
            b"NaN",
            b'"a string"',
            b"[]",
            b"[1, 2, 3]",
            b'[{"a": 1}]',
        ]
    ):
        b.raw(f"not-an-object/{number}", data, "not an object", "bad-envelope")

    # --- invalid UTF-8: in the envelope's text, in the payload, and other encodings
    valid = dump_envelope(
        envelope_document(message_id="x", mrn=mrn("UTF8", 0), payload=b.base.text())
    )
    middle = valid.index(b"<GoodsShipment>") + 5
    bad_sequences = [
        b"\xff",
        b"\xfe",
        b"\xc3\x28",  # a lead byte without its continuation
        b"\xa0\xa1",  # continuation bytes alone
        b"\xe2\x28\xa1",
        b"\xf0\x28\x8c\x28",
        b"\xc0\xaf",  # an overlong "/"
        b"\xed\xa0\x80",  # an encoded surrogate
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        b"\xf8\x88\x80\x80\x80",  # a five-byte sequence
    ]
    for number, bad in enumerate(bad_sequences):
        for where, at in (("start", 1), ("message-id", valid.index(b'"x"') + 1), ("xml", middle)):
            data = valid[:at] + bad + valid[at:]
            # (an encoded surrogate in the message id once stopped the consumer: the id hint
            # read the bytes with json.loads, which lets surrogates through)
            b.raw(f"invalid-utf8/{where}-{number}", data, "is not UTF-8", "bad-envelope")
    text = valid.decode("utf-8")
    for encoding, reason in (
        ("utf-16", "is not UTF-8"),
        ("utf-32", "is not UTF-8"),
        ("cp037", "is not UTF-8"),
        # Without a byte order mark these decode as UTF-8 (NUL bytes): not JSON then.
        ("utf-16-le", "is not a JSON document"),
        ("utf-16-be", "is not a JSON document"),
    ):
        b.raw(f"other-encoding/{encoding}", text.encode(encoding), reason, "bad-envelope")
    latin = text.replace("Sniper", "Präzisions").encode("latin-1")
    b.raw("other-encoding/latin-1", latin, "is not UTF-8", "bad-envelope")

    # --- duplicate members (each one in turn)
    for member in ENVELOPE_MEMBERS:
        b.message(
            f"duplicate-member/{member}",
            lambda document, member=member: with_member_twice(document, member),
            reason=f"member '{member}' appears twice",
            code="bad-envelope",
            dump=dump_members,
        )

    # --- wrong types for every member
    wrong_values: dict[str, Any] = {
        "int": 42,
        "float": 1.5,
        "huge-float": 1e308,
        "bool": True,
        "null": None,
        "list": ["released"],
        "object": {"value": "released"},
    }
    expected_reason = {
        "envelope": "envelope must be",
        "message_id": "message_id must be a non-empty string",
        "mrn": "mrn must be a string",
        "event": "event must be one of",
        "event_time": "event_time must be an ISO 8601",
        "declaration_version": "declaration_version must be a whole number from 1",
        "payload_format": "payload_format must be",
        "payload": "payload",
        "country": "country",
    }
    # Without event (absent or null) the bridge takes it from the payload: TT_EX004a is an
    # original declaration (released), read and checked; its licences made unknown here, so
    # that it writes nothing off.
    unknown_licences = (
        b.base.text()
        .replace("GBSIEXYK3ZZZPADR-0002", "GB-NOT-A-LICENCE-1")
        .replace("GBSIEXYK3ZZZ-0001", "GB-NOT-A-LICENCE-2")
    )
    for member, reason in expected_reason.items():
        for kind, value in wrong_values.items():
            if member == "event" and kind == "null":
                b.message(
                    "wrong-type/event-null",
                    _set(member, value),
                    payload=unknown_licences,
                    fate=Fate.REFUSED,
                    reason="is not in the ledger",
                    code="licence-unknown",
                )
                continue
            if member == "payload" and kind == "null":
                reason_here = "carries the declaration in payload"
            elif member == "country" and kind == "null":
                continue  # an absent country is allowed
            elif member == "declaration_version" and kind == "int":
                value = -42
                reason_here = reason
            else:
                reason_here = reason
            b.message(
                f"wrong-type/{member}-{kind}",
                _set(member, value),
                reason=reason_here,
                code="bad-envelope",
            )
    # Numbers JSON can write but nothing can hold.
    for number, literal in enumerate([b"1e400", b"-1e400", b"9" * 5000, b"1" + b"0" * 4400]):
        message_id, mrn_ = b.next_ids()
        document = envelope_document(message_id=message_id, mrn=mrn_, payload=b.base.text())
        document["declaration_version"] = "@@"
        data = dump_envelope(document).replace(b'"@@"', literal)
        reason = "is not a JSON document" if len(literal) > 4300 else "declaration_version"
        b.raw(f"huge-number/{number}", data, reason, "bad-envelope")

    # --- missing members
    for member in REQUIRED_MEMBERS:
        if member == "event":
            continue  # optional now: below
        reason = expected_reason[member]
        if member == "payload":
            reason = "a released event carries the declaration in payload"
        b.message(f"missing-member/{member}", _drop(member), reason=reason, code="bad-envelope")
    b.message(
        "missing-member/event",
        _drop("event"),
        payload=unknown_licences,
        fate=Fate.REFUSED,
        reason="is not in the ledger",
        code="licence-unknown",
    )
    b.message(
        "missing-member/event-and-payload",
        lambda d: {k: v for k, v in d.items() if k not in ("event", "payload")},
        reason="without event, the message carries the declaration in payload",
        code="bad-envelope",
    )
    b.message("missing-member/all", lambda _: {}, reason="envelope must be", code="bad-envelope")

    # --- wrong values
    for value in (
        "elbridge.declaration-event/2",
        "elbridge.declaration-event/1 ",
        "ELBRIDGE.DECLARATION-EVENT/1",
        "",
        "elbridge.declaration-event",
    ):
        b.message(
            f"wrong-envelope/{value or 'empty'}",
            _set("envelope", value),
            reason="envelope must be",
            code="bad-envelope",
        )
    for value in ("wco-dec-dms-3", "WCO-DEC-DMS-2", "ubl-2.1", "", "wco-dec-dms-2\u0000"):
        b.message(
            f"wrong-payload-format/{value.encode('unicode_escape').decode() or 'empty'}",
            _set("payload_format", value),
            reason="payload_format must be",
            code="bad-envelope",
        )
    for value in (
        "RELEASED",
        "release",
        "cancelled",
        "deleted",
        "",
        " released",
        "released\u200b",
        "r\u0435leased",  # a Cyrillic e
        "accepted",
        "amended;invalidated",
    ):
        b.message(
            f"unknown-event/{value.encode('unicode_escape').decode() or 'empty'}",
            _set("event", value),
            reason="event must be one of",
            code="bad-envelope",
        )
    for value in (
        "",
        "24GBDIRIGZ7QLCPAA",  # 17 characters
        "24GBDIRIGZ7QLCPAA88",  # 19
        "24gbdirigz7qlcpaa8",
        "2AGBDIRIGZ7QLCPAA8",
        "24G1DIRIGZ7QLCPAA8",
        "24GBDIRIGZ7QLCPA-8",
        "24GB DIRIGZ7QLCPA8",
        "\uff12\uff14GBDIRIGZ7QLCPAA8",  # full-width digits
        "24GBDIRIGZ7QLCPAA8\n",
        "24GBDIRIGZ7QLCPA\u00c48",
        "' OR 1=1 --",
    ):
        b.message(
            f"bad-mrn/{value.encode('unicode_escape').decode() or 'empty'}",
            _set("mrn", value),
            reason="an MRN is 18 characters",
            code="bad-envelope",
        )
    impossible_times = {
        "2026-02-30T10:00:00Z": "is not an ISO 8601",
        "2026-02-29T10:00:00Z": "is not an ISO 8601",  # 2026 is not a leap year
        "2026-13-01T10:00:00Z": "is not an ISO 8601",
        "2026-00-10T10:00:00Z": "is not an ISO 8601",
        "2026-03-32T10:00:00Z": "is not an ISO 8601",
        "2026-03-02T24:00:01Z": "is not an ISO 8601",
        "2026-03-02T10:61:00Z": "is not an ISO 8601",
        "2026-03-02T10:00:00+25:00": "is not an ISO 8601",
        "0000-01-01T00:00:00Z": "is not an ISO 8601",
        "10000-01-01T00:00:00Z": "is not an ISO 8601",
        "yesterday": "is not an ISO 8601",
        "": "is not an ISO 8601",
        "2026-03-02 10:00": "must carry its zone",
        "2026-03-02T10:00:00": "must carry its zone",
        "2026-03-02": "must carry its zone",
        "\uff12\uff10\uff12\uff16-03-02T10:00:00Z": "is not an ISO 8601",
    }
    for value, reason in impossible_times.items():
        b.message(
            f"impossible-event-time/{value.encode('unicode_escape').decode() or 'empty'}",
            _set("event_time", value),
            reason=reason,
            code="bad-envelope",
        )
    b.message(
        "impossible-event-time/number",
        _set("event_time", 1772443800),
        reason="event_time must be an ISO 8601",
        code="bad-envelope",
    )
    for value in (0, -1, "1", "one", 1.0, 2.5, [], False):
        b.message(
            f"bad-version/{json.dumps(value)}",
            _set("declaration_version", value),
            reason="declaration_version must be a whole number from 1",
            code="bad-envelope",
        )
    for value in ("XX", "gb", "GBR", "", "G", "EU", "UK"):
        b.message(
            f"bad-country/{value or 'empty'}",
            _set("country", value),
            reason="",
            code="bad-envelope",
        )
    b.message(
        "country-mismatch/DE",
        _set("country", "DE"),
        reason="is not the declaration's ResponsibleCountryCode GB",
        code="country-mismatch",
    )
    b.message(
        "message-id-too-long/201",
        _set("message_id", "m" * 201),
        reason="message_id is longer than 200 characters",
        code="bad-envelope",
    )
    b.message(
        "message-id-blank/spaces",
        _set("message_id", "   "),
        reason="message_id must be a non-empty string",
        code="bad-envelope",
    )
    # Several problems at once: every one is reported, not only the first.
    b.message(
        "many-problems/all-wrong",
        lambda d: {**d, "envelope": "x", "mrn": "y", "event": "z", "event_time": "w"},
        reason="an MRN is 18 characters",
        code="bad-envelope",
    )


def _payload_cases(b: _Builder, canary: Path, listener_url: str) -> None:
    base = b.base
    text = base.text()
    body = text[text.index("<md:WCODataModelVersionCode") :]
    head = text[: text.index("<md:WCODataModelVersionCode")]
    file_urls = [PASSWD, canary.as_uri()]
    urls = [DISCARD_URL, listener_url]

    # --- external entities: a file, a URL; general and parameter entities, placed where the
    # reader would pick the value up (exporter, licence reference, quantity, description).
    targets = [*file_urls, *urls]
    places = [
        ("exporter", "<ID>GB896458895015</ID>", "<ID>&xxe;</ID>"),
        ("reference", "<ID>GBSIEXYK3ZZZPADR-0002</ID>", "<ID>&xxe;</ID>"),
        ("quantity", ">102.00</QuantityQuantity>", ">&xxe;</QuantityQuantity>"),
        ("description", "<Description>Sniper", "<Description>&xxe;"),
    ]
    for target_number, target in enumerate(targets):
        for place, old, new in places:
            doctype = f'<!DOCTYPE md:MetaData [<!ENTITY xxe SYSTEM "{target}">]>\n'
            payload = doctype + text.replace(old, new, 1)
            b.message(
                f"xxe/{place}-{target_number}",
                payload=payload,
                reason="declares a DTD or entities",
                code="xml-refused",
            )
        parameter = f'<!DOCTYPE md:MetaData [<!ENTITY % p SYSTEM "{target}"> %p;]>\n' + text
        b.message(
            f"xxe/parameter-entity-{target_number}",
            payload=parameter,
            reason="declares a DTD or entities",
            code="xml-refused",
        )
        external = f'<!DOCTYPE md:MetaData SYSTEM "{target}">\n' + text
        b.message(
            f"external-dtd/{target_number}",
            payload=external,
            reason="declares a DTD or entities",
            code="xml-refused",
        )
        public = f'<!DOCTYPE md:MetaData PUBLIC "-//X//Y" "{target}">\n' + text
        b.message(
            f"external-dtd/public-{target_number}",
            payload=public,
            reason="declares a DTD or entities",
            code="xml-refused",
        )
        # XInclude is not processed: the exporter then has no EORI, and its write-offs are
        # refused for it (the target is never read).
        xinclude = text.replace(
            "<ID>GB896458895015</ID>",
            f'<ID><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{target}"'
            ' parse="text"/></ID>',
            1,
        )
        b.message(
            f"xinclude/{target_number}",
            payload=xinclude,
            fate=Fate.REFUSED,
            reason="names no exporter",
            code="missing-exporter",
        )
        # A stylesheet processing instruction and a schemaLocation are never fetched; the
        # declaration stays readable, so the licence it quotes is made unknown.
        located = head.replace("../DocumentMetaData_2_DMS.xsd", target) + body.replace(
            "GBSIEXYK3ZZZPADR-0002", "GB-NOT-A-LICENCE-1"
        ).replace("GBSIEXYK3ZZZ-0001", "GB-NOT-A-LICENCE-2")
        located = f'<?xml-stylesheet type="text/xsl" href="{target}"?>' + located
        b.message(
            f"schema-location/{target_number}",
            payload=located,
            fate=Fate.REFUSED,
            reason="is not in the ledger",
            code="licence-unknown",
        )

    # --- a DTD hidden from a byte scan by a UTF-7 encoding declaration
    def utf7(markup: str) -> str:
        return "".join(
            c
            if c.isalnum() or c in " :/.-_"
            else "+" + base64.b64encode(c.encode("utf-16-be")).decode().rstrip("=") + "-"
            for c in markup
        )

    for number, target in enumerate(targets):
        hidden = utf7(f'<!DOCTYPE md:MetaData [<!ENTITY xxe SYSTEM "{target}">]>')
        payload = (
            '<?xml version="1.0" encoding="UTF-7"?>'
            + hidden
            + text.replace("<ID>GB896458895015</ID>", "<ID>&xxe;</ID>", 1)
        )
        b.message(
            f"utf7-dtd/{number}",
            payload=payload,
            reason="declares a DTD or entities",
            code="xml-refused",
        )
    hidden = utf7('<!DOCTYPE md:MetaData [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>')
    b.message(
        "utf7-dtd/bomb",
        payload='<?xml version="1.0" encoding="UTF-7"?>'
        + hidden
        + text.replace("<Description>Sniper", "<Description>&b;", 1),
        reason="declares a DTD or entities",
        code="xml-refused",
    )

    # --- entity expansion bombs
    for depth in range(2, 11):
        entities = ['<!ENTITY lol0 "lol">']
        for level in range(1, depth + 1):
            refs = f"&lol{level - 1};" * 10
            entities.append(f'<!ENTITY lol{level} "{refs}">')
        bomb = f"<!DOCTYPE md:MetaData [{''.join(entities)}]>\n" + text.replace(
            "<Description>Sniper", f"<Description>&lol{depth};", 1
        )
        b.message(
            f"billion-laughs/depth-{depth}",
            payload=bomb,
            reason="declares a DTD or entities",
            code="xml-refused",
        )
    for size, count in ((10_000, 100), (50_000, 1_000), (100_000, 5_000), (400_000, 4_000)):
        blow = f'<!DOCTYPE md:MetaData [<!ENTITY a "{"x" * size}">]>\n' + text.replace(
            "<Description>Sniper", "<Description>" + "&a;" * count, 1
        )
        b.message(
            f"quadratic-blowup/{size}x{count}",
            payload=blow,
            reason="declares a DTD or entities",
            code="xml-refused",
        )
    # DTDs that declare nothing harmful are refused all the same.
    for number, doctype in enumerate(
        [
            "<!DOCTYPE md:MetaData>",
            "<!DOCTYPE md:MetaData []>",
            "<!DOCTYPE md:MetaData [<!ELEMENT md:MetaData ANY>]>",
            '<!DOCTYPE md:MetaData [<!ATTLIST Declaration a CDATA "x">]>',
            "<!DOCTYPE md:MetaData [<!-- a comment -->]>",
        ]
    ):
        b.message(
            f"dtd/{number}",
            payload=doctype + text,
            reason="declares a DTD or entities",
            code="xml-refused",
        )
    b.message(
        "dtd/after-xml-declaration",
        payload='<?xml version="1.0"?>\n<!DOCTYPE md:MetaData>\n' + text,
        reason="declares a DTD or entities",
        code="xml-refused",
    )

    # --- malformed XML
    other = base.text("TT_EX010a")
    for cut in range(1, 30):
        b.message(
            f"truncated/TT_EX010a-{cut}-of-30",
            payload=other[: len(other) * cut // 30],
            reason="is not well-formed XML",
            code="xml-refused",
        )
    for cut in range(1, 60):
        at = len(text) * cut // 60
        b.message(
            f"truncated/{cut}-of-60",
            payload=text[:at],
            reason="is not well-formed XML",
            code="xml-refused",
        )
    malformed = {
        "empty": "",
        "blank": "   \n",
        "text-only": "released",
        "unclosed-root": text.replace("</md:MetaData>", ""),
        "mismatched-tag": text.replace("</Exporter>", "</Exporters>", 1),
        "two-roots": text + text,
        "text-after-root": text + "trailing text",
        "unescaped-ampersand": text.replace("Sniper Rifle", "Sniper & Rifle", 1),
        "unescaped-less-than": text.replace("Sniper Rifle", "Sniper < Rifle", 1),
        "undefined-entity": text.replace("Sniper Rifle", "Sniper &nbsp; Rifle", 1),
        "undefined-prefix": text.replace("<Exporter>", "<x:Exporter>", 1).replace(
            "</Exporter>", "</x:Exporter>", 1
        ),
        "duplicate-attribute": text.replace(
            'unitCode="KGM#G"', 'unitCode="KGM#G" unitCode="GRM"', 1
        ),
        "bad-element-name": text.replace("<Exporter>", "<1Exporter>", 1),
        "nul-character": text.replace("Sniper", "Sni\u0000per", 1),
        "control-character": text.replace("Sniper", "Sni\u0001per", 1),
        "fffe-character": text.replace("Sniper", "Sni\ufffeper", 1),
        "bad-char-reference": text.replace("Sniper", "Sni&#0;per", 1),
        "bad-char-reference-hex": text.replace("Sniper", "Sni&#x1;per", 1),
        "unterminated-comment": text.replace("<Exporter>", "<!-- <Exporter>", 1),
        "unterminated-cdata": text.replace("<Exporter>", "<![CDATA[<Exporter>", 1),
        "xml-declaration-late": text.replace("<Exporter>", '<?xml version="1.0"?><Exporter>', 1),
        "bad-xml-version": '<?xml version="9.9"?>' + text,
        "json-instead": '{"Declaration": {"ID": "x"}}',
        "html-instead": "<html><body><p>not a declaration</body></html>",
        "unclosed-attribute": text.replace('unitCode="KGM#G"', 'unitCode="KGM#G', 1),
        "lt-in-attribute": text.replace('unitCode="KGM#G"', 'unitCode="<KGM"', 1),
    }
    for name, payload in malformed.items():
        reason = "is empty" if not payload else "is not well-formed XML"
        b.message(f"malformed/{name}", payload=payload, reason=reason, code="xml-refused")
    deep = "<a>" * 300 + "</a>" * 300
    b.message(
        "malformed/too-deep", payload=deep, reason="is not well-formed XML", code="xml-refused"
    )
    wide = "<md:MetaData xmlns:md='" + METADATA_NS + "'>" + "<x/>" * 200_000 + "</md:MetaData>"
    b.message(
        "no-declaration/wide", payload=wide, reason="holds no Declaration", code="wrong-namespace"
    )
    for encoding in ("UTF-16", "UTF-32", "EBCDIC-US", "no-such-encoding"):
        b.message(
            f"declared-encoding/{encoding}",
            payload=f'<?xml version="1.0" encoding="{encoding}"?>' + text,
            reason="is not well-formed XML",
            code="xml-refused",
        )

    # --- wrong namespaces
    namespaces = {
        "dec-version-3": text.replace(DEC_NS, "urn:wco:datamodel:WCO:DEC-DMS:3"),
        "dec-none": text.replace(f'xmlns="{DEC_NS}"', ""),
        "both-other": text.replace(DEC_NS, "urn:x:a").replace(METADATA_NS, "urn:x:b"),
        "dec-http": text.replace(DEC_NS, "http://www.wcoomd.org/DEC-DMS/2"),
        "dec-case": text.replace(DEC_NS, DEC_NS.upper()),
    }
    for name, payload in namespaces.items():
        b.message(
            f"wrong-namespace/{name}",
            payload=payload,
            reason="namespace",
            code="wrong-namespace",
        )
    # A MetaData of another namespace is a transport wrapper like a national gateway's: the
    # DEC-DMS Declaration inside is read (its licences made unknown here: nothing moves).
    unknown = text.replace("GBSIEXYK3ZZZPADR-0002", "GB-NOT-A-LICENCE-1").replace(
        "GBSIEXYK3ZZZ-0001", "GB-NOT-A-LICENCE-2"
    )
    wrapped = {
        "metadata-other": unknown.replace(METADATA_NS, "urn:example:metadata"),
        # Braces in a namespace URI: the parser takes them, etree.QName does not (fuzzing found
        # a ValueError out of the reader's error message).
        # (libxml2 refuses such a URI, unless a relative one follows it.)
        "metadata-with-braces": unknown.replace(
            f'xmlns:md="{METADATA_NS}" xmlns="{DEC_NS}"',
            f'xmlns:md="urn:{{x}}{METADATA_NS}" xmlns="relative"',
            1,
        ),
    }
    for name, payload in wrapped.items():
        b.message(
            f"wrapped/{name}",
            payload=payload,
            fate=Fate.REFUSED,
            reason="is not in the ledger",
            code="licence-unknown",
        )
    b.message(
        "wrong-namespace/other-root",
        payload='<Declaration xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"/>',
        reason="expected Declaration in namespace",
        code="wrong-namespace",
    )


def _mutate(base: _Declarations, change: Callable[[etree._Element], Any], name="TT_EX004a"):
    root = base.copy(name)
    change(root)
    return _xml(root)


def _quantity_cases(b: _Builder) -> None:
    base = b.base
    bad_quantities = {
        "comma-decimal": ("10,5", "uses a comma as decimal separator"),
        "comma-thousands": ("1.000,50", "is not a plain decimal number"),
        "comma-grouping": ("1,000", "uses a comma as decimal separator"),
        "negative": ("-5", "is negative"),
        "negative-zero": ("-0", "is negative"),
        "zero": ("0", "is zero"),
        "zero-decimals": ("0.000000", "is zero"),
        "nan": ("NaN", "is not a plain decimal number"),
        "nan-lower": ("nan", "is not a plain decimal number"),
        "snan": ("sNaN", "is not a plain decimal number"),
        "infinity": ("Infinity", "is not a plain decimal number"),
        "minus-infinity": ("-Infinity", "is negative"),
        "inf": ("inf", "is not a plain decimal number"),
        "exponent": ("1e3", "is not a plain decimal number"),
        "exponent-upper": ("1E-2", "is not a plain decimal number"),
        "hex": ("0x10", "is not a plain decimal number"),
        "too-precise": ("1.0000001", "has more than 6 decimals"),
        "absurdly-precise": ("1." + "1" * 60, "has more than 6 decimals"),
        "too-many-digits": ("12345678901234567", "has more than 16 digits"),
        "absurdly-long": ("9" * 5000, "has more than 16 digits"),
        "arabic-digits": ("\u0661\u0662", "is not a plain decimal number"),
        "fullwidth-digits": ("\uff15", "is not a plain decimal number"),
        "superscript": ("\u00b2", "is not a plain decimal number"),
        "blank": ("   ", "is empty"),
        "empty": ("", "is empty"),
        "with-unit": ("5 kg", "is not a plain decimal number"),
        "two-points": ("5..0", "is not a plain decimal number"),
        "point-only": (".", "is not a plain decimal number"),
        "underscore": ("1_000", "is not a plain decimal number"),
        "space-grouping": ("1 000", "is not a plain decimal number"),
        "plus-minus": ("+-5", "is not a plain decimal number"),
        "fraction": ("1/2", "is not a plain decimal number"),
    }
    for value_name, (value, reason) in bad_quantities.items():
        for position in range(3):

            def change(root, value=value, position=position):
                _quantities(root)[position].text = value

            b.message(
                f"bad-quantity/{value_name}-{position}",
                payload=_mutate(base, change),
                reason=f"the write-off quantity {reason}",
                code="bad-quantity",
            )
    # The same values in the other base sample (TT_EX010a: one write-off, another licence).
    for value_name, (value, reason) in bad_quantities.items():

        def change_010(root, value=value):
            _quantities(root)[0].text = value

        b.message(
            f"bad-quantity/{value_name}-TT_EX010a",
            payload=_mutate(base, change_010, name="TT_EX010a"),
            reason=f"the write-off quantity {reason}",
            code="bad-quantity",
        )
    bad_amounts = {
        "comma-decimal": ("10,5", "uses a comma"),
        "negative": ("-1", "is negative"),
        "zero": ("0.0", "is zero"),
        "nan": ("NaN", "is not a plain decimal number"),
        "infinity": ("Infinity", "is not a plain decimal number"),
        "too-precise": ("1.0001", "has more than 3 decimals"),
        "too-many-digits": ("99999999999999999", "has more than 16 digits"),
        "exponent": ("1e9", "is not a plain decimal number"),
    }
    for value_name, (value, reason) in bad_amounts.items():
        for position in range(3):

            def change(root, value=value, position=position):
                write_off = root.findall(f".//{_d('WriteOff')}")[position]
                etree.SubElement(write_off, _d("AmountAmount"), currencyID="GBP").text = value

            b.message(
                f"bad-amount/{value_name}-{position}",
                payload=_mutate(base, change),
                reason=f"the write-off amount {reason}",
                code="bad-quantity",
            )
    for position in range(3):

        def no_unit(root, position=position):
            del _quantities(root)[position].attrib["unitCode"]

        def blank_unit(root, position=position):
            _quantities(root)[position].set("unitCode", "  ")

        def no_currency(root, position=position):
            write_off = root.findall(f".//{_d('WriteOff')}")[position]
            etree.SubElement(write_off, _d("AmountAmount")).text = "10"

        for name, change in (("no-unit", no_unit), ("blank-unit", blank_unit)):
            b.message(
                f"{name}/{position}",
                payload=_mutate(base, change),
                reason="a write-off quantity needs its unit",
            )
        b.message(
            f"no-currency/{position}",
            payload=_mutate(base, no_currency),
            reason="a write-off amount needs its currency",
        )


def _structure_cases(b: _Builder) -> None:
    base = b.base

    def remove(path: str, index: int | None = None):
        def change(root):
            found = _all(root, path)
            for element in found if index is None else [found[index]]:
                element.getparent().remove(element)

        return change

    def set_text(path: str, value: str | None, index: int | None = None):
        def change(root):
            found = _all(root, path)
            for element in found if index is None else [found[index]]:
                element.text = value

        return change

    # Without an exporter the declaration is read; each licence it writes off is refused for
    # it (the holder cannot be checked), naming the document.
    no_exporter = {
        "exporter": remove("./d:Declaration/d:Exporter"),
        "exporter-id": remove("./d:Declaration/d:Exporter/d:ID"),
        "exporter-id-blank": set_text("./d:Declaration/d:Exporter/d:ID", "  "),
    }
    for name, change in no_exporter.items():
        b.message(
            f"missing-field/{name}",
            payload=_mutate(base, change),
            fate=Fate.REFUSED,
            reason="names no exporter",
            code="missing-exporter",
        )
    missing = [
        ("function-code", remove("./d:Declaration/d:FunctionCode"), "needs its FunctionCode", None),
        ("declaration", remove("./d:Declaration"), "holds no Declaration", "wrong-namespace"),
        (
            "goods-item-number-1",
            remove(".//d:GovernmentAgencyGoodsItem/d:SequenceNumeric", 0),
            "needs its item number",
            "missing-goods-item-number",
        ),
        (
            "goods-item-number-2",
            remove(".//d:GovernmentAgencyGoodsItem/d:SequenceNumeric", 1),
            "needs its item number",
            "missing-goods-item-number",
        ),
        (
            "goods-item-numbers",
            remove(".//d:GovernmentAgencyGoodsItem/d:SequenceNumeric"),
            "needs its item number",
            "missing-goods-item-number",
        ),
        (
            "goods-item-number-blank",
            set_text(".//d:GovernmentAgencyGoodsItem/d:SequenceNumeric", " ", 0),
            "needs its item number",
            "missing-goods-item-number",
        ),
        (
            "document-reference",
            lambda r: [d.remove(d.find(_d("ID"))) for d in _writeoff_documents(r)[:1]],
            "needs its reference (ID)",
            None,
        ),
        (
            "document-category",
            lambda r: [d.remove(d.find(_d("CategoryCode"))) for d in _writeoff_documents(r)[1:2]],
            "needs CategoryCode and TypeCode",
            None,
        ),
        (
            "document-type-code",
            lambda r: [d.remove(d.find(_d("TypeCode"))) for d in _writeoff_documents(r)[2:3]],
            "needs CategoryCode and TypeCode",
            None,
        ),
    ]
    for name, change, reason, code in missing:
        b.message(f"missing-field/{name}", payload=_mutate(base, change), reason=reason, code=code)
    for value in ("0", "-1", "abc", "1.5", "\uff11", "123456", "1e2", "\u0661"):
        for index in (0, 1):
            b.message(
                f"bad-goods-item-number/{value.encode('unicode_escape').decode()}-{index}",
                payload=_mutate(
                    base,
                    set_text(".//d:GovernmentAgencyGoodsItem/d:SequenceNumeric", value, index),
                ),
                reason="a goods item number is a whole number from 1 to 99999",
            )
    for value in ("GB", "12345", "GB!896458895015", "GB8964588950151234567", "\u00c4B123"):
        b.message(
            f"bad-exporter/{value.encode('unicode_escape').decode()}",
            payload=_mutate(base, set_text("./d:Declaration/d:Exporter/d:ID", value)),
            reason="EORI",
        )
    for value in ("ABCDE", "123456", "x"):
        b.message(
            f"bad-line-item-number/{value}",
            payload=_mutate(
                base,
                lambda r, v=value: [
                    etree.SubElement(d, _d("LineNumeric")).__setattr__("text", v)
                    for d in _writeoff_documents(r)
                ],
            ),
            reason="a document line item number is a whole number of up to 5 digits",
        )
    for value in ("XX", "gbr", "1"):
        b.message(
            f"bad-responsible-country/{value}",
            payload=base.text().replace(
                "<md:ResponsibleCountryCode>GB<", f"<md:ResponsibleCountryCode>{value}<", 1
            ),
            reason="",
        )

    # --- duplicated goods items and documents
    def duplicate_item(index: int, times: int = 1):
        def change(root):
            items = _all(root, ".//d:GovernmentAgencyGoodsItem")
            for _ in range(times):
                items[index].addnext(etree.fromstring(etree.tostring(items[index])))

        return change

    for index in (0, 1):
        for times in (1, 3):
            b.message(
                f"duplicate-goods-item/copy-{index}-x{times}",
                payload=_mutate(base, duplicate_item(index, times)),
                reason="is used twice",
                code="duplicate-goods-item",
            )
    b.message(
        "duplicate-goods-item/same-number",
        payload=_mutate(base, set_text(".//d:GovernmentAgencyGoodsItem/d:SequenceNumeric", "1")),
        reason="goods item number 1 is used twice",
        code="duplicate-goods-item",
    )
    b.message(
        "duplicate-goods-item/leading-zero",
        payload=_mutate(
            base, set_text(".//d:GovernmentAgencyGoodsItem/d:SequenceNumeric", "01", 1)
        ),
        reason="goods item number 1 is used twice",
        code="duplicate-goods-item",
    )

    def duplicate_document(root):
        document = _writeoff_documents(root)[1]
        document.addnext(etree.fromstring(etree.tostring(document)))

    b.message(
        "duplicate-document/x002",
        payload=_mutate(base, duplicate_document),
        reason="is written off twice on one goods item",
        code="duplicate-document",
    )

    # --- between envelope and declaration
    def with_id(value: str):
        def change(root):
            declaration = root.find(_d("Declaration"))
            element = etree.Element(_d("ID"))
            element.text = value
            declaration.find(_d("FunctionalReferenceID")).addnext(element)

        return change

    b.message(
        "mrn-mismatch/other",
        payload=_mutate(base, with_id("24GBDIRIGZ7QLCPAA8")),
        reason="is not the declaration's ID 24GBDIRIGZ7QLCPAA8",
        code="mrn-mismatch",
    )
    b.message(
        "event-mismatch/released-cancellation",
        lambda d: {**d, "mrn": "24GBDIRIGZ7QLCPAA8"},
        payload=base.text("TT_EX010a_Cancellation"),
        reason="the envelope says released but the payload is a cancellation",
        code="event-mismatch",
    )
    b.message(
        "event-mismatch/amended-cancellation",
        lambda d: {**d, "mrn": "24GBDIRIGZ7QLCPAA8", "event": "amended", "declaration_version": 2},
        payload=base.text("TT_EX010a_Cancellation"),
        reason="the envelope says amended but the payload is a cancellation",
        code="event-mismatch",
    )
    cancellation_without_id = _mutate(
        base, remove("./d:Declaration/d:ID"), name="TT_EX010a_Cancellation"
    )
    b.message(
        "missing-field/cancellation-mrn",
        lambda d: {**d, "event": "invalidated"},
        payload=cancellation_without_id,
        reason="a cancellation names the MRN it cancels",
    )


def _readable_cases(b: _Builder) -> None:
    """Readable declarations that break a rule in every write-off: refused or ignored, and
    nothing written off."""
    base = b.base

    def every_document(change):
        def apply(root):
            for document in _writeoff_documents(root):
                change(document)

        return apply

    def set_child(tag: str, value: str):
        return every_document(lambda doc: doc.find(_d(tag)).__setattr__("text", value))

    b.message(
        "missing-field/licence-reference-blank",
        payload=_mutate(base, set_child("ID", " ")),
        reason="a document used for a write-off needs its reference (ID)",
    )
    for value in (
        "GB-NOT-A-LICENCE",
        "x" * 35,
        "gbsiexyk3zzzpadr-0002",
        "GBSIEXYK3ZZZ\u2010PADR-0002",  # a Unicode hyphen
    ):
        b.message(
            f"unknown-licence/{value[:40]}",
            payload=_mutate(base, set_child("ID", value)),
            fate=Fate.REFUSED,
            reason="is not in the ledger",
            code="licence-unknown",
        )
    # Longer than any licence number (70): refused by the rules, and the refusal keeps it whole
    # (writing it once failed on PostgreSQL and sent the batch one message at a time).
    for length in (100, 256):
        b.message(
            f"unknown-licence/reference-of-{length}",
            payload=_mutate(base, set_child("ID", "GB-" + "0" * (length - 3))),
            fate=Fate.REFUSED,
            reason="is not in the ledger",
            code="licence-unknown",
        )
    for length in (257, 100_000):
        b.message(
            f"bad-reference/{length}-characters",
            payload=_mutate(base, set_child("ID", "GB-" + "0" * (length - 3))),
            reason="a document reference is at most 256 characters",
            code="bad-reference",
        )
    for unit in ("ZZZ", "LTR", "NAR", "KGM#X", "MTR", "TNE#Q"):
        b.message(
            f"unknown-unit/{unit}",
            payload=_mutate(base, lambda r, u=unit: [q.set("unitCode", u) for q in _quantities(r)]),
            fate=Fate.REFUSED,
            reason="",
            code="unit-mismatch",
        )

    def amounts_only(currency: str):
        def change(root):
            for write_off in root.iter(_d("WriteOff")):
                for child in list(write_off):
                    write_off.remove(child)
                etree.SubElement(write_off, _d("AmountAmount"), currencyID=currency).text = "10"

        return change

    for currency in ("QQQ", "EUR", "usd", "XXX", "EURO", "GB"):
        b.message(
            f"unknown-currency/{currency}",
            payload=_mutate(base, amounts_only(currency)),
            fate=Fate.REFUSED,
            reason=f"the write-off is in {currency}",
            code="currency-mismatch",
        )
    for code_value, (category, type_code) in {
        "X999": ("X", "999"),
        "X000": ("X", "000"),
        "Y901": ("Y", "901"),
        "9999": ("9", "999"),
        "C512": ("C", "512"),
        "x002": ("x", "002"),
    }.items():

        def change(root, category=category, type_code=type_code):
            for document in _writeoff_documents(root):
                document.find(_d("CategoryCode")).text = category
                document.find(_d("TypeCode")).text = type_code

        b.message(
            f"unknown-document-code/{code_value}",
            payload=_mutate(base, change),
            fate=Fate.IGNORED,
            reason="",
        )
    b.message(
        "unknown-document-code/no-goods-shipment",
        payload=_mutate(
            base,
            lambda r: r.find(_d("Declaration")).remove(
                r.find(_d("Declaration")).find(_d("GoodsShipment"))
            ),
        ),
        fate=Fate.IGNORED,
        reason="",
    )

    def document_codes(category: str, type_code: str):
        def change(root):
            for document in _writeoff_documents(root):
                document.find(_d("CategoryCode")).text = category
                document.find(_d("TypeCode")).text = type_code

        return change

    for code_value in ("061", "063", "071"):
        b.message(
            f"document-type-mismatch/X{code_value}",
            payload=_mutate(base, document_codes("X", code_value)),
            fate=Fate.REFUSED,
            reason="",
            code="document-type-mismatch",
        )
    for eori in ("GB123456789000", "DE896458895015", "GB896458895016"):
        b.message(
            f"wrong-exporter/{eori}",
            payload=_mutate(
                base,
                lambda r, e=eori: setattr(r.find(f".//{_d('Exporter')}/{_d('ID')}"), "text", e),
            ),
            fate=Fate.REFUSED,
            reason="is not the holder of licence",
            code="wrong-exporter",
        )
    for country in ("KP", "IR", "XX", "GB"):
        b.message(
            f"destination-not-allowed/{country}",
            payload=_mutate(
                base,
                lambda r, c=country: [
                    element.__setattr__("text", c)
                    for element in _all(
                        r, ".//d:GovernmentAgencyGoodsItem/d:Destination/d:CountryCode"
                    )
                ],
            ),
            fate=Fate.REFUSED,
            reason="is not among licence",
            code="destination-not-allowed",
        )
    for when in (
        "1999-12-31T23:59:59+00:00",
        "2025-12-31T23:59:59+00:00",
        "2028-01-01T00:00:00+00:00",
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59+00:00",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
    ):
        b.message(
            f"outside-validity/{when}",
            _set("event_time", when),
            fate=Fate.REFUSED,
            reason="is outside licence",
            code="outside-validity",
        )
    for quantity, code in (
        ("1000001", "over-use"),
        ("5000000", "over-use"),
        ("999999999999", "over-use"),
        ("9999999999999999", "out-of-range"),
        ("1000000000000", "out-of-range"),
    ):
        b.message(
            f"too-much/{quantity}",
            payload=_mutate(
                base, lambda r, q=quantity: [e.__setattr__("text", q) for e in _quantities(r)]
            ),
            fate=Fate.REFUSED,
            reason="",
            code=code,
        )


def _oversized_cases(b: _Builder, max_bytes: int) -> None:
    """Messages over the size limit: refused before anything is parsed. Each would take the
    parser long, or blow up, or say something else if it were parsed."""
    text = b.base.text()
    padding = "<!--" + "x" * (max_bytes + 1) + "-->"
    b.message(
        "oversized/valid-but-padded",
        payload=text.replace(
            "<md:WCODataModelVersionCode", padding + "<md:WCODataModelVersionCode", 1
        ),
        reason=f"over the limit of {max_bytes}",
    )
    b.raw(
        "oversized/deep-json",
        b"[" * (max_bytes + 10),
        f"over the limit of {max_bytes}",
    )
    lol = '<!ENTITY a "' + "&#x41;" * (max_bytes // 6) + '">'
    b.message(
        "oversized/bomb",
        payload=f"<!DOCTYPE md:MetaData [{lol}]>" + text,
        reason=f"over the limit of {max_bytes}",
    )
    b.raw(
        "oversized/invalid-utf8",
        b"\xff" * (max_bytes + 1),
        f"over the limit of {max_bytes}",
    )


def declaration_cases(
    samples: Path, *, canary: Path, listener_url: str, max_bytes: int = 2 * 1024 * 1024
) -> list[DeclarationCase]:
    """Every declaration case. `canary` is a file holding SECRET and `listener_url` a URL on a
    listener that counts connections: entities point at both, and neither may be touched."""
    builder = _Builder(_Declarations(samples))
    _envelope_cases(builder)
    _payload_cases(builder, canary, listener_url)
    _quantity_cases(builder)
    _structure_cases(builder)
    _readable_cases(builder)
    _oversized_cases(builder, max_bytes)
    _beyond_the_ledger_cases(builder)
    cases = builder.cases
    names = [case.name for case in cases]
    duplicates = {name for name in names if names.count(name) > 1}
    assert not duplicates, f"corpus names used twice: {sorted(duplicates)}"
    payloads = [case.data for case in cases]
    assert len(set(payloads)) == len(payloads), "two corpus cases have the same bytes"
    return cases


def _beyond_the_ledger_cases(b: _Builder) -> None:
    """What JSON can say but no database column holds: lone surrogates, NUL and other control
    characters, numbers past the ledger's integers, references past its columns. Each of these
    once stopped the consumer or sent a batch one message at a time (an internal error); they
    are refused by the envelope and the declaration reader now, with their reason."""
    ascii_dump = partial(dump_envelope, ascii_only=True)
    for name, char in (("high", "\ud800"), ("low", "\udfff")):
        b.message(
            f"lone-surrogate/payload-{name}",
            payload=b.base.text().replace("Sniper", f"Sni{char}per", 1),
            reason="payload holds an escaped lone surrogate",
            code="bad-envelope",
            dump=ascii_dump,
        )
    for name, value in (("high", "m-\ud800"), ("low", "m-\udfff")):
        b.message(
            f"lone-surrogate/message-id-{name}",
            _set("message_id", value),
            reason="message_id",
            code="bad-envelope",
            dump=ascii_dump,
        )
    b.message(
        "lone-surrogate/message-id-unreadable",
        lambda d: {**d, "message_id": "m-\udbff", "event": "bogus"},
        reason="event must be one of",
        code="bad-envelope",
        dump=ascii_dump,
    )
    for name, char in (
        ("nul", "\u0000"),
        ("tab", "\t"),
        ("line-feed", "\n"),
        ("escape", "\u001b"),
        ("delete", "\u007f"),
        ("next-line", "\u0085"),
    ):
        b.message(
            f"control-character/message-id-{name}",
            _set("message_id", f"m-{char}-1"),
            reason="message_id holds the control character",
            code="bad-envelope",
        )
    b.message(
        "control-character/message-id-nul-escaped",
        _set("message_id", "m-\u0000-2"),
        reason="message_id holds the control character U+0000",
        code="bad-envelope",
        dump=ascii_dump,
    )
    for name, version in (
        ("2-to-the-31", 2**31),
        ("2-to-the-63", 2**63),
        ("10-to-the-30", 10**30),
        ("4000-digits", 10**3999),
    ):
        b.message(
            f"huge-version/{name}",
            _set("declaration_version", version),
            reason="declaration_version must be a whole number from 1 to 2147483647",
            code="bad-envelope",
        )
    b.message(
        "huge-version/largest-the-ledger-holds",
        _set("declaration_version", 2**31 - 1),
        fate=Fate.IGNORED,
        reason="",
        payload=_mutate(
            b.base,
            lambda root: [
                document.getparent().remove(document) for document in _writeoff_documents(root)
            ],
        ),
    )


# ======================================================================= national records


@dataclass(frozen=True)
class NationalCase:
    name: str
    format: str  # csv, json, xml
    fate: Fate  # REJECTED (record) or UNREADABLE (file)
    reason: str  # a substring of one of the record's problems, or of the file's failure
    marker: str = ""  # unique text in the record, to find its reject
    record: Any = None  # csv: list of row dicts; json: dict; xml: element text
    data: bytes = b""  # a whole file (UNREADABLE cases)
    path: str | None = None  # a substring of the problem's path, when it matters

    @property
    def family(self) -> str:
        return self.name.split("/", 1)[1].split("/", 1)[0]


CSV_COLUMNS = (
    "Genehmigungsnummer",
    "Genehmigungsart",
    "Status",
    "Gültig ab",
    "Gültig bis",
    "Ausführer",
    "EORI-Nummer",
    "AGG-Nummer",
    "Pos.",
    "AL-Nummer",
    "Warennummer",
    "Warenbezeichnung",
    "Menge",
    "Maßeinheit",
    "Wert",
    "Währung",
    "Bestimmungsländer",
    "Empfänger",
    "Empfängerland",
    "Endverwender",
    "Endverwenderland",
)


def csv_record(number: str, marker: str, lines: int = 1) -> list[dict[str, str]]:
    """A valid legacy German CSV licence (one row per line)."""
    return [
        {
            "Genehmigungsnummer": number,
            "Genehmigungsart": "Einzelausfuhrgenehmigung",
            "Status": "gültig",
            "Gültig ab": "15.01.2026",
            "Gültig bis": "14.01.2028",
            "Ausführer": "Müller Präzisionsoptik GmbH",
            "EORI-Nummer": "DE4711234",
            "AGG-Nummer": "",
            "Pos.": str(line),
            "AL-Nummer": "6A003.b.4.b",
            "Warennummer": "8525 89 00",
            "Warenbezeichnung": "Wärmebildkameras, ungekühlt",
            "Menge": "1.250,5",
            "Maßeinheit": "kg",
            "Wert": "1.250.000,00",
            "Währung": "EUR",
            "Bestimmungsländer": "IN,SG",
            "Empfänger": f"Bharat Optronics Pvt. Ltd. {marker}",
            "Empfängerland": "IN",
            "Endverwender": "Indian Coast Guard",
            "Endverwenderland": "IN",
        }
        for line in range(1, lines + 1)
    ]


def json_record(number: str, marker: str) -> dict[str, Any]:
    """A valid UK JSON API licence."""
    return {
        "reference": number,
        "note": marker,  # not mapped: ignored, but part of the record's text
        "revision": 1,
        "licenceType": "SIEL",
        "status": "Issued",
        "issuer": {"country": "GB", "name": "Export Control Joint Unit"},
        "validity": {"from": "2026-01-01", "to": "2027-12-31"},
        "licensee": {"name": "Precision Arms Ltd", "eori": "GB896458895015"},
        "goods": [
            {
                "lineNo": 1,
                "controlEntry": "2B018.a",
                "commodityCode": "93059100",
                "description": "Suppressors and thermal covers",
                "quantity": {"amount": "500.5", "unit": "KGM"},
                "value": {"amount": "400000.00", "currency": "GBP"},
                "destinations": ["SD"],
                "consignee": {"name": "Khartoum Defence Supplies Co", "country": "SD"},
            }
        ],
    }


ELIC_NS = "urn:eu:ec:trade:dual-use:elicensing:export:1"


def xml_record(number: str, marker: str, **values: str) -> str:
    """A valid EU e-licensing tool authorisation (`values` replace its texts by name)."""
    v = {
        "version": "1",
        "reference": number,
        "kind": "INDIVIDUAL",
        "state": "ISSUED",
        "member_state": "LV",
        "authority": "Stratēģiskas nozīmes preču kontroles komiteja",
        "from": "2026-03-10",
        "to": "2028-03-09",
        "holder": "SIA Baltijas Sakaru Sistēmas",
        "marker": marker,
        "eori": "LV40003123456",
        "sequence": "1",
        "cle": "5A002.a.1",
        "cn": "85176200",
        "description": "Šifrēšanas maršrutētāji",
        "unit": "NAR",
        "quantity": "40",
        "currency": "EUR",
        "value": "125000.00",
        "country": "GE",
        "general": "",
    }
    v.update(values)
    general = (
        f"<elic:GeneralAuthorisation>{v['general']}</elic:GeneralAuthorisation>"
        if v["general"]
        else ""
    )
    return (
        f'<elic:Authorisation version="{v["version"]}">'
        f"<elic:Reference>{v['reference']}</elic:Reference>"
        f"<elic:Kind>{v['kind']}</elic:Kind><elic:State>{v['state']}</elic:State>"
        f"<elic:IssuingMemberState>{v['member_state']}</elic:IssuingMemberState>"
        f"<elic:CompetentAuthority>{v['authority']}</elic:CompetentAuthority>"
        f'<elic:Validity from="{v["from"]}" to="{v["to"]}"/>'
        f"<elic:Exporter><elic:Name>{v['holder']}</elic:Name><elic:EORI>{v['eori']}</elic:EORI>"
        f"</elic:Exporter>{general}<elic:Items>"
        f'<elic:Item sequence="{v["sequence"]}">'
        f"<elic:ControlListEntry>{v['cle']}</elic:ControlListEntry>"
        f"<elic:CommodityCode>{v['cn']}</elic:CommodityCode>"
        f"<elic:Description>{v['description']}</elic:Description>"
        f'<elic:Quantity unit="{v["unit"]}">{v["quantity"]}</elic:Quantity>'
        f'<elic:Value currency="{v["currency"]}">{v["value"]}</elic:Value>'
        f"<elic:Destinations><elic:Country>{v['country']}</elic:Country></elic:Destinations>"
        f'<elic:Consignee country="GE"><elic:Name>Caucasus Telecom {v["marker"]}</elic:Name>'
        "</elic:Consignee>"
        "</elic:Item></elic:Items></elic:Authorisation>"
    )


def csv_file(records: list[list[dict[str, str]]]) -> bytes:
    """A legacy German CSV export (Latin-1, semicolons) of `records`; a value that holds a
    semicolon, quote or line break is quoted."""

    def cell(value: str) -> str:
        if any(c in value for c in ';"\r\n'):
            return '"' + value.replace('"', '""') + '"'
        return value

    lines = [";".join(CSV_COLUMNS)]
    for rows in records:
        for row in rows:
            lines.append(";".join(cell(row.get(column, "")) for column in CSV_COLUMNS))
    return ("\r\n".join(lines) + "\r\n").encode("latin-1", errors="strict")


def json_file(records: list[Any]) -> bytes:
    document = {"export": {"system": "LITE", "count": len(records)}, "licences": records}
    return json.dumps(document, ensure_ascii=False, indent=1, default=str).encode("utf-8")


def xml_file(records: list[str]) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<elic:LicenceExport xmlns:elic="{ELIC_NS}">\n'
        + "\n".join(records)
        + "\n</elic:LicenceExport>\n"
    ).encode("utf-8")


FILE_NAMES = {
    "csv": "bafa_ausfuhr_{tag}.csv",
    "json": "ecju_licences_{tag}.json",
    "xml": "elicensing_export_{tag}.xml",
}


def valid_national_records(format_: str, count: int, tag: str) -> list[tuple[str, Any]]:
    """(licence number, record) of `count` valid records."""
    found = []
    for number in range(count):
        reference = f"OK-{tag.upper()}-{number:04d}"
        marker = f"valid-{tag}-{number:04d}"
        if format_ == "csv":
            found.append((reference, csv_record(reference, marker)))
        elif format_ == "json":
            found.append((reference, json_record(reference, marker)))
        else:
            found.append((reference, xml_record(reference, marker)))
    return found


class _National:
    def __init__(self) -> None:
        self.cases: list[NationalCase] = []

    def marker(self) -> str:
        return f"case-{len(self.cases):05d}"

    def csv(
        self,
        name: str,
        change: Callable[[list[dict[str, str]]], Any],
        reason: str,
        *,
        lines: int = 1,
        path: str | None = None,
    ) -> None:
        marker = self.marker()
        rows = csv_record(f"EVIL-CSV-{len(self.cases):05d}", marker, lines)
        change(rows)
        self.cases.append(
            NationalCase(
                f"csv/{name}",
                "csv",
                Fate.REJECTED,
                reason,
                marker,
                rows,
                path=path,
            )
        )

    def json(
        self,
        name: str,
        change: Callable[[dict[str, Any]], Any],
        reason: str,
        *,
        path: str | None = None,
    ) -> None:
        marker = self.marker()
        record = json_record(f"EVIL-JSON-{len(self.cases):05d}", marker)
        replaced = change(record)
        if replaced is not None:
            record = replaced
        self.cases.append(
            NationalCase(
                f"json/{name}",
                "json",
                Fate.REJECTED,
                reason,
                marker,
                record,
                path=path,
            )
        )

    def xml(
        self,
        name: str,
        reason: str,
        *,
        path: str | None = None,
        raw: Callable[[str], str] | None = None,
        **values: str,
    ) -> None:
        marker = self.marker()
        text = xml_record(f"EVIL-XML-{len(self.cases):05d}", marker, **values)
        if raw is not None:
            text = raw(text)
        self.cases.append(
            NationalCase(
                f"xml/{name}",
                "xml",
                Fate.REJECTED,
                reason,
                marker,
                text,
                path=path,
            )
        )

    def unreadable(self, format_: str, name: str, data: bytes, reason: str) -> None:
        self.cases.append(
            NationalCase(
                f"{format_}/{name}",
                format_,
                Fate.UNREADABLE,
                reason,
                data=data,
            )
        )


def _set_row(column: str, value: str, row: int | None = None):
    def change(rows: list[dict[str, str]]) -> None:
        for index, current in enumerate(rows):
            if row is None or index == row:
                current[column] = value

    return change


# Values that are wrong for a field in every format, with what the reason must say.
_BAD_DATES = {
    "31.02.2026": ("2026-02-31", "day is out of range"),
    "29.02.2026": ("2026-02-29", "day is out of range"),
    "00.01.2026": ("2026-01-00", "day is out of range"),
    "15.13.2026": ("2026-13-15", "month must be in 1..12"),
    "15.00.2026": ("2026-00-15", "month must be in 1..12"),
    "32.01.2026": ("2026-01-32", "day is out of range"),
    "15.01.26": ("26-01-15", "is not a date written"),
    "2026-01-15": ("15.01.2026", "is not a date written"),
    "15/01/2026": ("15/01/2026", "is not a date written"),
    "morgen": ("tomorrow", "is not a date written"),
    "15.01.0000": ("0000-01-15", "is not a date written"),
    "99.99.9999": ("9999-99-99", "is not a date written"),
}


def _national_record_cases(n: _National) -> None:
    # ------------------------------------------------------------------ dates
    for de_value, (iso_value, reason) in _BAD_DATES.items():
        safe = de_value.replace("/", "-")
        n.csv(f"impossible-date/valid-from-{safe}", _set_row("Gültig ab", de_value), reason)
        n.csv(f"impossible-date/valid-to-{safe}", _set_row("Gültig bis", de_value), reason)
        iso_reason = "is not a date written" if "written" in reason else reason
        iso_safe = iso_value.replace("/", "-")
        n.json(
            f"impossible-date/from-{iso_safe}",
            lambda r, v=iso_value: r["validity"].__setitem__("from", v),
            iso_reason if iso_value != "15.01.2026" else "is not a date written",
        )
        n.xml(f"impossible-date/from-{iso_safe}", "is not a date written", **{"from": iso_value})
    n.csv("dates-reversed/to-before-from", _set_row("Gültig bis", "14.01.2025"), "before it starts")
    n.json(
        "dates-reversed/to-before-from",
        lambda r: r["validity"].__setitem__("to", "2025-01-01"),
        "before it starts",
    )
    n.xml("dates-reversed/to-before-from", "before it starts", to="2025-01-01")

    # ---------------------------------------------------- decimals: comma and point confusion
    csv_quantities = {
        "12.75": "is not a number",  # a point where the CSV writes a comma
        "1,2,3": "is not a number",
        "1.2.3": "is not a number",
        "12,": "is not a number",
        ",5": "is not a number",
        "1.00,5": "is not a number",
        "1 000,5": "is not a number",
        "-5": "",
        "0": "",
        "NaN": "is not a number",
        "Infinity": "is not a number",
        "1e3": "is not a number",
        "1,0000001": "",
        "\u00bd": "is not a number",
        "9" * 40: "",
        "1" + "0" * 5000: "",
    }
    for value, reason in csv_quantities.items():
        n.csv(f"bad-quantity/{value[:20]}", _set_row("Menge", value), reason, path="quantity")
    for value in ("1.250.000.00", "1,250,000.00", "12.5", "-1,00", "abc"):
        n.csv(f"bad-value/{value}", _set_row("Wert", value), "", path="value")
    json_quantities: dict[str, Any] = {
        "comma-string": "12,75",
        "comma-thousands": "1.250,5",
        "negative": -5,
        "zero": 0,
        "nan-string": "NaN",
        "infinity-string": "Infinity",
        "exponent-string": "1e3",
        "bool": True,
        "list": [1, 2],
        "object": {"v": 1},
        "too-precise": "1.00000000001",
        "absurdly-long": "9" * 400,
    }
    for name, value in json_quantities.items():
        n.json(
            f"bad-quantity/{name}",
            lambda r, v=value: r["goods"][0]["quantity"].__setitem__("amount", v),
            "",
            path="quantity",
        )
    # JSON numbers that are NaN, Infinity or too long to be numbers.
    for name, literal in (
        ("nan", "NaN"),
        ("infinity", "Infinity"),
        ("minus-infinity", "-Infinity"),
        ("exponent", "1e400"),
    ):
        n.json(
            f"bad-quantity/literal-{name}",
            lambda r, v=literal: r["goods"][0]["quantity"].__setitem__("amount", _Literal(v)),
            "",
            path="quantity",
        )
    for value in (
        "12,75",
        "1.250,5",
        "-5",
        "0",
        "NaN",
        "INF",
        "1e3",
        "1.0000001",
        "9" * 40,
        "\uff15",
    ):
        n.xml(f"bad-quantity/{value[:20] or 'empty'}", "", path="quantity", quantity=value)
    for value in ("1,5", "-1", "NaN"):
        n.xml(f"bad-value/{value}", "", path="value", value=value)

    # ------------------------------------------------------------------ unknown codes
    for value in ("Ausfuhrgenehmigung light", "Einzel", "", "?"):
        n.csv(
            f"unknown-code/type-{value or 'empty'}",
            _set_row("Genehmigungsart", value),
            "",
            path="type",
        )
    for value in ("gultig", "aktiv"):
        n.csv(
            f"unknown-code/status-{value}",
            _set_row("Status", value),
            "is not a word this mapping knows",
            path="status",
        )
    n.csv(
        "unknown-code/status-with-nul",
        _set_row("Status", "g\x00ltig"),
        "is not a word this mapping knows",
        path="status",
    )
    for value in ("Stk", "kilo", "KGM", "lbs", "m³"):
        n.csv(f"unknown-code/unit-{value}", _set_row("Maßeinheit", value), "", path="unit")
    for value in ("EURO", "QQQ", "\u00a4"):
        n.csv(f"unknown-code/currency-{value}", _set_row("Währung", value), "", path="currency")
    for value in ("XX", "UK", "IN,XX", "IN;SG", "Indien"):
        n.csv(
            f"unknown-code/destination-{value}",
            _set_row("Bestimmungsländer", value),
            "",
            path="destinations",
        )
    for value in ("5X002", "ABCDE", "6A003.b.4.b.", "6A003..b", "6A003.bb"):
        n.csv(
            f"unknown-code/cle-{value}",
            _set_row("AL-Nummer", value),
            "control list entry",
            path="control_list_entry",
        )
    for value in ("8525", "85258900123", "8525 89 0X", "ABCDEFGH"):
        n.csv(f"unknown-code/cn-{value}", _set_row("Warennummer", value), "CN code", path="cn_code")
    for value in ("D4711-X?", "XX123", "DE", "DE4711234DE4711234DE"):
        n.csv(
            f"unknown-code/eori-{value}", _set_row("EORI-Nummer", value), "EORI", path="holder_eori"
        )
    for name, member, value in (
        ("type", "licenceType", "SIEL2"),
        ("status", "status", "Active"),
        ("issuer-country", None, "UK"),
        ("unit", None, "KILOGRAM"),
        ("currency", None, "BTC"),
        ("destination", None, "XX"),
        ("cle", "controlEntry", "ZZ999"),
        ("cn", "commodityCode", "12"),
        ("eori", None, "GB-"),
    ):

        def change(r, member=member, value=value, name=name):
            if member is not None and member in r:
                r[member] = value
            elif member is not None:
                r["goods"][0][member] = value
            elif name == "issuer-country":
                r["issuer"]["country"] = value
            elif name == "unit":
                r["goods"][0]["quantity"]["unit"] = value
            elif name == "currency":
                r["goods"][0]["value"]["currency"] = value
            elif name == "destination":
                r["goods"][0]["destinations"] = [value]
            elif name == "eori":
                r["licensee"]["eori"] = value

        n.json(f"unknown-code/{name}", change, "")
    for name, values in (
        ("kind", {"kind": "SPECIAL"}),
        ("state", {"state": "PENDING"}),
        ("member-state", {"member_state": "ZZ"}),
        ("unit", {"unit": "BOX"}),
        ("currency", {"currency": "ECU"}),
        ("country", {"country": "SU"}),
        ("cle", {"cle": "not-a-cle"}),
        ("cn", {"cn": "8517"}),
        ("eori", {"eori": "LV"}),
        ("union-general", {"kind": "UNION_GENERAL", "general": "EU009"}),
    ):
        n.xml(f"unknown-code/{name}", "", **values)

    # ------------------------------------------------------------------ missing fields
    for column in (
        "Genehmigungsart",
        "Gültig ab",
        "Ausführer",
        "EORI-Nummer",
        "Pos.",
        "AL-Nummer",
        "Warenbezeichnung",
    ):
        n.csv(f"missing-field/{column}", _set_row(column, ""), "")
    for path in (
        ("licenceType",),
        ("validity", "from"),
        ("licensee", "eori"),
        ("licensee", "name"),
        ("issuer", "country"),
        ("goods", 0, "lineNo"),
        ("goods", 0, "controlEntry"),
        ("goods", 0, "description"),
        ("goods",),
    ):

        def drop(r, path=path):
            node = r
            for step in path[:-1]:
                node = node[step]
            del node[path[-1]]

        n.json(f"missing-field/{'.'.join(map(str, path))}", drop, "")
    n.json(
        "missing-field/reference",
        lambda r: r.__delitem__("reference"),
        "'reference' is absent or empty",
    )
    n.json("missing-field/goods-empty", lambda r: r.__setitem__("goods", []), "at least one line")
    for name, old, new in (
        ("reference", "<elic:Reference>", "<elic:Other>"),
        ("kind", "<elic:Kind>INDIVIDUAL</elic:Kind>", ""),
        ("validity", '<elic:Validity from="2026-03-10" to="2028-03-09"/>', ""),
        ("eori", "<elic:EORI>LV40003123456</elic:EORI>", ""),
        ("sequence", ' sequence="1"', ""),
        ("items", "<elic:Items>", "<elic:Things>"),
    ):

        def raw(text, old=old, new=new):
            result = text.replace(old, new, 1)
            if new == "<elic:Other>":
                result = result.replace("</elic:Reference>", "</elic:Other>", 1)
            if new == "<elic:Things>":
                result = result.replace("</elic:Items>", "</elic:Things>", 1)
            return result

        n.xml(f"missing-field/{name}", "", raw=raw)

    # ------------------------------------------------------------------ duplicated lines
    n.csv(
        "duplicate-line/two-rows-pos-1",
        lambda rows: rows[1].__setitem__("Pos.", "1"),
        "line number 1 is also used",
        lines=2,
    )
    n.csv(
        "duplicate-line/three-rows-pos-2",
        lambda rows: [r.__setitem__("Pos.", "2") for r in rows],
        "line number 2 is also used",
        lines=3,
    )
    n.json(
        "duplicate-line/lineNo-1",
        lambda r: r["goods"].append(dict(r["goods"][0])),
        "line number 1 is also used",
    )
    n.xml(
        "duplicate-line/sequence-1",
        "line number 1 is also used",
        raw=lambda t: t.replace(
            "</elic:Item></elic:Items>",
            "</elic:Item>"
            + t[t.index('<elic:Item sequence="1">') : t.index("</elic:Item>")]
            + "</elic:Item></elic:Items>",
        ),
    )
    n.csv(
        "inconsistent/holder-differs",
        lambda rows: rows[1].__setitem__("EORI-Nummer", "DE9999999"),
        "the rows of one licence disagree",
        lines=2,
    )
    for value in ("0", "-1", "1.5", "abc", "1" * 30):
        n.csv(f"bad-line-number/{value[:12]}", _set_row("Pos.", value), "", path="line_number")
        n.json(
            f"bad-line-number/{value[:12]}",
            lambda r, v=value: r["goods"][0].__setitem__("lineNo", v),
            "",
            path="line_number",
        )
        n.xml(f"bad-line-number/{value[:12]}", "", path="line_number", sequence=value)
    for value in ("0", "-1", "1.5", "x"):
        n.json(
            f"bad-revision/{value}",
            lambda r, v=value: r.__setitem__("revision", v),
            "",
            path="version",
        )
        n.xml(f"bad-version/{value}", "", path="version", version=value)
    # Past the ledger's integer column: once accepted, then the whole file failed on saving.
    for value in ("2147483648", "9223372036854775808", "99999999999999999999"):
        n.json(
            f"huge-revision/{value}",
            lambda r, v=value: r.__setitem__("revision", int(v)),
            "a version is a whole number from 1 to 2147483647",
            path="version",
        )
        n.xml(
            f"huge-version/{value}",
            "a version is a whole number from 1 to 2147483647",
            path="version",
            version=value,
        )
    n.xml(f"huge-version/{'9' * 101}", "digits", path="version", version="9" * 101)

    # ------------------------------------------------------------------ absurd sizes
    for size in (1_000, 100_000, 1_000_000):
        if size <= 100_000:  # a larger CSV field makes the whole file unreadable (file cases)
            n.csv(
                f"absurd-size/holder-{size}",
                _set_row("Ausführer", "A" * size),
                "characters; at most",
                path="holder_name",
            )
        n.json(
            f"absurd-size/holder-{size}",
            lambda r, s=size: r["licensee"].__setitem__("name", "A" * s),
            "characters; at most",
            path="holder_name",
        )
        n.xml(
            f"absurd-size/holder-{size}",
            "characters; at most",
            path="holder_name",
            holder="N" * size,
        )
    n.csv(
        "absurd-size/number",
        _set_row("Genehmigungsnummer", "N" * 10_000),
        "the licence number is",
        path="number",
    )
    n.json(
        "absurd-size/number",
        lambda r: r.__setitem__("reference", "N" * 10_000),
        "the licence number is",
        path="number",
    )
    n.json(
        "absurd-size/many-destinations",
        lambda r: r["goods"][0].__setitem__("destinations", ["XX"] * 10_000),
        "",
        path="destinations",
    )

    # ------------------------------------------------------------------ hostile text
    n.json("wrong-shape/record-is-list", lambda r: [r], "a licence record is a JSON object")
    n.json(
        "wrong-shape/record-is-string",
        lambda r: r["note"],
        "a licence record is a JSON object",
    )
    n.json(
        "wrong-shape/goods-is-object",
        lambda r: r.__setitem__("goods", {"a": 1}),
        "should be a list of lines",
    )
    n.json(
        "wrong-shape/line-is-number",
        lambda r: r["goods"].append(7),
        "a licence line is a JSON object",
    )


class _Literal:
    """A JSON literal written as is (NaN, Infinity, 1e400) by `_json_dumps`."""

    def __init__(self, text: str) -> None:
        self.text = text


def json_dumps(value: Any) -> str:
    """JSON with `_Literal`s written as they are."""
    if isinstance(value, _Literal):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {json_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(json_dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _certificate_and_reader_cases(n: _National) -> None:
    """Records that were once let through (fuzzing found most): text a certificate cannot
    carry, general authorisations and licence numbers the certificate schema refuses, numbers
    too large for a C long in a date, members written twice. Each must be rejected now."""
    not_xml = "which XML 1.0 (the certificate) cannot carry"
    for name, value in (
        ("nul", "Sni\u0000per"),
        ("escape", "Sni\u001bper"),
        ("bell", "Sni\u0007per"),
    ):
        n.csv(
            f"control-character/{name}",
            _set_row("Warenbezeichnung", value),
            not_xml,
            path="description",
        )
        n.json(
            f"control-character/{name}",
            lambda r, v=value: r["goods"][0].__setitem__("description", v),
            not_xml,
            path="description",
        )
    n.csv(
        "control-character/holder-nul",
        _set_row("Ausführer", "A\u0000B"),
        not_xml,
        path="holder_name",
    )
    n.json(
        "lone-surrogate/description",
        lambda r: r["goods"][0].__setitem__("description", _Literal('"Sni\\ud800per"')),
        not_xml,
        path="description",
    )
    for value in ("AGG16,", "agg 16", "0", "-AGG16", "AGG 1"):
        n.csv(
            f"general-authorisation/{value}",
            _set_row("AGG-Nummer", value),
            "a general authorisation is 2 to 10 capital letters",
            path="general_authorisation",
        )
    n.json(
        "reference-with-tab/tab",
        lambda r: r.__setitem__("reference", r["reference"] + "\tX"),
        "a licence number has no tab or line break inside",
        path="number",
    )
    n.xml(
        "reference-with-newline/newline",
        "a licence number has no tab or line break inside",
        path="number",
        raw=lambda t: t.replace("</elic:Reference>", "\nX</elic:Reference>", 1),
    )
    for name, value in (
        ("day", "99999999999999999999.01.2026"),
        ("month", "01.99999999999999999999.2026"),
    ):
        n.csv(
            f"impossible-date/{name}-beyond-any-integer",
            _set_row("Gültig ab", value),
            "is not a date written %d.%m.%Y (a number in it is far too large)",
            path="valid_from",
        )
    n.json(
        "exponent-beyond-decimal/quantity",  # once an InvalidOperation out of the JSON reader
        lambda r: r["goods"][0]["quantity"].__setitem__(
            "amount", _Literal("4" * 98 + "1e" + "4" * 25)
        ),
        "is not a number",
        path="quantity",
    )
    n.json(
        "duplicate-member/quantity",
        lambda r: _Duplicates(r, ("goods", 0, "quantity", "amount"), "900000"),
        "member 'amount' appears more than once in one object",
        path="goods[0].quantity.amount",
    )
    n.json(
        "duplicate-member/reference",
        lambda r: _Duplicates(r, ("reference",), "GB-SOMEONE-ELSE"),
        "member 'reference' appears more than once in one object",
        path="reference",
    )


class _Duplicates:
    """A JSON record with one member written twice (`json_dumps` writes both)."""

    def __init__(self, record: dict[str, Any], path: tuple, second: Any) -> None:
        self.record = record
        self.path = path
        self.second = second


def national_record_cases() -> list[NationalCase]:
    n = _National()
    _national_record_cases(n)
    _certificate_and_reader_cases(n)
    return n.cases


def national_file_cases(canary: Path, listener_url: str) -> list[NationalCase]:
    """Whole files that cannot be read at all."""
    n = _National()
    good_csv = csv_file([csv_record("OK-FILE-1", "file")])
    good_json = json_file([json_record("OK-FILE-1", "file")])
    good_xml = xml_file([xml_record("OK-FILE-1", "file")])
    targets = [PASSWD, canary.as_uri(), DISCARD_URL, listener_url]
    for number, target in enumerate(targets):
        doctype = f'<!DOCTYPE elic:LicenceExport [<!ENTITY xxe SYSTEM "{target}">]>\n'
        text = good_xml.decode("utf-8")
        body = text.split("\n", 1)[1].replace("SIA Baltijas", "&xxe;", 1)
        n.unreadable(
            "xml",
            f"xxe/{number}",
            ('<?xml version="1.0"?>\n' + doctype + body).encode(),
            "declares a DTD or entities",
        )
        n.unreadable(
            "xml",
            f"external-dtd/{number}",
            f'<!DOCTYPE elic:LicenceExport SYSTEM "{target}">\n{body}'.encode(),
            "declares a DTD or entities",
        )
        n.unreadable(
            "xml",
            f"parameter-entity/{number}",
            f'<!DOCTYPE x [<!ENTITY % p SYSTEM "{target}"> %p;]>\n{body}'.encode(),
            "declares a DTD or entities",
        )
    for depth in (3, 6, 9):
        entities = ['<!ENTITY l0 "lol">'] + [
            f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, depth + 1)
        ]
        body = good_xml.decode().split("\n", 1)[1].replace("SIA Baltijas", f"&l{depth};", 1)
        n.unreadable(
            "xml",
            f"billion-laughs/{depth}",
            (f"<!DOCTYPE x [{''.join(entities)}]>\n" + body).encode(),
            "declares a DTD or entities",
        )
    body = good_xml.decode().split("\n", 1)[1].replace("SIA Baltijas", "&a;" * 2000, 1)
    n.unreadable(
        "xml",
        "quadratic-blowup",
        (f'<!DOCTYPE x [<!ENTITY a "{"x" * 50_000}">]>\n' + body).encode(),
        "declares a DTD or entities",
    )
    n.unreadable(
        "xml",
        "dtd-only",
        b"<!DOCTYPE x>\n" + good_xml.split(b"\n", 1)[1],
        "declares a DTD or entities",
    )
    for cut in (10, 100, len(good_xml) // 2, len(good_xml) - 5):
        n.unreadable("xml", f"truncated/{cut}", good_xml[:cut], "is not well-formed XML")
    n.unreadable(
        "xml",
        "invalid-utf8",
        good_xml.replace(b"Baltijas", b"Balt\xffijas", 1),
        "is not well-formed XML",
    )
    n.unreadable(
        "xml",
        "latin-1-as-utf8",
        good_xml.decode().replace("SIA", "Präzision").encode("latin-1", errors="replace"),
        "is not well-formed XML",
    )
    n.unreadable("xml", "empty", b"", "is empty")
    n.unreadable("xml", "not-xml", b"Genehmigungsnummer;Status\r\n", "is not well-formed XML")
    n.unreadable("xml", "too-deep", ("<a>" * 300 + "</a>" * 300).encode(), "is not well-formed XML")
    n.unreadable(
        "xml",
        "wrong-namespace",
        good_xml.replace(ELIC_NS.encode(), b"urn:eu:other:1"),
        "is in namespace urn:eu:other:1, not urn:eu:ec:trade:dual-use:elicensing:export:1",
    )
    n.unreadable(
        "xml",
        "namespace-with-braces",
        good_xml.replace(
            f'xmlns:elic="{ELIC_NS}"'.encode(),
            f'xmlns:elic="urn:{{x}}{ELIC_NS}" xmlns="relative"'.encode(),
            1,
        ),
        "the root element LicenceExport is in namespace urn:{x}urn:eu",
    )
    n.unreadable(
        "xml",
        "wrong-root",
        good_xml.replace(b"LicenceExport", b"Export"),
        "the root element is {urn:eu:ec:trade:dual-use:elicensing:export:1}Export, not",
    )

    n.unreadable(
        "json", "invalid-utf8", good_json.replace(b"Precision", b"Pre\xffcision", 1), "is not utf-8"
    )
    n.unreadable(
        "json",
        "latin-1",
        good_json.decode().replace("Precision", "Präzision").encode("latin-1"),
        "is not utf-8",
    )
    n.unreadable("json", "utf-16", good_json.decode().encode("utf-16"), "is not utf-8")
    n.unreadable(
        "json",
        "encoded-surrogate",
        good_json.replace(b"Precision", b"Pre\xed\xa0\x80cision", 1),
        "is not utf-8",
    )
    for cut in (1, 50, len(good_json) // 2, len(good_json) - 2):
        n.unreadable("json", f"truncated/{cut}", good_json[:cut], "is not well-formed JSON")
    n.unreadable("json", "empty", b"", "is not well-formed JSON")
    n.unreadable("json", "deep-nesting", b"[" * 100_000 + b"]" * 100_000, "cannot be read as JSON")
    n.unreadable(
        "json", "huge-integer", b'{"licences": [' + b"9" * 5000 + b"]}", "cannot be read as JSON"
    )
    n.unreadable("json", "not-an-object", b"[1, 2, 3]", "should be the list of licences")
    n.unreadable(
        "json",
        "licences-missing",
        b'{"export": {}}',
        "should be the list of licences but is absent",
    )
    n.unreadable(
        "json",
        "licences-object",
        b'{"licences": {"a": 1}}',
        "should be the list of licences but is a dict",
    )
    n.unreadable("json", "single-quotes", b"{'licences': []}", "is not well-formed JSON")
    n.unreadable("json", "trailing-comma", b'{"licences": [],}', "is not well-formed JSON")
    n.unreadable("json", "xml-instead", good_xml, "is not well-formed JSON")

    header = good_csv.split(b"\r\n", 1)[0]
    # A file in another encoding is an encoding problem, never a missing column.
    latin_text = good_csv.decode("latin-1")
    n.unreadable(
        "csv",
        "utf-8-header",
        latin_text.encode("utf-8"),
        "encoding problem: bafa_ausfuhr_hostile-",
    )
    n.unreadable("csv", "utf-16", latin_text.encode("utf-16"), "UTF-16 (little-endian) byte order")
    n.unreadable("csv", "utf-16-be-no-mark", latin_text.encode("utf-16-be"), "as in UTF-16")
    n.unreadable("csv", "utf-8-mark", codecs.BOM_UTF8 + latin_text.encode("utf-8"), "UTF-8 byte")
    n.unreadable("csv", "empty", b"", "has no header row")
    huge_field = csv_file([csv_record("OK-FILE-2", "A" * 1_000_000)])
    n.unreadable("csv", "absurd-field", huge_field, "field larger than field limit")
    n.unreadable("csv", "blank-lines", b"\r\n\r\n;;;\r\n", "has no header row")
    n.unreadable("csv", "comma-separated", header.replace(b";", b",") + b"\r\n", "has no column")
    n.unreadable(
        "csv",
        "no-number-column",
        header.replace(b"Genehmigungsnummer", b"Nummer") + b"\r\n",
        "has no column 'Genehmigungsnummer'",
    )
    return n.cases


def unclosed_quote_file(count: int = 5, broken: tuple[int, ...] = (1,)) -> bytes:
    """A CSV export of licences OK-QUOTE-0.. in which the goods description of each licence in
    `broken` opens a quote that is never closed (the csv module alone would read every later
    line into that one field)."""
    data = csv_file([csv_record(f"OK-QUOTE-{i}", f"quote-{i}") for i in range(count)])
    rows = data.split(b"\r\n")
    for index in broken:
        rows[index + 1] = rows[index + 1].replace(
            ";W\u00e4rmebild".encode("latin-1"), ';"W\u00e4rmebild'.encode("latin-1")
        )
    return b"\r\n".join(rows)


def national_case_file(
    format_: str, cases: list[NationalCase], valid: list[tuple[str, Any]]
) -> bytes:
    """One file of `format_` holding every record case and the valid records, interleaved."""
    records: list[Any] = []
    valid_iter = iter(valid)
    for index, case in enumerate(cases):
        records.append(case.record)
        if index % 5 == 4:
            item = next(valid_iter, None)
            if item is not None:
                records.append(item[1])
    records.extend(record for _, record in valid_iter)
    if format_ == "csv":
        return csv_file(records)
    if format_ == "xml":
        return xml_file(records)
    parts = [_json_record_text(record) for record in records]
    return ('{"export": {"system": "LITE"}, "licences": [\n' + ",\n".join(parts) + "\n]}\n").encode(
        "utf-8"
    )


def _json_record_text(record: Any) -> str:
    if isinstance(record, _Duplicates):
        text = json_dumps(record.record)
        # Write the member a second time, right after the first.
        *_, member = record.path
        node = record.record
        for step in record.path[:-1]:
            node = node[step]
        first = f"{json.dumps(member)}: {json_dumps(node[member])}"
        return text.replace(first, f"{first}, {json.dumps(member)}: {json.dumps(record.second)}", 1)
    return json_dumps(record)


# =========================================================================== SOAP answers


SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MESSAGES_NS = "urn:elicensing-bridge:certex:messages:1.0"
SOAP_MESSAGE_ID = "hostile-soap-1"


@dataclass(frozen=True)
class SoapCase:
    """One answer of the hostile server: HTTP status, headers, body and how it is sent."""

    name: str
    body: bytes
    code: str  # the DeliveryError's code (a prefix ending in "-" matches any)
    transient: bool
    reason: str  # a substring of the DeliveryError's reason
    status: int = 200
    content_type: str = "text/xml; charset=utf-8"
    # normal | chunked (no Content-Length) | short (Content-Length says more than is sent) |
    # chunked-broken | silent (never answers) | stall-body (headers, then nothing) | trickle (a
    # byte of the body now and then, forever) | trickle-headers (the same, from the status
    # line on) | close (closes without a word)
    behaviour: str = "normal"

    @property
    def family(self) -> str:
        return self.name.split("/", 1)[0]


def soap_envelope(body: str, *, envelope_ns: str = SOAP_ENV, prolog: str = "") -> bytes:
    return (
        f"<?xml version='1.0' encoding='UTF-8'?>\n{prolog}"
        f'<soap-env:Envelope xmlns:soap-env="{envelope_ns}"><soap-env:Body>{body}'
        "</soap-env:Body></soap-env:Envelope>"
    ).encode()


def acknowledgement(
    *,
    message_id: str = SOAP_MESSAGE_ID,
    status: str = "ACCEPTED",
    receipt: str = "CUS-2026-000001",
    received_at: str = "2026-11-28T09:30:00Z",
    namespace: str = MESSAGES_NS,
    extra: str = "",
) -> str:
    return (
        f'<m:SubmitCertificateResponse xmlns:m="{namespace}">'
        f"<m:MessageId>{message_id}</m:MessageId><m:Status>{status}</m:Status>"
        f"<m:ReceiptId>{receipt}</m:ReceiptId><m:ReceivedAt>{received_at}</m:ReceivedAt>{extra}"
        "</m:SubmitCertificateResponse>"
    )


def fault(faultcode: str | None, faultstring: str | None, detail: str | None = None) -> str:
    parts = ["<soap-env:Fault>"]
    if faultcode is not None:
        parts.append(f"<faultcode>{faultcode}</faultcode>")
    if faultstring is not None:
        parts.append(f"<faultstring>{faultstring}</faultstring>")
    if detail is not None:
        parts.append(f"<detail>{detail}</detail>")
    parts.append("</soap-env:Fault>")
    return "".join(parts)


def certex_fault(code: str, reason: str, transient: str | None) -> str:
    flag = "" if transient is None else f"<m:Transient>{transient}</m:Transient>"
    return (
        f'<m:CertexFault xmlns:m="{MESSAGES_NS}"><m:Code>{code}</m:Code>'
        f"<m:Reason>{reason}</m:Reason>{flag}</m:CertexFault>"
    )


def soap_cases(canary: Path, listener_url: str) -> list[SoapCase]:
    cases: list[SoapCase] = []
    add = cases.append
    good = soap_envelope(acknowledgement())
    invalid = "invalid-response"
    # Either wording names the fault precisely: unparsable, or parsed but not the contract.
    NOT_SOAP = "is not a SOAP message|is not a valid acknowledgement"

    # --- malformed XML
    for cut in (1, 20, 60, 120, 200, 300, len(good) - 30, len(good) - 1):
        add(
            SoapCase(
                f"malformed/truncated-{cut}",
                good[:cut],
                invalid,
                False,
                NOT_SOAP,
            )
        )
    for name, body in {
        "garbage": b"\x00\x01\x02 garbage",
        "text": b"OK",
        "unclosed": good.replace(b"</soap-env:Envelope>", b""),
        "mismatched": good.replace(b"</m:Status>", b"</m:State>"),
        "two-roots": good + good,
        "unescaped-ampersand": good.replace(b"CUS-2026", b"CUS&2026"),
        "undefined-prefix": good.replace(b"<m:Status>", b"<x:Status>").replace(
            b"</m:Status>", b"</x:Status>"
        ),
        "nul": good.replace(b"CUS-2026", b"CUS\x002026"),
        "json": b'{"Status": "ACCEPTED"}',
    }.items():
        add(SoapCase(f"malformed/{name}", body, invalid, False, NOT_SOAP))
    add(SoapCase("malformed/empty", b"", invalid, False, NOT_SOAP))

    # --- XXE, DTDs, bombs
    targets = [PASSWD, canary.as_uri(), DISCARD_URL, listener_url]
    for number, target in enumerate(targets):
        prolog = f'<!DOCTYPE soap-env:Envelope [<!ENTITY xxe SYSTEM "{target}">]>\n'
        body = soap_envelope(acknowledgement(receipt="&xxe;"), prolog=prolog)
        add(SoapCase(f"xxe/entity-{number}", body, invalid, False, NOT_SOAP))
        prolog = f'<!DOCTYPE soap-env:Envelope SYSTEM "{target}">\n'
        add(
            SoapCase(
                f"xxe/external-dtd-{number}",
                soap_envelope(acknowledgement(), prolog=prolog),
                invalid,
                False,
                NOT_SOAP,
            )
        )
        prolog = f'<!DOCTYPE soap-env:Envelope [<!ENTITY % p SYSTEM "{target}"> %p;]>\n'
        add(
            SoapCase(
                f"xxe/parameter-entity-{number}",
                soap_envelope(acknowledgement(), prolog=prolog),
                invalid,
                False,
                NOT_SOAP,
            )
        )
        fault_body = fault("soap-env:Client", "&xxe;")
        prolog = f'<!DOCTYPE soap-env:Envelope [<!ENTITY xxe SYSTEM "{target}">]>\n'
        add(
            SoapCase(
                f"xxe/in-fault-{number}",
                soap_envelope(fault_body, prolog=prolog),
                invalid,
                False,
                NOT_SOAP,
                status=500,
            )
        )
    for depth in (3, 9):
        entities = ['<!ENTITY l0 "lol">'] + [
            f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, depth + 1)
        ]
        prolog = f"<!DOCTYPE soap-env:Envelope [{''.join(entities)}]>\n"
        add(
            SoapCase(
                f"bomb/billion-laughs-{depth}",
                soap_envelope(acknowledgement(receipt=f"&l{depth};"), prolog=prolog),
                invalid,
                False,
                NOT_SOAP,
            )
        )
    prolog = f'<!DOCTYPE soap-env:Envelope [<!ENTITY a "{"x" * 50_000}">]>\n'
    add(
        SoapCase(
            "bomb/quadratic",
            soap_envelope(acknowledgement(receipt="&a;" * 1000), prolog=prolog),
            invalid,
            False,
            NOT_SOAP,
        )
    )
    add(
        SoapCase(
            "dtd/empty",
            soap_envelope(acknowledgement(), prolog="<!DOCTYPE soap-env:Envelope>\n"),
            invalid,
            False,
            NOT_SOAP,
        )
    )

    # --- wrong namespaces and shapes
    for name, body in {
        "soap-1.2-envelope": soap_envelope(
            acknowledgement(), envelope_ns="http://www.w3.org/2003/05/soap-envelope"
        ),
        "unknown-envelope": soap_envelope(acknowledgement(), envelope_ns="urn:not-soap"),
        "messages-namespace": soap_envelope(
            acknowledgement(namespace="urn:elicensing-bridge:certex:messages:2.0")
        ),
        "no-namespace": soap_envelope(acknowledgement(namespace="")),
        "other-element": soap_envelope(f'<m:SomethingElse xmlns:m="{MESSAGES_NS}"/>'),
        "extra-element": soap_envelope(acknowledgement(extra="<m:Unexpected>1</m:Unexpected>")),
        "wrong-message-id": soap_envelope(acknowledgement(message_id="someone-else")),
        "unknown-status": soap_envelope(acknowledgement(status="MAYBE")),
        "received-at-without-zone": soap_envelope(
            acknowledgement(received_at="2026-11-28T09:30:00")
        ),
        "received-at-impossible": soap_envelope(
            acknowledgement(received_at="2026-02-30T09:30:00Z")
        ),
        "missing-receipt": soap_envelope(
            acknowledgement().replace("<m:ReceiptId>CUS-2026-000001</m:ReceiptId>", "")
        ),
        "status-twice": soap_envelope(
            acknowledgement().replace(
                "<m:Status>ACCEPTED</m:Status>",
                "<m:Status>ACCEPTED</m:Status><m:Status>ACCEPTED</m:Status>",
            )
        ),
    }.items():
        add(SoapCase(f"wrong-shape/{name}", body, invalid, False, NOT_SOAP))

    # zeep fails on these with builtin errors (IndexError, TypeError): fixed, kept as regressions
    add(SoapCase("wrong-shape/empty-body", soap_envelope(""), invalid, False, NOT_SOAP))
    add(
        SoapCase(
            "wrong-shape/no-body",
            f"<?xml version='1.0'?><soap-env:Envelope xmlns:soap-env='{SOAP_ENV}'/>".encode(),
            invalid,
            False,
            NOT_SOAP,
        )
    )

    # --- faults: without detail, odd detail, odd codes
    for name, body, status, code, transient, reason in [
        (
            "client-no-detail",
            fault("soap-env:Client", "bad request"),
            500,
            "fault-client",
            False,
            "Client fault",
        ),
        (
            "server-no-detail",
            fault("soap-env:Server", "busy"),
            500,
            "fault-server",
            True,
            "Server fault",
        ),
        (
            "client-no-detail-200",
            fault("soap-env:Client", "bad request"),
            200,
            "fault-client",
            False,
            "Client fault",
        ),
        (
            "server-no-detail-200",
            fault("soap-env:Server", "busy"),
            200,
            "fault-server",
            True,
            "Server fault",
        ),
        ("no-faultstring", fault("soap-env:Server", None), 500, "fault-", True, "fault"),
        ("no-faultcode", fault(None, "what"), 500, "fault-", False, "fault"),
        ("empty-fault", fault(None, None), 500, "fault-", False, "fault"),
        ("odd-faultcode", fault("soap-env:Whatever", "odd"), 500, "fault-whatever", False, "fault"),
        ("unprefixed-faultcode", fault("Server", "busy"), 500, "fault-server", True, "fault"),
        (
            "empty-detail",
            fault("soap-env:Client", "x", ""),
            500,
            "fault-client",
            False,
            "Client fault",
        ),
        (
            "foreign-detail",
            fault("soap-env:Server", "x", "<e:Oops xmlns:e='urn:e'>1</e:Oops>"),
            500,
            "fault-server",
            True,
            "Server fault",
        ),
        (
            "certex-transient-true",
            fault("soap-env:Client", "x", certex_fault("BUSY", "try later", "true")),
            500,
            "fault-busy",
            True,
            "BUSY",
        ),
        (
            "certex-transient-false",
            fault("soap-env:Server", "x", certex_fault("BROKEN", "never", "false")),
            500,
            "fault-broken",
            False,
            "BROKEN",
        ),
        (
            "certex-transient-maybe",
            fault("soap-env:Server", "x", certex_fault("ODD", "odd", "maybe")),
            500,
            "fault-odd",
            False,
            "ODD",
        ),
        (
            "certex-no-transient-client",
            fault("soap-env:Client", "x", certex_fault("INVALID", "bad", None)),
            500,
            "fault-invalid",
            False,
            "INVALID",
        ),
        (
            "certex-no-transient-server",
            fault("soap-env:Server", "x", certex_fault("DOWN", "down", None)),
            500,
            "fault-down",
            True,
            "DOWN",
        ),
        (
            "certex-empty-code",
            fault("soap-env:Client", "x", certex_fault("", "", "false")),
            500,
            "fault-",
            False,
            "fault",
        ),
    ]:
        add(SoapCase(f"fault/{name}", soap_envelope(body), code, transient, reason, status=status))

    # --- huge answers
    big = "x" * (12 * 1024 * 1024)
    add(
        SoapCase(
            "huge/text-node",
            soap_envelope(acknowledgement(receipt=big)),
            invalid,
            False,
            NOT_SOAP,
        )
    )
    add(
        SoapCase(
            "huge/many-elements",
            soap_envelope(acknowledgement(extra="<m:X/>" * 1_000_000)),
            invalid,
            False,
            NOT_SOAP,
        )
    )
    add(
        SoapCase(
            "huge/deep",
            soap_envelope(acknowledgement(extra="<m:X>" * 5000 + "</m:X>" * 5000)),
            invalid,
            False,
            NOT_SOAP,
        )
    )
    add(
        SoapCase(
            "huge/padded-valid",
            good.replace(
                b"<soap-env:Body>", b"<soap-env:Body>" + b"<!-- padding -->" * (4 * 1024 * 1024), 1
            ),
            invalid,
            False,
            "too large",
        )
    )
    add(
        SoapCase(
            "huge/padded-valid-chunked",
            good.replace(
                b"<soap-env:Body>", b"<soap-env:Body>" + b"<!-- padding -->" * (128 * 1024), 1
            ),
            invalid,
            False,
            "too large",
            behaviour="chunked",
        )
    )

    # --- invalid UTF-8 and encodings
    for number, bad in enumerate([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf"]):
        add(
            SoapCase(
                f"invalid-utf8/{number}",
                good.replace(b"CUS-2026", b"CUS" + bad + b"2026"),
                invalid,
                False,
                NOT_SOAP,
            )
        )
    add(
        SoapCase(
            "invalid-utf8/declared-utf16",
            good.replace(b"encoding='UTF-8'", b"encoding='UTF-16'"),
            invalid,
            False,
            NOT_SOAP,
        )
    )
    add(
        SoapCase(
            "invalid-utf8/unknown-encoding",
            good.replace(b"encoding='UTF-8'", b"encoding='X-NOPE'"),
            invalid,
            False,
            NOT_SOAP,
        )
    )

    # --- HTTP 200 with HTML or something else
    for name, body, content_type in [
        (
            "html-login",
            b"<html><head><title>Login</title></head><body><form/></body></html>",
            "text/html",
        ),
        ("html-unclosed", b"<html><body><p>Service moved<br></body></html>", "text/html"),
        ("html-as-xml", b"<html><body>Gateway</body></html>", "text/xml"),
        ("plain-text", b"Service Unavailable", "text/plain"),
        ("json", b'{"error": "nope"}', "application/json"),
        (
            "xhtml",
            b'<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
            "application/xhtml+xml",
        ),
    ]:
        add(
            SoapCase(
                f"html/{name}",
                body,
                invalid,
                False,
                NOT_SOAP,
                content_type=content_type,
            )
        )

    # --- HTTP errors
    for status, transient in (
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (429, True),
        (408, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (405, False),
        (413, False),
    ):
        add(
            SoapCase(
                f"http/{status}-html",
                b"<html><body><p>error<br></body></html>",
                f"http-{status}",
                transient,
                f"HTTP {status}",
                status=status,
                content_type="text/html",
            )
        )
        # An error page that happens to be well-formed XML (many proxies write XHTML).
        add(
            SoapCase(
                f"http/{status}-xhtml",
                b"<html><body>error</body></html>",
                f"http-{status}",
                transient,
                f"HTTP {status}",
                status=status,
                content_type="text/html",
            )
        )

    # --- truncated, dropped, silent
    add(
        SoapCase(
            "truncated/content-length", good, "http-broken", True, "broke off", behaviour="short"
        )
    )
    add(
        SoapCase(
            "truncated/chunked", good, "http-broken", True, "broke off", behaviour="chunked-broken"
        )
    )
    add(
        SoapCase(
            "truncated/close-without-answer",
            b"",
            "connection-dropped",
            True,
            "dropped",
            behaviour="close",
        )
    )
    add(SoapCase("slow/never-answers", good, "timeout", True, "no answer", behaviour="silent"))
    add(
        SoapCase(
            "slow/headers-then-nothing",
            good,
            "timeout",
            True,
            "no answer",
            behaviour="stall-body",
        )
    )
    add(
        SoapCase(
            "slow/trickle",
            good,
            "timeout",
            True,
            "no answer",
            behaviour="trickle",
        )
    )
    add(
        SoapCase(
            "slow/trickled-headers",
            good,
            "timeout",
            True,
            "no answer",
            behaviour="trickle-headers",
        )
    )
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), "two SOAP cases have the same name"
    return cases


def corpus_size(samples: Path, canary: Path, listener_url: str) -> dict[str, int]:
    """How many cases of each input the corpus holds."""
    return {
        "declarations": len(declaration_cases(samples, canary=canary, listener_url=listener_url)),
        "national records": len(national_record_cases()),
        "national files": len(national_file_cases(canary, listener_url)),
        "soap answers": len(soap_cases(canary, listener_url)),
    }


def iter_all(samples: Path, canary: Path, listener_url: str) -> Iterator[Any]:
    yield from declaration_cases(samples, canary=canary, listener_url=listener_url)
    yield from national_record_cases()
    yield from national_file_cases(canary, listener_url)
    yield from soap_cases(canary, listener_url)


__all__ = [
    "CEILING",
    "SECRET",
    "WRITES_OFF",
    "DeclarationCase",
    "Fate",
    "NationalCase",
    "SoapCase",
    "corpus_size",
    "declaration_cases",
    "hostile_licences",
    "iter_all",
    "national_case_file",
    "national_file_cases",
    "national_record_cases",
    "soap_cases",
    "unclosed_quote_file",
    "valid_events",
    "valid_national_records",
]
