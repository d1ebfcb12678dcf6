"""Planning customs traffic (bridge.testkit.customs_traffic holds the kinds and builds the
corpus): the kinds' names, the licences the traffic quotes (`traffic_licences()`), the traders
and how each writes its licences off, and the planner that writes declarations, amendments and
cancellations and publishes each message through the independent oracle
(bridge.testkit.customs_traffic_oracle) in the order customs send them."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from bridge.core.envelope import build_envelope
from bridge.core.model import Licence, LicenceLine, LicenceType
from bridge.testkit.customs_traffic_oracle import Expected, TrafficOracle, payload_kind
from bridge.testkit.customs_traffic_xml import (
    ADDITIONAL_DOCUMENT_SECTION,
    DECLARATION_SECTION,
    EXPORTER_SECTION,
    GOODS_ITEM_SECTION,
    GOODS_SHIPMENT_SECTION,
    AmendmentNote,
    Doc,
    Item,
    Pointer,
    WcoDeclaration,
    render,
)
from bridge.testkit.declaration_plans import make_mrn
from bridge.testkit.envelopes import dump_envelope, envelope_document

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DEST = ("US", "IN", "AE", "BR", "SG", "JP", "KR")

# The kinds of traffic, in the order the corpus is published.
KINDS = (
    "export-dual-use",  # full exports quoting X002, X060-X072, national 9104
    "pre-lodged-arrived",  # EXD pre-lodged, then the arrived EXA: same MRN, next version
    "amendment-raise",  # partial COR amendments carrying only the amended goods item
    "amendment-lower",
    "amendment-add",  # a dual-use document added to an item
    "amendment-remove",  # the item carried without its dual-use document: given back
    "amendment-other-sections",  # header data only (packages, exporter's address)
    "amendment-chain",  # several partial amendments of one MRN in a row
    "amendment-held",  # a partial amendment published before its release
    "amendment-redelivered",  # the same amendment twice (same id; new id, same version)
    "amendment-after-validity",  # raises after the licence ended: checked on the release date
    "cancellation",  # FunctionCode 13, TypeCode INV
    "event-from-payload",  # envelopes without `event`: derived from FunctionCode/TypeCode
    "event-contradicted",  # an amendment sent as `released`, a cancellation as `amended`
    "import",  # imports of several types with import-licence documents
    "transit",
    "export-y901",  # only Y901: no dual-use licence needed
    "export-national-other",  # only national codes the deployment does not declare
    "wrapper",  # national transport wrappers around the WCO document
    "refused",  # dual-use write-offs the rules must refuse
)
IRRELEVANT_KINDS = ("import", "transit", "export-y901", "export-national-other")


@dataclass(frozen=True, slots=True)
class TrafficMessage:
    """One MQTT message of the corpus: what it is (`kind`), its envelope's members, the
    declaration planned (None for an invalidation without payload), the bytes published, and
    what the bridge must record for it (`expected`)."""

    kind: str
    message_id: str
    mrn: str
    event: str | None  # the envelope's `event` (None: left out)
    version: int
    event_time: datetime
    declaration: WcoDeclaration | None
    payload: bytes | None
    envelope: bytes
    expected: Expected
    irrelevant: bool = False
    partial_amendment: bool = False


@dataclass(frozen=True)
class TrafficCorpus:
    licences: tuple[Licence, ...]
    messages: tuple[TrafficMessage, ...]
    oracle: TrafficOracle

    @property
    def declarations(self) -> int:
        return sum(1 for m in self.messages if m.declaration is not None)

    def of_kind(self, kind: str) -> list[TrafficMessage]:
        return [m for m in self.messages if m.kind == kind]

    def mrns_of_kind(self, kind: str) -> set[str]:
        return {m.mrn for m in self.of_kind(kind)}

    def counts(self) -> Counter[str]:
        return Counter(m.kind for m in self.messages)


# ------------------------------------------------------------------------------ licences

GB_EXPORTER = "GB551234567000"
GB_OTHER = "GB662345678000"  # an exporter holding no licence
DE_EXPORTER = "DE7654321098765"
FR_EXPORTER = "FR40123456789"
NL_EXPORTER = "NL812345678B01"


def _line(number, cn, description, quantity=None, unit=None, value=None, currency=None, dest=DEST):
    return LicenceLine(
        line_number=number,
        control_list_entry="ML1.a" if cn.startswith("93") else _CLE.get(cn, "3A001.a.1"),
        description=description,
        cn_code=cn,
        quantity=None if quantity is None else Decimal(quantity),
        unit=unit,
        value=None if value is None else Decimal(value),
        currency=currency,
        destinations=dest,
    )


_CLE = {
    "84571010": "2B001.b",
    "85258900": "6A003.b.4",
    "28121990": "1C350",
    "90132000": "6A005.b",
    "85176200": "5A002.a",
    "84014000": "0A001.j",
    "84581120": "2B001.a",
    "29309098": "1C350",
    "85423190": "3A001.a.1",
    "90142080": "7A003.a",
    "88062200": "9A012.a",
    "84111100": "9A001.a",
    "68151900": "1C010.b",
    "85234910": "5D002.c.1",
    "39269097": "1C001.a",
    "85261000": "6A008.j",
}


def _licence(number, kind, state, holder, *lines, general=None, valid_to=date(2027, 12, 31)):
    return Licence(
        number=number,
        type=kind,
        issuing_member_state=state,
        issuing_authority=f"Export control authority of {state}",
        holder_name=f"Exporter {holder}",
        holder_eori=holder,
        valid_from=date(2026, 1, 1),
        valid_to=valid_to,
        lines=lines,
        general_authorisation=general,
    )


def traffic_licences() -> tuple[Licence, ...]:
    """The licences the corpus quotes: individual, global and general ones of four member
    states, ceilings by quantity, value or both, one that ends on 2026-03-31 and one of five
    items (for over-use)."""
    i, g = LicenceType.INDIVIDUAL, LicenceType.GLOBAL
    return (
        _licence(
            "GBSIEL/2026/0000123",
            i,
            "GB",
            GB_EXPORTER,
            _line(1, "84571010", "Five-axis machining centres", "5000", "NAR", "90000000", "GBP"),
            _line(2, "85258900", "Thermal imaging cameras", "20000", "NAR"),
            _line(3, "28121990", "Phosphorus oxychloride", "100000", "KGM"),
        ),
        _licence(
            "GBOIEL/2026/0000045",
            g,
            "GB",
            GB_EXPORTER,
            _line(1, "90132000", "Industrial lasers", "10000", "NAR"),
            _line(2, "85176200", "Network encryption routers", "10000", "NAR"),
            _line(3, "84571010", "Five-axis machining centres", "5000", "NAR"),
        ),
        _licence(
            "GBSIEL/2026/0000999",
            i,
            "GB",
            GB_EXPORTER,
            _line(1, "84014000", "Parts of nuclear reactors", "5", "NAR"),
        ),
        _licence(
            "DE-AG-2026-000101",
            i,
            "DE",
            DE_EXPORTER,
            _line(1, "84581120", "Numerically controlled lathes", "3000", "NAR"),
            _line(2, "29309098", "Thiodiglycol", "50000", "LTR", "10000000", "EUR"),
        ),
        _licence(
            "DE-EU001-2026-0042",
            LicenceType.UNION_GENERAL,
            "DE",
            DE_EXPORTER,
            _line(1, "85423190", "Radiation hardened circuits", None, "NAR", dest=()),
            general="EU001",
            valid_to=None,
        ),
        _licence(
            "DE-GL-2026-000007",
            g,
            "DE",
            DE_EXPORTER,
            _line(1, "90142080", "Inertial navigation systems", "10000", "NAR"),
            _line(2, "88062200", "Unmanned aerial vehicles", "2000", "NAR"),
            _line(3, "84581120", "Numerically controlled lathes", "3000", "NAR"),
        ),
        _licence(
            "DE-AG-2026-000199",
            i,
            "DE",
            DE_EXPORTER,
            _line(1, "84111100", "Turbojet engines", "1000", "NAR"),
            valid_to=date(2026, 3, 31),
        ),
        _licence(
            "FR-AGN-2026-0009",
            LicenceType.NATIONAL_GENERAL,
            "FR",
            FR_EXPORTER,
            _line(1, "68151900", "Carbon fibre preforms", None, "KGM", dest=()),
            general="FR001",
            valid_to=None,
        ),
        _licence(
            "FR-LI-2026-00077",
            i,
            "FR",
            FR_EXPORTER,
            _line(1, "85234910", "Encryption software on media", None, None, "2000000", "EUR"),
            _line(2, "39269097", "Radar absorbing panels", "50000", "MTK"),
        ),
        _licence(
            "NL-DU-2026-0311",
            i,
            "NL",
            NL_EXPORTER,
            _line(1, "85261000", "Coastal surveillance radar", "5000", "NAR"),
        ),
    )


@dataclass(frozen=True, slots=True)
class LicenceUse:
    """A way one exporter writes a licence line off: the document code and the goods."""

    code: str
    licence: str
    line: int
    cn: str
    description: str
    unit: str | None  # the line's unit (None: by value only)
    currency: str | None  # the line's currency when a value may be declared
    destinations: tuple[str, ...] = DEST


@dataclass(frozen=True, slots=True)
class Trade:
    country: str
    eori: str
    currency: str
    uses: tuple[LicenceUse, ...]
    adds: tuple[tuple[str, LicenceUse], ...] = ()  # (CN, a second licence's use) for "add"


GB_TRADE = Trade(
    "GB",
    GB_EXPORTER,
    "GBP",
    (
        LicenceUse("9104", "GBSIEL/2026/0000123", 1, "84571010", "Machining centres", "NAR", "GBP"),
        LicenceUse("X002", "GBSIEL/2026/0000123", 2, "85258900", "Thermal cameras", "NAR", None),
        LicenceUse(
            "X060", "GBSIEL/2026/0000123", 3, "28121990", "Phosphorus oxychloride", "KGM", None
        ),
        LicenceUse("X070", "GBOIEL/2026/0000045", 1, "90132000", "Industrial lasers", "NAR", None),
        LicenceUse("X070", "GBOIEL/2026/0000045", 2, "85176200", "Encryption routers", "NAR", None),
    ),
    adds=(("84571010", LicenceUse("X070", "GBOIEL/2026/0000045", 3, "84571010", "", "NAR", None)),),
)
DE_TRADE = Trade(
    "DE",
    DE_EXPORTER,
    "EUR",
    (
        LicenceUse("X060", "DE-AG-2026-000101", 1, "84581120", "CNC lathes", "NAR", None),
        LicenceUse("X002", "DE-AG-2026-000101", 2, "29309098", "Thiodiglycol", "LTR", "EUR"),
        LicenceUse(
            "X061", "DE-EU001-2026-0042", 1, "85423190", "Hardened ICs", "NAR", None, ("US", "JP")
        ),
        LicenceUse("X070", "DE-GL-2026-000007", 1, "90142080", "Navigation systems", "NAR", None),
        LicenceUse("X070", "DE-GL-2026-000007", 2, "88062200", "UAVs", "NAR", None),
    ),
    adds=(("84581120", LicenceUse("X070", "DE-GL-2026-000007", 3, "84581120", "", "NAR", None)),),
)
FR_TRADE = Trade(
    "FR",
    FR_EXPORTER,
    "EUR",
    (
        LicenceUse("X071", "FR-AGN-2026-0009", 1, "68151900", "Carbon fibre preforms", "KGM", None),
        LicenceUse("X002", "FR-LI-2026-00077", 1, "85234910", "Encryption software", None, "EUR"),
        LicenceUse(
            "X060", "FR-LI-2026-00077", 2, "39269097", "Radar absorbing panels", "MTK", None
        ),
    ),
)
NL_TRADE = Trade(
    "NL",
    NL_EXPORTER,
    "EUR",
    (LicenceUse("X072", "NL-DU-2026-0311", 1, "85261000", "Surveillance radar", "NAR", None),),
)
TRADES = (GB_TRADE, DE_TRADE, FR_TRADE, NL_TRADE)
_DECIMALS = {"NAR": 0, "KGM": 3, "LTR": 1, "MTK": 2}
_ORDINARY = (
    ("N935", "INV-{n}", "Commercial invoice", "AC"),
    ("C512", "GBSDE{n}", None, None),
    ("Y935", "1332/2013", "Reg 1332/2013 exempt", None),
)


# ------------------------------------------------------------------------------- planning


class TrafficPlanner:
    """Plans the corpus kind by kind; every message goes through the oracle as it is added,
    in publication order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"customs-traffic:{seed}")
        self.mrn_rng = random.Random(f"customs-traffic-mrn:{seed}")
        self.licences = traffic_licences()
        self.oracle = TrafficOracle(self.licences)
        self.messages: list[TrafficMessage] = []
        self.serial = 0
        self.clock = START
        # Per MRN, the goods items as customs hold them now (ordinary documents too): where
        # an amendment's Pointers name a document by its place.
        self.views: dict[str, dict[int, Item]] = {}

    # ----------------------------------------------------------------- building blocks

    def mrn(self, country: str) -> str:
        self.serial += 1
        return make_mrn(self.mrn_rng, self.serial, year=2026, country=country)

    def tick(self, minutes: int = 7) -> datetime:
        self.clock += timedelta(minutes=minutes)
        return self.clock

    def write_off(self, use: LicenceUse, sequence: int, *, scale: Decimal = Decimal(1)) -> Doc:
        rng = self.rng
        quantity = unit = amount = currency = None
        if use.unit is not None:
            decimals = _DECIMALS[use.unit]
            raw = Decimal(rng.randint(2 * 10**decimals, 40 * 10**decimals)).scaleb(-decimals)
            quantity = (raw * scale).quantize(Decimal(1).scaleb(-decimals)).normalize()
            unit = use.unit
            if use.unit == "KGM" and rng.random() < 0.5:
                quantity, unit = (quantity * 1000).normalize(), "GRM"
            elif use.unit == "KGM" and rng.random() < 0.5:
                unit = "KGM#G"
        if use.currency is not None and (use.unit is None or rng.random() < 0.5):
            amount = (Decimal(rng.randint(50_000, 900_000)) / 100 * scale).quantize(Decimal("0.01"))
            currency = use.currency
        return Doc(
            code=use.code,
            reference=use.licence,
            status=rng.choice(("EA", "ES", "AE")),
            name="Dual-use export licence",
            quantity=quantity,
            unit=unit,
            amount=amount,
            currency=currency,
            line_number=use.line,
        )

    def ordinary(self, sequence: int) -> list[Doc]:
        chosen = self.rng.sample(_ORDINARY, self.rng.randint(1, 2))
        return [
            Doc(code, ref.format(n=f"{sequence:04d}"), status, name)
            for code, ref, name, status in chosen
        ]

    def export(
        self,
        exporter: Trade,
        *,
        items: int | None = None,
        type_code: str = "EXA",
        wrapper: str = "metadata",
        uses: tuple[LicenceUse, ...] | None = None,
    ) -> WcoDeclaration:
        """A whole export declaration (FunctionCode 9) of `exporter`, every goods item but
        perhaps one quoting a dual-use document beside ordinary ones."""
        rng = self.rng
        count = items or rng.randint(1, 4)
        chosen = uses or tuple(rng.choice(exporter.uses) for _ in range(count))
        destination = rng.choice(sorted(set.intersection(*(set(u.destinations) for u in chosen))))
        goods = []
        for sequence, use in enumerate(chosen, start=1):
            documents = self.ordinary(sequence)
            documents.insert(rng.randint(0, len(documents)), self.write_off(use, sequence))
            goods.append(Item(sequence, use.cn, use.description, tuple(documents)))
        if count > 1 and rng.random() < 0.3:  # an item that needs no licence
            goods.append(
                Item(
                    len(goods) + 1,
                    "94036090",
                    "Office furniture",
                    (Doc("Y901", "Not dual-use", None, "Not subject to 2021/821"),),
                )
            )
        return WcoDeclaration(
            function_code="9",
            type_code=type_code,
            lrn=f"{exporter.country}LRN{self.serial:06d}{rng.randint(100, 999)}",
            mrn=None,
            country=exporter.country,
            items=tuple(goods),
            exporter=exporter.eori,
            declarant=f"{exporter.country}{rng.randint(10**9, 10**10 - 1)}",
            destination=destination,
            export_country=exporter.country,
            total_packages=len(goods) * 2,
            currency=exporter.currency,
            wrapper=wrapper,
        )

    def amendment(
        self,
        release: WcoDeclaration,
        items: tuple[Item, ...],
        *,
        reason: str = "32",
        why: str = "Amend write-off of the licence",
        header: dict | None = None,
    ) -> WcoDeclaration:
        """A post-clearance amendment (13/COR) carrying only `items` (each with its documents
        only) and the header data in `header`, with an Amendment and its Pointers per item."""
        view = self.views.setdefault(release.mrn, {i.sequence: i for i in release.items})
        notes = []
        for item in items:
            paths = self._pointer_paths(view.get(item.sequence), item)
            notes += [
                AmendmentNote(reason, p, f"{why} on goods item {item.sequence}") for p in paths
            ]
            view[item.sequence] = _as_amended(view.get(item.sequence), item, paths)
        header = header or {}
        if "total_packages" in header:
            notes.append(
                AmendmentNote(
                    "28",
                    (Pointer(DECLARATION_SECTION, 1, "146"),),
                    "Amend TotalPackageQuantity DE 6/18",
                )
            )
        if "exporter_address" in header:
            notes.append(
                AmendmentNote(
                    "29",
                    (Pointer(DECLARATION_SECTION, 1), Pointer(EXPORTER_SECTION, 1, "R031")),
                    "Amend exporter name and address",
                )
            )
        return WcoDeclaration(
            function_code="13",
            type_code="COR",
            lrn=f"{release.lrn}-AME{self.rng.randint(10, 99)}",
            mrn=release.mrn,
            country=release.country,
            items=tuple(replace(item, full=False, destination=None) for item in items),
            amendments=tuple(notes),
            currency=release.currency,
            wrapper=release.wrapper,
            full=False,
            total_packages=header.get("total_packages"),
            exporter_name=header.get("exporter_name"),
            exporter_address=header.get("exporter_address"),
        )

    def _pointer_paths(self, original: Item | None, item: Item) -> list[tuple[Pointer, ...]]:
        """The Pointer paths to what the amended `item` changes: the item whole (a path ending
        at 68A n), or each AdditionalDocument changed, removed or added by its place among the
        item's documents as released (68A n, then 02A m)."""
        to_item = (
            Pointer(DECLARATION_SECTION, 1),
            Pointer(GOODS_SHIPMENT_SECTION, 1),
            Pointer(GOODS_ITEM_SECTION, item.sequence),
        )
        if original is None or self.rng.random() < 0.3:
            return [to_item]
        now = {(d.code, d.reference): d for d in item.documents}
        places = [
            position
            for position, doc in enumerate(original.documents, start=1)
            if doc.writes_off and now.get((doc.code, doc.reference)) != doc
        ]
        before = {(d.code, d.reference) for d in original.documents}
        added = [d for d in item.documents if (d.code, d.reference) not in before]
        places += range(len(original.documents) + 1, len(original.documents) + 1 + len(added))
        return [(*to_item, Pointer(ADDITIONAL_DOCUMENT_SECTION, place)) for place in places]

    def cancellation(self, release: WcoDeclaration) -> WcoDeclaration:
        return WcoDeclaration(
            function_code="13",
            type_code="INV",
            lrn=f"{release.lrn}-CAN",
            mrn=release.mrn,
            country=release.country,
            full=False,
            amendments=(
                AmendmentNote("1", (Pointer(DECLARATION_SECTION, 1),), "Goods not exported"),
            ),
        )

    def publish(
        self,
        kind: str,
        mrn: str,
        declaration: WcoDeclaration | None,
        *,
        version: int,
        event: str | None = "auto",
        message_id: str | None = None,
        at: datetime | None = None,
        irrelevant: bool = False,
    ) -> TrafficMessage:
        """Add one message; `event` "auto" writes the payload's own kind in the envelope, None
        leaves it out, anything else is sent as it is (perhaps contradicting the payload)."""
        at = at or self.tick()
        if declaration is not None and declaration.mrn is None:
            declaration = replace(declaration, mrn=mrn)
        original = declaration is not None and declaration.function_code == "9"
        # A held amendment may have come before its release: its view stands.
        if original and (mrn not in self.views or version > 1):
            self.views[mrn] = {item.sequence: item for item in declaration.items}
        kind_of_payload = payload_kind(declaration) if declaration else "invalidated"
        sent = kind_of_payload if event == "auto" else event
        message_id = message_id or f"{mrn}-{sent or kind_of_payload}-v{version}"
        payload = render(declaration, message_ref=message_id) if declaration else None
        # A bare declaration names no customs country: the envelope does.
        country = declaration.country if declaration and "bare" in declaration.wrapper else None
        if sent is None:
            document = envelope_document(
                message_id=message_id,
                mrn=mrn,
                payload=payload.decode("utf-8") if payload else None,
                event=None,
                version=version,
                event_time=at.isoformat(),
                country=country,
            )
            envelope = dump_envelope(document)
        else:
            envelope = build_envelope(
                message_id=message_id,
                mrn=mrn,
                event=sent,
                event_time=at,
                declaration_version=version,
                payload=payload,
                country=country,
            )
        expected = self.oracle.receive(
            message_id, mrn, sent, version, declaration, at.date(), country
        )
        message = TrafficMessage(
            kind=kind,
            message_id=message_id,
            mrn=mrn,
            event=sent,
            version=version,
            event_time=at,
            declaration=declaration,
            payload=payload,
            envelope=envelope,
            expected=expected,
            irrelevant=irrelevant,
            partial_amendment=bool(declaration and declaration.type_code == "COR"),
        )
        self.messages.append(message)
        return message

    def released(self, kind: str, exporter: Trade | None = None, **options) -> WcoDeclaration:
        exporter = exporter or self.rng.choice(TRADES)
        declaration = self.export(exporter, **options)
        mrn = self.mrn(exporter.country)
        self.publish(kind, mrn, declaration, version=1)
        return replace(declaration, mrn=mrn)


def _as_amended(current: Item | None, item: Item, paths: list[tuple[Pointer, ...]]) -> Item:
    """The goods item as customs hold it after an amendment carrying `item` with `paths`."""
    if current is None or all(path[-1].section == GOODS_ITEM_SECTION for path in paths):
        return item  # sent whole
    carried = {(d.code, d.reference): d for d in item.documents}
    documents = []
    for doc in current.documents:
        key = (doc.code, doc.reference)
        if key in carried:
            documents.append(carried.pop(key))
        elif not doc.writes_off:
            documents.append(doc)
    documents += carried.values()
    return replace(current, documents=tuple(documents))
