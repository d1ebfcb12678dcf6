"""Who may ask the query service what, and the audit of every question.

Over real HTTPS (a subprocess serving with a throwaway CA's certificates, clients presenting
their own): a caller without a certificate or token, with a certificate of another CA or an
expired one, or one the access file does not know, is refused and learns nothing; an allowed
caller is answered within its scope only; UsernameTokens (zeep's, password digest) are checked
for the password, replays and stale Created times. Every question leaves an audit row saying
who asked, what about, and what came of it. In-process: what QueryApp does when the audit
cannot be written, and the anonymous mode of a loopback service."""

from __future__ import annotations

import gc
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree
from zeep import Client, Transport
from zeep import exceptions as zeep_errors
from zeep.wsse.username import UsernameToken

from bridge.adapters.http.request import RequestContext
from bridge.adapters.soap import QUERY_NAMESPACE, QUERY_WSDL_FILE, SOAP_ENV_NAMESPACE
from bridge.adapters.soap.query_client import BINDING, QueryClient, QueryFailed
from bridge.adapters.soap.server_process import TlsTrust
from bridge.adapters.soap.tls import ClientTls as SoapClientTls
from bridge.adapters.soap.tls import tls_session
from bridge.adapters.store.db import make_engine
from bridge.adapters.store.query_audit import query_audit_entries
from bridge.core.paths import SCHEMAS_DIR
from bridge.core.query_access import QueryAuditEntry
from bridge.entrypoints.query_service import QueryApp, main, start_query_service
from bridge.services.queries import record_query
from bridge.services.query_access import QueryAccess, load_access_file
from tests.fixtures_mqtt import store_licences, uk_licence
from tests.fixtures_soap import individual_licence
from tests.fixtures_tls import PemFiles, TestCA

ON = date(2026, 3, 10)
DE_LICENCE, DE_HOLDER = "DE-EA-2026-004711", "DE123456789012345"
NL_LICENCE, NL_HOLDER = "NL-CDIU-2026-0042", "NL812345678"
GB_LICENCE, GB_HOLDER = "GBSIEL/2026/00777", "GB417869120000"
MESSAGES = "urn:elicensing-bridge:certex:messages:1.0"

ACCESS_FILE = """
[identities.de-atlas]
certificate_cn = "atlas.zoll.example"
customs_offices = ["DE004800"]

[identities.nl-ags]
username = "nl-ags"
password_file = "nl-ags.password"
member_states = ["NL"]

[identities.eu-gateway]
certificate_san = ["gateway.eu.example"]
member_states = ["DE", "NL"]
"""
NL_PASSWORD = "another staple in the battery"


def _ledger(folder) -> str:
    url = f"sqlite:///{folder / 'ledger.db'}"
    engine = make_engine(url)
    grams = individual_licence().lines[0]
    store_licences(
        engine,
        [
            individual_licence(),  # DE, holder DE123456789012345
            individual_licence(
                number=NL_LICENCE,
                issuing_member_state="NL",
                issuing_authority="CDIU",
                holder_name="Voorbeeld Optiek BV",
                holder_eori=NL_HOLDER,
            ),
            # Issued by the Netherlands to the German holder: not for a DE-only caller.
            individual_licence(number="NL-CDIU-2026-0077", issuing_member_state="NL"),
            uk_licence(GB_LICENCE, GB_HOLDER, grams),
        ],
    )
    engine.dispose()
    return url


def _access(folder) -> QueryAccess:
    (folder / "access.toml").write_text(ACCESS_FILE)
    (folder / "nl-ags.password").write_text(NL_PASSWORD + "\n")
    return load_access_file(folder / "access.toml")


def _audit(url: str, **filters):
    engine = make_engine(url, create=False)
    with engine.connect() as conn:
        entries = query_audit_entries(conn, **filters)
    engine.dispose()
    return entries


# ------------------------------------------------------------------------ the store


def test_the_audit_keeps_every_question_in_order_and_reads_it_back_by_time_and_identity(engine):
    start = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    entries = [
        QueryAuditEntry(
            at=start + timedelta(minutes=n),
            operation="CheckAvailability",
            outcome=outcome,
            identity=identity,
            authentication="certificate" if identity else "none",
            licence_number=number,
            code=None if outcome == "answered" else "ACCESS_DENIED",
        )
        for n, (identity, number, outcome) in enumerate(
            [
                ("de-atlas", DE_LICENCE, "answered"),
                (None, "X" * 200, "refused"),  # longer than a licence number: kept cut
                ("nl-ags", NL_LICENCE, "answered"),
            ]
        )
    ]
    for entry in entries:
        record_query(engine, entry)
    with engine.connect() as conn:
        every = query_audit_entries(conn)
        assert [e.identity for e in every] == ["de-atlas", None, "nl-ags"]
        assert every[0] == entries[0]  # times come back in UTC, whatever the database
        assert len(every[1].licence_number) == 70 and every[1].licence_number.endswith("…")
        assert query_audit_entries(conn, identity="nl-ags") == [entries[2]]
        since = query_audit_entries(conn, since=start + timedelta(minutes=1))
        assert [e.identity for e in since] == [None, "nl-ags"]
        assert query_audit_entries(conn, limit=1) == [entries[2]]


# ------------------------------------------------------------------------ in-process


def _q(name: str) -> str:
    return f"{{{QUERY_NAMESPACE}}}{name}"


def _request(operation: str, token: UsernameToken | None = None, **values: str) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV_NAMESPACE}}}Envelope")
    etree.SubElement(envelope, f"{{{SOAP_ENV_NAMESPACE}}}Header")
    body = etree.SubElement(envelope, f"{{{SOAP_ENV_NAMESPACE}}}Body")
    payload = etree.SubElement(body, _q(operation), nsmap={"q": QUERY_NAMESPACE})
    for name, value in values.items():
        etree.SubElement(payload, _q(name)).text = value
    if token is not None:
        token.apply(envelope, {})
    return etree.tostring(envelope)


def _fault_code(body: bytes) -> str | None:
    return etree.fromstring(body).findtext(f".//{{{MESSAGES}}}Code")


@pytest.fixture
def ledger(tmp_path):
    return _ledger(tmp_path)


def test_no_answer_leaves_unaudited(tmp_path, ledger):
    engine = make_engine(ledger)
    app = QueryApp(engine, access=_access(tmp_path), today=lambda: ON)
    as_atlas = RequestContext("127.0.0.1", "CN=atlas.zoll.example", ("atlas.zoll.example",))
    asked = _request("ListSupportingDocuments", HolderEORI=DE_HOLDER)
    assert app.answer(asked, caller=as_atlas).fault is None
    engine.dispose()
    # The audit table gone (a broken ledger): the same question gets a Server fault, no data.
    with make_engine(ledger, create=False).begin() as conn:
        conn.exec_driver_sql("DROP TABLE query_audit")
    broken = QueryApp(make_engine(ledger, create=False), access=_access(tmp_path))
    answer = broken.answer(asked, caller=as_atlas)
    assert answer.status == 500 and _fault_code(answer.body) == "INTERNAL_ERROR"
    assert DE_LICENCE.encode() not in answer.body


def test_a_loopback_service_without_an_access_file_answers_anyone_and_audits_it(ledger):
    app = QueryApp(make_engine(ledger), today=lambda: ON)
    asked = _request("CheckAvailability", Reference=DE_LICENCE, LineItemNumber="1")
    answer = app.answer(asked)
    assert answer.fault is None and b"Available>true" in answer.body
    (entry,) = _audit(ledger)
    assert (entry.identity, entry.authentication, entry.outcome) == (None, "none", "answered")
    assert (entry.operation, entry.licence_number) == ("CheckAvailability", DE_LICENCE)


def test_a_token_decides_over_the_certificate_and_a_bad_token_is_refused_outright(tmp_path, ledger):
    app = QueryApp(make_engine(ledger), access=_access(tmp_path), today=lambda: ON)
    as_atlas = RequestContext("127.0.0.1", "CN=atlas.zoll.example", ("atlas.zoll.example",))
    token = UsernameToken("nl-ags", NL_PASSWORD, use_digest=True, zulu_timestamp=True)
    # atlas's certificate, nl-ags's token: nl-ags's scope (NL), not atlas's (DE)
    answer = app.answer(_request("CheckAvailability", token, Reference=NL_LICENCE), None, as_atlas)
    assert answer.fault is None
    wrong = UsernameToken("nl-ags", "guess", use_digest=True, zulu_timestamp=True)
    refused = app.answer(_request("CheckAvailability", wrong, Reference=DE_LICENCE), None, as_atlas)
    assert _fault_code(refused.body) == "AUTHENTICATION_FAILED"
    first, second = _audit(ledger)
    assert (first.identity, first.authentication, first.credential) == (
        "nl-ags",
        "username-token",
        "nl-ags",
    )
    assert (second.identity, second.outcome, second.code) == (
        None,
        "refused",
        "AUTHENTICATION_FAILED",
    )
    assert second.reason == ("unknown user or wrong password (the password digest does not match)")


def test_the_audit_can_be_read_by_time_and_identity(tmp_path, ledger):
    app = QueryApp(make_engine(ledger), access=_access(tmp_path), today=lambda: ON)
    as_atlas = RequestContext("10.0.0.7", "CN=atlas.zoll.example", ("atlas.zoll.example",))
    as_gateway = RequestContext("10.0.0.8", "CN=gw", ("gw",), ("gateway.eu.example",))
    app.answer(_request("ListSupportingDocuments", HolderEORI=DE_HOLDER), caller=as_atlas)
    app.answer(_request("ListSupportingDocuments", HolderEORI=NL_HOLDER), caller=as_gateway)
    assert [e.identity for e in _audit(ledger)] == ["de-atlas", "eu-gateway"]
    assert [e.holder_eori for e in _audit(ledger, identity="eu-gateway")] == [NL_HOLDER]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert _audit(ledger, since=later) == []
    assert _audit(ledger)[0].client_address == "10.0.0.7"


def test_elbridge_query_audit_prints_who_asked_what_and_what_came_of_it(tmp_path, ledger, capsys):
    from bridge.entrypoints.cli import main

    app = QueryApp(make_engine(ledger), access=_access(tmp_path), today=lambda: ON)
    as_atlas = RequestContext("10.0.0.7", "CN=atlas.zoll.example", ("atlas.zoll.example",))
    app.answer(_request("ListSupportingDocuments", HolderEORI=DE_HOLDER), caller=as_atlas)
    app.answer(_request("CheckAvailability", Reference=NL_LICENCE), caller=as_atlas)
    app.answer(_request("ListSupportingDocuments", HolderEORI=DE_HOLDER))  # no credential
    capsys.readouterr()
    assert main(["--database-url", ledger, "query", "audit", "--identity", "de-atlas"]) == 0
    answered, refused = capsys.readouterr().out.splitlines()
    assert answered.endswith(
        "de-atlas (certificate CN=atlas.zoll.example, 10.0.0.7)  ListSupportingDocuments"
        f" holder {DE_HOLDER}  answered: 1 supporting document(s) on 2026-03-10"
    )
    assert f"CheckAvailability licence {NL_LICENCE}  refused ACCESS_DENIED: licence" in refused
    assert refused.endswith("(issued by NL)")  # the audit knows; the caller was not told
    assert main(["--database-url", ledger, "query-service", "audit", "--limit", "1"]) == 0
    (last,) = capsys.readouterr().out.splitlines()
    assert "(not identified) (none)" in last and "refused AUTHENTICATION_FAILED" in last


def test_without_an_access_file_or_tls_the_service_will_not_start_on_a_public_address(
    ledger, monkeypatch, capsys, tls_ca
):
    for name in ("QUERY_ACCESS_FILE", "HTTP_TLS_CERT", "HTTP_TLS_KEY", "HTTP_CLIENT_CA"):
        monkeypatch.delenv(f"ELBRIDGE_{name}", raising=False)
        monkeypatch.delenv(f"ELBRIDGE_{name}_FILE", raising=False)
    public = ["--host", "0.0.0.0", "--port", "0", "--ledger-url", ledger]
    assert main(public) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("query service: the query service on 0.0.0.0 would send licence data")
    server = tls_ca.server()
    assert main([*public, "--tls-cert", str(server.cert), "--tls-key", str(server.key)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("query service: the query service on 0.0.0.0 would answer anyone")
    assert "--allow-anonymous" in line


def test_a_broken_access_file_stops_the_service_with_one_line_naming_entry_and_problem(
    tmp_path, ledger, capsys
):
    access = tmp_path / "access.toml"
    access.write_text('[identities.fr-delta]\nusername = "fr-delta"\nmember_states = ["FR"]\n')
    assert main(["--port", "0", "--ledger-url", ledger, "--access-file", str(access)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"query service: access file {access}: identity 'fr-delta': a username needs its"
        " password from password_file or password_env (one)"
    )


# ------------------------------------------------------------------- over real HTTPS


@dataclass(frozen=True)
class World:
    """The ledger, the access file, the CA the service trusts and one it does not."""

    folder: Path
    ledger: str
    access: Path
    ca: TestCA
    other_ca: TestCA
    server: PemFiles


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    folder = tmp_path_factory.mktemp("query-access")
    ledger = _ledger(folder)
    _access(folder)
    ca = TestCA(folder / "tls")
    other = TestCA(folder / "tls-other", name="elbridge untrusted CA")
    return World(folder, ledger, folder / "access.toml", ca, other, ca.server())


@pytest.fixture(scope="module")
def mtls_service(world):
    """HTTPS with client certificates required (the customs systems' CA) and the access
    file."""
    probe = world.ca.client("health-probe.example")
    service = start_query_service(
        world.folder / "mtls",
        world.ledger,
        tls_cert=world.server.cert,
        tls_key=world.server.key,
        client_ca=world.ca.ca_file,
        trust=TlsTrust(ca=world.ca.ca_file, cert=probe.cert, key=probe.key),
        arguments=["--access-file", str(world.access)],
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def token_service(world):
    """HTTPS without client certificates: the access file's users prove who they are with a
    UsernameToken."""
    service = start_query_service(
        world.folder / "tokens",
        world.ledger,
        tls_cert=world.server.cert,
        tls_key=world.server.key,
        trust=TlsTrust(ca=world.ca.ca_file),
        arguments=["--access-file", str(world.access)],
    )
    yield service
    service.stop()


_open: list = []  # the test's clients: closed after it, so that a service stops at once


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    # A refusal's traceback holds its HTTP response in a reference cycle, and the response
    # its connection: collect them, or the connection stays open until the service is killed.
    gc.collect()
    while _open:
        _open.pop().close()


def _client(service, world: World, certificate: PemFiles | None = None, **token) -> QueryClient:
    client = QueryClient(
        service.url,
        ca_file=str(world.ca.ca_file),
        cert_file=None if certificate is None else str(certificate.cert),
        key_file=None if certificate is None else str(certificate.key),
        **token,
    )
    _open.append(client)
    return client


def _refused(call, *args, **values) -> QueryFailed:
    with pytest.raises(QueryFailed) as refused:
        call(*args, **values)
    return refused.value


def _audit_count(world: World) -> int:
    return len(_audit(world.ledger))


def _last_audit(world: World):
    return _audit(world.ledger, limit=1)[0]


def test_an_allowed_certificate_is_answered_within_its_scope_and_audited(mtls_service, world):
    atlas = _client(mtls_service, world, world.ca.client("atlas.zoll.example"))
    documents = atlas.list_supporting_documents(DE_HOLDER, ON)
    # The holder also has a licence issued by the Netherlands: not for a German office.
    assert [d.reference for d in documents] == [DE_LICENCE]
    entry = _last_audit(world)
    assert (entry.identity, entry.authentication) == ("de-atlas", "certificate")
    assert entry.credential.startswith("CN=atlas.zoll.example,")  # the whole subject
    assert (entry.operation, entry.holder_eori, entry.outcome) == (
        "ListSupportingDocuments",
        DE_HOLDER,
        "answered",
    )
    assert entry.client_address == "127.0.0.1"
    assert entry.reason == "1 supporting document(s) on 2026-03-10"
    answer = atlas.check_availability(DE_LICENCE, line_item_number=1, on_date=ON)
    assert answer.available and _last_audit(world).licence_number == DE_LICENCE
    assert _last_audit(world).reason == "available"


def test_outside_its_scope_a_caller_is_refused_and_cannot_tell_whether_a_licence_exists(
    mtls_service, world
):
    atlas = _client(mtls_service, world, world.ca.client("atlas.zoll.example"))
    issued_by_nl = _refused(atlas.check_availability, NL_LICENCE, on_date=ON)
    unknown = _refused(atlas.check_availability, "NL-CDIU-2026-9999", on_date=ON)
    assert issued_by_nl.code == unknown.code == "fault-access_denied"
    assert issued_by_nl.reason.replace(NL_LICENCE, "X") == unknown.reason.replace(
        "NL-CDIU-2026-9999", "X"
    )
    nl_holder = _refused(atlas.list_supporting_documents, NL_HOLDER, ON)
    assert nl_holder.code == "fault-access_denied" and "member state DE" in nl_holder.reason
    by_nl, no_such, holder = _audit(world.ledger, identity="de-atlas")[-3:]
    assert (by_nl.outcome, by_nl.code) == ("refused", "ACCESS_DENIED")
    assert by_nl.reason.endswith("(issued by NL)") and no_such.reason.endswith("(no such licence)")
    assert (holder.holder_eori, holder.outcome) == (NL_HOLDER, "refused")


def test_a_valid_certificate_the_access_file_does_not_name_gets_a_fault_and_nothing_else(
    mtls_service, world
):
    stranger = _client(mtls_service, world, world.ca.client("stranger.example"))
    refused = _refused(stranger.list_supporting_documents, DE_HOLDER, ON)
    assert refused.code == "fault-access_denied" and not refused.transient
    assert DE_LICENCE not in refused.reason
    entry = _last_audit(world)
    assert (entry.identity, entry.outcome, entry.code) == (None, "refused", "ACCESS_DENIED")
    assert entry.credential.startswith("CN=stranger.example,")
    assert entry.holder_eori == DE_HOLDER


def test_a_certificate_is_recognised_by_its_subject_alt_name(mtls_service, world):
    gateway = world.ca.issue("gateway.eu.example", common_name="EU gateway", label="gateway")
    client = _client(mtls_service, world, gateway)
    assert [d.reference for d in client.list_supporting_documents(NL_HOLDER, ON)] == [NL_LICENCE]
    assert _last_audit(world).identity == "eu-gateway"


def _handshake(service, world: World, certificate: PemFiles | None) -> BaseException | None:
    """POST a query as a client presenting `certificate` (a plain TLS client: no check of its
    own); what the connection raised, None when an HTTP answer came back."""
    context = TlsTrust(
        ca=world.ca.ca_file,
        cert=None if certificate is None else certificate.cert,
        key=None if certificate is None else certificate.key,
    ).context()
    body = _request("ListSupportingDocuments", HolderEORI=DE_HOLDER)
    request = urllib.request.Request(
        service.url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context):
            return None
    except urllib.error.HTTPError:
        return None  # an answer, even a fault, means the handshake succeeded
    except OSError as error:  # ssl.SSLError, a reset, urllib's URLError around either
        return error


@pytest.mark.parametrize("presented", ["none", "other CA", "expired"])
def test_no_certificate_another_cas_or_an_expired_one_is_refused_at_the_handshake(
    mtls_service, world, presented
):
    certificate = {
        "none": None,
        "other CA": world.other_ca.client("atlas.zoll.example"),
        "expired": world.ca.expired("atlas.zoll.example"),
    }[presented]
    before = _audit_count(world)
    assert _handshake(mtls_service, world, certificate) is not None
    assert _audit_count(world) == before  # nothing reached the service: nothing answered
    valid = world.ca.client("atlas.zoll.example")
    assert _handshake(mtls_service, world, valid) is None  # the same request, let through
    assert _audit_count(world) == before + 1


def test_the_bridges_query_client_says_why_tls_failed(mtls_service, world):
    refused = _refused(_client(mtls_service, world).list_supporting_documents, DE_HOLDER, ON)
    assert refused.code.startswith("tls-") or refused.code == "connection-failed"
    expired = _client(mtls_service, world, world.ca.expired("atlas.zoll.example"))
    refused = _refused(expired.list_supporting_documents, DE_HOLDER, ON)
    assert refused.code == "tls-failed" and "expired" in refused.reason and not refused.transient


def test_no_certificate_and_no_token_is_refused_and_audited(token_service, world):
    anonymous = _client(token_service, world)
    refused = _refused(anonymous.list_supporting_documents, NL_HOLDER, ON)
    assert refused.code == "fault-authentication_failed"
    assert "client certificate or a WS-Security UsernameToken is required" in refused.reason
    entry = _last_audit(world)
    assert (entry.identity, entry.authentication, entry.outcome, entry.code) == (
        None,
        "none",
        "refused",
        "AUTHENTICATION_FAILED",
    )


def test_a_username_token_with_the_right_digest_is_answered_every_time(token_service, world):
    nl = _client(token_service, world, username="nl-ags", password=NL_PASSWORD)
    for _ in range(2):  # a fresh nonce each call
        assert [d.reference for d in nl.list_supporting_documents(NL_HOLDER, ON)] == [NL_LICENCE]
    entry = _last_audit(world)
    assert (entry.identity, entry.authentication, entry.credential, entry.outcome) == (
        "nl-ags",
        "username-token",
        "nl-ags",
        "answered",
    )


def test_a_wrong_password_or_the_password_in_clear_is_refused(token_service, world):
    wrong = _client(token_service, world, username="nl-ags", password="guess")
    refused = _refused(wrong.list_supporting_documents, NL_HOLDER, ON)
    assert refused.code == "fault-authentication_failed"
    assert "unknown user or wrong password" in refused.reason
    assert _last_audit(world).reason == (
        "unknown user or wrong password (the password digest does not match)"
    )
    clear = _zeep(token_service, world, UsernameToken("nl-ags", NL_PASSWORD))
    assert "only a password digest" in _fault(clear)
    assert _last_audit(world).code == "AUTHENTICATION_FAILED"


def _zeep(service, world: World, token: UsernameToken):
    """zeep's own client with `token` as it is (fixed nonce and Created when given)."""
    session = tls_session(SoapClientTls(ca_file=str(world.ca.ca_file)))
    _open.append(session)
    client = Client(
        str(SCHEMAS_DIR / QUERY_WSDL_FILE), transport=Transport(session=session), wsse=token
    )
    return client.create_service(BINDING, service.url)


def _fault(proxy) -> str:
    with pytest.raises(zeep_errors.Fault) as fault:
        proxy.ListSupportingDocuments(HolderEORI=NL_HOLDER, OnDate=ON)
    return fault.value.message


def test_a_replayed_token_and_a_stale_one_are_refused(token_service, world):
    now = datetime.now(UTC).replace(microsecond=0)
    replayed = UsernameToken(
        "nl-ags", NL_PASSWORD, use_digest=True, nonce="replay-me-0001", created=now
    )
    proxy = _zeep(token_service, world, replayed)
    assert proxy.ListSupportingDocuments(HolderEORI=NL_HOLDER, OnDate=ON).HolderEORI == NL_HOLDER
    assert "used before (a replay)" in _fault(proxy)
    assert "a replay" in _last_audit(world).reason
    stale = UsernameToken(
        "nl-ags", NL_PASSWORD, use_digest=True, created=now - timedelta(minutes=10)
    )
    assert "stale" in _fault(_zeep(token_service, world, stale))
    entry = _last_audit(world)
    assert (entry.credential, entry.outcome, entry.code) == (
        "nl-ags",
        "refused",
        "AUTHENTICATION_FAILED",
    )
