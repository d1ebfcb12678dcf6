"""A corpus of customs traffic in the shapes customs systems really send: deterministic, at
least 200 declarations of the kinds in `KINDS`, one plan each below (what customs send, in
which order), each message with what the bridge must answer and, for the whole, what the
ledger must hold, from the independent oracle (bridge.testkit.customs_traffic_oracle).
`traffic_corpus(seed=...)` builds it; bridge.testkit.customs_traffic_xml writes the XML (valid
against the published WCO DEC-DMS schema: tests/integration/test_customs_traffic.py checks
every payload). The licences it quotes are `traffic_licences()`: store them (known to
customs) first."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from bridge.testkit.customs_traffic_oracle import EU_CODES
from bridge.testkit.customs_traffic_plan import (
    DE_TRADE,
    FR_TRADE,
    GB_OTHER,
    GB_TRADE,
    IRRELEVANT_KINDS,
    KINDS,
    NL_TRADE,
    TRADES,
    LicenceUse,
    TrafficCorpus,
    TrafficMessage,
    TrafficPlanner,
    traffic_licences,
)
from bridge.testkit.customs_traffic_xml import WRAPPERS, Doc, Item, WcoDeclaration

_STEP = {"NAR": 0, "GRM": 0, "KGM": 3, "KGM#G": 3, "LTR": 1, "MTK": 2}


def _scaled(doc: Doc, factor: Decimal) -> Doc:
    """`doc` writing off `factor` times as much (rounded as its unit counts; never zero, never
    the same as before)."""
    quantity = amount = None
    if doc.quantity is not None:
        step = Decimal(1).scaleb(-_STEP[doc.unit or "NAR"])
        quantity = max(step, (doc.quantity * factor).quantize(step, ROUND_HALF_UP))
        if quantity == doc.quantity:
            quantity += step if factor > 1 else -step if quantity > step else 0
        quantity = quantity.normalize()
    if doc.amount is not None:
        amount = max(Decimal("0.01"), (doc.amount * factor).quantize(Decimal("0.01")))
    return replace(doc, quantity=quantity, amount=amount)


def dual_use_documents(item: Item) -> list[Doc]:
    return [d for d in item.documents if d.writes_off and (d.code in EU_CODES or d.code == "9104")]


def _items_with_write_offs(declaration: WcoDeclaration) -> list[Item]:
    return [item for item in declaration.items if dual_use_documents(item)]


def _carried(p: TrafficPlanner, item: Item, documents: list[Doc]) -> Item:
    """The goods item as an amendment carries it: its documents (the ordinary ones or not)."""
    if p.rng.random() < 0.5:
        ordinary = [d for d in item.documents if not d.writes_off]
        documents = ordinary + [d for d in documents if d not in ordinary]
    return replace(item, documents=tuple(documents))


def changed_item(p: TrafficPlanner, item: Item, factor: Decimal) -> Item:
    documents = [
        _scaled(d, factor) if d in dual_use_documents(item) else d for d in dual_use_documents(item)
    ]
    return _carried(p, item, documents)


def without_one_licence_document(p: TrafficPlanner, item: Item) -> Item:
    gone = p.rng.choice(dual_use_documents(item))
    kept = [d for d in item.documents if d is not gone]
    if not kept:
        kept = [Doc("N935", f"INV-{item.sequence:04d}", "AC", "Commercial invoice")]
    return replace(item, documents=tuple(kept))


def _release(p: TrafficPlanner, kind: str, exporter=None, **options) -> WcoDeclaration:
    return p.released(kind, exporter, **options)


def _amend(
    p: TrafficPlanner, kind: str, release: WcoDeclaration, version: int, items, **kw
) -> None:
    at = kw.pop("at", None)
    event = kw.pop("event", "auto")
    amendment = p.amendment(release, tuple(items), **kw)
    p.publish(kind, release.mrn, amendment, version=version, at=at, event=event)


def _exporter(p: TrafficPlanner, index: int):
    return TRADES[index % len(TRADES)]


# ----------------------------------------------------------------------------- the kinds


def export_dual_use(p: TrafficPlanner) -> None:
    for n in range(30):
        type_code = p.rng.choice(("EXA", "EXA", "EXY", "EXZ"))
        _release(p, "export-dual-use", _exporter(p, n), type_code=type_code)


def pre_lodged_arrived(p: TrafficPlanner) -> None:
    for n in range(12):
        exporter = _exporter(p, n)
        pre_lodged = p.export(exporter, items=p.rng.randint(2, 3), type_code="EXD")
        mrn = p.mrn(exporter.country)
        p.publish("pre-lodged-arrived", mrn, pre_lodged, version=1)
        # On arrival: the same goods, quantities as weighed, one document perhaps dropped.
        items = []
        for item in pre_lodged.items:
            documents = list(item.documents)
            for doc in dual_use_documents(item):
                if p.rng.random() < 0.6:
                    factor = Decimal(p.rng.choice(("0.8", "0.9", "1.1", "1.2")))
                    documents[documents.index(doc)] = _scaled(doc, factor)
            items.append(replace(item, documents=tuple(documents)))
        if n % 4 == 3:
            items[0] = without_one_licence_document(p, items[0])
        arrived = replace(pre_lodged, type_code="EXA", items=tuple(items), mrn=mrn)
        p.publish("pre-lodged-arrived", mrn, arrived, version=2)


def _one_item_changed(p: TrafficPlanner, kind: str, factors: tuple[str, ...], count: int) -> None:
    for n in range(count):
        release = _release(p, kind, _exporter(p, n), items=p.rng.randint(2, 3))
        item = p.rng.choice(_items_with_write_offs(release))
        factor = Decimal(p.rng.choice(factors))
        why = "Amend weight or quantity"
        _amend(p, kind, release, 2, [changed_item(p, item, factor)], reason="28", why=why)


def amendment_raise(p: TrafficPlanner) -> None:
    _one_item_changed(p, "amendment-raise", ("1.25", "1.5", "2"), 10)


def _ten(p: TrafficPlanner, kind: str) -> WcoDeclaration:
    """A GB release writing off exactly 10 machining centres under 9104 (the issue's case)."""
    use = GB_TRADE.uses[0]
    release = p.export(GB_TRADE, uses=(use,))
    doc = replace(p.write_off(use, 1), quantity=Decimal(10), unit="NAR", amount=None)
    item = replace(release.items[0], documents=(doc,))
    release = replace(release, items=(item, *release.items[1:]))
    mrn = p.mrn("GB")
    p.publish(kind, mrn, release, version=1)
    return replace(release, mrn=mrn)


def amendment_lower(p: TrafficPlanner) -> None:
    release = _ten(p, "amendment-lower")  # 10 -> 7
    item = release.items[0]
    (doc,) = dual_use_documents(item)
    _amend(
        p,
        "amendment-lower",
        release,
        2,
        [replace(item, documents=(replace(doc, quantity=Decimal(7)),))],
    )
    _one_item_changed(p, "amendment-lower", ("0.5", "0.75", "0.9"), 9)


def amendment_add(p: TrafficPlanner) -> None:
    for n in range(8):
        exporter = (GB_TRADE, DE_TRADE)[n % 2]
        cn, added_use = exporter.adds[0]
        base = next(u for u in exporter.uses if u.cn == cn)
        if n < 4:  # a second licence's document on an item that has one
            release = _release(
                p, "amendment-add", exporter, uses=(base, p.rng.choice(exporter.uses))
            )
            item = release.items[0]
            added = p.write_off(added_use, item.sequence)
            _amend(
                p,
                "amendment-add",
                release,
                2,
                [_carried(p, item, [*dual_use_documents(item), added])],
            )
        else:  # a dual-use document on an item that quoted none
            other = p.rng.choice([u for u in exporter.uses if u.cn != cn and u.code != "X061"])
            release = p.export(exporter, uses=(base,))
            bare = Item(len(release.items) + 1, other.cn, other.description, tuple(p.ordinary(9)))
            release = replace(release, items=(*release.items, bare), mrn=p.mrn(exporter.country))
            p.publish("amendment-add", release.mrn, release, version=1)
            added = p.write_off(other, bare.sequence)
            _amend(p, "amendment-add", release, 2, [_carried(p, bare, [added])])


def amendment_remove(p: TrafficPlanner) -> None:
    release = _ten(p, "amendment-remove")  # 10 -> document removed -> 0
    item = release.items[0]
    carried = replace(item, documents=(Doc("N935", "INV-0001", "AC", "Commercial invoice"),))
    _amend(p, "amendment-remove", release, 2, [carried], why="Licence not used")
    for n in range(7):
        release = _release(p, "amendment-remove", _exporter(p, n), items=p.rng.randint(2, 3))
        item = p.rng.choice(_items_with_write_offs(release))
        _amend(
            p,
            "amendment-remove",
            release,
            2,
            [without_one_licence_document(p, item)],
            why="Licence not used",
        )


def amendment_other_sections(p: TrafficPlanner) -> None:
    for n in range(8):
        release = _release(p, "amendment-other-sections", _exporter(p, n))
        if n % 2:
            header = {"total_packages": (release.total_packages or 1) + 3}
        else:
            header = {
                "exporter_name": f"Exporter {release.exporter} Ltd",
                "exporter_address": ("Leeds", release.country, "2 Mill Lane", "LS1 4AB"),
            }
        _amend(p, "amendment-other-sections", release, 2, [], header=header, reason="29")


def amendment_chain(p: TrafficPlanner) -> None:
    for n in range(4):
        release = _release(p, "amendment-chain", _exporter(p, n), items=3, uses=None)
        state = {item.sequence: item for item in release.items}
        version = 1
        for step in ("lower", "remove", "raise", "lower"):
            candidates = [i for i in state.values() if dual_use_documents(i)]
            if not candidates:
                break
            item = p.rng.choice(candidates)
            if step == "remove":
                changed = without_one_licence_document(p, item)
            else:
                changed = changed_item(p, item, Decimal("0.6" if step == "lower" else "1.4"))
            state[item.sequence] = replace(item, documents=changed.documents)
            version += 1
            _amend(p, "amendment-chain", release, version, [changed])


def amendment_held(p: TrafficPlanner) -> None:
    for n in range(5):
        exporter = _exporter(p, n)
        release = p.export(exporter, items=2)
        release = replace(release, mrn=p.mrn(exporter.country))
        item = p.rng.choice(_items_with_write_offs(release))
        changed = changed_item(p, item, Decimal("1.5" if n % 2 else "0.5"))
        amendment = p.amendment(release, (changed,))
        p.publish("amendment-held", release.mrn, amendment, version=2)
        p.publish("amendment-held", release.mrn, release, version=1)


def amendment_redelivered(p: TrafficPlanner) -> None:
    release = _ten(p, "amendment-redelivered")
    item = release.items[0]
    (doc,) = dual_use_documents(item)
    lowered = replace(item, documents=(replace(doc, quantity=Decimal(7)),))
    amendment = p.amendment(release, (lowered,))
    first = p.publish("amendment-redelivered", release.mrn, amendment, version=2)
    # The same message again (a redelivery), then the same version under a new message id.
    p.publish(
        "amendment-redelivered", release.mrn, amendment, version=2, message_id=first.message_id
    )
    p.publish(
        "amendment-redelivered",
        release.mrn,
        amendment,
        version=2,
        message_id=f"{first.message_id}-resent",
    )


_SHORT = LicenceUse("X060", "DE-AG-2026-000199", 1, "84111100", "Turbojet engines", "NAR", None)


def amendment_after_validity(p: TrafficPlanner) -> None:
    for n in range(3):
        release = _release(p, "amendment-after-validity", DE_TRADE, uses=(_SHORT,))
        (item,) = _items_with_write_offs(release)
        late = datetime(2026, 4, 15 + n, 10, 0, tzinfo=UTC)  # the licence ended on 31 March
        _amend(
            p,
            "amendment-after-validity",
            release,
            2,
            [changed_item(p, item, Decimal("1.5"))],
            at=late,
        )


def cancellation(p: TrafficPlanner) -> None:
    for n in range(10):
        release = _release(p, "cancellation", _exporter(p, n))
        if n % 3 == 2:  # an invalidation without its cancellation request
            p.publish("cancellation", release.mrn, None, version=2, event="invalidated")
        else:
            p.publish("cancellation", release.mrn, p.cancellation(release), version=2)


def event_from_payload(p: TrafficPlanner) -> None:
    kind = "event-from-payload"
    for n in range(6):
        exporter = _exporter(p, n)
        release = replace(p.export(exporter, items=2), mrn=p.mrn(exporter.country))
        p.publish(kind, release.mrn, release, version=1, event=None)
        item = p.rng.choice(_items_with_write_offs(release))
        amendment = p.amendment(release, (changed_item(p, item, Decimal("0.5")),))
        p.publish(kind, release.mrn, amendment, version=2, event=None)
        if n % 2:
            p.publish(kind, release.mrn, p.cancellation(release), version=3, event=None)


def event_contradicted(p: TrafficPlanner) -> None:
    kind = "event-contradicted"
    for n in range(4):
        release = _release(p, kind, _exporter(p, n), items=2)
        if n % 2 == 0:  # an amendment sent as a release: never applied as a new release
            item = p.rng.choice(_items_with_write_offs(release))
            amendment = p.amendment(release, (changed_item(p, item, Decimal("0.5")),))
            p.publish(kind, release.mrn, amendment, version=2, event="released")
        else:  # a cancellation request sent as an amendment
            p.publish(kind, release.mrn, p.cancellation(release), version=2, event="amended")


# -------------------------------------------------------------------- irrelevant traffic

_IMPORT_TYPES = (
    # (TypeCode, procedure, previous, additional procedure, what it is)
    ("IMZ", "40", "00", "000", "H1 release for free circulation"),
    ("IMA", "40", "00", "C07", "H1 free circulation, low value"),
    ("IMD", "71", "00", "000", "H2 customs warehousing"),
    ("IMA", "53", "00", "D51", "H3 temporary admission"),
    ("IMZ", "51", "00", "000", "H4 inward processing"),
    ("IMA", "61", "21", "F01", "H1 re-importation"),
)
_IMPORT_DOCUMENTS = (
    ("L001", "GBAIE{n}", "Import licence", "AE", True),
    ("Y100", "Y100-{n}", "No import licence required", None, False),
    ("9100", "GBIML{n}", "Import licence (national)", "EE", True),
    ("9011", "GBFIR{n}", "Import licence, firearms", "AE", True),
    ("C506", "GBDPO1108654", None, None, False),
    ("N935", "{n}/19.01.2026", "Invoice", "AC", False),
)


def _irrelevant_items(
    p: TrafficPlanner, count: int, table, unit_write_off: bool
) -> tuple[Item, ...]:
    items = []
    every_cn = [u for e in TRADES for u in e.uses]
    for sequence in range(1, count + 1):
        # Often goods a dual-use licence covers: relevance is by document, not by goods.
        use = p.rng.choice(every_cn)
        documents = []
        for code, ref, name, status, may_write_off in p.rng.sample(table, p.rng.randint(2, 3)):
            quantity = unit = None
            if may_write_off and unit_write_off and p.rng.random() < 0.6:
                quantity, unit = Decimal(p.rng.randint(1, 90)), "NAR"
            documents.append(
                Doc(code, ref.format(n=p.rng.randint(10**5, 10**6)), status, name, quantity, unit)
            )
        items.append(Item(sequence, use.cn, use.description, tuple(documents)))
    return tuple(items)


def imports(
    p: TrafficPlanner, count: int = 30, kind: str = "import", wrapper: str = "metadata"
) -> None:
    for n in range(count):
        type_code, current, previous, additional, _ = _IMPORT_TYPES[n % len(_IMPORT_TYPES)]
        country = ("GB", "GB", "DE", "FR", "NL")[n % 5]
        items = tuple(
            replace(
                item,
                procedure=(current, previous),
                additional_procedure=additional,
                origin=p.rng.choice(("US", "CN", "JP", "CH")),
            )
            for item in _irrelevant_items(p, p.rng.randint(1, 3), _IMPORT_DOCUMENTS, True)
        )
        foreign = n % 2 == 0  # real imports name the foreign exporter without an EORI
        declaration = WcoDeclaration(
            function_code="9",
            type_code=type_code,
            lrn=f"{country}IMP{n:05d}",
            mrn=None,
            country=country,
            items=items,
            exporter_name="Detroit Cocoa Company" if foreign else None,
            exporter_address=("Detroit", "US", "101 Peterboro Avenue", "48201")
            if foreign
            else None,
            importer=f"{country}{p.rng.randint(10**9, 10**10 - 1)}",
            declarant=f"{country}{p.rng.randint(10**9, 10**10 - 1)}",
            total_packages=len(items) * 3,
            currency="EUR" if country != "GB" else "GBP",
            wrapper=wrapper,
        )
        mrn = p.mrn(country)
        p.publish(kind, mrn, declaration, version=1, irrelevant=True)
        if kind == "import" and n % 5 == 4:
            # Its post-clearance amendment (as the published import samples): an import
            # licence document changed on one goods item; still nothing for the bridge.
            item = items[0]
            documents = tuple(
                replace(d, quantity=d.quantity + 1) if d.quantity is not None else d
                for d in item.documents
            )
            amendment = p.amendment(
                replace(declaration, mrn=mrn),
                (replace(item, documents=documents),),
                reason="28",
                why="Amend import licence quantity",
            )
            p.publish(kind, mrn, amendment, version=2, irrelevant=True)


_TRANSIT_DOCUMENTS = (
    ("N740", "AWB-{n}", "Air waybill", None, False),
    ("N705", "BL-{n}", "Bill of lading", None, False),
    ("N380", "INV-{n}", "Commercial invoice", None, False),
    ("C651", "AAD-{n}", "Electronic administrative document", None, False),
)


def transit(p: TrafficPlanner) -> None:
    for n in range(12):
        country = ("DE", "NL", "FR", "GB")[n % 4]
        declaration = WcoDeclaration(
            function_code="9",
            type_code=("T1", "T2", "T2F", "TD")[n % 4],
            lrn=f"{country}TRA{n:05d}",
            mrn=None,
            country=country,
            items=_irrelevant_items(p, p.rng.randint(1, 3), _TRANSIT_DOCUMENTS, False),
            declarant=f"{country}{p.rng.randint(10**9, 10**10 - 1)}",
            consignor="Transit Consignor GmbH",
            destination=p.rng.choice(("CH", "NO", "TR")),
            total_packages=4,
            currency="EUR",
        )
        p.publish("transit", p.mrn(country), declaration, version=1, irrelevant=True)


def _no_licence_export(
    p: TrafficPlanner, n: int, codes, kind: str, wrapper: str = "metadata"
) -> None:
    exporter = _exporter(p, n)
    declaration = p.export(exporter, items=p.rng.randint(1, 3), wrapper=wrapper)
    items = []
    for item in declaration.items:
        code, ref, name, write_off = p.rng.choice(codes(exporter.country))
        quantity = Decimal(p.rng.randint(1, 30)) if write_off else None
        doc = Doc(code, ref, None, name, quantity, "NAR" if quantity else None)
        items.append(
            replace(item, documents=(*[d for d in item.documents if not d.writes_off], doc))
        )
    declaration = replace(declaration, items=tuple(items))
    p.publish(kind, p.mrn(exporter.country), declaration, version=1, irrelevant=True)


def _y901(country: str):
    return (("Y901", "Not subject to Reg 2021/821", "Not dual-use", False),)


def _national_other(country: str):
    # Codes of the customs country the deployment does not declare as licences; the UK's
    # 9104 means nothing to another country's customs.
    return {
        "GB": (
            ("9120", "GBAHC12345", "Animal health certificate", True),
            ("9002", "GBX9002", "Cultural goods", False),
        ),
        "DE": (
            ("9104", "DE9104-1", "National document", True),
            ("3200", "DE3200-7", "National permit", False),
        ),
        "FR": (("9911", "FR9911-2", "National permit", True),),
        "NL": (("9002", "NL9002-4", "National document", False),),
    }[country]


def export_y901(p: TrafficPlanner) -> None:
    for n in range(12):
        _no_licence_export(p, n, _y901, "export-y901")


def export_national_other(p: TrafficPlanner) -> None:
    for n in range(12):
        _no_licence_export(p, n, _national_other, "export-national-other")


def wrappers(p: TrafficPlanner) -> None:
    for n, wrapper in enumerate(WRAPPERS):
        release = _release(p, "wrapper", _exporter(p, n), items=2, wrapper=wrapper)
        item = p.rng.choice(_items_with_write_offs(release))
        _amend(p, "wrapper", release, 2, [changed_item(p, item, Decimal("0.5"))])
        if n % 2:
            imports(p, 1, "wrapper", wrapper)
        else:
            _no_licence_export(p, n, _y901, "wrapper", wrapper)


def refused(p: TrafficPlanner) -> None:
    kind = "refused"
    small = LicenceUse("X060", "GBSIEL/2026/0000999", 1, "84014000", "Reactor parts", "NAR", None)
    wrong = replace(GB_TRADE, eori=GB_OTHER)  # an exporter who does not hold the licence
    _release(p, kind, wrong, items=1)
    over = p.export(GB_TRADE, uses=(small,))
    over = replace(
        over,
        items=(
            replace(
                over.items[0], documents=(replace(p.write_off(small, 1), quantity=Decimal(8)),)
            ),
        ),
    )
    p.publish(kind, p.mrn("GB"), over, version=1)
    eu001 = next(u for u in DE_TRADE.uses if u.code == "X061")
    outside = replace(p.export(DE_TRADE, uses=(eu001,)), destination="IN")
    p.publish(kind, p.mrn("DE"), outside, version=1)
    fits = p.export(GB_TRADE, uses=(small,))
    doc = replace(p.write_off(small, 1), quantity=Decimal(4), amount=None)
    fits = replace(fits, items=(replace(fits.items[0], documents=(doc,)),), mrn=p.mrn("GB"))
    p.publish(kind, fits.mrn, fits, version=1)
    raised = replace(fits.items[0], documents=(replace(doc, quantity=Decimal(9)),))
    _amend(p, kind, fits, 2, [raised])  # beyond the 5 items: refused, the 4 stand
    _ = (FR_TRADE, NL_TRADE)


BUILDERS = (
    export_dual_use,
    pre_lodged_arrived,
    amendment_raise,
    amendment_lower,
    amendment_add,
    amendment_remove,
    amendment_other_sections,
    amendment_chain,
    amendment_held,
    amendment_redelivered,
    amendment_after_validity,
    cancellation,
    event_from_payload,
    event_contradicted,
    imports,
    transit,
    export_y901,
    export_national_other,
    wrappers,
    refused,
)

__all__ = [
    "IRRELEVANT_KINDS",
    "KINDS",
    "TrafficCorpus",
    "TrafficMessage",
    "traffic_corpus",
    "traffic_licences",
]


def traffic_corpus(*, seed: int = 11) -> TrafficCorpus:
    """The corpus (see the module docstring), the same for the same seed."""
    planner = TrafficPlanner(seed)
    for build in BUILDERS:
        build(planner)
    # A held amendment's answer is known only once its release came: each message id's final
    # answer (a redelivery under the same id keeps its own: duplicate).
    messages, first = [], set()
    for message in planner.messages:
        if message.message_id not in first:
            first.add(message.message_id)
            message = replace(message, expected=planner.oracle.answers[message.message_id])
        messages.append(message)
    return TrafficCorpus(planner.licences, tuple(messages), planner.oracle)
