"""W3 SOAP delivery: certificates delivered to the customs simulator and acknowledged, per second.

Bridge: `bridge.services.outbox.deliver_pending` with `settings.soap_senders` `CustomsClient`s
(zeep; a licence's messages in order, several licences in flight; `settings.soap_batch_size`
certificates per SubmitCertificates call, contract 1.5), the certificates queued in the ledger's
outbox by `certify_pending`; outcomes committed in groups, as in production. Limit: the same
certificates in single-certificate SubmitCertificate envelopes (built by zeep from the same WSDL
beforehand, with message ids of their own so that the simulator stores them too) posted with
http.client on as many keep-alive connections as the bridge has senders, one thread per
connection, each posting its share one after the other and checking each answer for ACCEPTED.
Same simulator process, same certificates."""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import zeep
from lxml import etree

from bench.common import LOADED_AT, Result, Run, ratio
from bridge.adapters.soap import SUBMIT_CERTIFICATE_ACTION, WSDL_FILE
from bridge.adapters.soap.client import BINDING
from bridge.adapters.store.schema import outbox
from bridge.core.paths import SCHEMAS_DIR
from bridge.core.xmlsafe import parse_xml
from bridge.entrypoints.customs_sim import start_simulator
from bridge.services.outbox import CustomsClient, certify_pending, deliver_pending
from bridge.testkit.known_licences import store_known_licences
from bridge.testkit.licences import licences as synthetic_licences

SIZES = {"tiny": 40, "small": 1000, "full": 5000}
TARGET = 1.0
PER_DATABASE = True


def _load(engine, licences) -> None:
    """The licences as ingest stores them, not yet certified."""
    with engine.begin() as conn:
        store_known_licences(conn, licences, now=LOADED_AT, source="bench", known_to_customs=False)


def _envelopes(url: str, certificates: list[bytes], sender: str) -> list[bytes]:
    """SubmitCertificate envelopes as zeep writes them, each with a message id of its own."""
    client = zeep.Client(str(SCHEMAS_DIR / WSDL_FILE))
    service = client.create_service(BINDING, url)
    sent_at = datetime.now(UTC)
    envelopes = []
    for index, xml in enumerate(certificates):
        message = client.create_message(
            service,
            "SubmitCertificate",
            MessageId=str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-raw:{index}")),
            SentAt=sent_at,
            Sender=sender,
            _value_1=parse_xml(xml, what="certificate"),
        )
        envelopes.append(etree.tostring(message, xml_declaration=True, encoding="utf-8"))
    return envelopes


def _post_all(url: str, envelopes: list[bytes], connections: int) -> float:
    """Seconds to post every envelope over `connections` keep-alive connections at once, one
    thread each, each connection taking every n-th envelope."""
    parts = urlsplit(url)
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": f'"{SUBMIT_CERTIFICATE_ACTION}"',
    }
    shares = [envelopes[n :: max(1, connections)] for n in range(max(1, connections))]
    opened = [http.client.HTTPConnection(parts.hostname, parts.port, timeout=30) for _ in shares]
    for connection in opened:
        connection.connect()  # not timed: the bridge's connections are open from its warm-up
    start = threading.Barrier(len(shares) + 1)
    errors: list[str] = []

    def post(connection: http.client.HTTPConnection, share: list[bytes]) -> None:
        start.wait()
        for body in share:
            connection.request("POST", parts.path, body, headers)
            answer = connection.getresponse()
            data = answer.read()
            if answer.status != 200 or b"ACCEPTED" not in data:
                errors.append(f"raw post answered {answer.status}: {data[:300]!r}")
                return

    threads = [
        threading.Thread(target=post, args=pair, daemon=True)
        for pair in zip(opened, shares, strict=True)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for connection in opened:
        connection.close()
    if errors:
        raise AssertionError(errors[0])
    return seconds


def run(run: Run, database: str) -> list[Result]:
    n = SIZES[run.size]
    licences = list(synthetic_licences(n + 1, seed=31))
    simulator = start_simulator(run.folder("customs-sim"))
    run.stack.callback(simulator.stop)
    url = run.ledger_url(database, "w3")
    engine = run.engine(url)
    settings = run.settings(None, url, soap_url=simulator.url)
    clients = [CustomsClient(settings) for _ in range(max(1, settings.soap_senders))]

    # Warm up: building a zeep client from the WSDL takes tens of ms, done on a client's first
    # call; the first delivery also opens the ledger's connections.
    for client in clients:
        client._proxy()
    _load(engine, licences[:1])
    certify_pending(engine, now=LOADED_AT)
    deliver_pending(engine, clients)
    _load(engine, licences[1:])
    certified = certify_pending(engine, now=datetime.now(UTC))
    with engine.connect() as conn:
        rows = conn.execute(
            outbox.select().where(outbox.c.status == "pending").order_by(outbox.c.id)
        ).fetchall()
    certificates = [row.document.encode("utf-8") for row in rows]

    run.log(f"W3 on {database}: bridge delivers {certified.certified}")
    started = time.perf_counter()
    report = deliver_pending(engine, clients)
    bridge_seconds = time.perf_counter() - started
    if report.delivered != n or report.failed:
        raise AssertionError(f"W3: delivered {report.delivered} of {n}: {report.failures[:3]}")

    run.log(f"W3 on {database}: raw HTTP posts")
    envelopes = _envelopes(simulator.url, certificates, settings.sender_id)
    limit_seconds = _post_all(simulator.url, envelopes, len(clients))
    stats = simulator.stats()
    simulator.stop()

    bridge_rate, limit_rate = n / bridge_seconds, n / limit_seconds
    share = ratio(bridge_rate, limit_rate)
    return [
        Result(
            workload="W3 SOAP delivery",
            database=database,
            bridge=bridge_rate,
            bridge_unit="certs/s",
            limit=limit_rate,
            limit_unit="raw posts/s",
            ratio=share,
            target=f"ratio >= {TARGET}",
            met=share is not None and share >= TARGET,
            seconds=bridge_seconds + limit_seconds,
            details={
                "certificates": n,
                "senders": len(clients),
                "limit_connections": len(clients),
                "batch_size": settings.soap_batch_size,
                "mean_certificate_bytes": sum(map(len, certificates)) // max(1, n),
                "mean_envelope_bytes": sum(map(len, envelopes)) // max(1, n),
                "bridge_seconds": bridge_seconds,
                "limit_seconds": limit_seconds,
                "simulator": stats,
            },
        )
    ]
