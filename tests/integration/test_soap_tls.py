"""TLS between the bridge's SOAP client and customs: mutual TLS delivers; a TLS or certificate
failure is a configuration error that stops the run and leaves every certificate pending with
its attempts untouched, and the first run after the fix delivers them. Real TLS with a
throwaway CA (tests/fixtures_tls.py): the customs simulator served over HTTPS (uvicorn, which
closes a refused handshake without a word), and for the server-certificate cases and servers
that answer with the TLS alert a stdlib TLS front before the plain simulator; the real zeep
client and a real ledger."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

from bridge.adapters.soap.client import CustomsClient as SoapClient
from bridge.adapters.soap.client import CustomsEndpoint
from bridge.adapters.soap.server_process import TlsTrust
from bridge.adapters.soap.tls import ClientTls, TlsFailure, tls_session
from bridge.adapters.store.db import make_engine
from bridge.adapters.store.licences import save_licence
from bridge.adapters.store.outbox import outbox_rows
from bridge.core.certificate import build_certificate
from bridge.core.errors import ConfigError
from bridge.entrypoints import cli
from bridge.entrypoints.airflow_wiring import soap_overrides
from bridge.services.config import Settings
from bridge.services.outbox import (
    CustomsClient,
    DeliveryStopped,
    certify_pending,
    deliver_pending,
)
from tests.fixtures_soap import chemicals_licence, individual_licence

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PASSWORD = "s3cret-customs-pa55word"


# ------------------------------------------------------------------------ TLS servers


@pytest.fixture
def https_customs(customs_simulator_factory, tls_ca):
    """Start the customs simulator over HTTPS with `server` (PemFiles) as its certificate,
    requiring client certificates issued by `client_ca` (default: the test's CA). The test
    reaches its admin pages with a client certificate of its own."""
    admin = tls_ca.client("test-admin")

    def start(server, client_ca: Path | None = None, **options):
        return customs_simulator_factory(
            tls_cert=server.cert,
            tls_key=server.key,
            client_ca=client_ca or tls_ca.ca_file,
            trust=TlsTrust(ca=server.ca, cert=admin.cert, key=admin.key),
            **options,
        )

    return start


class TlsFront:
    """A TLS server on a free 127.0.0.1 port relaying each connection to a plain HTTP server
    (the simulator). Built on the ssl module's blocking sockets, it refuses a handshake the way
    OpenSSL, Java or nginx servers do: with the TLS alert saying why (the simulator, on
    asyncio's TLS, closes the connection without one)."""

    def __init__(self, context: ssl.SSLContext, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname, parts.port)
        self.path = parts.path
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes_refused = 0
        self._refused = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{self.path}"

    def refusals(self) -> int:
        """The handshakes refused so far, once there was one (the client may read the alert
        before this server's thread, which sent it, has counted it)."""
        self._refused.wait(10)
        return self.handshakes_refused

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_refused += 1
            self._refused.set()
            # A lingering close: what the client sent is read, so that the alert reaches it
            # instead of a reset.
            with contextlib.suppress(OSError), raw:
                raw.shutdown(socket.SHUT_WR)
                raw.settimeout(5)
                while raw.recv(65536):
                    pass
            return
        with tls, socket.create_connection(self.upstream) as upstream:
            # One thread per connection reading whichever side has bytes: an SSL socket is
            # not for two threads at once.
            while True:
                readable = [tls] if tls.pending() else select.select([tls, upstream], [], [])[0]
                for side in readable:
                    try:
                        data = side.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    (upstream if side is tls else tls).sendall(data)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def tls_front(customs_simulator):
    """A TlsFront to the (plain) simulator with `server` as its certificate, requiring client
    certificates issued by `client_ca`."""
    fronts: list[TlsFront] = []

    def start(server, client_ca: Path) -> TlsFront:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server.cert, server.key)
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
        front = TlsFront(context, customs_simulator.url)
        fronts.append(front)
        return front

    yield start
    for front in fronts:
        front.close()


# ------------------------------------------------------------------------ helpers


def settings_for(url: str, *, ca=None, client=None, **more) -> Settings:
    return Settings(
        soap_url=url,
        soap_timeout=5.0,
        soap_ca_file=str(ca) if ca else "",
        soap_cert_file=str(client.cert) if client else "",
        soap_key_file=str(client.key) if client else "",
        **more,
    )


def queue(engine, *licences) -> None:
    with engine.begin() as conn:
        for licence in licences:
            save_licence(conn, licence, source="test", now=NOW, explicit_version=True)
    assert certify_pending(engine, now=NOW).certified == len(licences)


def outbox_state(engine) -> list[tuple[str, str, int, str | None]]:
    with engine.connect() as conn:
        return [
            (row["licence_number"], row["status"], row["attempts"], row["last_error"])
            for row in outbox_rows(conn)
        ]


def deliver(engine, settings: Settings, senders: int = 1):
    clients = [CustomsClient(settings) for _ in range(senders)]
    return deliver_pending(engine, clients, retry_within_run_seconds=0)


# ------------------------------------------------------------------------ mutual TLS


def test_mutual_tls_with_a_valid_client_certificate_delivers(engine, https_customs, tls_ca):
    customs = https_customs(tls_ca.server())
    queue(engine, individual_licence(), chemicals_licence())
    settings = settings_for(customs.url, ca=tls_ca.ca_file, client=tls_ca.client("elbridge"))
    report = deliver(engine, settings, senders=2)
    assert (report.delivered, report.failed, report.still_pending) == (2, 0, 0)
    assert len(customs.received()) == 2
    assert [state[1:3] for state in outbox_state(engine)] == [("delivered", 1)] * 2
    # Customs saw who sent them: the bridge's client certificate.
    assert [caller["subject"].split(",")[0] for caller in customs.callers()] == ["CN=elbridge"]


def test_without_a_client_certificate_the_run_stops_and_every_certificate_stays_pending(
    engine, https_customs, tls_ca
):
    customs = https_customs(tls_ca.server())
    queue(engine, individual_licence(), chemicals_licence())
    with pytest.raises(DeliveryStopped) as stopped:
        deliver(engine, settings_for(customs.url, ca=tls_ca.ca_file), senders=2)
    message = str(stopped.value)
    port = urlsplit(customs.url).port
    assert message.startswith(f"TLS to 127.0.0.1:{port} failed:")
    assert "set ELBRIDGE_SOAP_CERT_FILE and ELBRIDGE_SOAP_KEY_FILE" in message
    assert "2 message(s) stay pending, their attempts untouched" in message
    assert stopped.value.cause.code == "tls-client-refused"
    assert outbox_state(engine) == [
        ("DE-EA-2026-004711", "pending", 0, None),
        ("PL/DU/2026/000321", "pending", 0, None),
    ]
    assert customs.received() == []

    # The client certificate is configured: the next run delivers both.
    settings = settings_for(customs.url, ca=tls_ca.ca_file, client=tls_ca.client("elbridge"))
    report = deliver(engine, settings, senders=2)
    assert (report.delivered, report.failed) == (2, 0)


def test_a_client_certificate_from_another_ca_is_refused_as_configuration(
    engine, https_customs, tls_ca, other_ca
):
    customs = https_customs(tls_ca.server())
    queue(engine, individual_licence())
    client = other_ca.client("elbridge")
    settings = settings_for(customs.url, ca=tls_ca.ca_file, client=client)
    with pytest.raises(DeliveryStopped) as stopped:
        deliver(engine, settings)
    assert stopped.value.cause.code == "tls-client-refused"
    assert f"refuses the client certificate {client.cert}" in str(stopped.value)
    assert "check ELBRIDGE_SOAP_CERT_FILE and ELBRIDGE_SOAP_KEY_FILE" in str(stopped.value)
    assert outbox_state(engine) == [("DE-EA-2026-004711", "pending", 0, None)]
    assert customs.received() == []


def test_a_server_that_sends_the_tls_alert_is_refused_the_same_way(
    engine, tls_front, tls_ca, customs_simulator
):
    # OpenSSL, Java and nginx servers send the alert saying why; the client reads it, or meets
    # the closed connection first while it still writes its request (a race): refused either way.
    front = tls_front(tls_ca.server(), tls_ca.ca_file)
    queue(engine, individual_licence())
    with pytest.raises(DeliveryStopped) as stopped:
        deliver(engine, settings_for(front.url, ca=tls_ca.ca_file))
    assert stopped.value.cause.code == "tls-client-refused"
    assert str(stopped.value).startswith(f"TLS to 127.0.0.1:{front.port} failed:")
    assert "set ELBRIDGE_SOAP_CERT_FILE and ELBRIDGE_SOAP_KEY_FILE" in str(stopped.value)
    assert front.refusals() in (1, 2)  # the alert at once, or a second try
    assert outbox_state(engine) == [("DE-EA-2026-004711", "pending", 0, None)]
    assert customs_simulator.received() == []


def test_one_dropped_connection_over_https_is_not_taken_for_a_refusal(
    engine, https_customs, tls_ca
):
    customs = https_customs(tls_ca.server(), next=1, kinds=["drop"])
    queue(engine, individual_licence())
    settings = settings_for(customs.url, ca=tls_ca.ca_file, client=tls_ca.client("elbridge"))
    report = deliver(engine, settings)
    assert (report.delivered, report.failed) == (1, 0)
    assert customs.stats()["injected_drop"] == 1  # it did drop one
    assert len(customs.received()) == 1


# ------------------------------------------------------------------------ the server's certificate


def test_an_untrusted_server_is_a_configuration_error_and_the_right_ca_then_delivers(
    engine, https_customs, tls_ca, other_ca
):
    # Customs' server certificate comes from a CA the bridge was not told to trust.
    customs = https_customs(other_ca.server())
    queue(engine, individual_licence(), chemicals_licence())
    client = tls_ca.client("elbridge")
    for _run in range(3):  # however often the run is repeated, no attempt is spent
        with pytest.raises(DeliveryStopped) as stopped:
            deliver(engine, settings_for(customs.url, ca=tls_ca.ca_file, client=client))
    message = str(stopped.value)
    port = urlsplit(customs.url).port
    assert message.startswith(
        f"TLS to 127.0.0.1:{port} failed: certificate verify failed: unable to get local"
        " issuer certificate — check ELBRIDGE_SOAP_CA_FILE"
    )
    assert stopped.value.cause.code == "tls-server-certificate"
    assert [state[1:] for state in outbox_state(engine)] == [("pending", 0, None)] * 2
    assert customs.received() == []

    # The operator sets ELBRIDGE_SOAP_CA_FILE to customs' CA: the same outbox goes out.
    report = deliver(engine, settings_for(customs.url, ca=other_ca.ca_file, client=client))
    assert (report.delivered, report.failed, report.still_pending) == (2, 0, 0)
    assert [state[1:3] for state in outbox_state(engine)] == [("delivered", 1)] * 2
    assert len(customs.received()) == 2


def test_an_expired_server_certificate_is_a_configuration_error(engine, tls_front, tls_ca):
    # (In front of the simulator: started with such a certificate it would fail its own
    # health check.)
    front = tls_front(tls_ca.expired("127.0.0.1"), tls_ca.ca_file)
    queue(engine, individual_licence())
    settings = settings_for(front.url, ca=tls_ca.ca_file, client=tls_ca.client("elbridge"))
    with pytest.raises(DeliveryStopped) as stopped:
        deliver(engine, settings)
    assert "certificate verify failed: certificate has expired" in str(stopped.value)
    assert "its owner must renew it" in str(stopped.value)
    assert outbox_state(engine) == [("DE-EA-2026-004711", "pending", 0, None)]


def test_a_server_certificate_for_another_host_is_a_configuration_error(engine, tls_front, tls_ca):
    front = tls_front(tls_ca.issue("customs.example", label="elsewhere"), tls_ca.ca_file)
    queue(engine, individual_licence())
    settings = settings_for(front.url, ca=tls_ca.ca_file, client=tls_ca.client("elbridge"))
    with pytest.raises(DeliveryStopped) as stopped:
        deliver(engine, settings)
    assert "not valid for '127.0.0.1'" in str(stopped.value)
    assert "not issued for 127.0.0.1: check the host name" in str(stopped.value)
    assert outbox_state(engine) == [("DE-EA-2026-004711", "pending", 0, None)]


def test_requests_ca_bundle_in_the_environment_does_not_widen_the_trust(
    engine, https_customs, tls_ca, other_ca, monkeypatch
):
    customs = https_customs(other_ca.server())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca.ca_file))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other_ca.ca_file))
    queue(engine, individual_licence())
    settings = settings_for(customs.url, ca=tls_ca.ca_file, client=tls_ca.client("elbridge"))
    with pytest.raises(DeliveryStopped) as stopped:
        deliver(engine, settings)
    assert stopped.value.cause.code == "tls-server-certificate"


def test_a_plain_http_server_behind_an_https_url_is_a_configuration_error(
    engine, customs_simulator, tls_ca
):
    queue(engine, individual_licence())
    url = customs_simulator.url.replace("http://", "https://")
    with pytest.raises(DeliveryStopped) as stopped:
        deliver(engine, settings_for(url, ca=tls_ca.ca_file))
    assert stopped.value.cause.code == "tls-not-tls"
    assert "the server does not speak TLS there" in str(stopped.value)
    assert outbox_state(engine) == [("DE-EA-2026-004711", "pending", 0, None)]


# ------------------------------------------------------------------------ how it is reported


def test_elbridge_sync_exits_2_with_one_line_naming_the_host_and_the_reason(
    tmp_path, https_customs, tls_ca, other_ca, monkeypatch, capsys
):
    customs = https_customs(other_ca.server())
    client = tls_ca.client("elbridge")
    database = f"sqlite:///{tmp_path / 'cli-ledger.db'}"
    engine = make_engine(database)
    try:
        queue(engine, individual_licence())
    finally:
        engine.dispose()
    for name, value in {
        "SOAP_URL": customs.url,
        "SOAP_CA_FILE": str(tls_ca.ca_file),
        "SOAP_CERT_FILE": str(client.cert),
        "SOAP_KEY_FILE": str(client.key),
        "SOAP_SENDERS": "2",
    }.items():
        monkeypatch.setenv(f"ELBRIDGE_{name}", value)
    status = cli.main(["--database-url", database, "sync", "--retry-seconds", "0"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(errors) == 1
    port = urlsplit(customs.url).port
    assert errors[0].startswith(f"elbridge sync: TLS to 127.0.0.1:{port} failed:")
    assert "check ELBRIDGE_SOAP_CA_FILE" in errors[0]
    assert "1 message(s) stay pending" in errors[0]


def test_no_secret_reaches_the_logs_or_the_errors(engine, https_customs, tls_ca, other_ca, caplog):
    customs = https_customs(tls_ca.server())
    untrusted = https_customs(other_ca.server())
    client = tls_ca.client("elbridge")
    key_line = client.key.read_text().splitlines()[1]  # a line of the key itself
    queue(engine, individual_licence())
    caplog.set_level(logging.DEBUG)
    login = {"soap_username": "elbridge", "soap_password": PASSWORD}
    with pytest.raises(DeliveryStopped) as stopped:
        deliver(engine, settings_for(untrusted.url, ca=tls_ca.ca_file, client=client, **login))
    settings = settings_for(customs.url, ca=tls_ca.ca_file, client=client, **login)
    assert deliver(engine, settings).delivered == 1
    endpoint = CustomsClient(settings).endpoint
    told = [caplog.text, str(stopped.value), repr(stopped.value.cause), repr(endpoint)]
    assert caplog.records  # urllib3 did log at DEBUG: there was something to leak into
    for text in told:
        assert PASSWORD not in text
        assert key_line not in text


# ------------------------------------------------------------------------ checked at start


def test_tls_files_are_checked_when_the_client_is_made(tmp_path, tls_ca, other_ca):
    url = "https://customs.example/certex"
    client = tls_ca.client("elbridge")
    other = other_ca.client("elbridge")
    missing = tmp_path / "nowhere.pem"
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    expired = tls_ca.expired("elbridge")

    def refusal(**files) -> str:
        with pytest.raises(ConfigError) as refused:
            CustomsClient(Settings(soap_url=files.pop("url", url), **files))
        return str(refused.value)

    assert refusal(soap_ca_file=str(missing)) == (
        f"ELBRIDGE_SOAP_CA_FILE={missing}: cannot read the file (No such file or directory)"
    )
    assert refusal(soap_ca_file=str(not_pem)).startswith(
        f"ELBRIDGE_SOAP_CA_FILE={not_pem}: holds no PEM CA certificate"
    )
    assert refusal(soap_cert_file=str(missing), soap_key_file=str(client.key)) == (
        f"ELBRIDGE_SOAP_CERT_FILE={missing}: cannot read the file (No such file or directory)"
    )
    assert refusal(soap_cert_file=str(client.cert), soap_key_file=str(missing)) == (
        f"ELBRIDGE_SOAP_KEY_FILE={missing}: cannot read the file (No such file or directory)"
    )
    assert refusal(soap_cert_file=str(client.cert), soap_key_file=str(other.key)) == (
        f"ELBRIDGE_SOAP_KEY_FILE={other.key}: not the key of ELBRIDGE_SOAP_CERT_FILE={client.cert}"
    )
    assert refusal(soap_cert_file=str(client.key), soap_key_file=str(client.key)) == (
        f"ELBRIDGE_SOAP_CERT_FILE={client.key}: not a PEM certificate"
    )
    assert refusal(soap_key_file=str(client.key)).startswith(
        f"ELBRIDGE_SOAP_KEY_FILE={client.key} is set without ELBRIDGE_SOAP_CERT_FILE"
    )
    assert "the client certificate expired on" in refusal(
        soap_cert_file=str(expired.cert), soap_key_file=str(expired.key)
    )
    assert refusal(url="http://customs.example/certex", soap_ca_file=str(tls_ca.ca_file)) == (
        "ELBRIDGE_SOAP_CA_FILE set, but the service URL http://customs.example/certex is not"
        " https://: no TLS would be used; give the https:// URL"
    )
    # What works: a CA alone, a certificate with its key, a key held in the certificate's file.
    CustomsClient(Settings(soap_url=url, soap_ca_file=str(tls_ca.ca_file)))
    CustomsClient(
        Settings(soap_url=url, soap_cert_file=str(client.cert), soap_key_file=str(client.key))
    )
    both = tmp_path / "both.pem"
    both.write_text(client.cert.read_text() + client.key.read_text())
    CustomsClient(Settings(soap_url=url, soap_cert_file=str(both)))


def test_an_encrypted_key_is_refused_at_start_without_asking_for_a_passphrase(tmp_path, tls_ca):
    from cryptography.hazmat.primitives import serialization

    client = tls_ca.client("elbridge")
    key = serialization.load_pem_private_key(client.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    settings = Settings(
        soap_url="https://customs.example/certex",
        soap_cert_file=str(client.cert),
        soap_key_file=str(encrypted),
    )
    with pytest.raises(ConfigError, match="the private key is encrypted"):
        CustomsClient(settings)


def test_the_airflow_connection_carries_the_tls_files():
    conn = SimpleNamespace(
        conn_type="https",
        host="customs.example",
        port=8443,
        schema="certex",
        login="elbridge",
        password=PASSWORD,
        extra_dejson={
            "ca_file": "/etc/elbridge/customs-ca.pem",
            "cert_file": "/etc/elbridge/soap-client.crt",
            "key_file": "/etc/elbridge/soap-client.key",
        },
    )
    overrides = soap_overrides(conn)
    assert overrides["soap_url"] == "https://customs.example:8443/certex"
    assert (overrides["soap_ca_file"], overrides["soap_cert_file"], overrides["soap_key_file"]) == (
        "/etc/elbridge/customs-ca.pem",
        "/etc/elbridge/soap-client.crt",
        "/etc/elbridge/soap-client.key",
    )


# ------------------------------------------------------------------------ the adapter alone


def test_the_adapter_raises_tls_failure_not_a_delivery_error(tls_front, tls_ca, other_ca):
    front = tls_front(other_ca.server(), tls_ca.ca_file)
    client = tls_ca.client("elbridge")
    soap = SoapClient(
        CustomsEndpoint(
            front.url,
            timeout=5.0,
            ca_file=str(tls_ca.ca_file),
            cert_file=str(client.cert),
            key_file=str(client.key),
        )
    )
    certificate = build_certificate(individual_licence())
    with pytest.raises(TlsFailure) as failed:
        soap.submit_certificate("tls-1", certificate, NOW)
    assert (failed.value.host, failed.value.port) == ("127.0.0.1", front.port)
    assert isinstance(failed.value, ConfigError)


def test_a_session_for_other_soap_clients_uses_the_same_files(tls_front, tls_ca):
    # What the query service's client can take: tls_session(ClientTls(...)).
    front = tls_front(tls_ca.server(), tls_ca.ca_file)
    client = tls_ca.client("elbridge")
    tls = ClientTls(str(tls_ca.ca_file), str(client.cert), str(client.key))
    tls.check(front.url)
    with tls_session(tls) as session:
        answer = session.get(front.url.replace("/certex", "/admin/health"), timeout=5)
    assert answer.status_code == 200
