"""Fixtures for the MQTT side: a real mosquitto broker on a free 127.0.0.1 port, with its
persistence, config and log in the test's own folder, stopped at teardown; settings pointing
at it; and the licences the WCO samples quote (TT_EX004a, TT_EX010a), as the ledger holds them."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.adapters.mqtt.broker import Broker, start_broker
from bridge.adapters.store.licences import SaveOutcome, save_licence
from bridge.adapters.store.outbox import DELIVERED, NewMessage, add_messages
from bridge.core.model import Licence, LicenceLine, LicenceType
from bridge.services.config import Settings

# When the sample declarations are released in these tests.
RELEASED_AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TT_EX010A_MRN = "24GBDIRIGZ7QLCPAA8"  # from the DMSACC/DMSCLE notifications of TT_EX010a


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


def uk_licence(number: str, holder_eori: str, *lines: LicenceLine, **changes) -> Licence:
    """A UK individual licence (SIEL) valid through 2026-2027."""
    licence = Licence(
        number=number,
        type=LicenceType.INDIVIDUAL,
        issuing_member_state="GB",
        issuing_authority="Export Control Joint Unit",
        holder_name=f"Holder of {number}",
        holder_eori=holder_eori,
        valid_from=date(2026, 1, 1),
        valid_to=date(2027, 12, 31),
        lines=lines,
    )
    return replace(licence, **changes)


def kg_line(line_number: int, cn_code: str, quantity: str, *destinations: str) -> LicenceLine:
    return LicenceLine(
        line_number=line_number,
        control_list_entry="ML1.a",
        description=f"goods of CN {cn_code}",
        cn_code=cn_code,
        quantity=Decimal(quantity),
        unit="KGM",
        destinations=destinations,
    )


def tt_ex004a_licences() -> list[Licence]:
    """The licences TT_EX004a writes off against: the X002 licence (500 kg of CN 93059100 to
    Sudan) and the UK 9104 licence covering both goods items."""
    return [
        uk_licence("GBSIEXYK3ZZZPADR-0002", "GB896458895015", kg_line(1, "93059100", "500", "SD")),
        uk_licence(
            "GBSIEXYK3ZZZ-0001",
            "GB896458895015",
            kg_line(1, "93019000", "100", "SD"),
            kg_line(2, "93059100", "100", "SD"),
        ),
    ]


def tt_ex010a_licence(quantity: str = "250", holder_eori: str = "GB417869120000") -> Licence:
    return uk_licence("GBSIEE2E350001-0001", holder_eori, kg_line(1, "93063030", quantity, "PK"))


def store_licences(engine, licences: list[Licence], *, known_to_customs: bool = True) -> None:
    """Store the licences; unless `known_to_customs` is False, also as if customs had
    acknowledged a certificate of each (an outbox row delivered), which write-offs require."""
    with engine.begin() as conn:
        for licence in licences:
            outcome, stored = save_licence(
                conn, licence, source="test", now=RELEASED_AT, explicit_version=False
            )
            if known_to_customs and outcome in (SaveOutcome.NEW, SaveOutcome.NEW_VERSION):
                add_messages(
                    conn,
                    [
                        NewMessage(
                            f"test-certificate-{stored.number}-v{stored.version}",
                            "certificate",
                            stored.number,
                            stored.version,
                            "<certificate delivered in the test set-up/>",
                            DELIVERED,
                        )
                    ],
                    now=RELEASED_AT,
                )
