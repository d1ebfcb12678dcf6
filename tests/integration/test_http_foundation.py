"""The HTTP foundation under the customs simulator and the query service (uvicorn with the
project's guarded h11 protocol): slow clients are cut off without pinning the service, chunked
bodies are read, an over-limit body is refused before it is sent, SIGTERM lets the request in
flight finish, and the simulator's admin routes need its token. Real subprocesses, real sockets
on 127.0.0.1; outcomes are asserted, never durations."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from lxml import etree

from bridge.adapters.soap import MESSAGES_NAMESPACE, SOAP_ENV_NAMESPACE
from bridge.adapters.soap.client import CustomsClient, CustomsEndpoint
from bridge.adapters.soap.server_process import start_server_process
from bridge.core.certificate import build_certificate
from tests.fixtures_soap import individual_licence

SENT_AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
READ_TIMEOUT = "4"  # seconds the simulators here give a client to send a whole request
NS = {"env": SOAP_ENV_NAMESPACE, "m": MESSAGES_NAMESPACE}


def _submission(message_id: str) -> bytes:
    """A SubmitCertificate envelope carrying a real certificate."""
    certificate = build_certificate(individual_licence()).decode()
    if certificate.startswith("<?xml"):
        certificate = certificate.split("?>", 1)[1]
    return (
        f'<e:Envelope xmlns:e="{SOAP_ENV_NAMESPACE}"><e:Body>'
        f'<m:SubmitCertificate xmlns:m="{MESSAGES_NAMESPACE}">'
        f"<m:MessageId>{message_id}</m:MessageId><m:SentAt>2026-11-28T09:30:00Z</m:SentAt>"
        f"<m:Sender>ELBRIDGE</m:Sender>{certificate}</m:SubmitCertificate>"
        "</e:Body></e:Envelope>"
    ).encode()


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _connect(url: str) -> socket.socket:
    sock = socket.create_connection(_address(url), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_answer(sock: socket.socket, guard: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection (`guard`: give up)."""
    sock.settimeout(guard)
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


# ---------------------------------------------------------------------------- slow clients


def _open_slow_clients(path: str, url: str, count: int) -> list[socket.socket]:
    """`count` connections, a third stuck in their headers, a third in a declared body, a
    third in a chunked body."""
    host = _address(url)[0]
    starts = [
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode(),
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml\r\n"
        "Content-Length: 100000\r\n\r\n<e:Envelope".encode(),
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml\r\n"
        "Transfer-Encoding: chunked\r\n\r\n5\r\n<e:En\r\n".encode(),
    ]
    clients = []
    for n in range(count):
        sock = _connect(url)
        sock.sendall(starts[n % 3])
        sock.setblocking(False)
        clients.append(sock)
    return clients


def _trickle_until_cut(clients: list[socket.socket], guard: float) -> dict[int, bytes]:
    """Keep every client sending a little every 0.2 s (a byte of header, body or a chunk)
    until the server has closed each; what each received. Stops at `guard` seconds."""
    trickles = [b"a", b"a", b"1\r\na\r\n"]
    selector = selectors.DefaultSelector()
    for n, sock in enumerate(clients):
        selector.register(sock, selectors.EVENT_READ, n)
    received: dict[int, bytes] = {n: b"" for n in range(len(clients))}
    open_ = set(received)
    deadline = time.monotonic() + guard
    next_trickle = 0.0
    while open_ and time.monotonic() < deadline:
        if time.monotonic() >= next_trickle:
            for n in list(open_):
                try:
                    clients[n].send(trickles[n % 3])
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    pass  # closed by the server: the read below tells
            next_trickle = time.monotonic() + 0.2
        for key, _ in selector.select(timeout=0.1):
            n = key.data
            try:
                data = clients[n].recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                received[n] += data
            else:
                selector.unregister(clients[n])
                open_.discard(n)
    selector.close()
    for sock in clients:
        sock.close()
    assert not open_, f"{len(open_)} slow clients were never cut off"
    return received


def test_150_slow_clients_do_not_pin_the_service_and_are_cut_off(customs_simulator_factory):
    simulator = customs_simulator_factory(environment={"ELBRIDGE_HTTP_READ_TIMEOUT": READ_TIMEOUT})
    clients = _open_slow_clients("/certex", simulator.url, 150)
    try:
        # Meanwhile a normal call is answered, and the server holds no thread per connection.
        client = CustomsClient(CustomsEndpoint(simulator.url, timeout=10.0))
        xml = build_certificate(individual_licence())
        assert client.submit_certificate("while-slow-1", xml, SENT_AT).status == "ACCEPTED"
        still_open = 0
        for sock in clients:
            try:
                sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                still_open += 1
        assert still_open == 150, "the call was answered while all the slow clients were on"
        assert _threads(simulator.process.pid) < 50
    finally:
        received = _trickle_until_cut(clients, guard=60.0)
    # Each was cut off by the read timeout though it kept sending, and told why.
    answers = [data.split(b"\r\n", 1)[0] for data in received.values()]
    assert answers == [b"HTTP/1.1 408 Request Timeout"] * 150
    assert [r["message_id"] for r in simulator.received()] == ["while-slow-1"]
    assert client.submit_certificate("after-slow-1", xml, SENT_AT).status == "ACCEPTED"


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(customs_simulator_factory):
    simulator = customs_simulator_factory(environment={"ELBRIDGE_HTTP_READ_TIMEOUT": "1"})
    with _connect(simulator.url) as silent:
        assert _read_answer(silent) == b""


def test_the_next_request_on_a_kept_alive_connection_is_held_to_the_same_deadline(
    customs_simulator_factory,
):
    simulator = customs_simulator_factory(environment={"ELBRIDGE_HTTP_READ_TIMEOUT": "1"})
    sock = _connect(simulator.url)
    sock.sendall(b"GET /certex?wsdl HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = b""
    while b"</wsdl:definitions>" not in first:
        more = sock.recv(65536)
        assert more, first
        first += more
    assert first.startswith(b"HTTP/1.1 200 ")
    sock.sendall(b"POST /certex HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    sock.setblocking(False)
    (second,) = _trickle_until_cut([sock], guard=30.0).values()
    assert second.startswith(b"HTTP/1.1 408 Request Timeout")


# ---------------------------------------------------------------------------- bodies


def test_a_chunked_soap_request_is_answered(customs_simulator):
    envelope = _submission("chunked-1")

    def chunks():
        for start in range(0, len(envelope), 1000):
            yield envelope[start : start + 1000]

    answer = requests.post(
        customs_simulator.url,
        data=chunks(),  # a generator: requests sends it chunked, with no Content-Length
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=10,
    )
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.status_code == 200
    root = etree.fromstring(answer.content)
    assert root.findtext("env:Body/m:SubmitCertificateResponse/m:Status", namespaces=NS) == (
        "ACCEPTED"
    )
    assert [r["message_id"] for r in customs_simulator.received()] == ["chunked-1"]


def _fault_code(answer: bytes) -> str | None:
    body = answer.split(b"\r\n\r\n", 1)[1]
    return etree.fromstring(body).findtext(".//m:CertexFault/m:Code", namespaces=NS)


@pytest.mark.parametrize("declared", [4097, 50_000_000_000], ids=["just-over", "huge"])
def test_an_over_limit_body_gets_413_before_a_byte_of_it_is_sent(
    customs_simulator_factory, declared
):
    simulator = customs_simulator_factory(max_bytes=4096)
    with _connect(simulator.url) as sock:
        sock.sendall(
            b"POST /certex HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
        )
        sock.settimeout(30)
        answer = sock.recv(65536)  # the answer comes though no body byte was sent
        while b"</soap-env:Envelope>" not in answer:
            more = sock.recv(65536)
            assert more, answer
            answer += more
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer.lower()
    assert _fault_code(answer) == "MESSAGE_TOO_LARGE"
    assert f"the request is {declared} bytes; at most 4096".encode() in answer
    assert "requests" not in simulator.stats()  # the service never saw it


def test_a_chunked_body_is_cut_at_the_limit(customs_simulator_factory):
    simulator = customs_simulator_factory(max_bytes=4096)
    with _connect(simulator.url) as sock:
        sock.sendall(
            b"POST /certex HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(6):  # 6 KiB, over the 4 KiB limit; the rest is never sent
            sock.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
        answer = b""
        sock.settimeout(30)
        while b"</soap-env:Envelope>" not in answer:
            more = sock.recv(65536)
            assert more, answer
            answer += more
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert _fault_code(answer) == "MESSAGE_TOO_LARGE"
    assert b"over 4096 bytes (sent in chunks)" in answer
    assert "requests" not in simulator.stats()


# ---------------------------------------------------------------------------- shutdown


def test_sigterm_lets_an_in_flight_slow_answer_finish_then_exits_0(customs_simulator_factory):
    simulator = customs_simulator_factory(next=1, kinds=["timeout"], slow_seconds=2)
    outcome: dict[str, object] = {}

    def submit() -> None:
        try:
            answer = requests.post(
                simulator.url,
                data=_submission("in-flight-1"),
                headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=30,
            )
            outcome["status"] = answer.status_code
            outcome["body"] = answer.content
        except requests.RequestException as error:
            outcome["error"] = error

    caller = threading.Thread(target=submit)
    caller.start()
    deadline = time.monotonic() + 30
    while simulator.stats().get("injected_timeout", 0) < 1:  # the answer is being held back
        assert time.monotonic() < deadline, "the slow request never arrived"
        time.sleep(0.05)
    os.killpg(simulator.process.pid, signal.SIGTERM)
    caller.join(timeout=40)
    assert outcome.get("status") == 200, outcome
    assert b"ACCEPTED" in outcome["body"]
    assert simulator.process.wait(timeout=40) == 0
    log = simulator.log_path.read_text()
    assert "Traceback" not in log
    with pytest.raises(OSError):
        socket.create_connection(_address(simulator.url), timeout=5).close()


# ---------------------------------------------------------------------------- admin token


def _admin_call(url: str, token: str | None, data: dict | None = None) -> tuple[int, object]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_admin_routes_refuse_a_caller_without_the_right_token_and_change_nothing(
    customs_simulator_factory,
):
    simulator = customs_simulator_factory(next=1, kinds=["http503"])
    base = simulator.base_url
    for token in (None, "wrong-token", ""):
        for path in ("received", "statuses", "stats", "faults", "callers"):
            status, answer = _admin_call(f"{base}/admin/{path}", token)
            assert status == 401, (path, token)
            assert "token" in answer["error"]
        status, _ = _admin_call(f"{base}/admin/faults", token, {"next": 0, "kinds": ["drop"]})
        assert status == 401
    assert simulator.faults()["remaining"] == 1  # the plan is as it was
    assert simulator.faults()["kinds"] == ["http503"]
    assert _admin_call(f"{base}/admin/health", None)[0] == 200  # health stays open
    status, plan = _admin_call(f"{base}/admin/faults", simulator.admin_token, {"next": 0})
    assert (status, plan["remaining"]) == (200, 0)


def test_the_admin_token_can_come_from_a_file(tmp_path):
    token_file = tmp_path / "admin-token"
    token_file.write_text("from-a-file-123\n")
    server = start_server_process(
        "bridge.entrypoints.customs_sim",
        ["--host", "127.0.0.1", "--port", "0", "--store", str(tmp_path / "received.db")],
        tmp_path,
        what="the customs simulator",
        health_path="/admin/health",
        log_name="simulator",
        environment={"ELBRIDGE_SIM_ADMIN_TOKEN_FILE": str(token_file)},
        admin_token="from-a-file-123",
    )
    with server:
        assert server.json("/admin/stats") == {}
        assert _admin_call(f"{server.base_url}/admin/stats", "from-a-file")[0] == 401
    assert "from-a-file-123" not in server.log_path.read_text()
