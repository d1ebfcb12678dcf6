"""An authority's views on the real ledger: one licence's movements in time order with the
running balance, refusals and alerts, rendered as table, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert

from bridge.adapters.store.alerts import raise_alert
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.adapters.store.schema import refusal
from bridge.core.errors import Rejected
from bridge.core.history import render_alerts, render_history, render_refusals
from bridge.services.authority import (
    correct,
    licence_history,
    list_alerts,
    list_refusals,
    manual_write_off,
    reverse_movement,
)
from tests.fixtures_soap import individual_licence
from tests.integration.test_manual import NOW, NUMBER, OFFICER, customs_write_off, seed

OTHER = "FR-SBDU-G-2026-0042"


def busy_licence(engine) -> dict[str, int]:
    """Customs and manual movements on both lines, written out of time order."""
    seed(engine)
    ids = {"customs": customs_write_off(engine, 1, "10", "40500.00", at=NOW)}
    ids["manual"] = manual_write_off(
        engine,
        NUMBER,
        2,
        Decimal(1500),
        "GRM",
        value=Decimal("4470.06"),
        currency="EUR",
        reason="contingency: CSW-CERTEX down, paper declaration DE-2026-78",
        actor=OFFICER,
        now=NOW + timedelta(hours=1),
        reference="DE-2026-78",
    ).movement_id
    ids["correction"] = correct(
        engine,
        NUMBER,
        1,
        Decimal(-2),
        "NAR",
        reason="audit 2026-14: two cameras came back",
        actor=OFFICER,
        now=NOW + timedelta(hours=2),
    ).movement_id
    ids["reversal"] = reverse_movement(
        engine,
        ids["manual"],
        reason="customs sent the declaration after all",
        actor="Jonas Krüger (BAFA)",
        now=NOW + timedelta(hours=3),
    ).movement_id
    # Written last, happened first: the history is in time order, not in the order written.
    ids["earliest"] = customs_write_off(engine, 1, "1", "4050.00", at=NOW - timedelta(days=1))
    return ids


def test_the_history_lists_every_movement_in_time_order_with_the_running_balance(engine):
    ids = busy_licence(engine)
    with engine.connect() as conn:
        rows = licence_history(engine, NUMBER)
        lines = {row.line_number: row for row in reconciliation_rows(conn, NUMBER)}
    assert [row.movement.id for row in rows] == [
        ids["earliest"],
        ids["customs"],
        ids["manual"],
        ids["correction"],
        ids["reversal"],
    ]
    assert [row.movement.kind for row in rows] == [
        "write_off",
        "write_off",
        "manual_write_off",
        "correction",
        "reversal",
    ]
    assert [(row.movement.line_number, row.used_quantity) for row in rows] == [
        (1, Decimal(1)),
        (1, Decimal(11)),
        (2, Decimal("1.5")),
        (1, Decimal(9)),
        (2, Decimal(0)),
    ]
    assert [row.remaining_quantity for row in rows] == [
        Decimal(119),
        Decimal(109),
        Decimal(11),
        Decimal(111),
        Decimal("12.5"),
    ]
    manual = rows[2].movement
    assert (manual.declared_quantity, manual.declared_unit, manual.quantity) == (
        Decimal(1500),
        "GRM",
        Decimal("1.5"),
    )
    assert (manual.actor, manual.document_ref) == (OFFICER, "DE-2026-78")
    assert rows[4].movement.reverses == ids["manual"]
    assert rows[4].movement.actor == "Jonas Krüger (BAFA)"
    # The last row of each line is the line's reconciliation: the two cannot drift.
    for number, line in lines.items():
        last = [row for row in rows if row.movement.line_number == number][-1]
        assert (last.used_quantity, last.remaining_quantity) == (
            line.written_off_quantity,
            line.remaining_quantity,
        )
        assert (last.used_value, last.remaining_value) == (
            line.written_off_value,
            line.remaining_value,
        )


def test_the_history_renders_as_table_csv_and_json(engine):
    busy_licence(engine)
    rows = licence_history(engine, NUMBER)
    table = render_history(NUMBER, rows)
    header = table.splitlines()[0].split()
    assert header[:4] == ["at", "id", "line", "kind"] and "remaining" in header
    assert "audit 2026-14: two cameras came back" in table
    assert "26DE000000000471A1" in table and "X060 DE-EA-2026-004711" in table
    assert table.rstrip().endswith(f"licence {NUMBER}: 5 movements on 2 line(s)")

    records = list(csv.DictReader(io.StringIO(render_history(NUMBER, rows, "csv"))))
    assert [r["kind"] for r in records][-1] == "reversal"
    assert records[2]["declared_quantity"] == "1500" and records[2]["declared_unit"] == "GRM"
    assert records[0]["at"] == "2026-11-27T09:30:00+00:00"

    document = json.loads(render_history(NUMBER, rows, "json"))
    assert document["licence_number"] == NUMBER
    manual = document["movements"][2]
    assert (manual["quantity"], manual["value"], manual["unit"]) == ("1.5", "4470.06", "KGM")
    assert manual["remaining_value"] == "32780.44"
    assert document["movements"][4]["reverses"] == manual["id"]
    with pytest.raises(ValueError, match="unknown format"):
        render_history(NUMBER, rows, "xml")


def test_the_history_of_an_unknown_licence_is_refused(engine):
    seed(engine)
    with pytest.raises(Rejected) as refused:
        licence_history(engine, "DE-EA-2026-000000")
    assert [p.code for p in refused.value.problems] == ["licence-unknown"]
    assert licence_history(engine, NUMBER) == []  # known, nothing moved yet


def test_refusals_are_listed_with_code_and_reason_per_licence(engine):
    seed(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(refusal),
            [
                {
                    "mrn": "26DE000000000471A2",
                    "goods_item": 2,
                    "document_code": "X060",
                    "document_ref": NUMBER,
                    "licence_number": NUMBER,
                    "line_number": 1,
                    "code": "over-use",
                    "reason": "5 NAR more exceeds the 2 NAR remaining (nothing written off)",
                    "message_id": "m-2",
                    "at": NOW,
                },
                {
                    "mrn": "26DE000000000471A3",
                    "goods_item": 1,
                    "document_code": "X060",
                    "document_ref": NUMBER,
                    "licence_number": NUMBER,
                    "line_number": None,
                    "code": "wrong-exporter",
                    "reason": "the exporter DE999 is not the holder of the licence",
                    "message_id": "m-3",
                    "at": NOW + timedelta(minutes=5),
                },
                {
                    "mrn": "26FR000000000042B1",
                    "goods_item": 1,
                    "document_code": "X070",
                    "document_ref": OTHER,
                    "licence_number": OTHER,
                    "line_number": 1,
                    "code": "destination-not-allowed",
                    "reason": "destination RU is not among BR, SG, ZA, AE",
                    "message_id": "m-4",
                    "at": NOW,
                },
            ],
        )
    mine = list_refusals(engine, NUMBER)
    every = list_refusals(engine)
    assert [r["code"] for r in mine] == ["wrong-exporter", "over-use"]  # newest first
    assert len(every) == 3
    assert mine[0]["at"].utcoffset() == timedelta(0)
    table = render_refusals(mine, licence_number=NUMBER)
    assert "26DE000000000471A2" in table and "5 NAR more exceeds the 2 NAR remaining" in table
    assert table.rstrip().endswith(
        f"2 refusal(s) for licence {NUMBER}: over-use 1, wrong-exporter 1"
    )
    rows = list(csv.reader(io.StringIO(render_refusals(every, "csv"))))
    assert rows[0] == [
        "at",
        "mrn",
        "goods_item",
        "document",
        "licence_number",
        "line_number",
        "code",
        "reason",
    ]
    assert {row[6] for row in rows[1:]} == {"over-use", "wrong-exporter", "destination-not-allowed"}
    assert json.loads(render_refusals(every, "json"))["refusals"][0]["document"].startswith("X0")


def test_alerts_are_listed_with_their_details(engine):
    seed(engine, individual_licence())
    customs_write_off(engine, 1, "120")
    forced = manual_write_off(
        engine,
        NUMBER,
        1,
        Decimal(1),
        "NAR",
        reason="replacement camera, approved in letter 2026-213-20",
        actor=OFFICER,
        now=NOW + timedelta(hours=1),
        force=True,
    )
    with engine.begin() as conn:
        raise_alert(
            conn,
            "ceiling-below-usage",
            "version 2 lowers line 1 below what is used",
            now=NOW,
            licence_number=OTHER,
            line_number=1,
        )
    mine = list_alerts(engine, NUMBER)
    every = list_alerts(engine)
    assert [a["kind"] for a in mine] == ["manual-over-use"]
    assert [a["kind"] for a in every] == ["manual-over-use", "ceiling-below-usage"]
    assert mine[0]["details"]["movement_id"] == forced.movement_id
    table = render_alerts(mine, licence_number=NUMBER)
    assert "letter 2026-213-20" in table and '"movement_id":' in table
    assert table.rstrip().endswith(f"1 alert(s) for licence {NUMBER}: manual-over-use 1")
    document = json.loads(render_alerts(every, "json"))
    assert document["alerts"][0]["details"]["actor"] == OFFICER
