"""What the console reads and the acknowledgement it adds, on both databases: the licence search
against independent SQL on the demo's ledger, a licence's page data, the alerts' state (and its
migration), and the console's pages and forms over HTTP on the same ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from bridge.adapters.store.db import make_engine
from bridge.adapters.store.migrate import current_revision, upgrade
from bridge.services.config import Settings
from bridge.services.console_views import (
    LicenceFilter,
    acknowledge,
    alert_inbox,
    find_licences,
    licence_view,
)
from tests.browser.helpers import console_client, fill_demo_ledger, post_form

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def demo(ledger_url, tmp_path):
    settings = Settings(home=tmp_path / "home", database_url=ledger_url)
    fill_demo_ledger(settings, now=NOW)
    engine = make_engine(ledger_url)
    yield settings, engine
    engine.dispose()


def _sql(engine, query: str, **params) -> list[str]:
    with engine.connect() as conn:
        return sorted(n for (n,) in conn.execute(text(query), params))


def _found(engine, today: date | None = None, **wanted) -> list[str]:
    today = today or NOW.date()
    listing = find_licences(engine, LicenceFilter(**wanted), today=today, limit=1000)
    assert listing.total == len(listing.rows)
    return [row["number"] for row in listing.rows]


def test_the_search_finds_what_independent_sql_finds(demo):
    _settings, engine = demo
    every = _sql(engine, "SELECT number FROM licence")
    assert _found(engine) == every and len(every) >= 10
    cases = [
        (
            {"holder": "PRECISION"},
            "SELECT number FROM licence WHERE holder_name LIKE '%Precision%'",
        ),
        ({"text": "gbo"}, "SELECT number FROM licence WHERE number LIKE 'GBO%'"),
        ({"eori": "de"}, "SELECT number FROM licence WHERE holder_eori LIKE 'DE%'"),
        ({"status": "suspended"}, "SELECT number FROM licence WHERE status = 'suspended'"),
        (
            {"licence_type": "union_general"},
            "SELECT number FROM licence WHERE type = 'union_general'",
        ),
        (
            {"control_list_entry": "5A002a1"},
            "SELECT DISTINCT number FROM licence_line WHERE control_list_entry LIKE '5A002.a.1%'",
        ),
        (
            {"control_list_entry": "2b"},
            "SELECT DISTINCT number FROM licence_line WHERE control_list_entry LIKE '2B%'",
        ),
    ]
    for wanted, query in cases:
        expected = _sql(engine, query)
        assert 0 < len(expected) < len(every), wanted
        assert _found(engine, **wanted) == expected, wanted
    # LIKE's own characters are searched for, not obeyed
    assert _found(engine, holder="%") == [] and _found(engine, eori="_") == []


def test_over_use_and_expiring_soon(demo):
    _settings, engine = demo
    assert _found(engine, over_use=True) == []
    from bridge.services.authority import manual_write_off

    manual_write_off(
        engine,
        "LV-DU-2025-000311",
        1,
        Decimal(41),
        "NAR",
        reason="audit",
        actor="T",
        now=NOW,
        force=True,
    )
    assert _found(engine, over_use=True) == ["LV-DU-2025-000311"]
    ends = _sql(
        engine,
        "SELECT number FROM licence WHERE status = 'valid' AND valid_to BETWEEN :a AND :b",
        a=date(2027, 1, 1),
        b=date(2027, 1, 31),
    )
    assert ends == ["EA-2025-004711"]
    assert _found(engine, today=date(2027, 1, 1), expiring=True, expiring_days=30) == ends
    assert _found(engine, today=date(2027, 1, 1), expiring=True, expiring_days=10) == []
    # a suspended licence is not "expiring": it is not in use anyway
    assert (
        _found(engine, today=date(2027, 5, 1), expiring=True, expiring_days=40, status="suspended")
        == []
    )


def test_a_licence_view_has_every_part_of_the_page(demo):
    _settings, engine = demo
    view = licence_view(engine, "GBSIEXYK3ZZZPADR-0002")
    assert view is not None and licence_view(engine, "NO-SUCH") is None
    (line,) = view.lines
    assert (line.row.authorised_quantity, line.row.written_off_quantity) == (500, 102)
    assert line.used_share == Decimal("0.204")
    assert [point.used_quantity for point in line.usage] == [102]
    assert len(view.movements) == 1 and view.reversible == frozenset()
    assert [r["code"] for r in view.refusals] == ["over-use"]
    assert [a["kind"] for a in view.alerts] == ["over-use"] and view.open_alerts == 1
    assert [d["status"] for d in view.deliveries] == ["delivered"]
    assert "document" not in view.deliveries[0]


def test_alerts_are_acknowledged_once_by_whoever_did_it_first(demo):
    _settings, engine = demo
    inbox = alert_inbox(engine)
    assert inbox.counts == {"open": 1, "acknowledged": 0} and inbox.kinds == ["over-use"]
    (first,) = inbox.alerts
    done = acknowledge(engine, [first["id"], 9999], actor="Olga Brandt (olga)", now=NOW)
    assert (done.changed, done.already, done.unknown) == ([first["id"]], {}, [9999])
    again = acknowledge(engine, [first["id"]], actor="Arne", now=NOW + timedelta(hours=1))
    assert again.changed == [] and again.already == {first["id"]: "Olga Brandt (olga)"}
    (shown,) = alert_inbox(engine, state="acknowledged").alerts
    assert shown["acknowledged_by"] == "Olga Brandt (olga)" and shown["acknowledged_at"] == NOW
    assert alert_inbox(engine).alerts == []


def test_migration_0006_opens_every_alert_a_ledger_already_had(ledger_url):
    engine = make_engine(ledger_url, create=False)
    upgrade(engine, revision="0005")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alert (kind, message, details, at)"
                " VALUES ('over-use', 'raised before 0006', '{}', :at)"
            ),
            {"at": NOW},
        )
    upgrade(engine, revision="0006")
    assert current_revision(engine) == "0006"
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT state, acknowledged_by FROM alert")).all()
    assert [tuple(row) for row in rows] == [("open", None)]
    engine.dispose()


def test_the_pages_and_forms_work_on_this_database(demo):
    settings, engine = demo
    client = console_client(settings, role="officer", engine=engine)
    for path in (
        "/licences",
        "/licences?over_use=1&status=valid",
        "/alerts?state=all",
        "/licences/GBOIEL/2025/00042",
        "/manual/write-off?licence=EA-2025-004711",
    ):
        assert client.get(path).status_code == 200, path
    answer = post_form(
        client,
        "/manual/write-off",
        {
            "licence": "EA-2025-004711",
            "line": "2",
            "quantity": "1.25",
            "unit": "KGM",
            "value": "4000",
            "currency": "EUR",
            "reason": "paper declaration DE-77",
        },
    )
    assert answer.status_code == 303, answer.text
    movement = _sql(engine, "SELECT actor FROM movement WHERE kind = 'manual_write_off'")
    assert movement == [client.actor]
    page = client.get("/licences/EA-2025-004711").text
    assert "Recorded: movement" in page and client.actor in page
    (alert_id,) = _sql(engine, "SELECT CAST(id AS VARCHAR(10)) FROM alert")
    assert post_form(client, "/alerts/acknowledge", {"id": alert_id}).status_code == 303
    assert _sql(engine, "SELECT acknowledged_by FROM alert") == [client.actor]
