"""Fixtures for the soap side: the real customs single window simulator (a subprocess serving
SOAP over HTTP or HTTPS on a free 127.0.0.1 port, stopped by process group at teardown), a URL where
nothing listens, realistic licences built directly with bridge.core.model, and the two steps
every outbox test repeats: storing licences as given and reading the outbox back."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.adapters.signing import CertificateSigner
from bridge.adapters.store.licences import save_licence
from bridge.adapters.store.outbox import outbox_rows
from bridge.core.model import Licence, LicenceLine, LicenceStatus, LicenceType, Party
from bridge.entrypoints.customs_sim import SimulatorProcess, start_simulator
from bridge.services.config import Settings
from bridge.services.signing import certificate_signer


@pytest.fixture
def customs_simulator_factory(tmp_path: Path) -> Iterator[Callable[..., SimulatorProcess]]:
    """Start simulators with options (fault plan keywords rate=, kinds=, next=, slow_seconds=,
    seed=; credentials=, max_bytes=; tls_cert=, tls_key=, client_ca=, trust= for HTTPS;
    environment= for ELBRIDGE_HTTP_* limits); all are stopped at teardown."""
    started: list[SimulatorProcess] = []

    def start(**options) -> SimulatorProcess:
        simulator = start_simulator(tmp_path / f"customs-sim-{len(started)}", **options)
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def customs_simulator(customs_simulator_factory) -> SimulatorProcess:
    """A running simulator without faults (set them with `.set_faults(...)`)."""
    return customs_simulator_factory()


@pytest.fixture
def development_authority(tmp_path: Path) -> CertificateSigner:
    """The signer a bridge without a configured key uses: the development authority made under
    its home (here tmp_path/home/keys), as bridge.services.signing picks it."""
    return certificate_signer(Settings(home=tmp_path / "home"))


@pytest.fixture
def signing_customs_simulator(customs_simulator_factory, development_authority) -> SimulatorProcess:
    """A simulator that trusts the development authority only: certificates must reach it
    signed by it, unchanged (give the outbox `signer=development_authority`)."""
    return customs_simulator_factory(trusted_authorities=[development_authority.certificate_file])


@pytest.fixture
def unreachable_soap_url() -> str:
    """A 127.0.0.1 URL on a port nothing listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/certex"


# ------------------------------------------------------------------------ realistic licences


def individual_licence(**changes) -> Licence:
    """A German individual licence for thermal imaging cameras and their detectors."""
    licence = Licence(
        number="DE-EA-2026-004711",
        type=LicenceType.INDIVIDUAL,
        issuing_member_state="DE",
        issuing_authority="Bundesamt für Wirtschaft und Ausfuhrkontrolle (BAFA)",
        holder_name="Muster Optik GmbH",
        holder_eori="DE123456789012345",
        valid_from=date(2026, 3, 1),
        valid_to=date(2028, 2, 29),
        lines=(
            LicenceLine(
                line_number=1,
                control_list_entry="6A003.b.4.b",
                description="Uncooled thermal imaging cameras, 640x512, 12 µm pitch",
                cn_code="85258900",
                quantity=Decimal("120"),
                unit="NAR",
                value=Decimal("486000.00"),
                currency="EUR",
                destinations=("IN",),
                consignee=Party("Bharat Vision Systems Pvt. Ltd.", "IN", "Plot 17, Pune 411057"),
                end_user=Party("Indian Institute of Science", "IN"),
            ),
            LicenceLine(
                line_number=2,
                control_list_entry="6A002.a.3.f",
                description="Focal plane arrays for the cameras of line 1",
                cn_code="90139000",
                quantity=Decimal("12.5"),
                unit="KGM",
                value=Decimal("37250.50"),
                currency="EUR",
                destinations=("IN",),
            ),
        ),
    )
    return replace(licence, **changes)


def global_licence(**changes) -> Licence:
    """A French global licence for encryption equipment to several destinations."""
    licence = Licence(
        number="FR-SBDU-G-2026-0042",
        type=LicenceType.GLOBAL,
        issuing_member_state="FR",
        issuing_authority="Service des biens à double usage (SBDU)",
        holder_name="Chiffre & Réseaux SAS",
        holder_eori="FR12345678901",
        valid_from=date(2026, 1, 15),
        valid_to=date(2027, 1, 14),
        lines=(
            LicenceLine(
                line_number=1,
                control_list_entry="5A002.a",
                description="Network encryption appliances « CR-9000 »",
                cn_code="84714100",
                value=Decimal("2500000.00"),
                currency="EUR",
                destinations=("BR", "SG", "ZA", "AE"),
            ),
        ),
    )
    return replace(licence, **changes)


def union_general_licence(**changes) -> Licence:
    """A registration under EU001 (no ceilings, no end date)."""
    licence = Licence(
        number="NL-EU001-2026-0815",
        type=LicenceType.UNION_GENERAL,
        issuing_member_state="NL",
        issuing_authority="Centrale Dienst voor In- en Uitvoer (CDIU)",
        holder_name="Lage Landen Lasers B.V.",
        holder_eori="NL812345678",
        valid_from=date(2026, 2, 1),
        valid_to=None,
        general_authorisation="EU001",
        lines=(
            LicenceLine(
                line_number=1,
                control_list_entry="6A005.d.1",
                description="Semiconductor lasers",
                unit="NAR",
                destinations=("US", "JP", "NO"),
            ),
        ),
    )
    return replace(licence, **changes)


def national_general_licence(**changes) -> Licence:
    """A Danish national general authorisation DK002 with a value recorded in DKK."""
    licence = Licence(
        number="DK002-2026-117",
        type=LicenceType.NATIONAL_GENERAL,
        issuing_member_state="DK",
        issuing_authority="Erhvervsstyrelsen",
        holder_name="Ærø Søværn Teknik ApS",
        holder_eori="DK12345678",
        valid_from=date(2026, 4, 1),
        valid_to=date(2029, 3, 31),
        general_authorisation="DK002",
        lines=(
            LicenceLine(
                line_number=1,
                control_list_entry="8A002.o.3",
                description="Noise reduction systems for marine vessels",
                currency="DKK",
            ),
        ),
    )
    return replace(licence, **changes)


def chemicals_licence(**changes) -> Licence:
    """A Polish individual licence with decimals, unicode parties and several lines."""
    licence = Licence(
        number="PL/DU/2026/000321",
        type=LicenceType.INDIVIDUAL,
        issuing_member_state="PL",
        issuing_authority="Departament Kontroli Obrotu Towarami o Znaczeniu Strategicznym",
        holder_name="Zakłady Chemiczne Łódź S.A.",
        holder_eori="PL5260001234",
        valid_from=date(2026, 5, 4),
        valid_to=date(2027, 5, 3),
        status=LicenceStatus.SUSPENDED,
        version=3,
        lines=(
            LicenceLine(
                line_number=10,
                control_list_entry="1C350.11",
                description="Thiodiglycol, purity ≥ 99 %",
                cn_code="29309098",
                quantity=Decimal("1250.375"),
                unit="KGM",
                value=Decimal("18755.63"),
                currency="PLN",
                destinations=("CN",),
                consignee=Party("深圳光电化工有限公司", "CN", "深圳市南山区 1号"),
                end_user=Party("Shenzhen Photo-Chem Co., Ltd.", "CN"),
            ),
            LicenceLine(
                line_number=20,
                control_list_entry="1C350.43",
                description="Triethanolamine",
                cn_code="29221500",
                quantity=Decimal("0.000001"),
                unit="TNE",
                destinations=("CN", "VN"),
            ),
        ),
    )
    return replace(licence, **changes)


def sample_licences() -> list[Licence]:
    return [
        individual_licence(),
        global_licence(),
        union_general_licence(),
        national_general_licence(),
        chemicals_licence(),
    ]


def save_licences(engine, licences, *, now: datetime) -> None:
    """Store `licences` at `now`, each under its own version number, in one transaction."""
    with engine.begin() as conn:
        for licence in licences:
            save_licence(conn, licence, source="test", now=now, explicit_version=True)


def outbox_of(engine) -> list[dict]:
    """Every outbox row, as the store lists them."""
    with engine.connect() as conn:
        return outbox_rows(conn)
