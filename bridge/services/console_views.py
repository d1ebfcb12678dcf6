"""What the authority console shows and the one act it adds: licences found by what an officer
knows of them, everything about one licence on one page, the alerts inbox, and acknowledging
alerts. The manual movements are bridge.services.authority's, as for the CLI.

Reads run in one connection each; the acknowledgement in its own transaction
(bridge.adapters.store.db.run_transaction)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from bridge.adapters.store import history
from bridge.adapters.store.alerts import (
    ACKNOWLEDGED,
    OPEN,
    STATES,
    acknowledge_alerts,
    alerts_by_id,
    count_alerts,
    list_alerts,
)
from bridge.adapters.store.db import run_transaction
from bridge.adapters.store.licence_events import licence_events
from bridge.adapters.store.licence_search import (
    LicenceCriteria,
    control_list_entries,
    distinct_values,
    search_licences,
)
from bridge.adapters.store.licences import lines_of_every_version, load_licences
from bridge.adapters.store.outbox import outbox_rows
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.core.codes import normalise_cle
from bridge.core.history import HistoryRow, running_balances
from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType
from bridge.core.movements import ManualKind, RecordedMovement
from bridge.core.reconcile import ReconciliationRow

# A licence is "expiring soon" while it is valid and its last valid day is at most this many
# days away (the settings' console_expiring_days unless the search says otherwise).
EXPIRING_STATUSES = (LicenceStatus.VALID.value,)
LICENCE_TYPES = tuple(t.value for t in LicenceType)
LICENCE_STATUSES = tuple(s.value for s in LicenceStatus)
ALERT_STATES = STATES


@dataclass(frozen=True)
class LicenceFilter:
    """A search on the licences list, as the page's query parameters say it."""

    text: str = ""
    holder: str = ""
    eori: str = ""
    status: str = ""
    licence_type: str = ""
    control_list_entry: str = ""
    over_use: bool = False
    expiring: bool = False
    expiring_days: int = 30

    def criteria(self, today: date) -> LicenceCriteria:
        """The store's criteria for this search on `today`. A control list entry is matched
        in the spelling the ledger keeps (`5A002.a.1` and `5A002a1` find the same lines)."""
        entry = self.control_list_entry.strip()
        if entry:
            entry = normalise_cle(entry) or entry
        statuses: tuple[str, ...] = (self.status,) if self.status else ()
        if self.expiring:
            statuses = tuple(s for s in statuses or EXPIRING_STATUSES if s in EXPIRING_STATUSES)
            statuses = statuses or ("-",)  # asked for a status that cannot be expiring: none
        return LicenceCriteria(
            text=self.text.strip(),
            holder=self.holder.strip(),
            eori=self.eori.strip().replace(" ", ""),
            statuses=statuses,
            licence_type=self.licence_type,
            control_list_entry=entry,
            valid_to_from=today if self.expiring else None,
            valid_to_until=today + timedelta(days=self.expiring_days) if self.expiring else None,
            over_used=self.over_use,
        )


@dataclass(frozen=True)
class LicenceListing:
    rows: list[dict[str, Any]]
    total: int
    statuses: list[str]
    types: list[str]
    control_list_entries: list[str]


def find_licences(
    engine: Engine, wanted: LicenceFilter, *, today: date, limit: int = 100, offset: int = 0
) -> LicenceListing:
    """The licences `wanted` asks for, in number order (a page of `limit` from `offset`), with
    how many match in all and the values the filters can offer."""
    with engine.connect() as conn:
        rows, total = search_licences(conn, wanted.criteria(today), limit=limit, offset=offset)
        statuses = sorted(set(LICENCE_STATUSES) | set(distinct_values(conn, "status")))
        types = sorted(set(LICENCE_TYPES) | set(distinct_values(conn, "type")))
        entries = control_list_entries(conn)
    for row in rows:
        row["expiring"] = (
            row["status"] in EXPIRING_STATUSES
            and row["valid_to"] is not None
            and today <= row["valid_to"] <= today + timedelta(days=wanted.expiring_days)
        )
    return LicenceListing(rows, total, statuses, types, entries)


@dataclass(frozen=True)
class UsagePoint:
    at: datetime
    used_quantity: Decimal
    used_value: Decimal


@dataclass(frozen=True)
class LineView:
    """One line of a licence as the console shows it: its reconciliation (authorised, used,
    remaining), what it authorises, and its usage over time."""

    row: ReconciliationRow
    line: LicenceLine | None
    usage: list[UsagePoint] = field(default_factory=list)

    @property
    def used_share(self) -> Decimal | None:
        """Written off as a share of the ceiling (quantity, else value); None: no ceiling."""
        for authorised, used in (
            (self.row.authorised_quantity, self.row.written_off_quantity),
            (self.row.authorised_value, self.row.written_off_value),
        ):
            if authorised is not None:
                return used / authorised if authorised else Decimal(1 if used else 0)
        return None


@dataclass(frozen=True)
class LicenceView:
    """Everything about one licence: its current version, each line with its balance and
    usage over time, every movement with the running balance, the refusals, alerts and
    status changes, and the certificates and status updates sent to customs."""

    licence: Licence
    lines: list[LineView]
    movements: list[HistoryRow]
    reversible: frozenset[int]
    refusals: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    events: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]

    @property
    def open_alerts(self) -> int:
        return sum(1 for alert in self.alerts if alert["state"] == OPEN)

    @property
    def over_used(self) -> bool:
        return any(line.row.over_used for line in self.lines)


def licence_view(engine: Engine, number: str) -> LicenceView | None:
    """Licence `number` as the console's licence page shows it; None when the ledger does not
    know it."""
    with engine.connect() as conn:
        licence = load_licences(conn, [number]).get(number)
        if licence is None:
            return None
        rows = reconciliation_rows(conn, number)
        movements = history.movements_of(conn, number)
        every = lines_of_every_version(conn, number)
        refusals = history.refusals_for(conn, number)
        alerts = history.alerts_for(conn, number)
        events = licence_events(conn, number)
        deliveries = [
            {key: value for key, value in row.items() if key != "document"}
            for row in outbox_rows(conn, number)
        ]
    current = {line.line_number: line for line in licence.ledger_lines}
    # A line a later version dropped keeps its movements, with no ceiling left (as the
    # reconciliation shows it).
    ceilings = {
        n: LicenceLine(
            n, line.control_list_entry, line.description, unit=line.unit, currency=line.currency
        )
        for n, line in every.items()
    }
    ceilings.update(current)
    balanced = running_balances(movements, ceilings)
    usage: dict[int, list[UsagePoint]] = {}
    for entry in balanced:
        usage.setdefault(entry.movement.line_number, []).append(
            UsagePoint(entry.movement.at, entry.used_quantity, entry.used_value)
        )
    reversed_ids = {m.reverses for m in movements if m.reverses is not None}
    reversible = frozenset(
        m.id
        for m in movements
        if m.kind in (ManualKind.WRITE_OFF, ManualKind.CORRECTION) and m.id not in reversed_ids
    )
    lines = [
        LineView(
            row,
            current.get(row.line_number) or every.get(row.line_number),
            usage.get(row.line_number, []),
        )
        for row in rows
    ]
    return LicenceView(licence, lines, balanced, reversible, refusals, alerts, events, deliveries)


@dataclass(frozen=True)
class AlertInbox:
    alerts: list[dict[str, Any]]
    counts: dict[str, int]  # state -> how many
    kinds: list[str]


def alert_inbox(
    engine: Engine,
    *,
    state: str | None = OPEN,
    licence_number: str | None = None,
    kind: str | None = None,
    limit: int = 500,
) -> AlertInbox:
    """The alerts in `state` (None: all), newest first, at most `limit`, with how many there
    are in each state and which kinds there are."""
    with engine.connect() as conn:
        alerts = list_alerts(
            conn,
            licence_number=licence_number or None,
            kind=kind or None,
            state=state,
            limit=limit,
        )
        counts = {s: sum(count_alerts(conn, state=s).values()) for s in STATES}
        kinds = sorted(count_alerts(conn))
    return AlertInbox(alerts, counts, kinds)


@dataclass(frozen=True)
class Acknowledged:
    """What an acknowledgement did: the alerts it closed, those another officer had already
    acknowledged (id -> by whom), and ids the ledger does not have."""

    changed: list[int]
    already: dict[int, str]
    unknown: list[int]


def acknowledge(engine: Engine, ids: list[int], *, actor: str, now: datetime) -> Acknowledged:
    """Acknowledge the alerts `ids` as `actor` at `now`, in one transaction. An alert
    already acknowledged keeps who did it first (reported back, not an error)."""
    if not actor.strip():
        raise ValueError("an acknowledgement needs the person who makes it")

    def act(conn) -> Acknowledged:
        found = alerts_by_id(conn, ids)
        changed = acknowledge_alerts(conn, [i for i in ids if i in found], actor=actor, now=now)
        already = {
            i: found[i]["acknowledged_by"] or ""
            for i in ids
            if i in found and found[i]["state"] == ACKNOWLEDGED and i not in changed
        }
        return Acknowledged(changed, already, sorted(i for i in set(ids) if i not in found))

    return run_transaction(engine, act)


def movement(engine: Engine, movement_id: int) -> RecordedMovement | None:
    """One movement as the ledger keeps it (None: no such movement)."""
    with engine.connect() as conn:
        return history.movement_by_id(conn, movement_id)
