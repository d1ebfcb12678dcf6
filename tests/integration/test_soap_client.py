"""The zeep client's error mapping against the real simulator: what may be retried (transient)
and what must not be sent unchanged again (permanent)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from bridge.adapters.soap.client import Acknowledgement, CustomsClient, CustomsEndpoint
from bridge.core.certificate import build_certificate
from bridge.core.errors import DeliveryError
from tests.fixtures_soap import individual_licence

SENT_AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def certificate() -> bytes:
    return build_certificate(individual_licence())


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("http503", "http-503"),
        ("transient_fault", "fault-service_unavailable"),
        ("timeout", "timeout"),
        ("drop", "connection-dropped"),
    ],
)
def test_the_simulators_transient_faults_are_transient_delivery_errors(
    customs_simulator_factory, certificate, kind, code
):
    simulator = customs_simulator_factory(next=1, kinds=[kind], slow_seconds=1.5)
    client = CustomsClient(CustomsEndpoint(simulator.url, timeout=0.4))
    started = time.monotonic()
    with pytest.raises(DeliveryError) as failed:
        client.submit_certificate("t-1", certificate, SENT_AT)
    assert (failed.value.transient, failed.value.code) == (True, code)
    assert time.monotonic() - started < 1.5  # the client did not wait for the slow answer
    answer = client.submit_certificate("t-1", certificate, SENT_AT)
    # The slow answer was stored before it was held back: the resend is its duplicate.
    assert answer.status == ("DUPLICATE" if kind == "timeout" else "ACCEPTED")
    assert len(simulator.received()) == 1


def test_a_refused_connection_is_transient(unreachable_soap_url, certificate):
    client = CustomsClient(CustomsEndpoint(unreachable_soap_url, timeout=1))
    with pytest.raises(DeliveryError) as failed:
        client.submit_certificate("t-2", certificate, SENT_AT)
    assert (failed.value.transient, failed.value.code) == (True, "connection-refused")
    assert unreachable_soap_url in failed.value.reason


def test_a_wrong_address_is_a_permanent_http_error(customs_simulator, certificate):
    client = CustomsClient(CustomsEndpoint(f"{customs_simulator.base_url}/nowhere"))
    with pytest.raises(DeliveryError) as failed:
        client.submit_certificate("t-3", certificate, SENT_AT)
    assert (failed.value.transient, failed.value.code) == (False, "http-404")


class _NotCustoms(BaseHTTPRequestHandler):
    """A web server that answers every POST 200 with an HTML page (a misrouted proxy)."""

    body = b""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = self.body
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("body", [b"<html>", b"<html><body>Welcome</body></html>"])
def test_an_answer_that_is_not_an_acknowledgement_is_permanent(certificate, body):
    server = HTTPServer(("127.0.0.1", 0), _NotCustoms)
    _NotCustoms.body = body
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/certex"
        client = CustomsClient(CustomsEndpoint(url))
        with pytest.raises(DeliveryError) as failed:
            client.submit_certificate("t-4", certificate, SENT_AT)
    finally:
        server.shutdown()
        server.server_close()
    assert (failed.value.transient, failed.value.code) == (False, "invalid-response")


def test_the_client_is_built_on_first_use_and_reused(customs_simulator, certificate):
    client = CustomsClient(CustomsEndpoint(customs_simulator.url))
    assert client._service is None  # nothing loaded, nothing contacted yet
    first = client.submit_certificate("t-5", certificate, SENT_AT)
    service = client._service
    second = client.submit_certificate("t-6", certificate, SENT_AT)
    assert client._service is service
    assert isinstance(first, Acknowledgement) and first.received_at.tzinfo is UTC
    assert (first.status, second.status) == ("ACCEPTED", "ACCEPTED")
    transport = service._client.transport
    assert transport.operation_timeout == transport.load_timeout == 10.0


def test_a_send_time_without_zone_is_refused(customs_simulator, certificate):
    client = CustomsClient(CustomsEndpoint(customs_simulator.url))
    with pytest.raises(ValueError, match="time zone"):
        client.submit_certificate("t-7", certificate, datetime(2026, 11, 28, 9, 30))
