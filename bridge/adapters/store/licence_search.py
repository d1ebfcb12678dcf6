"""Finding licences by what an authority knows of them: holder, EORI, status, type, control list
entry, validity, and whether a line is written off beyond its ceiling. Rows only: what the
criteria mean for people is bridge.services.console_views'."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, and_, exists, func, or_, select

from bridge.adapters.store.schema import licence, licence_line, line_total


@dataclass(frozen=True)
class LicenceCriteria:
    """What a search asks; an empty field asks nothing. Text fields match case-insensitively,
    `text` in the number or the holder's name, `holder` in the name, `eori` and
    `control_list_entry` at the start (a category `5` or group `5A002` finds its entries);
    `valid_to_from`/`valid_to_until` bound the last valid day (a licence without one never
    matches); `statuses`: any of these."""

    text: str = ""
    holder: str = ""
    eori: str = ""
    statuses: tuple[str, ...] = ()
    licence_type: str = ""
    control_list_entry: str = ""
    valid_to_from: date | None = None
    valid_to_until: date | None = None
    over_used: bool = False


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def _prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped.lower()}%"


def _over_used_line():
    """A current line written off beyond its quantity or value ceiling."""
    return (
        select(licence_line.c.number)
        .join(
            line_total,
            and_(
                line_total.c.licence_number == licence_line.c.number,
                line_total.c.line_number == licence_line.c.line_number,
            ),
        )
        .where(
            licence_line.c.number == licence.c.number,
            or_(
                and_(
                    licence_line.c.quantity.is_not(None),
                    line_total.c.quantity > licence_line.c.quantity,
                ),
                and_(licence_line.c.value.is_not(None), line_total.c.value > licence_line.c.value),
            ),
        )
    )


def _where(criteria: LicenceCriteria) -> list[Any]:
    conditions: list[Any] = []
    if criteria.text:
        pattern = _like(criteria.text)
        conditions.append(
            or_(
                func.lower(licence.c.number).like(pattern, escape="\\"),
                func.lower(licence.c.holder_name).like(pattern, escape="\\"),
            )
        )
    if criteria.holder:
        conditions.append(func.lower(licence.c.holder_name).like(_like(criteria.holder), "\\"))
    if criteria.eori:
        conditions.append(func.lower(licence.c.holder_eori).like(_prefix(criteria.eori), "\\"))
    if criteria.statuses:
        conditions.append(licence.c.status.in_(criteria.statuses))
    if criteria.licence_type:
        conditions.append(licence.c.type == criteria.licence_type)
    if criteria.control_list_entry:
        conditions.append(
            exists(
                select(licence_line.c.number).where(
                    licence_line.c.number == licence.c.number,
                    func.lower(licence_line.c.control_list_entry).like(
                        _prefix(criteria.control_list_entry), escape="\\"
                    ),
                )
            )
        )
    if criteria.valid_to_from is not None:
        conditions.append(licence.c.valid_to >= criteria.valid_to_from)
    if criteria.valid_to_until is not None:
        conditions.append(licence.c.valid_to <= criteria.valid_to_until)
    if criteria.over_used:
        conditions.append(exists(_over_used_line()))
    return conditions


def search_licences(
    conn: Connection, criteria: LicenceCriteria, *, limit: int, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """The licences matching `criteria` in number order (at most `limit`, from `offset`), each
    with its header, its number of current lines and whether a line is over-used; and how many
    match in all."""
    conditions = _where(criteria)
    lines = (
        select(func.count())
        .where(licence_line.c.number == licence.c.number)
        .scalar_subquery()
        .label("lines")
    )
    query = (
        select(
            licence.c.number,
            licence.c.type,
            licence.c.status,
            licence.c.issuing_member_state,
            licence.c.issuing_authority,
            licence.c.holder_name,
            licence.c.holder_eori,
            licence.c.valid_from,
            licence.c.valid_to,
            licence.c.current_version,
            licence.c.general_authorisation,
            lines,
            exists(_over_used_line()).label("over_used"),
        )
        .where(*conditions)
        .order_by(licence.c.number)
        .limit(limit)
        .offset(offset)
    )
    rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        row["over_used"] = bool(row["over_used"])
    total = conn.execute(select(func.count()).select_from(licence).where(*conditions)).scalar_one()
    return rows, total


def distinct_values(conn: Connection, column: str) -> list[str]:
    """The values a header column (`status`, `type`, `issuing_member_state`) takes in the
    ledger, sorted: what a filter can offer."""
    target = licence.c[column]
    return [value for (value,) in conn.execute(select(target).distinct().order_by(target))]


def control_list_entries(conn: Connection, numbers: Iterable[str] | None = None) -> list[str]:
    """The control list entries of current lines (of these licences), sorted."""
    query = select(licence_line.c.control_list_entry).distinct()
    if numbers is not None:
        query = query.where(licence_line.c.number.in_(list(numbers)))
    return sorted(value for (value,) in conn.execute(query) if value)
