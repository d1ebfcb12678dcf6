"""The authority's statistics for a range (docs/statistics.md): licences issued by type, what they
authorise and what was used, exports by control list category and destination, refusals and
over-use, counted by bridge.core.statistics from the ledger's facts, read in one connection."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import Engine

from bridge.adapters.store import statistics as store
from bridge.core.acted_on import from_json
from bridge.core.statistics import (
    Facts,
    LineFacts,
    MovementFact,
    Statistics,
    StatisticsQuery,
    count,
)


def statistics(engine: Engine, query: StatisticsQuery) -> Statistics:
    """The statistics of `query`'s range, as tables (bridge.core.statistics.SPECS)."""
    with engine.connect() as conn:
        licences = store.licence_dates(conn)
        lines = store.current_lines(conn)
        movements = store.movements_between(conn, query.start, query.end)
        used = store.used_before(conn, query.end)
        moved = {(m.licence_number, m.line_number) for m in movements} | set(used)
        lines = {**store.dropped_lines(conn, moved - set(lines)), **lines}
        # A movement on a line no version of its licence has (written around the bridge) is
        # still counted, under a line without entry, unit or currency.
        lines.update({key: _unknown_line(key, licences) for key in moved - set(lines)})
        documents = store.acted_on_documents(conn, (m.mrn for m in movements if m.mrn))
        refusals = store.refusals_between(conn, query.start, query.end)
        alerts = store.alerts_between(conn, query.start, query.end)
    facts = Facts(
        licences=licences,
        lines=lines,
        movements=movements,
        used=used,
        destinations=_destinations(documents, movements),
        refusals=refusals,
        alerts=alerts,
    )
    return count(query, facts)


def _unknown_line(key: tuple[str, int], licences: dict[str, tuple[str, date]]) -> LineFacts:
    kind, valid_from = licences.get(key[0], ("unknown", date.min))
    return LineFacts(key[0], key[1], kind, valid_from, "", None, None, None, None, current=False)


def _destinations(
    documents: dict[str, str], movements: Iterable[MovementFact]
) -> dict[tuple[str, int], str]:
    """Per (MRN, goods item) moved, where the declaration sends the item: the item's own
    destination, else the declaration's."""
    wanted = {(m.mrn, m.goods_item) for m in movements if m.mrn and m.goods_item is not None}
    found: dict[tuple[str, int], str] = {}
    states = {}
    for mrn, text in documents.items():
        try:
            states[mrn] = from_json(text)
        except (ValueError, KeyError, TypeError):
            continue  # a declaration kept in a shape this release cannot read: not declared
    for mrn, goods_item in wanted:
        state = states.get(mrn)
        if state is None:
            continue
        item = next((i for i in state.items if i.sequence == goods_item), None)
        country = (item.destination if item else None) or state.destination.value
        if country:
            found[(mrn, goods_item)] = country
    return found
