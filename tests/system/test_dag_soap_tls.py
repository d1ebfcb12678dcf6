"""The delivery DAG over mutual TLS, configured by the operator's Connection
`elbridge_customs_soap` (conn_type https, extras ca_file, cert_file, key_file): a wrong CA fails
the delivery task with the configuration error and leaves the certificates pending with their
attempts untouched; once the Connection is mended, the next run delivers them. Real Airflow
(`dag.test()`), real ledger, the real simulator over HTTPS."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from bridge.adapters.soap.server_process import TlsTrust
from bridge.adapters.store.licences import save_licence
from bridge.adapters.store.outbox import outbox_rows
from tests.fixtures_airflow import run_dag
from tests.fixtures_soap import chemicals_licence, individual_licence

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def bridge_env(airflow_env, tmp_path, monkeypatch):
    """A clean bridge environment for one test: its own home, nothing inherited."""
    for name in list(os.environ):
        if name.startswith(("ELBRIDGE_", "AIRFLOW_CONN_ELBRIDGE", "AIRFLOW_VAR_ELBRIDGE")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("ELBRIDGE_HOME", str(home))
    return home


def _customs_connection(monkeypatch, url: str, **extra: str) -> None:
    parts = urlsplit(url)
    value = {
        "conn_type": "https",
        "host": parts.hostname,
        "port": parts.port,
        "schema": parts.path.strip("/"),
        "extra": extra,
    }
    monkeypatch.setenv("AIRFLOW_CONN_ELBRIDGE_CUSTOMS_SOAP", json.dumps(value))


def test_a_wrong_ca_fails_the_delivery_task_and_the_mended_connection_delivers(
    bridge_env,
    engine,
    ledger_url,
    customs_simulator_factory,
    tls_ca,
    other_ca,
    monkeypatch,
    capfd,
):
    admin = tls_ca.client("test-admin")
    server = other_ca.server()  # customs' certificate comes from their own CA
    customs = customs_simulator_factory(
        tls_cert=server.cert,
        tls_key=server.key,
        client_ca=tls_ca.ca_file,
        trust=TlsTrust(ca=server.ca, cert=admin.cert, key=admin.key),
    )
    with engine.begin() as conn:
        for licence in (individual_licence(), chemicals_licence()):
            save_licence(conn, licence, source="test", now=NOW, explicit_version=True)
    monkeypatch.setenv(
        "AIRFLOW_CONN_ELBRIDGE_LEDGER", json.dumps({"conn_type": "generic", "host": ledger_url})
    )
    client = tls_ca.client("elbridge")
    files = {"cert_file": str(client.cert), "key_file": str(client.key)}
    _customs_connection(monkeypatch, customs.url, ca_file=str(tls_ca.ca_file), **files)

    run = run_dag("licences_to_customs")
    task_log = "".join(capfd.readouterr())  # Airflow's task log, as the operator reads it

    assert run.task_states["certify_new_versions"] == "success"
    assert run.task_states["deliver_certificates"] == "failed"
    assert run.state == "failed"
    port = urlsplit(customs.url).port
    assert f"TLS to 127.0.0.1:{port} failed: certificate verify failed" in task_log
    assert "check ELBRIDGE_SOAP_CA_FILE" in task_log
    with engine.connect() as conn:
        assert [(row["status"], row["attempts"]) for row in outbox_rows(conn)] == [
            ("pending", 0),
            ("pending", 0),
        ]
    assert customs.received() == []

    _customs_connection(monkeypatch, customs.url, ca_file=str(other_ca.ca_file), **files)
    mended = run_dag("licences_to_customs")

    assert mended.state == "success", mended.task_states
    assert mended.results["deliver_certificates"]["delivered"] == 2
    assert len(customs.received()) == 2
