"""Open licences, contingency write-offs and the lifecycle on ingest, in the ledger (SQLite and
PostgreSQL): usage recorded on an open licence and refused beyond its ceiling; goods released
against a licence customs never held recorded, flagged and alerted while CheckAvailability still
refuses; a licence ingested past its end date expired; a line a new version drops keeping its
usage with an alert; an older ledger gaining the contingency column in place."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from lxml import etree
from sqlalchemy import inspect, select

from bridge.adapters.soap.client import CustomsClient, CustomsEndpoint
from bridge.adapters.store.alerts import list_alerts
from bridge.adapters.store.db import make_engine
from bridge.adapters.store.history import movements_of
from bridge.adapters.store.licence_events import licence_events
from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.migrate import current_revision, head_revision
from bridge.adapters.store.outbox import DELIVERED, NewMessage, add_messages, outbox_rows
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import movement
from bridge.core.availability import AvailabilityRequest
from bridge.core.certificate import build_certificate, certificate_problems, parse_status_update
from bridge.core.envelope import build_envelope, read_event
from bridge.core.errors import DeliveryError
from bridge.core.history import render_history
from bridge.core.model import OPEN_LINE, Licence, LicenceLine, LicenceStatus, LicenceType
from bridge.core.paths import MAPPINGS_DIR
from bridge.core.reconcile import render
from bridge.core.xmlsafe import parse_xml
from bridge.services.authority import licence_history
from bridge.services.config import Settings
from bridge.services.declarations import apply_declarations
from bridge.services.ingest import ingest_file
from bridge.services.outbox import STATUS, certify_pending
from bridge.services.queries import availability
from bridge.testkit.known_licences import store_known_licences
from bridge.testkit.previous_release import previous_release_ledger

NS = {"d": "urn:wco:datamodel:WCO:DEC-DMS:2"}
RELEASED_AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
EXPORTER = "GB417869120000"  # TT_EX010a's exporter
ECJU = MAPPINGS_DIR / "samples" / "ecju_licences_2026-11-27.json"
SETTINGS = Settings()


def open_licence() -> Licence:
    """A global licence without goods lines: category 1 to three countries, EUR 1,000."""
    return Licence(
        number="GB-OIEL-OPEN-7",
        type=LicenceType.GLOBAL,
        issuing_member_state="GB",
        issuing_authority="Export Control Joint Unit",
        holder_name="Tyne Ammunition Components Ltd",
        holder_eori=EXPORTER,
        valid_from=date(2026, 1, 1),
        valid_to=date(2027, 12, 31),
        lines=(),
        control_list_entries=("1", "ML3"),
        destinations=("PK", "US", "CA"),
        value=Decimal("1000.00"),
        currency="EUR",
        unit="KGM",
    )


def declaration(wco_samples, reference, *, code="X070", quantity="10", amount=None) -> str:
    """TT_EX010a writing off `quantity` kg (and `amount` EUR) against `reference`."""
    root = parse_xml((wco_samples / "TT_EX010a.xml").read_bytes())
    (document,) = root.xpath("//d:AdditionalDocument[d:ID='GBSIEE2E350001-0001']", namespaces=NS)
    document.find("d:CategoryCode", NS).text = code[0]
    document.find("d:TypeCode", NS).text = code[1:]
    document.find("d:ID", NS).text = reference
    write_off = document.find("d:WriteOff", NS)
    for child in list(write_off):
        write_off.remove(child)
    etree.SubElement(write_off, f"{{{NS['d']}}}QuantityQuantity", unitCode="KGM").text = quantity
    if amount is not None:
        element = etree.SubElement(write_off, f"{{{NS['d']}}}AmountAmount", currencyID="EUR")
        element.text = amount
    return etree.tostring(root, encoding="unicode")


def release(engine, payload: str, mrn: str):
    data = build_envelope(
        message_id=f"{mrn}-released-v1",
        mrn=mrn,
        event="released",
        event_time=RELEASED_AT,
        payload=payload,
    )
    event = read_event(data, max_bytes=SETTINGS.max_message_bytes)
    with engine.begin() as conn:
        return apply_declarations(conn, [event], now=RELEASED_AT, settings=SETTINGS)


def store(engine, lic: Licence, *, known_to_customs: bool = True) -> None:
    with engine.begin() as conn:
        store_known_licences(
            conn, [lic], now=RELEASED_AT, source="test", known_to_customs=known_to_customs
        )


def row_of(engine, number, line_number):
    with engine.connect() as conn:
        (row,) = [r for r in reconciliation_rows(conn, number) if r.line_number == line_number]
    return row


def test_an_open_licence_records_usage_and_refuses_beyond_its_ceiling(engine, wco_samples):
    lic = open_licence()
    store(engine, lic)

    release(engine, declaration(wco_samples, lic.number, amount="600"), "26GB00000000000101")
    release(engine, declaration(wco_samples, lic.number, amount="500"), "26GB00000000000102")

    row = row_of(engine, lic.number, OPEN_LINE)
    assert (row.written_off_quantity, row.written_off_value) == (Decimal(10), Decimal(600))
    assert (row.authorised_value, row.remaining_value, row.movements) == (
        Decimal(1000),
        Decimal(400),
        1,
    )
    assert row.control_list_entry == "1 ML3" and row.certificate == "delivered"
    with engine.connect() as conn:
        refused = conn.exec_driver_sql("SELECT code, line_number FROM refusal").all()
        (alert,) = list_alerts(conn, kind="over-use")
    assert [tuple(r) for r in refused] == [("over-use", OPEN_LINE)]
    assert (
        "500 EUR more exceeds the 400 EUR remaining on open licence GB-OIEL-OPEN-7"
        in (alert["message"])
    )
    (history,) = licence_history(engine, lic.number)
    assert (history.unit, history.currency, history.remaining_value) == ("KGM", "EUR", 400)
    # The query service answers for the licence as a whole.
    asked = AvailabilityRequest(reference=lic.number, amount=Decimal(400), currency="EUR")
    answer = availability(engine, asked, RELEASED_AT.date())
    assert answer.available and answer.remaining.value == Decimal(400)


def test_a_contingency_write_off_is_recorded_flagged_alerted_and_shown(engine, wco_samples):
    # 10 kg to the United States, never certified to customs (the link was down).
    lic = replace(
        open_licence(),
        number="GB-SIEL-NEVER-SENT",
        type=LicenceType.INDIVIDUAL,
        control_list_entries=(),
        destinations=(),
        value=None,
        currency=None,
        unit=None,
        lines=(LicenceLine(1, "1C011.b", "ammunition parts", None, Decimal(10), "KGM",
                           destinations=("US",)),),
    )  # fmt: skip
    store(engine, lic, known_to_customs=False)

    # Before release, customs are refused: they hold no certificate of the licence.
    asked = AvailabilityRequest(
        reference=lic.number, line_item_number=1, quantity=Decimal(15), unit="KGM"
    )
    before = availability(engine, asked, RELEASED_AT.date())
    assert (before.available, before.code) == (False, "not-known-to-customs")

    # Released all the same (customs' fallback), to Pakistan: recorded, flagged, alerted.
    payload = declaration(wco_samples, lic.number, code="X060", quantity="15")
    release(engine, payload, "26GB00000000000201")
    with engine.connect() as conn:
        flags = conn.execute(select(movement.c.quantity, movement.c.contingency)).all()
        alerts = {a["kind"]: a for a in list_alerts(conn, licence_number=lic.number)}
        refusals = conn.exec_driver_sql("SELECT count(*) FROM refusal").scalar_one()
    assert [tuple(f) for f in flags] == [(Decimal(15), 1)] and refusals == 0
    assert sorted(alerts) == ["contingency-not-allowed", "contingency-over-use", "exhausted"]
    assert (
        "and overdraws it: 15 KGM more exceeds the 10 KGM remaining"
        in (alerts["contingency-over-use"]["message"])
    )
    assert alerts["contingency-over-use"]["details"]["remaining_quantity"] == "-5"
    assert "destination PK is not among" in alerts["contingency-not-allowed"]["message"]

    row = row_of(engine, lic.number, 1)
    assert (row.contingency_movements, row.contingency_quantity) == (1, Decimal(15))
    assert row.over_used and row.written_off_quantity == Decimal(15)
    with engine.connect() as conn:
        table = render(reconciliation_rows(conn, lic.number))
    assert f"1 with contingency write-offs: {lic.number}/1" in table
    (moved,) = licence_history(engine, lic.number)
    assert moved.movement.contingency and moved.remaining_quantity == -5
    rendered = json.loads(render_history(lic.number, [moved], "json"))
    assert rendered["movements"][0]["contingency"] is True
    assert "1 contingency write-off(s)" in render_history(lic.number, [moved])
    # Still refused before the next release, now for the overdraft too.
    again = availability(engine, replace(asked, quantity=Decimal(1)), RELEASED_AT.date())
    assert {r.code for r in again.refusals} == {
        "not-known-to-customs",
        "licence-not-valid",  # exhausted by the contingency write-off
        "over-use",
    }


def _known_to_customs(engine, number, version):
    with engine.begin() as conn:
        add_messages(
            conn,
            [
                NewMessage(
                    f"t-{number}-v{version}", "certificate", number, version, "<c/>", DELIVERED
                )
            ],
            now=RELEASED_AT,
        )


def test_a_release_on_the_version_customs_hold_is_a_contingency_write_off(engine, wco_samples):
    # Customs hold version 1 (100 kg to Pakistan); the bridge has version 2, lowered to 5 kg,
    # not yet delivered. Goods released on version 1 have left: recorded, flagged, alerted.
    v1 = replace(
        open_licence(),
        number="GB-SIEL-TWO-VERSIONS",
        type=LicenceType.INDIVIDUAL,
        control_list_entries=(),
        destinations=(),
        value=None,
        currency=None,
        unit=None,
        lines=(LicenceLine(1, "1C011.b", "ammunition parts", None, Decimal(100), "KGM",
                           destinations=("PK",)),),
    )  # fmt: skip
    store(engine, v1)
    v2 = replace(v1, lines=(replace(v1.lines[0], quantity=Decimal(5)),))
    store(engine, v2, known_to_customs=False)
    with engine.connect() as conn:
        (current,) = load_licences(conn, [v1.number]).values()
    assert current.version == 2 and current.line(1).quantity == Decimal(5)

    release(engine, declaration(wco_samples, v1.number, code="X060"), "26GB00000000000301")
    with engine.connect() as conn:
        flags = conn.execute(select(movement.c.quantity, movement.c.contingency)).all()
        alerts = {a["kind"]: a for a in list_alerts(conn, licence_number=v1.number)}
        refusals = conn.exec_driver_sql("SELECT count(*) FROM refusal").scalar_one()
    assert [tuple(f) for f in flags] == [(Decimal(10), 1)] and refusals == 0
    message = alerts["contingency-over-use"]["message"]
    assert "on version 1 of licence GB-SIEL-TWO-VERSIONS, the one customs held" in message
    assert "the bridge has version 2" in message
    assert "10 KGM more exceeds the 5 KGM remaining" in message
    assert "contingency-not-allowed" not in alerts  # version 2 allows it but for the quantity
    assert row_of(engine, v1.number, 1).contingency_quantity == Decimal(10)

    # Once customs acknowledge version 2, a release on it is checked as usual: refused.
    _known_to_customs(engine, v1.number, 2)
    release(engine, declaration(wco_samples, v1.number, code="X060"), "26GB00000000000302")
    with engine.connect() as conn:
        refused = conn.exec_driver_sql("SELECT code FROM refusal").scalars().all()
        moved = conn.execute(select(movement.c.contingency)).scalars().all()
    # Exhausted by the contingency write-off, and beyond version 2's 5 kg: nothing moves.
    assert sorted(refused) == ["licence-not-valid", "over-use"] and len(moved) == 1


def test_a_licence_past_its_end_date_is_stored_expired_and_certified_with_its_status(engine):
    after_the_end = datetime(2028, 1, 15, 8, 0, tzinfo=UTC)
    report = ingest_file(engine, ECJU, now=after_the_end)
    assert report.new == 5  # the sixth record ends before it starts: rejected
    with engine.connect() as conn:
        licences = load_licences(conn, [n for n, _ in report.changed])
    statuses = {number: lic.status for number, lic in licences.items()}
    assert statuses == {
        "GBSIEXYK3ZZZPADR-0002": LicenceStatus.EXPIRED,
        "GBSIEXYK3ZZZ-0001": LicenceStatus.EXPIRED,
        "GBSIEE2E350001-0001": LicenceStatus.EXPIRED,
        "GBOIEL/2025/00042": LicenceStatus.EXPIRED,
        "GBOGEL/CRYPTO/2024-0117": LicenceStatus.VALID,  # no end date
    }
    with engine.connect() as conn:
        (event,) = licence_events(conn, "GBOIEL/2025/00042")
    assert (event["from_status"], event["to_status"], event["actor"]) == (
        "valid",
        "expired",
        "bridge",
    )
    assert "validity ended on 2027-03-31, before the licence reached the bridge" in event["reason"]
    certify_pending(engine, now=after_the_end)
    with engine.connect() as conn:
        rows = outbox_rows(conn, "GBOIEL/2025/00042")
    # The status update went in at ingest, the certificate when certified: the outbox sends a
    # version's certificate first, and an update only once customs acknowledged it.
    assert sorted((r["kind"], r["licence_version"]) for r in rows) == [
        ("certificate", 3),
        (STATUS, 3),
    ]
    (status_row,) = [r for r in rows if r["kind"] == STATUS]
    update = parse_status_update(status_row["document"].encode())
    assert (update.version, update.status) == (3, LicenceStatus.EXPIRED)


def test_a_licence_within_its_validity_is_not_expired_on_ingest(engine):
    ingest_file(engine, ECJU, now=datetime(2026, 11, 28, 8, 0, tzinfo=UTC))
    with engine.connect() as conn:
        statuses = {lic.status for lic in load_licences(conn, ["GBOIEL/2025/00042"]).values()}
        assert statuses == {LicenceStatus.VALID}
        assert licence_events(conn, "GBOIEL/2025/00042") == []


def test_a_line_a_new_version_drops_keeps_its_usage_with_an_alert(engine, wco_samples, tmp_path):
    ingest_file(engine, ECJU, now=RELEASED_AT)
    _known_to_customs(engine, "GBSIEXYK3ZZZPADR-0002", 1)
    _known_to_customs(engine, "GBSIEXYK3ZZZ-0001", 1)
    data = build_envelope(
        message_id="tt-ex004a-released",
        mrn="26GB00000000000301",
        event="released",
        event_time=RELEASED_AT,
        payload=(wco_samples / "TT_EX004a.xml").read_text(encoding="utf-8"),
    )
    with engine.begin() as conn:
        apply_declarations(
            conn, [read_event(data, max_bytes=SETTINGS.max_message_bytes)], now=RELEASED_AT,
            settings=SETTINGS,
        )  # fmt: skip
    with engine.connect() as conn:
        used = {r.line_number: r for r in reconciliation_rows(conn, "GBSIEXYK3ZZZ-0001")}
    dropped_line = next(n for n, r in sorted(used.items()) if r.movements)
    kept = [n for n in used if n != dropped_line]
    before = used[dropped_line]

    document = json.loads(ECJU.read_text(encoding="utf-8"))
    (record,) = [x for x in document["licences"] if x["reference"] == "GBSIEXYK3ZZZ-0001"]
    record["revision"] = 2
    record["goods"] = [g for g in record["goods"] if g["lineNo"] != dropped_line]
    amended = tmp_path / "ecju_licences_2026-11-28.json"
    amended.write_text(json.dumps(document), encoding="utf-8")
    report = ingest_file(engine, amended, now=RELEASED_AT)
    assert report.changed == [("GBSIEXYK3ZZZ-0001", 2)]

    with engine.connect() as conn:
        rows = {r.line_number: r for r in reconciliation_rows(conn, "GBSIEXYK3ZZZ-0001")}
        (alert,) = list_alerts(conn, kind="line-dropped-with-usage")
    assert sorted(rows) == sorted([dropped_line, *kept])
    gone = rows[dropped_line]
    assert gone.dropped_in_version == 2 and gone.authorised_quantity is None
    assert (gone.written_off_quantity, gone.written_off_value, gone.movements) == (
        before.written_off_quantity,
        before.written_off_value,
        before.movements,
    )
    assert (gone.control_list_entry, gone.unit) == (before.control_list_entry, before.unit)
    assert all(rows[n].dropped_in_version is None for n in kept)
    assert alert["line_number"] == dropped_line
    assert f"drops line {dropped_line}" in alert["message"]
    assert alert["details"]["written_off_quantity"] == format(before.written_off_quantity, "f")
    history = licence_history(engine, "GBSIEXYK3ZZZ-0001")
    on_it = [h for h in history if h.movement.line_number == dropped_line]
    assert on_it and on_it[-1].used_quantity == before.written_off_quantity
    assert on_it[-1].unit == before.unit and on_it[-1].remaining_quantity is None


def test_an_older_ledger_gains_the_contingency_column_in_place(ledger_url):
    engine = previous_release_ledger(ledger_url)  # then as a release before contingency
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_movement_contingency")
        conn.exec_driver_sql("ALTER TABLE movement DROP COLUMN contingency")
        conn.exec_driver_sql(
            "INSERT INTO movement (licence_number, line_number, kind, quantity, value, actor, at)"
            " VALUES ('OLD-1', 1, 'write_off', 5000000, 0, 'bridge', CURRENT_TIMESTAMP)"
        )
    engine.dispose()
    old = make_engine(ledger_url, create=False)
    assert "contingency" not in {c["name"] for c in inspect(old).get_columns("movement")}
    old.dispose()

    reopened = make_engine(ledger_url)
    assert "contingency" in {c["name"] for c in inspect(reopened).get_columns("movement")}
    indexes = {i["name"] for i in inspect(reopened).get_indexes("movement")}
    assert "ix_movement_contingency" in indexes
    with reopened.connect() as conn:
        (row,) = conn.execute(select(movement.c.quantity, movement.c.contingency)).all()
        (recorded,) = movements_of(conn, "OLD-1")
    assert tuple(row) == (Decimal(5), None)  # a movement from before the column
    assert recorded.contingency is False  # read as an ordinary one
    assert current_revision(reopened) == head_revision()  # migrated to this release
    reopened.dispose()


def test_the_customs_simulator_accepts_an_open_licence_certificate(customs_simulator):
    """The simulator validates with xmlschema, the bridge with lxml: both accept OpenScope."""
    client = CustomsClient(CustomsEndpoint(customs_simulator.url, timeout=5.0))
    xml = build_certificate(open_licence())
    assert certificate_problems(xml) == []
    answer = client.submit_certificate("open-1", xml, RELEASED_AT)
    assert answer.status == "ACCEPTED"
    (stored,) = customs_simulator.received()
    assert stored["document"].encode("utf-8") == xml
    broken = xml.replace(b"<ScopeEntry>ML3</ScopeEntry>", b"<ScopeEntry>ML 3</ScopeEntry>")
    (problem,) = certificate_problems(broken)
    assert "ScopeEntry" in problem.path
    with pytest.raises(DeliveryError, match="ScopeEntry"):
        client.submit_certificate("open-2", broken, RELEASED_AT)
