"""Fixtures for the MQTT side: a real mosquitto broker on a free 127.0.0.1 port, with its
persistence, config and log in the test's own folder, stopped at teardown; settings pointing
at it; and the licences the WCO samples quote (TT_EX004a, TT_EX010a), as the ledger holds them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.adapters.mqtt.broker import Broker, start_broker
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
