"""The health checks reach the broker and customs as the bridge does, TLS files and logins
included: a broker locked down as deployed (TLS, password file, ACLs) and the customs simulator
over HTTPS asking for client certificates. A wrong password, an untrusted server certificate or
a missing client certificate is "down", with the reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bridge.adapters.soap.server_process import TlsTrust
from bridge.services.health import BROKER, CUSTOMS, LEDGER, gather_status


def _status(settings, engine, *checked):
    status = gather_status(
        replace(settings, health_timeout=5.0),
        engine,
        now=datetime.now(UTC),
        dependencies=(LEDGER, *checked),
    )
    return {dependency.name: dependency for dependency in status.dependencies}, status


def test_the_broker_is_up_with_the_bridges_tls_and_login(locked_mosquitto, engine):
    found, status = _status(locked_mosquitto.bridge, engine, BROKER)
    assert found[BROKER].up, found[BROKER].reason
    assert found[BROKER].target == f"mqtts://127.0.0.1:{locked_mosquitto.broker.port}"
    # The deployed ACL grants the bridge no $SYS topic: the broker's store count is unknown.
    assert status.figures.broker_stored_messages is None


def test_a_refused_login_is_down_with_the_reason(locked_mosquitto, engine):
    wrong = replace(locked_mosquitto.bridge, mqtt_password="not-the-password")
    found, status = _status(wrong, engine, BROKER)
    assert not status.ready
    assert "login refused" in found[BROKER].reason
    assert f"127.0.0.1:{locked_mosquitto.broker.port}" in found[BROKER].reason


def test_a_broker_certificate_from_another_ca_is_down(locked_mosquitto, engine, other_ca):
    untrusting = replace(locked_mosquitto.bridge, mqtt_ca_file=str(other_ca.ca_file))
    found, _ = _status(untrusting, engine, BROKER)
    assert not found[BROKER].up
    assert "TLS failed" in found[BROKER].reason and "certificate" in found[BROKER].reason


def test_the_open_broker_tells_its_store_count(mqtt_settings, engine):
    _, status = _status(mqtt_settings, engine, BROKER)
    assert status.ready
    assert isinstance(status.figures.broker_stored_messages, int)


@pytest.fixture
def https_customs(customs_simulator_factory, tls_ca):
    server = tls_ca.server()
    admin = tls_ca.client("test-admin")
    return customs_simulator_factory(
        tls_cert=server.cert,
        tls_key=server.key,
        client_ca=tls_ca.ca_file,
        trust=TlsTrust(ca=server.ca, cert=admin.cert, key=admin.key),
    )


def _customs_settings(url, *, ca, client=None):
    from bridge.services.config import Settings

    return Settings(
        soap_url=url,
        soap_ca_file=str(ca),
        soap_cert_file=str(client.cert) if client else "",
        soap_key_file=str(client.key) if client else "",
    )


def test_customs_up_over_https_with_the_client_certificate(https_customs, tls_ca, engine):
    settings = _customs_settings(
        https_customs.url, ca=tls_ca.ca_file, client=tls_ca.client("elbridge")
    )
    found, status = _status(settings, engine, CUSTOMS)
    assert status.ready, found[CUSTOMS].reason
    assert found[CUSTOMS].target.startswith("https://127.0.0.1:")


def test_customs_with_an_untrusted_certificate_is_down(https_customs, tls_ca, other_ca, engine):
    settings = _customs_settings(
        https_customs.url, ca=other_ca.ca_file, client=tls_ca.client("elbridge")
    )
    found, _ = _status(settings, engine, CUSTOMS)
    assert not found[CUSTOMS].up
    assert https_customs.url in found[CUSTOMS].reason
    assert "certificate verify failed" in found[CUSTOMS].reason


def test_customs_without_the_client_certificate_is_down(https_customs, tls_ca, engine):
    settings = _customs_settings(https_customs.url, ca=tls_ca.ca_file)
    found, _ = _status(settings, engine, CUSTOMS)
    assert not found[CUSTOMS].up
    assert https_customs.url in found[CUSTOMS].reason


def test_an_expired_client_certificate_is_down_before_anything_is_sent(
    https_customs, tls_ca, engine
):
    settings = _customs_settings(
        https_customs.url, ca=tls_ca.ca_file, client=tls_ca.expired("elbridge")
    )
    found, _ = _status(settings, engine, CUSTOMS)
    assert not found[CUSTOMS].up
    assert "expired" in found[CUSTOMS].reason
