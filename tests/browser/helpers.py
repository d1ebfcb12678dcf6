"""Helpers for the console's tests, browser and HTTP level: the demo's sample data in a ledger
(without broker or Airflow), console users made at test time, and a logged-in TestClient."""

from __future__ import annotations

import re
import secrets
import shutil
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

with warnings.catch_warnings():  # Starlette's note about httpx, not about these tests
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from bridge.adapters.store.db import begin_writing, make_engine
from bridge.core.paths import MAPPINGS_DIR
from bridge.entrypoints.console.app import create_app
from bridge.entrypoints.console.auth import add_user, users_file
from bridge.services.config import Settings

ORIGIN = "http://testserver"
USERS = {
    # role: (login, full name)
    "officer": ("olga.officer", "Olga Brandt"),
    "auditor": ("arne.auditor", "Arne Wiik"),
}


@dataclass(frozen=True)
class DemoLedger:
    """What fill_demo_ledger did: the ingest reports, the declaration events applied."""

    rejected_records: int
    certificates_delivered: int
    events_applied: int


def fill_demo_ledger(settings: Settings, *, now: datetime | None = None) -> DemoLedger:
    """The demo's sample data in the ledger at settings.ledger_url, as `elbridge demo` leaves
    it but without broker or Airflow: the national sample files ingested (their rejected
    records kept), certificates made, signed and delivered to a customs simulator (started and
    stopped here), then the demo's declaration events applied in order (two releases with
    write-offs, one without a licence, a cancellation, and an over-use that is refused)."""
    # Imported here: the console's HTTP tests need none of the chain that fills a ledger.
    from bridge.entrypoints.customs_sim import start_simulator
    from bridge.services.declarations import apply_declarations
    from bridge.services.ingest import ingest_inbox
    from bridge.services.outbox import CustomsClient, certify_pending, deliver_pending
    from bridge.services.signing import certificate_signer

    now = now or datetime.now(UTC)
    home = settings.home
    inbox = settings.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    for sample in sorted((MAPPINGS_DIR / "samples").iterdir()):
        if sample.is_file():
            shutil.copyfile(sample, inbox / sample.name)
    engine = make_engine(settings.ledger_url)
    try:
        reports = ingest_inbox(engine, inbox, now=now)
        signer = certificate_signer(settings)
        certify_pending(engine, now=now, signer=signer)
        with start_simulator(
            home / "customs-sim", trusted_authorities=[signer.certificate_file]
        ) as simulator:
            delivered = deliver_pending(
                engine, CustomsClient(settings.with_overrides(soap_url=simulator.url))
            )
        events = _demo_events(home / "declarations", now)
        with engine.begin() as conn:
            begin_writing(conn)
            apply_declarations(conn, events, now=now, settings=settings)
    finally:
        engine.dispose()
    return DemoLedger(
        rejected_records=sum(report.rejected for report in reports),
        certificates_delivered=delivered.delivered,
        events_applied=len(events),
    )


def _demo_events(folder: Path, now: datetime) -> list:
    from bridge.core.envelope import read_event
    from bridge.entrypoints.demo import DEMO_EVENTS, declaration_bytes, samples_dir
    from bridge.services.customs_events import envelope_for_declaration_file

    folder.mkdir(parents=True, exist_ok=True)
    declarations = samples_dir()
    events = []
    for number, demo_event in enumerate(DEMO_EVENTS, 1):
        source = folder / f"{number:02d}_{demo_event.file}"
        source.write_bytes(declaration_bytes(declarations, demo_event))
        data = envelope_for_declaration_file(
            source, event=demo_event.event, mrn=demo_event.mrn, event_time=now
        )
        events.append(read_event(data, max_bytes=4 * 1024 * 1024))
    return events


def make_users(settings: Settings) -> dict[str, tuple[str, str]]:
    """An officer and an auditor in the settings' users file, with passwords made now:
    {role: (login, password)}."""
    made = {}
    for role, (name, full_name) in USERS.items():
        password = secrets.token_urlsafe(16)
        add_user(users_file(settings), name, role, password, full_name=full_name, replace=True)
        made[role] = (name, password)
    return made


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class ConsoleClient(TestClient):
    """A TestClient on the console, logged in (or not) as `user_name`."""

    user_name: str = ""
    password: str = ""
    actor: str = ""
    token: str = ""


def log_in(client: TestClient, name: str, password: str):
    """Log in through the login form (CSRF token and Origin as a browser sends them); the
    response of the login POST (303 when it worked)."""
    token = csrf_of(client.get("/login").text)
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )


def console_client(
    settings: Settings,
    role: str | None = "officer",
    *,
    engine: Engine | None = None,
    clock=None,
    raise_server_exceptions: bool = True,
) -> ConsoleClient:
    """A TestClient on create_app(settings, engine), with the officer and auditor made in the
    users file, logged in as the user of `role` (None: not logged in)."""
    users = make_users(settings)
    client = ConsoleClient(
        create_app(settings, engine, clock=clock),
        base_url=ORIGIN,
        raise_server_exceptions=raise_server_exceptions,
    )
    if role is not None:
        name, password = users[role]
        answer = log_in(client, name, password)
        assert answer.status_code == 303, answer.text
        client.user_name, client.password = name, password
        client.actor = f"{USERS[role][1]} ({name})"
        client.token = csrf_of(client.get("/licences").text)
    client.users = users  # type: ignore[attr-defined]
    return client


def post_form(client: ConsoleClient, path: str, data: dict | None = None, **kwargs):
    """POST a form as the console's own page would: with the session's CSRF token and the
    console's Origin. Redirects are not followed (the answer is what the POST said)."""
    token = client.token or csrf_of(client.get("/licences").text)
    return client.post(
        path,
        data={**(data or {}), "csrf_token": token},
        headers={"Origin": ORIGIN, **kwargs.pop("headers", {})},
        follow_redirects=False,
        **kwargs,
    )
