import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import insert

from bridge.adapters.store.licences import save_licence
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import movement
from bridge.core.model import Licence, LicenceLine, LicenceType
from bridge.core.reconcile import render

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _seed(engine, movements):
    licence = Licence(
        number="LV-DU-2026-0042",
        type=LicenceType.INDIVIDUAL,
        issuing_member_state="LV",
        issuing_authority="Ministry of Foreign Affairs",
        holder_name="Baltic Photonics SIA",
        holder_eori="LV40003123456",
        valid_from=date(2026, 1, 1),
        valid_to=date(2027, 12, 31),
        lines=(
            LicenceLine(
                1,
                "6A003.b.4.b",
                "Thermal cameras",
                "90258080",
                Decimal(10),
                "NAR",
                Decimal("50000.00"),
                "EUR",
                ("US",),
            ),
            LicenceLine(
                2,
                "5A002.a.1",
                "Encryption modules",
                "85176200",
                Decimal("2.5"),
                "KGM",
                None,
                None,
                ("US",),
            ),
        ),
    )
    with engine.begin() as conn:
        save_licence(conn, licence, source="test", now=NOW, explicit_version=False)
        for line, quantity, value in movements:
            conn.execute(
                insert(movement).values(
                    licence_number=licence.number,
                    line_number=line,
                    kind="write_off",
                    quantity=Decimal(quantity),
                    value=Decimal(value),
                    actor="test",
                    at=NOW,
                )
            )


def test_remaining_is_authorised_minus_the_sum_of_movements(engine):
    _seed(engine, [(1, "4", "20000.00"), (1, "-1", "-5000.00"), (2, "2.500001", "0")])
    with engine.connect() as conn:
        first, second = reconciliation_rows(conn)
    assert (first.written_off_quantity, first.remaining_quantity) == (Decimal(3), Decimal(7))
    assert first.remaining_value == Decimal("35000.00")
    assert first.movements == 2 and not first.over_used
    assert second.remaining_quantity == Decimal("-0.000001")
    assert second.over_used


def test_a_line_without_movements_is_listed_untouched(engine):
    _seed(engine, [])
    with engine.connect() as conn:
        rows = reconciliation_rows(conn, "LV-DU-2026-0042")
    assert [r.remaining_quantity for r in rows] == [Decimal(10), Decimal("2.5")]
    assert all(r.movements == 0 for r in rows)


def test_table_csv_and_json_say_the_same(engine):
    _seed(engine, [(2, "3", "0")])
    with engine.connect() as conn:
        rows = reconciliation_rows(conn)
    table = render(rows, "table")
    assert "LV-DU-2026-0042/2" in table and "1 over-used" in table
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert parsed[1]["remaining_quantity"] == "-0.5" and parsed[1]["over_used"] == "yes"
    document = json.loads(render(rows, "json"))
    assert document["summary"]["over_used_lines"] == ["LV-DU-2026-0042/2"]
    assert document["lines"][0]["authorised_value"] == "50000.00"
