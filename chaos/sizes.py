"""How big a run is, and what it does to the bridge at each size."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    """One size of the suite. Fractions are of the stream; seconds are wall-clock."""

    name: str
    events: int  # declaration events generated (redeliveries and unreadable ones included)
    traded_licences: int  # licences the declarations quote, delivered to customs before
    late_licences: int  # licences issued while the stream runs (certificates delivered then)
    late_waves: int  # how many times new licences arrive during the stream
    consumer_kills: int  # SIGKILLs of the consumer, one of them while the ledger is away
    broker_restarts: int
    sync_kills: int  # SIGKILLs of a certificate delivery run while it is sending
    outage_seconds: dict[str, float]  # how long the ledger is unavailable, per database
    rate: float  # messages a second customs offer (the consumer may fall behind)
    backlog: int  # most messages published ahead of what the ledger has recorded
    full_share: float  # declarations written in full (~20 KB, several goods items)
    duplicates: float = 0.05
    reorder: float = 0.10
    amendments: float = 0.08
    invalidations: float = 0.04
    bad: float = 0.01
    partial_amendments: float = 0.06  # partial amendments (13/COR) and their own releases
    irrelevant: float = 0.05  # imports, transit, Y901-only exports: all must be ignored
    soap_fault_rate: float = 0.30
    batch_size: int = 200
    drain_timeout: float = 180.0  # seconds without progress before the run gives up waiting


SIZES = {
    "tiny": Size(
        name="tiny",
        events=2_000,
        traded_licences=80,
        late_licences=30,
        late_waves=2,
        consumer_kills=2,
        broker_restarts=1,
        sync_kills=1,
        # SQLite: longer than the bridge's 30 s busy timeout, so the consumer meets the outage
        # as an error (and must wait it out), not only as a slow lock.
        outage_seconds={"sqlite": 34.0, "postgresql": 8.0},
        rate=150,
        backlog=600,
        full_share=0.10,
        bad=0.015,
        drain_timeout=90.0,
    ),
    "small": Size(
        name="small",
        events=20_000,
        traded_licences=300,
        late_licences=100,
        late_waves=3,
        consumer_kills=3,
        broker_restarts=2,
        sync_kills=1,
        outage_seconds={"sqlite": 40.0, "postgresql": 15.0},
        rate=400,
        backlog=2_000,
        full_share=0.08,
    ),
    "full": Size(
        name="full",
        events=100_000,
        traded_licences=1_200,
        late_licences=300,
        late_waves=4,
        consumer_kills=6,
        broker_restarts=3,
        sync_kills=2,
        outage_seconds={"sqlite": 45.0, "postgresql": 30.0},
        rate=800,
        backlog=5_000,
        full_share=0.05,
    ),
}
