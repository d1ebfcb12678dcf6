"""What the console's operations pages are about, made in a ledger holding the demo's sample data
(helpers.fill_demo_ledger) by the project's own services, as it happens in service:

- a national file with two broken records, ingested: its rejects kept with every reason, the
  one good licence in it stored;
- that licence's certificate sent to a customs simulator answering 503 to everything, with no
  retry budget left: failed, as after an outage longer than the budget;
- declaration messages read by the consumer (bridge.services.consumer.store_batch, the path a
  batch from the broker takes) under a message size limit too small for them: a release of a
  WCO sample that today's limit reads (a replay applies it), and bytes that are no JSON at all
  (a replay leaves them quarantined)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine

from bridge.adapters.mqtt.client import Received
from bridge.core.envelope import mrn_from_lrn
from bridge.services.config import Settings

# The national file: one good licence, two records the ECJU mapping rejects for two reasons each.
NATIONAL_FILE = "ecju_licences_fenland-optics.json"
NEW_LICENCE = "GBSIEL/2026/01234"
BAD_DATE_LICENCE = "GBSIEL/2026/01235"  # 30 February; unit "KG"
BAD_EORI_LICENCE = "GBSIEL/2026/01236"  # an EORI too long; destination "EL"
# The quarantine: a limit under the release's size (about 19 KB), as a deployment set too low.
SMALL_LIMIT = 8000
GARBAGE = b"\x1b[31mnot JSON at all\x1b[0m"
RELEASE_SAMPLE = "TT_EX010a.xml"  # writes off 10 kg of GBSIEE2E350001-0001 line 1
RELEASE_LICENCE = "GBSIEE2E350001-0001"


@dataclass(frozen=True)
class OperationsProblems:
    """What add_operations_problems made: the release's MRN and message id, the number of
    records rejected and of messages quarantined, the failed certificate's licence."""

    release_mrn: str
    release_message_id: str
    rejected: int
    quarantined: int
    failed_licence: str


def _licence(number: str, *, valid_from: str, valid_to: str, eori: str, goods: dict) -> dict:
    return {
        "reference": number,
        "revision": 1,
        "licenceType": "SIEL",
        "status": "Issued",
        "issuer": {"country": "GB", "name": "Export Control Joint Unit"},
        "validity": {"from": valid_from, "to": valid_to},
        "licensee": {"name": "Fenland Optics Ltd", "eori": eori},
        "goods": [
            {
                "lineNo": 1,
                "controlEntry": "6A003.b.4.b",
                "commodityCode": "90138000",
                "description": "Thermal imaging cores",
                **goods,
            }
        ],
    }


def national_file(today: date) -> bytes:
    """The ECJU export with the good licence (valid from 20 days ago) and the two bad ones."""
    start, end = today - timedelta(days=20), today + timedelta(days=730)
    good = {
        "quantity": {"amount": 40, "unit": "NAR"},
        "value": {"amount": "180000.00", "currency": "GBP"},
        "destinations": ["AE"],
    }
    licences = [
        _licence(
            NEW_LICENCE,
            valid_from=start.isoformat(),
            valid_to=end.isoformat(),
            eori="GB654321098000",
            goods=good,
        ),
        _licence(
            BAD_DATE_LICENCE,
            valid_from=f"{today.year}-02-30",
            valid_to=end.isoformat(),
            eori="GB654321098000",
            goods={**good, "quantity": {"amount": 12, "unit": "KG"}},
        ),
        _licence(
            BAD_EORI_LICENCE,
            valid_from=start.isoformat(),
            valid_to=end.isoformat(),
            eori="GB65432109800099999",
            goods={**good, "destinations": ["EL"]},
        ),
    ]
    export = {
        "export": {"system": "LITE", "generatedAt": f"{today}T05:00:00Z", "count": 3},
        "licences": licences,
    }
    return json.dumps(export, indent=2).encode("utf-8")


def add_operations_problems(
    settings: Settings, engine: Engine, *, now: datetime | None = None
) -> OperationsProblems:
    """Make the rejects, the failed certificate and the quarantined messages (see the
    module's docstring) in the ledger of `engine`, which holds the demo's sample data."""
    # Imported here, as in helpers.fill_demo_ledger: the chain that fills a ledger is heavy.
    from bridge.entrypoints.customs_sim import start_simulator
    from bridge.entrypoints.demo import samples_dir
    from bridge.services.consumer import ConsumeReport, store_batch
    from bridge.services.customs_events import envelope_for_declaration_file
    from bridge.services.ingest import ingest_inbox
    from bridge.services.outbox import CustomsClient, certify_pending, deliver_pending
    from bridge.services.signing import certificate_signer

    now = now or datetime.now(UTC)
    inbox = settings.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / NATIONAL_FILE).write_bytes(national_file(now.date()))
    (report,) = [r for r in ingest_inbox(engine, inbox, now=now) if r.file.endswith(NATIONAL_FILE)]
    assert (report.new, report.rejected) == (1, 2), report

    signer = certificate_signer(settings)
    assert certify_pending(engine, now=now, signer=signer).certified == 1
    with start_simulator(
        settings.home / "customs-sim-outage",
        trusted_authorities=[signer.certificate_file],
        rate=1.0,
        kinds=["http503"],
    ) as simulator:
        delivered = deliver_pending(
            engine,
            CustomsClient(settings.with_overrides(soap_url=simulator.url)),
            retry_budget=timedelta(0),  # the budget spent: failed at the first 503
            retry_within_run_seconds=0,
        )
    assert (delivered.delivered, delivered.failed) == (0, 1), delivered

    mrn = mrn_from_lrn("browser-quarantine-release", year=now.year, country="GB")
    release = envelope_for_declaration_file(
        samples_dir() / RELEASE_SAMPLE, event="released", mrn=mrn, event_time=now
    )
    assert len(release) > SMALL_LIMIT
    strict = replace(settings, max_message_bytes=SMALL_LIMIT)
    batch = [
        Received(settings.mqtt_topic, payload, 0, 1, 0, False) for payload in (release, GARBAGE)
    ]
    consumed = ConsumeReport()
    store_batch(strict, engine, batch, threading.Event(), consumed)
    assert (consumed.quarantined, consumed.applied) == (2, 0), consumed
    return OperationsProblems(
        release_mrn=mrn,
        release_message_id=json.loads(release)["message_id"],
        rejected=report.rejected,
        quarantined=consumed.quarantined,
        failed_licence=NEW_LICENCE,
    )
