from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

from bridge.adapters.store.licences import SaveOutcome, load_licences, save_licence
from bridge.core.model import Licence, LicenceLine, LicenceType

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _licence(**changes) -> Licence:
    base = Licence(
        number="DE-EA-2026-000123",
        type=LicenceType.INDIVIDUAL,
        issuing_member_state="DE",
        issuing_authority="BAFA",
        holder_name="Muster Optik GmbH",
        holder_eori="DE123456789012345",
        valid_from=date(2026, 1, 1),
        valid_to=date(2027, 12, 31),
        lines=(
            LicenceLine(
                line_number=1,
                control_list_entry="6A003.b.4.b",
                description="Thermal imaging cameras",
                cn_code="90258080",
                quantity=Decimal("120"),
                unit="NAR",
                value=Decimal("250000.00"),
                currency="EUR",
                destinations=("IN",),
            ),
        ),
    )
    return replace(base, **changes)


def test_the_same_licence_twice_is_one_version_and_a_change_is_the_next(engine):
    with engine.begin() as conn:
        first, stored = save_licence(
            conn, _licence(), source="a.csv:2", now=NOW, explicit_version=False
        )
        again, _ = save_licence(conn, _licence(), source="a.csv:2", now=NOW, explicit_version=False)
        amended, newer = save_licence(
            conn,
            _licence(holder_name="Muster Optik AG"),
            source="b.csv:2",
            now=NOW,
            explicit_version=False,
        )
        loaded = load_licences(conn, ["DE-EA-2026-000123", "unknown"])
    assert (first, again, amended) == (
        SaveOutcome.NEW,
        SaveOutcome.UNCHANGED,
        SaveOutcome.NEW_VERSION,
    )
    assert (stored.version, newer.version) == (1, 2)
    assert list(loaded) == ["DE-EA-2026-000123"]
    assert loaded["DE-EA-2026-000123"] == newer
    assert loaded["DE-EA-2026-000123"].lines[0].value == Decimal("250000.00")


def test_an_older_explicit_version_is_stale(engine):
    with engine.begin() as conn:
        save_licence(conn, _licence(version=3), source="x", now=NOW, explicit_version=True)
        outcome, _ = save_licence(
            conn,
            _licence(version=2, holder_name="Old name"),
            source="x",
            now=NOW,
            explicit_version=True,
        )
    assert outcome is SaveOutcome.STALE
