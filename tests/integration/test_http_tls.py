"""TLS on the project's HTTP servers (the customs simulator, the query service), with a CA made
at test time: HTTPS with a server certificate; with a client CA, a client without a certificate,
with one from another CA or with an expired one is refused at the handshake and reaches nothing,
and an accepted one is seen by the application by its subject and subjectAltName."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import requests

from bridge.adapters.soap import MESSAGES_NAMESPACE, SOAP_ENV_NAMESPACE
from bridge.adapters.soap.server_process import TlsTrust
from bridge.core.certificate import build_certificate
from bridge.entrypoints.query_service import start_query_service
from tests.fixtures_soap import individual_licence

CUSTOMS = "customs.example.eu"


def _submission(message_id: str) -> bytes:
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


def _post(url: str, message_id: str, **tls) -> requests.Response:
    return requests.post(
        url,
        data=_submission(message_id),
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=10,
        **tls,
    )


@pytest.fixture
def https_simulator(customs_simulator_factory, tls_ca):
    server = tls_ca.server()
    return customs_simulator_factory(
        tls_cert=server.cert, tls_key=server.key, trust=TlsTrust(ca=tls_ca.ca_file)
    )


@pytest.fixture
def mutual_tls_simulator(customs_simulator_factory, tls_ca):
    server = tls_ca.server()
    admin = tls_ca.client("simulator-admin")
    return customs_simulator_factory(
        tls_cert=server.cert,
        tls_key=server.key,
        client_ca=tls_ca.ca_file,
        trust=TlsTrust(ca=tls_ca.ca_file, cert=admin.cert, key=admin.key),
    )


def test_the_simulator_serves_https_with_its_certificate(https_simulator, tls_ca):
    assert https_simulator.url.startswith("https://127.0.0.1:")
    wsdl = requests.get(https_simulator.wsdl_url, verify=str(tls_ca.ca_file), timeout=10)
    assert wsdl.status_code == 200
    assert f'location="{https_simulator.url}"'.encode() in wsdl.content
    answer = _post(https_simulator.url, "tls-1", verify=str(tls_ca.ca_file))
    assert answer.status_code == 200 and b"ACCEPTED" in answer.content
    # Without TLS client certificates the application sees no peer, only the connection.
    assert https_simulator.callers() == [{"subject": None, "san": [], "requests": 1}]


def test_a_client_not_trusting_the_servers_ca_does_not_talk_to_it(https_simulator, other_ca):
    with pytest.raises(requests.exceptions.SSLError):
        _post(https_simulator.url, "tls-untrusted", verify=str(other_ca.ca_file))
    plain = https_simulator.url.replace("https://", "http://")
    with pytest.raises(requests.exceptions.ConnectionError):
        _post(plain, "plain-to-tls")
    assert https_simulator.received() == []


def test_mutual_tls_answers_a_client_whose_certificate_the_ca_issued(mutual_tls_simulator, tls_ca):
    customs = tls_ca.client(CUSTOMS)
    answer = _post(
        mutual_tls_simulator.url,
        "mtls-1",
        verify=str(tls_ca.ca_file),
        cert=(str(customs.cert), str(customs.key)),
    )
    assert answer.status_code == 200 and b"ACCEPTED" in answer.content
    (caller,) = mutual_tls_simulator.callers()
    assert caller["subject"].startswith(f"CN={CUSTOMS}")
    assert caller["san"] == [CUSTOMS]
    assert caller["requests"] == 1


def test_sigterm_does_not_wait_for_an_idle_kept_alive_tls_connection(https_simulator, tls_ca):
    """A client that keeps its pooled connection (requests, zeep) never sends TLS close_notify;
    the stop closes such an idle connection itself instead of waiting for it (asyncio's own
    wait would outlast the process's 10 s before SIGKILL)."""
    with requests.Session() as session:
        answer = session.post(
            https_simulator.url,
            data=_submission("keep-alive-1"),
            headers={"Content-Type": "text/xml; charset=utf-8"},
            verify=str(tls_ca.ca_file),
            timeout=10,
        )
        assert answer.status_code == 200  # the connection stays in the session's pool
        https_simulator.process.send_signal(signal.SIGTERM)
        assert https_simulator.process.wait(timeout=8) == 0  # not SIGKILLed (-9)
    assert "Traceback" not in https_simulator.log_path.read_text()


def _ask_for_the_wsdl(url: str, context: ssl.SSLContext, heard: list[bytes]) -> None:
    """GET ?wsdl over TLS with `context`, what comes back added to `heard`, until the server
    closes the connection (ConnectionAbortedError) or refuses (SSLError)."""
    parts = urlsplit(url)
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
    ):
        # TLS 1.3: the client's side of the handshake may end before the server has judged
        # its certificate; a refusal then comes as an alert on the first read.
        tls.sendall(f"GET {parts.path}?wsdl HTTP/1.1\r\nHost: {parts.hostname}\r\n\r\n".encode())
        while data := tls.recv(65536):
            heard.append(data)
        raise ConnectionAbortedError("closed without an answer")


@pytest.mark.parametrize("presented", ["none", "other-ca", "expired"])
def test_mutual_tls_refuses_at_the_handshake(mutual_tls_simulator, tls_ca, other_ca, presented):
    files = {
        "none": None,
        "other-ca": other_ca.client(CUSTOMS),
        "expired": tls_ca.expired(CUSTOMS),
    }[presented]
    context = ssl.create_default_context(cafile=str(tls_ca.ca_file))
    if files is not None:
        context.load_cert_chain(files.cert, files.key)
    heard: list[bytes] = []
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _ask_for_the_wsdl(mutual_tls_simulator.url, context, heard)
    assert heard == []  # not a byte of HTTP came back
    # Nothing reached the application: no request counted, nothing stored, no caller seen.
    assert mutual_tls_simulator.stats().get("requests", 0) == 0
    assert mutual_tls_simulator.received() == []
    assert mutual_tls_simulator.callers() == []


def test_the_query_service_serves_https_with_client_certificates(tmp_path, tls_ca, other_ca):
    server = tls_ca.server()
    customs = tls_ca.client(CUSTOMS)
    with start_query_service(
        tmp_path / "query",
        f"sqlite:///{tmp_path / 'ledger.db'}",
        tls_cert=server.cert,
        tls_key=server.key,
        client_ca=tls_ca.ca_file,
        trust=TlsTrust(ca=tls_ca.ca_file, cert=customs.cert, key=customs.key),
    ) as service:
        assert service.url.startswith("https://") and service.health()["status"] == "ok"
        verify = str(tls_ca.ca_file)
        allowed = requests.get(
            service.wsdl_url, verify=verify, cert=(str(customs.cert), str(customs.key)), timeout=10
        )
        assert allowed.status_code == 200
        stranger = other_ca.client(CUSTOMS)
        for cert in (None, (str(stranger.cert), str(stranger.key))):
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(service.wsdl_url, verify=verify, cert=cert, timeout=10)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--tls-cert", "{missing}", "--tls-key", "{missing}"], "cannot read it"),
        (["--tls-cert", "{cert}"], "needs both a certificate and its key"),
        (["--client-ca", "{ca}"], "need HTTPS"),
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "cannot be used together"),
    ],
    ids=["missing-file", "no-key", "client-ca-without-https", "key-of-another-certificate"],
)
def test_a_tls_configuration_that_cannot_work_is_one_line_before_serving(
    tmp_path, tls_ca, other_ca, flags, said
):
    server, stranger = tls_ca.server(), other_ca.client("someone")
    names = {
        "missing": str(tmp_path / "missing.pem"),
        "cert": str(server.cert),
        "ca": str(tls_ca.ca_file),
        "other_key": str(stranger.key),
    }
    command = [sys.executable, "-m", "bridge.entrypoints.customs_sim", "--port", "0"]
    command += ["--store", str(tmp_path / "r.db")] + [flag.format(**names) for flag in flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("customs simulator: ") and said in line
    assert "PRIVATE KEY" not in done.stderr + done.stdout
