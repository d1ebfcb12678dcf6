"""Hostile SOAP answers to the bridge's zeep client (bridge.adapters.soap.client.CustomsClient): a
real HTTP server of the test's own on 127.0.0.1 answers every call with one case of the corpus
(tests/hostile/corpus.py: malformed XML, XXE and DTDs, bombs, wrong namespaces, faults without
detail, huge answers, invalid UTF-8, HTML under HTTP 200, truncated bodies, silence). Each must
become a DeliveryError with the right code, transient flag and reason: never another exception,
never a hang (the client's timeout is short here), never a file read or a URL fetched."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bridge.adapters.soap.client import (
    MAX_ANSWER_BYTES,
    Acknowledgement,
    CustomsClient,
    CustomsEndpoint,
)
from bridge.core.certificate import build_certificate
from bridge.core.errors import DeliveryError
from tests.fixtures_soap import individual_licence
from tests.hostile import Listener
from tests.hostile.corpus import (
    SECRET,
    SOAP_MESSAGE_ID,
    SoapCase,
    acknowledgement,
    soap_cases,
    soap_envelope,
)

TIMEOUT = 0.5  # the client's timeout in these tests
SENT_AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
CASE_BOUND = 5.0  # no case may keep the client longer than this (seconds)


class HostileServer:
    """Answers every POST with `self.case`, sent the way the case says."""

    def __init__(self) -> None:
        self.case: SoapCase | None = None
        self.release = threading.Event()  # ends silences and trickles
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_error(404)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.answer(self, server.case)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/certex"

    def answer(self, handler: BaseHTTPRequestHandler, case: SoapCase) -> None:
        body, behaviour = case.body, case.behaviour
        write = handler.wfile.write
        try:
            if behaviour in ("silent", "close"):
                if behaviour == "silent":
                    self.release.wait(30)
                handler.close_connection = True
                return
            if behaviour == "trickle-headers":
                head = (
                    f"HTTP/1.1 {case.status} OK\r\nContent-Type: {case.content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                self._trickle(handler, head + body)
                handler.close_connection = True
                return
            handler.send_response(case.status)
            handler.send_header("Content-Type", case.content_type)
            handler.send_header("Connection", "close")
            if behaviour == "chunked":
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                for start in range(0, len(body), 1 << 16):
                    piece = body[start : start + (1 << 16)]
                    write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.sent += len(piece)
                write(b"0\r\n\r\n")
            elif behaviour == "chunked-broken":
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                write(f"{len(body) + 500:x}\r\n".encode() + body)
                handler.wfile.flush()
            elif behaviour == "short":
                handler.send_header("Content-Length", str(len(body) + 1000))
                handler.end_headers()
                write(body)
            elif behaviour == "stall-body":
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.flush()
                self.release.wait(30)
            elif behaviour == "trickle":
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.flush()
                self._trickle(handler, body)
            else:
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                for start in range(0, len(body), 1 << 20):
                    write(body[start : start + (1 << 20)])
                    self.sent += min(1 << 20, len(body) - start)
            handler.wfile.flush()
        except OSError:
            pass  # the client went away: that is its right
        handler.close_connection = True

    def _trickle(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        """A byte every third of the client's timeout: each read gets something in time."""
        for byte in data:
            if self.release.wait(TIMEOUT / 3):
                break
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            self.sent += 1

    def stop(self) -> None:
        self.release.set()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def canary(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("canary") / "secret.txt"
    path.write_text(SECRET, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    found = HostileServer()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def client(server: HostileServer) -> CustomsClient:
    return CustomsClient(CustomsEndpoint(server.url, timeout=TIMEOUT))


@pytest.fixture(scope="module")
def certificate() -> bytes:
    return build_certificate(individual_licence())


def _cases() -> list[SoapCase]:
    # The canary and listener addresses only appear in entity declarations, which must never
    # be followed: fixed stand-ins here keep the test ids stable, the real ones are in
    # test_no_entity_in_an_answer_is_followed.
    return soap_cases(Path("/nonexistent/canary"), "http://127.0.0.1:9/stand-in")


def _submit(client: CustomsClient, server: HostileServer, case: SoapCase, certificate: bytes):
    server.case = case
    server.release.clear()
    server.sent = 0
    started = time.monotonic()
    outcome: list = []

    def call() -> None:
        try:
            outcome.append(client.submit_certificate(SOAP_MESSAGE_ID, certificate, SENT_AT))
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(CASE_BOUND)
    took = time.monotonic() - started
    server.release.set()
    if worker.is_alive():
        worker.join(CASE_BOUND)  # released: let the call end before the next case
        pytest.fail(f"{case.name}: the client was still waiting after {CASE_BOUND} s")
    return outcome[0], took


def _check(case: SoapCase, result) -> None:
    if not isinstance(result, DeliveryError):
        pytest.fail(f"{case.name}: expected a DeliveryError, got {result!r}")
    if case.code.endswith("-"):
        assert result.code.startswith(case.code), (case.name, result.code, result.reason)
    else:
        assert result.code == case.code, (case.name, result.code, result.reason)
    assert result.transient is case.transient, (case.name, result.transient, result.reason)
    assert any(part in result.reason for part in case.reason.split("|")), (case.name, result.reason)
    assert SECRET not in result.reason and "root:x:0:0" not in result.reason


def test_the_server_answers_a_valid_acknowledgement(client, server, certificate):
    """The control case: the hostile server is a working server when it wants to be."""
    good = SoapCase("control/valid", soap_envelope(acknowledgement()), "", False, "")
    answer, _ = _submit(client, server, good, certificate)
    assert isinstance(answer, Acknowledgement), answer
    assert (answer.message_id, answer.status) == (SOAP_MESSAGE_ID, "ACCEPTED")


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in _cases()])
def test_a_hostile_answer_is_a_delivery_error(client, server, certificate, case):
    result, took = _submit(client, server, case, certificate)
    _check(case, result)
    assert took < CASE_BOUND


@pytest.mark.parametrize("behaviour", ["trickle", "trickle-headers"])
def test_a_trickling_answer_is_cut_off_at_the_deadline(client, server, certificate, behaviour):
    """The timeout bounds the whole exchange, not each read: the server keeps every read busy
    (a byte every third of the timeout) and is still cut off, long before it is done."""
    (case,) = [c for c in _cases() if c.behaviour == behaviour]
    result, _ = _submit(client, server, case, certificate)
    _check(case, result)
    assert 0 < server.sent < len(case.body) // 2


def test_an_oversized_answer_is_refused_before_it_is_all_read(client, server, certificate):
    """Announced or not, an answer past MAX_ANSWER_BYTES is refused as it arrives: the client
    stops reading long before the 64 MiB the server would send."""
    for name in ("huge/padded-valid", "huge/padded-valid-chunked"):
        (case,) = [c for c in _cases() if c.name == name]
        result, _ = _submit(client, server, case, certificate)
        _check(case, result)
        assert str(MAX_ANSWER_BYTES) in result.reason
        assert server.sent < 16 * MAX_ANSWER_BYTES, (name, server.sent)


def test_no_entity_in_an_answer_is_followed(client, server, certificate, canary, listener):
    """The entities point at a file holding a secret and at a listener counting connections."""
    cases = [
        case for case in soap_cases(canary, listener.url) if case.family in ("xxe", "bomb", "dtd")
    ]
    assert len(cases) >= 16
    for case in cases:
        result, _ = _submit(client, server, case, certificate)
        _check(case, result)
    assert listener.connections == 0
