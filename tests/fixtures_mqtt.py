"""Fixtures for the MQTT side: a real mosquitto broker on a free 127.0.0.1 port, with its
persistence, config and log in the test's own folder, stopped at teardown; settings pointing
at it; the same broker locked down as deployed (TLS, logins, ACLs); and the licences the WCO
samples quote (TT_EX004a, TT_EX010a), as the ledger holds them."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.adapters.mqtt.broker import Broker, start_broker
from bridge.adapters.mqtt.broker_setup import BrokerTls, BrokerUsers
from bridge.core.model import Licence
from bridge.services.config import Settings
from bridge.testkit.known_licences import store_known_licences

# The sample licences (and TT_EX010a's MRN) come from the test kit; the tests import them here.
from bridge.testkit.sample_licences import (  # noqa: F401
    TT_EX010A_MRN,
    kg_line,
    tt_ex004a_licences,
    tt_ex010a_licence,
    uk_licence,
)

# When the sample declarations are released in these tests.
RELEASED_AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def mosquitto(tmp_path: Path):
    broker: Broker = start_broker(tmp_path / "mosquitto")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mqtt_settings(mosquitto: Broker, tmp_path: Path, ledger_url: str) -> Settings:
    """Settings for the test's broker and ledger, with a topic and client id of its own."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        home=tmp_path,
        database_url=ledger_url,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_client_id=f"elbridge-test-{tag}",
        mqtt_topic=f"test/{tag}/declarations",
        batch_size=200,
        batch_wait_ms=100,
    )


def store_licences(engine, licences: list[Licence], *, known_to_customs: bool = True) -> None:
    """Store the licences; unless `known_to_customs` is False, also as if customs had
    acknowledged a certificate of each (an outbox row delivered), which write-offs require."""
    with engine.begin() as conn:
        store_known_licences(
            conn, licences, now=RELEASED_AT, source="test", known_to_customs=known_to_customs
        )


BRIDGE_USER = "elbridge"
CUSTOMS_USER = "customs"


@dataclass
class LockedBroker:
    """A mosquitto as deployed (deploy/mosquitto/): TLS only, with the test CA's server
    certificate, logins from a password file (passwords made for this test only) and the ACLs;
    `settings_for(user)` gives a client's settings on it."""

    broker: Broker
    ca: object  # tests.fixtures_tls.TestCA
    passwords: dict[str, str]
    base: Settings

    def settings_for(self, user: str, **overrides) -> Settings:
        return replace(
            self.base,
            mqtt_username=user,
            mqtt_password=self.passwords[user],
            **overrides,
        )

    @property
    def bridge(self) -> Settings:
        return self.settings_for(BRIDGE_USER)

    @property
    def customs(self) -> Settings:
        return self.settings_for(CUSTOMS_USER, mqtt_client_id=f"customs-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def locked_mosquitto_factory(tmp_path: Path, tls_ca) -> Callable[..., LockedBroker]:
    """Start brokers locked down as deployed; `require_certificate` makes clients show a
    certificate of the test CA too. Stopped at teardown."""
    started: list[Broker] = []

    def start(*, require_certificate: bool = False, server=None) -> LockedBroker:
        server = server or tls_ca.server()
        passwords = {
            BRIDGE_USER: secrets.token_urlsafe(16),
            CUSTOMS_USER: secrets.token_urlsafe(16),
        }
        broker = start_broker(
            tmp_path / f"mosquitto-locked-{len(started)}",
            tls=BrokerTls(server.cert, server.key, tls_ca.ca_file, require_certificate),
            users=BrokerUsers(
                bridge=(BRIDGE_USER, passwords[BRIDGE_USER]),
                customs=((CUSTOMS_USER, passwords[CUSTOMS_USER]),),
            ),
        )
        started.append(broker)
        base = Settings(
            home=tmp_path,  # the ledger: SQLite in tmp_path unless a test gives database_url
            mqtt_host=broker.host,
            mqtt_port=broker.port,
            mqtt_ca_file=str(tls_ca.ca_file),
            mqtt_client_id=f"elbridge-test-{uuid.uuid4().hex[:8]}",
            batch_size=200,
            batch_wait_ms=100,
        )
        return LockedBroker(broker, tls_ca, passwords, base)

    try:
        yield start
    finally:
        for broker in started:
            broker.stop()


@pytest.fixture
def locked_mosquitto(locked_mosquitto_factory) -> LockedBroker:
    """A broker locked down as deployed (TLS, logins, ACLs; no client certificate asked)."""
    return locked_mosquitto_factory()
