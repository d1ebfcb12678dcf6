"""The statistics page's figures counted independently of the bridge, for the tests that compare
them (tests/integration/test_statistics.py over HTTP, tests/browser/test_console_statistics.py
in Chromium): every data table of a console page read back from its HTML, and the same tables
counted with this module's own queries on the ledger (SQLAlchemy Core over the schema's
tables; no code of the bridge's statistics)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import lxml.html
from sqlalchemy import and_, case, func, select

from bridge.adapters.store.schema import (
    alert,
    declaration,
    licence,
    licence_line,
    movement,
    refusal,
)

# How the ledger's kinds count (docs/statistics.md).
WRITE_OFFS = ("write_off", "record", "manual_write_off")
OVER_USE_ALERTS = ("over-use", "manual-over-use", "contingency-over-use")
TYPE_LABELS = {
    "individual": "individual",
    "global": "global",
    "national_general": "national general",
    "union_general": "Union general",
}
PERCENT = Decimal("0.1")


# --------------------------------------------------------------------------- the page


def _figure(cell) -> object:
    """A cell as the reader sees it: numbers (grouping spaces dropped) as Decimal, shares as
    ("%", Decimal), nothing as None, text as text."""
    text = cell.text_content().strip().replace("\u202f", "")
    if "num" not in (cell.get("class") or "").split():
        return text or None
    if text in ("", "–"):
        return None
    if text.endswith("%"):
        return ("%", Decimal(text[:-1].strip()))
    return Decimal(text)


def page_tables(html: str) -> dict[str, list[dict[str, object]]]:
    """Every data table of a console page: its rows as {column key: figure}."""
    document = lxml.html.fromstring(html)
    tables = {}
    for table in document.xpath("//table[@data-table]"):
        rows = []
        for tr in table.xpath("./tbody/tr"):
            cells = tr.xpath("./td[@data-key]")
            if cells:
                rows.append({td.get("data-key"): _figure(td) for td in cells})
        tables[table.get("data-table")] = rows
    return tables


def same_rows(found: list[dict], expected: list[dict]) -> None:
    """Assert two tables hold the same rows, in any order (whole numbers read as Decimals)."""

    def canonical(rows):
        return sorted(
            ({k: Decimal(v) if isinstance(v, int) else v for k, v in row.items()} for row in rows),
            key=repr,
        )

    assert canonical(found) == canonical(expected)


def _share(part, whole) -> object:
    if part is None or whole is None or whole == 0:
        return None
    return ("%", (Decimal(part) / Decimal(whole) * 100).quantize(PERCENT))


# --------------------------------------------------------------------------- the count


def quarters(first: date, last: date) -> list[tuple[str, datetime, datetime]]:
    """The quarters from the one holding `first` to the one holding `last`: (label, start, end)."""
    out = []
    year, quarter = first.year, (first.month - 1) // 3
    while date(year, quarter * 3 + 1, 1) <= last:
        start = datetime(year, quarter * 3 + 1, 1, tzinfo=UTC)
        nyear, nquarter = (year + 1, 0) if quarter == 3 else (year, quarter + 1)
        out.append(
            (f"{year}-Q{quarter + 1}", start, datetime(nyear, nquarter * 3 + 1, 1, tzinfo=UTC))
        )
        year, quarter = nyear, nquarter
    return out


def months(first: date, last: date) -> list[tuple[str, datetime, datetime]]:
    """The months from the one holding `first` to the one holding `last`: (label, start, end)."""
    out = []
    year, month = first.year, first.month
    while date(year, month, 1) <= last:
        nyear, nmonth = (year + 1, 1) if month == 12 else (year, month + 1)
        out.append(
            (f"{year}-{month:02d}", datetime(year, month, 1, tzinfo=UTC),
             datetime(nyear, nmonth, 1, tzinfo=UTC))
        )  # fmt: skip
        year, month = nyear, nmonth
    return out


def _count(conn, table, *conditions) -> int:
    return conn.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one()


def expected_tables(conn, periods, start: datetime, end: datetime) -> dict[str, list[dict]]:
    """Every table of the statistics page for the range `start` to `end` in `periods` (from
    quarters or months), counted with this module's queries; amounts exact (see in_cents)."""
    issued = and_(licence.c.valid_from >= start.date(), licence.c.valid_from < end.date())
    in_range = and_(movement.c.at >= start, movement.c.at < end)
    line_join = (licence_line.c.number == movement.c.licence_number) & (
        licence_line.c.line_number == movement.c.line_number
    )
    # Precondition of the simple counting below: every movement is on a current line, and
    # every entry is an Annex I entry (its first character is its category).
    assert (
        _count(conn, movement)
        == conn.execute(
            select(func.count()).select_from(movement.join(licence_line, line_join))
        ).scalar_one()
    )
    for (entry,) in conn.execute(select(licence_line.c.control_list_entry)):
        assert entry[0].isdigit() and entry[1] in "ABCDE" and entry[2:5].isdigit(), entry

    overview = []
    for label, a, b in periods:
        row = {
            "period": label,
            "licences": _count(
                conn, licence, licence.c.valid_from >= a.date(), licence.c.valid_from < b.date()
            ),
        }
        for kind in TYPE_LABELS:
            row[f"type_{kind}"] = _count(
                conn,
                licence,
                licence.c.valid_from >= a.date(),
                licence.c.valid_from < b.date(),
                licence.c.type == kind,
            )
        moved = (movement.c.at >= a, movement.c.at < b)
        row["write_offs"] = _count(conn, movement, *moved, movement.c.kind.in_(WRITE_OFFS))
        row["changes"] = _count(conn, movement, *moved, movement.c.kind.not_in(WRITE_OFFS))
        refused = (refusal.c.at >= a, refusal.c.at < b)
        row["refusals"] = _count(conn, refusal, *refused)
        row["over_use_refusals"] = _count(conn, refusal, *refused, refusal.c.code == "over-use")
        row["over_use_alerts"] = _count(
            conn, alert, alert.c.at >= a, alert.c.at < b, alert.c.kind.in_(OVER_USE_ALERTS)
        )
        overview.append(row)

    # Per line of the licences issued: authorised, and used up to the end of the range.
    used = (
        select(
            movement.c.licence_number,
            movement.c.line_number,
            func.sum(movement.c.quantity).label("q"),
            func.sum(movement.c.value).label("v"),
        )
        .where(movement.c.at < end)
        .group_by(movement.c.licence_number, movement.c.line_number)
        .subquery()
    )
    lines = conn.execute(
        select(
            licence.c.number,
            licence.c.type,
            licence_line.c.unit,
            licence_line.c.currency,
            licence_line.c.quantity,
            licence_line.c.value,
            used.c.q,
            used.c.v,
            licence_line.c.destinations,
            func.substr(licence_line.c.control_list_entry, 1, 1),
        )
        .select_from(
            licence_line.join(licence, licence.c.number == licence_line.c.number).outerjoin(
                used,
                (used.c.licence_number == licence_line.c.number)
                & (used.c.line_number == licence_line.c.line_number),
            )
        )
        .where(issued)
    ).all()
    by_type: dict[tuple, dict] = {}
    by_category: dict[tuple, dict] = {}
    destinations: dict[str, dict] = {}
    for number, kind, unit, currency, aq, av, uq, uv, allowed, category in lines:
        row = by_type.setdefault(
            (kind, unit, currency),
            {"numbers": set(), "lines": 0, "aq": None, "av": None, "uq": 0, "uv": 0, "over": 0},
        )
        row["numbers"].add(number)
        row["lines"] += 1
        row["aq"] = aq if row["aq"] is None else row["aq"] + (aq or 0)
        row["av"] = av if row["av"] is None else row["av"] + (av or 0)
        row["uq"] += uq or 0
        row["uv"] += uv or 0
        row["over"] += (aq is not None and (uq or 0) > aq) or (av is not None and (uv or 0) > av)
        cat = by_category.setdefault(
            (category, unit, currency), {"numbers": set(), "lines": 0, "aq": None, "av": None}
        )
        cat["numbers"].add(number)
        cat["lines"] += 1
        cat["aq"] = aq if cat["aq"] is None else cat["aq"] + (aq or 0)
        cat["av"] = av if cat["av"] is None else cat["av"] + (av or 0)
        for country in (allowed or "").split():
            d = destinations.setdefault(country, {"numbers": set(), "lines": 0})
            d["numbers"].add(number)
            d["lines"] += 1

    stats_by_type = [
        {
            "licence_type": TYPE_LABELS[kind],
            "unit": unit,
            "currency": currency,
            "licences": len(r["numbers"]),
            "lines": r["lines"],
            "authorised_quantity": r["aq"],
            "used_quantity": r["uq"] if unit else None,
            "used_quantity_share": _share(r["uq"] if unit else None, r["aq"]),
            "authorised_value": r["av"],
            "used_value": r["uv"] if currency else None,
            "used_value_share": _share(r["uv"] if currency else None, r["av"]),
            "over_used_lines": r["over"],
        }
        for (kind, unit, currency), r in by_type.items()
    ]
    names = {
        "1": "Special materials and related equipment",
        "2": "Materials processing",
        "5": "Telecommunications and information security",
        "6": "Sensors and lasers",
        "7": "Navigation and avionics",
    }
    stats_authorised = [
        {
            "category": category,
            "category_name": names[category],
            "unit": unit,
            "currency": currency,
            "licences": len(r["numbers"]),
            "lines": r["lines"],
            "authorised_quantity": r["aq"],
            "authorised_value": r["av"],
        }
        for (category, unit, currency), r in by_category.items()
    ]

    counted = func.sum(case((movement.c.kind.in_(WRITE_OFFS), 1), else_=0))
    changed = func.sum(case((movement.c.kind.in_(WRITE_OFFS), 0), else_=1))
    category = func.substr(licence_line.c.control_list_entry, 1, 1)
    exports_by_category = [
        {
            "category": cat,
            "category_name": names[cat],
            "unit": unit,
            "currency": currency,
            "write_offs": n,
            "changes": c,
            "quantity": q if unit else None,
            "value": v if currency else None,
        }
        for cat, unit, currency, n, c, q, v in conn.execute(
            select(
                category,
                licence_line.c.unit,
                licence_line.c.currency,
                counted,
                changed,
                func.sum(movement.c.quantity),
                func.sum(movement.c.value),
            )
            .select_from(movement.join(licence_line, line_join))
            .where(in_range)
            .group_by(category, licence_line.c.unit, licence_line.c.currency)
        )
    ]

    # Destinations from the declarations as stored (JSON read here, not by the bridge's code).
    sent_to = {}
    for mrn, document in conn.execute(select(declaration.c.mrn, declaration.c.acted_on)):
        if document:
            state = json.loads(document)
            header = (state.get("destination") or [None])[0]
            for item in state.get("goods_items", []):
                sent_to[(mrn, item["sequence"])] = item.get("destination") or header
    by_destination: dict[tuple, dict] = {}
    for mrn, item, kind, q, v, unit, currency in conn.execute(
        select(
            movement.c.mrn,
            movement.c.goods_item,
            movement.c.kind,
            movement.c.quantity,
            movement.c.value,
            licence_line.c.unit,
            licence_line.c.currency,
        )
        .select_from(movement.join(licence_line, line_join))
        .where(in_range)
    ):
        country = sent_to.get((mrn, item)) or "not declared"
        row = by_destination.setdefault(
            (country, unit, currency),
            {
                "destination": country,
                "unit": unit,
                "currency": currency,
                "write_offs": 0,
                "changes": 0,
                "quantity": 0 if unit else None,
                "value": 0 if currency else None,
            },
        )
        row["write_offs" if kind in WRITE_OFFS else "changes"] += 1
        if unit:
            row["quantity"] += q
        if currency:
            row["value"] += v

    refusals = []
    for label, a, b in periods:
        for code, n in conn.execute(
            select(refusal.c.code, func.count())
            .where(refusal.c.at >= a, refusal.c.at < b)
            .group_by(refusal.c.code)
        ):
            refusals.append({"period": label, "code": code, "refusals": n})

    over_used = []
    for number, line_number, kind, unit, aq, currency, av, uq, uv in conn.execute(
        select(
            licence_line.c.number,
            licence_line.c.line_number,
            licence.c.type,
            licence_line.c.unit,
            licence_line.c.quantity,
            licence_line.c.currency,
            licence_line.c.value,
            used.c.q,
            used.c.v,
        ).select_from(
            licence_line.join(licence, licence.c.number == licence_line.c.number).join(
                used,
                (used.c.licence_number == licence_line.c.number)
                & (used.c.line_number == licence_line.c.line_number),
            )
        )
    ):
        if (aq is not None and uq > aq) or (av is not None and uv > av):
            over_used.append(
                {
                    "licence_number": number,
                    "line_number": line_number,
                    "licence_type": TYPE_LABELS[kind],
                    "unit": unit,
                    "authorised_quantity": aq,
                    "used_quantity": uq if unit else None,
                    "currency": currency,
                    "authorised_value": av,
                    "used_value": uv if currency else None,
                }
            )

    return {
        "stats_overview": overview,
        "stats_by_type": stats_by_type,
        "stats_authorised_by_category": stats_authorised,
        "stats_exports_by_category": exports_by_category,
        "stats_exports_by_destination": list(by_destination.values()),
        "stats_licences_by_destination": [
            {"destination": c, "licences": len(d["numbers"]), "lines": d["lines"]}
            for c, d in destinations.items()
        ],
        "stats_refusals": refusals,
        "stats_over_used": over_used,
    }


def in_cents(tables: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Amounts as the page writes them: to the cent."""
    money = {"authorised_value", "used_value", "value"}
    return {
        name: [
            {
                k: (Decimal(v).quantize(Decimal("0.01")) if k in money and v is not None else v)
                for k, v in row.items()
            }
            for row in rows
        ]
        for name, rows in tables.items()
    }
