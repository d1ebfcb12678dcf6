"""The bridge's query service for customs (schemas/certex-query-1.0.wsdl) as an HTTP app: SOAP
1.1 document/literal over HTTP, answering from the ledger.

- `GET <path>?wsdl` serves the WSDL with its soap:address set to where it listens, and
  `GET <path>?xsd=<file>` the schemas it imports; `GET /health` answers JSON.
- `POST <path>` takes CheckAvailability or ListSupportingDocuments, validates it strictly
  against the query schema and asks bridge.services.queries, which reads the ledger and the
  write-off rules' dry run; this module only translates between SOAP and the service. A request
  that breaks the contract gets a SOAP Client fault naming every problem; the service's own
  trouble a Server fault (Transient=true). A refused write-off is an answer, never a fault.
- Who may ask what is the access file's (--access-file, ELBRIDGE_QUERY_ACCESS_FILE;
  bridge.core.query_access): a caller is recognised by its client certificate or a
  WS-Security UsernameToken (password digest), and asks within its member states only; anyone
  else gets an AUTHENTICATION_FAILED or ACCESS_DENIED fault and nothing more. Every question,
  answered or refused, is written to the query audit before its answer goes out.

Run: `elbridge query-service serve`, `python -m bridge.entrypoints.query_service --ledger-url
URL [--tls-cert C --tls-key K [--client-ca CA]]`, or `start_query_service(workdir,
ledger_url)` for a subprocess in its own process group. Served by uvicorn
(bridge.adapters.http): HTTPS and client certificates as the flags or ELBRIDGE_HTTP_* say."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import NoReturn

from lxml import etree
from sqlalchemy import Engine

from bridge.adapters.http.request import RequestContext
from bridge.adapters.http.server import serve as serve_http
from bridge.adapters.soap import (
    QUERY_NAMESPACE,
    QUERY_SCHEMA_FILE,
    QUERY_WSDL_FILE,
    SOAP_ENV_NAMESPACE,
)
from bridge.adapters.soap.http_server import (
    SoapAnswer,
    SoapEndpoint,
    SoapFault,
    SoapOperation,
    SoapService,
)
from bridge.adapters.soap.server_process import ServerProcess, TlsTrust, start_server_process
from bridge.adapters.soap.wssecurity import AuthenticationFailed, UsernameTokenVerifier
from bridge.adapters.store.db import make_engine
from bridge.core.availability import Availability, AvailabilityRequest
from bridge.core.certificate import xsd_problems
from bridge.core.codes import normalise_eori
from bridge.core.documents import national_document_codes as national_document_codes_table
from bridge.core.errors import ConfigError, reasons
from bridge.core.model import ANNEX_I_LIST
from bridge.core.paths import SCHEMAS_DIR
from bridge.core.query_access import (
    AUTHENTICATION_FAILED,
    BY_CERTIFICATE,
    BY_TOKEN,
    NOT_AUTHENTICATED,
    Caller,
    QueryAuditEntry,
    Refusal,
    country_refusal,
    holder_refusal,
    identify,
    licence_refusal,
)
from bridge.core.supporting_documents import SupportingDocument
from bridge.core.xmlsafe import schema_from_file
from bridge.entrypoints.health_routes import with_health_routes
from bridge.entrypoints.http_serving import (
    ServingOptions,
    add_tls_arguments,
    serving_options,
    serving_options_from,
)
from bridge.services import queries
from bridge.services.config import load_settings
from bridge.services.query_access import QueryAccess, query_access

DEFAULT_PATH = "/certex-query"
MAX_REQUEST_BYTES = 256 * 1024  # a query is a few hundred bytes


def _q(name: str) -> str:
    return f"{{{QUERY_NAMESPACE}}}{name}"


# --------------------------------------------------------------------- reading requests


def _text(element: etree._Element, name: str) -> str | None:
    child = element.find(_q(name))
    return None if child is None or child.text is None else child.text.strip()


def _decimal(element: etree._Element | None) -> Decimal | None:
    if element is None:
        return None
    try:
        return Decimal((element.text or "").strip())
    except InvalidOperation:  # the schema rules this out
        raise SoapFault.client("INVALID_MESSAGE", f"{element.text!r} is not a decimal") from None


def availability_request(element: etree._Element) -> AvailabilityRequest:
    """A schema-valid CheckAvailability element as the core's request."""
    quantity = element.find(_q("Quantity"))
    amount = element.find(_q("Amount"))
    line = _text(element, "LineItemNumber")
    on_date = _text(element, "OnDate")
    return AvailabilityRequest(
        reference=_text(element, "Reference") or "",
        line_item_number=None if line is None else int(line),
        cn_code=_text(element, "CNCode"),
        control_list_entry=_text(element, "ControlListEntry"),
        quantity=_decimal(quantity),
        unit=None if quantity is None else quantity.get("unitCode"),
        amount=_decimal(amount),
        currency=None if amount is None else amount.get("currencyID"),
        on_date=None if on_date is None else date.fromisoformat(on_date[:10]),
        exporter_eori=_text(element, "ExporterEORI"),
        destination=_text(element, "Destination"),
        document_code=_text(element, "DocumentCode"),
        country=_text(element, "CustomsCountry"),
    )


# --------------------------------------------------------------------- writing answers


def _leaf(parent: etree._Element, name: str, text: object, **attributes: str) -> None:
    child = etree.SubElement(parent, _q(name), **attributes)
    child.text = text if isinstance(text, str) else _number(text)


def _number(value: object) -> str:
    # Fixed-point: "1.2E+2" is a valid Decimal but not a valid xs:decimal.
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def availability_answer(answer: Availability) -> etree._Element:
    """CheckAvailabilityResponse for the core's answer."""
    root = etree.Element(_q("CheckAvailabilityResponse"), nsmap={"q": QUERY_NAMESPACE})
    _leaf(root, "Reference", answer.licence_number)
    _leaf(root, "Available", "true" if answer.available else "false")
    if answer.code:
        _leaf(root, "Code", answer.code)
    _leaf(root, "Reason", answer.reason)
    for tag, findings in (("Refusal", answer.refusals), ("Warning", answer.warnings)):
        for finding in findings:
            element = etree.SubElement(root, _q(tag))
            _leaf(element, "Code", finding.code)
            _leaf(element, "Reason", finding.reason)
    if answer.line_number:  # an open licence's line 0 is the licence as a whole: no number
        _leaf(root, "LineItemNumber", answer.line_number)
    balance = answer.remaining
    if balance is not None and balance.quantity is not None and balance.unit:
        _leaf(root, "RemainingQuantity", balance.quantity, unitCode=balance.unit)
    if balance is not None and balance.value is not None and balance.currency:
        _leaf(root, "RemainingAmount", balance.value, currencyID=balance.currency)
    return root


def supporting_documents_answer(
    holder: str, on: date, documents: list[SupportingDocument]
) -> etree._Element:
    """ListSupportingDocumentsResponse for the core's listing."""
    root = etree.Element(_q("ListSupportingDocumentsResponse"), nsmap={"q": QUERY_NAMESPACE})
    _leaf(root, "HolderEORI", holder)
    _leaf(root, "OnDate", on.isoformat())
    cert = "{urn:elicensing-bridge:certex:certificate:1.0}"
    for document in documents:
        element = etree.SubElement(root, _q("SupportingDocument"))
        _leaf(element, "DocumentCode", document.document_code)
        _leaf(element, "Reference", document.reference)
        _leaf(element, "Version", document.version)
        _leaf(element, "Status", document.status)
        validity = etree.SubElement(element, _q("Validity"))
        etree.SubElement(validity, f"{cert}From").text = document.valid_from.isoformat()
        if document.valid_to is not None:
            etree.SubElement(validity, f"{cert}To").text = document.valid_to.isoformat()
        if document.general_authorisation:
            _leaf(element, "GeneralAuthorisation", document.general_authorisation)
        for line in document.lines:
            row = etree.SubElement(element, _q("Line"))
            _leaf(row, "LineItemNumber", line.line_number)
            # The list only when it is not the EU dual-use list, as on the certificate (1.3).
            listed = {} if line.control_list == ANNEX_I_LIST else {"list": line.control_list}
            _leaf(row, "ControlListEntry", line.control_list_entry, **listed)
            if line.cn_code:
                _leaf(row, "CNCode", line.cn_code)
            if line.authorised_quantity is not None:
                unit = {"unitCode": line.unit or ""}
                _leaf(row, "AuthorisedQuantity", line.authorised_quantity, **unit)
                _leaf(row, "WrittenOffQuantity", line.written_off_quantity, **unit)
                _leaf(row, "RemainingQuantity", line.remaining_quantity, **unit)
            elif line.unit:
                _leaf(row, "RecordedQuantity", line.written_off_quantity, unitCode=line.unit)
            if line.authorised_value is not None:
                currency = {"currencyID": line.currency or ""}
                _leaf(row, "AuthorisedAmount", line.authorised_value, **currency)
                _leaf(row, "WrittenOffAmount", line.written_off_value, **currency)
                _leaf(row, "RemainingAmount", line.remaining_value, **currency)
            elif line.currency:
                _leaf(row, "RecordedAmount", line.written_off_value, currencyID=line.currency)
    return root


# ------------------------------------------------------------------------------ service


@dataclass
class _Question:
    """One request as the audit records it, filled in as it is read: who asked, what about,
    and, when refused, the refusal with what only the audit may know."""

    caller: Caller
    operation: str = "unknown"
    holder_eori: str | None = None
    licence_number: str | None = None
    refusal: Refusal | None = None
    answered: str | None = None  # what the answer said, in short


class QueryApp:
    """The query service's SOAP operations on the ledger at `engine`: each request is
    authenticated and authorised as `access` says (bridge.services.query_access; anonymous
    when it has no policy), validated, answered from bridge.services.queries, and audited
    (table query_audit) before its answer is sent, answered or refused."""

    def __init__(
        self,
        engine: Engine,
        *,
        today: Callable[[], date] | None = None,
        national_document_codes: str = "",
        access: QueryAccess | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.today = today or (lambda: datetime.now(UTC).date())
        self.clock = clock or (lambda: datetime.now(UTC))
        # The deployment's national codes, read as the write-offs read them (Settings).
        self.national = national_document_codes_table(national_document_codes)
        self.access = access or QueryAccess(None)
        # Password digests only: the password itself never travels (docs/security.md).
        self.verifier = UsernameTokenVerifier(self.access.password, clock=self.clock)
        self._local = threading.local()

    def endpoint(self, *, max_bytes: int = MAX_REQUEST_BYTES) -> QueryEndpoint:
        """The SOAP endpoint answering CheckAvailability and ListSupportingDocuments."""
        return QueryEndpoint(self, max_bytes)

    def answer(
        self,
        body: bytes,
        soap_action: str | None = None,
        caller: RequestContext | None = None,
        *,
        max_bytes: int = MAX_REQUEST_BYTES,
    ) -> SoapAnswer:
        """The answer to one request body from `caller` (its connection: client certificate,
        address), audited."""
        caller = caller or RequestContext()
        question = self._question(caller)
        operations = {
            _q("CheckAvailability"): SoapOperation(partial(self.check_availability, question)),
            _q("ListSupportingDocuments"): SoapOperation(
                partial(self.list_supporting_documents, question)
            ),
        }
        endpoint = SoapEndpoint(
            operations,
            name="query-service",
            max_bytes=max_bytes,
            validate=partial(self.admit, question, caller),
        )
        return self._audited(question, endpoint.answer(body, soap_action, caller))

    def too_large(self, answer: SoapAnswer, caller: RequestContext | None = None) -> SoapAnswer:
        """`answer`, the refusal of a request too large to be read, once audited."""
        return self._audited(self._question(caller or RequestContext()), answer)

    @staticmethod
    def _question(caller: RequestContext) -> _Question:
        certificate = caller.peer_subject or ", ".join(caller.identities) or None
        how = BY_CERTIFICATE if certificate else NOT_AUTHENTICATED
        return _Question(Caller(None, how, certificate, caller.client_address))

    def _audited(self, question: _Question, answer: SoapAnswer) -> SoapAnswer:
        # No answer goes out unaudited: when the row cannot be written, a Server fault instead.
        fault = answer.fault
        if fault is None:
            outcome, code, reason = "answered", None, question.answered
        else:
            outcome = "failed" if fault.faultcode == "Server" else "refused"
            code = fault.code
            reason = question.refusal.recorded if question.refusal else fault.reason
        caller = question.caller
        entry = QueryAuditEntry(
            at=self.clock(),
            operation=question.operation,
            outcome=outcome,
            identity=None if caller.identity is None else caller.identity.name,
            authentication=caller.authentication,
            credential=caller.credential,
            client_address=caller.client_address,
            holder_eori=question.holder_eori,
            licence_number=question.licence_number,
            code=code,
            reason=reason,
        )
        try:
            queries.record_query(self.engine, entry)
        except Exception as error:
            print(f"query-service: the audit cannot be written: {error!r}", file=sys.stderr)
            unaudited = SoapFault(
                "Server", "INTERNAL_ERROR", "the query cannot be recorded now", transient=True
            )
            return SoapAnswer(500, unaudited.envelope(), unaudited)
        return answer

    # ----------------------------------------------------------------- who may ask what

    def admit(self, question: _Question, caller: RequestContext, payload: etree._Element) -> None:
        """Before a request is answered: note what it asks, authenticate and identify the
        caller (when the service has an access policy), and validate the request."""
        question.operation = etree.QName(payload).localname
        if question.operation == "CheckAvailability":
            question.licence_number = _text(payload, "Reference")
            question.holder_eori = _text(payload, "ExporterEORI")
        else:
            question.holder_eori = normalise_eori(_text(payload, "HolderEORI") or "") or None
        if self.access.policy is not None:
            self._identify(question, caller, payload)
        self.validate(payload)

    def _identify(
        self, question: _Question, caller: RequestContext, payload: etree._Element
    ) -> None:
        policy = self.access.policy
        assert policy is not None
        body = payload.getparent()
        envelope = None if body is None else body.getparent()
        header = None if envelope is None else envelope.find(f"{{{SOAP_ENV_NAMESPACE}}}Header")
        try:
            user = self.verifier.verify(header)
        except AuthenticationFailed as failed:
            question.caller = replace(
                question.caller, authentication=BY_TOKEN, credential=failed.username
            )
            detail = "" if failed.detail == failed.reason else failed.detail
            self._refuse(question, Refusal(AUTHENTICATION_FAILED, failed.reason, detail))
        if user is not None:
            question.caller = replace(
                question.caller, authentication=BY_TOKEN, credential=user.username
            )
        found = identify(
            policy,
            common_names=caller.peer_common_names,
            alt_names=caller.peer_san,
            token_username=None if user is None else user.username,
        )
        if isinstance(found, Refusal):
            self._refuse(question, found)
        question.caller = replace(question.caller, identity=found)

    @staticmethod
    def _refuse(question: _Question, refusal: Refusal) -> NoReturn:
        question.refusal = refusal
        raise SoapFault.client(refusal.code, refusal.reason)

    # ----------------------------------------------------------------------- operations

    def _schema(self) -> etree.XMLSchema:
        # An XMLSchema keeps its error log on itself: one per handler thread.
        schema = getattr(self._local, "schema", None)
        if schema is None:
            schema = schema_from_file(str(SCHEMAS_DIR / QUERY_SCHEMA_FILE))
            self._local.schema = schema
        return schema

    def validate(self, payload: etree._Element) -> None:
        """Refuse a request that breaks the query schema, naming every problem."""
        problems = xsd_problems(self._schema(), payload, etree.QName(payload).localname)
        if problems:
            raise SoapFault.client("INVALID_MESSAGE", reasons(problems))

    def check_availability(self, question: _Question, payload: etree._Element) -> etree._Element:
        request = availability_request(payload)
        identity = question.caller.identity
        if identity is not None:
            refusal = country_refusal(identity, request.country) or licence_refusal(
                identity, request.reference, queries.licence_issuer(self.engine, request.reference)
            )
            if refusal is not None:
                self._refuse(question, refusal)
        answer = queries.availability(self.engine, request, self.today(), national=self.national)
        question.answered = "available" if answer.available else f"not available: {answer.code}"
        return availability_answer(answer)

    def list_supporting_documents(
        self, question: _Question, payload: etree._Element
    ) -> etree._Element:
        on_date = _text(payload, "OnDate")
        on = date.fromisoformat(on_date[:10]) if on_date else self.today()
        holder = normalise_eori(_text(payload, "HolderEORI") or "")
        identity = question.caller.identity
        scope = None
        if identity is not None:
            refusal = holder_refusal(identity, holder)
            if refusal is not None:
                self._refuse(question, refusal)
            scope = identity.member_states
        documents = queries.usable_documents(self.engine, holder, on, issued_by=scope)
        question.answered = f"{len(documents)} supporting document(s) on {on.isoformat()}"
        return supporting_documents_answer(holder, on, documents)


class QueryEndpoint(SoapEndpoint):
    """The query service as the HTTP layer sees it: every answer, and every refusal of a
    request too large to read, goes through QueryApp and its audit."""

    def __init__(self, app: QueryApp, max_bytes: int) -> None:
        super().__init__({}, name="query-service", max_bytes=max_bytes)
        self.app = app

    def answer(
        self, body: bytes, soap_action: str | None = None, caller: RequestContext | None = None
    ) -> SoapAnswer:
        return self.app.answer(body, soap_action, caller, max_bytes=self.max_bytes)

    def too_large(self, size: int | None, limit: int | None = None) -> SoapAnswer:
        return self.app.too_large(super().too_large(size, limit))


# --------------------------------------------------------------------------------- HTTP


def query_server(
    engine: Engine,
    *,
    path: str = DEFAULT_PATH,
    national_document_codes: str = "",
    max_body_bytes: int | None = None,
    max_concurrency: int | None = None,
    access: QueryAccess | None = None,
) -> SoapService:
    """The ASGI app: the query service at `path`, its contract documents, and /health;
    answering as `access` says (None: anyone, see bridge.services.query_access)."""
    app = QueryApp(engine, national_document_codes=national_document_codes, access=access)
    limits = {"max_body_bytes": max_body_bytes, "max_concurrency": max_concurrency}
    service = SoapService(
        app.endpoint(),
        path=path,
        wsdl_file=QUERY_WSDL_FILE,
        **{name: value for name, value in limits.items() if value is not None},
    )
    service.add_json(
        "/health",
        get=lambda: {"status": "ok", "url": service.url, "pid": os.getpid()},
        admin=False,
    )
    return service


def serve_query_service(
    host: str,
    port: int,
    ledger_url: str,
    *,
    path: str = DEFAULT_PATH,
    ready_file: Path | None = None,
    national_document_codes: str | None = None,
    options: ServingOptions | None = None,
    access_file: str | Path | None = None,
    allow_anonymous: bool = False,
) -> None:
    """Serve the query service on the ledger at `ledger_url` until SIGTERM or Ctrl-C (requests
    in flight are answered first). `port` 0 picks a free port; the URL is printed, and written
    to `ready_file` (JSON) once requests are accepted. `options`: TLS and limits (default:
    from the ELBRIDGE_HTTP_* settings). National document codes: as given, else the settings'
    (ELBRIDGE_NATIONAL_DOCUMENT_CODES), the same the write-offs use. Who may ask what: the
    access file given, else ELBRIDGE_QUERY_ACCESS_FILE; without one, anyone, but only on a
    loopback address unless `allow_anonymous` (a ConfigError otherwise)."""
    settings = load_settings()
    if national_document_codes is None:
        national_document_codes = settings.national_document_codes
    options = options or serving_options(host, port, settings=settings)
    access = query_access(
        settings.query_access_file if access_file is None else access_file,
        options.http.host,
        allow_anonymous=allow_anonymous,
        tls=options.http.tls is not None,
    )
    if access.anonymous:
        print("query service: no access file: answering anyone (audited)", file=sys.stderr)
    engine = make_engine(ledger_url)
    service = query_server(
        engine,
        path=path,
        national_document_codes=national_document_codes,
        max_body_bytes=options.max_body_bytes,
        max_concurrency=options.max_concurrency,
        access=access,
    )
    serve_http(
        with_health_routes(service, settings, engine),  # /ready, /metrics: the ledger's
        options.http,
        banner="query service",
        ready_file=ready_file,
        on_close=engine.dispose,
    )


# --------------------------------------------------------------------------- subprocess


class QueryServiceProcess(ServerProcess):
    """A query service running as a subprocess in its own process group."""

    def health(self) -> dict:
        return self.json("/health")


def start_query_service(
    workdir: Path,
    ledger_url: str,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 30.0,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    client_ca: Path | None = None,
    trust: TlsTrust | None = None,
    arguments: list[str] | None = None,
    environment: dict[str, str] | None = None,
) -> QueryServiceProcess:
    """Start the query service as a subprocess (its own process group, log in `workdir`) on
    the ledger at `ledger_url`, and return once it answers. `port` None picks a free port.
    HTTPS with `tls_cert` and `tls_key`, client certificates required with `client_ca`;
    `trust` is how this process reaches it then (CA, client certificate). `arguments` and
    `environment` are added to the command line and the environment."""
    command = ["--host", host, "--port", str(port or 0), "--ledger-url", ledger_url]
    for flag, value in (
        ("--tls-cert", tls_cert),
        ("--tls-key", tls_key),
        ("--client-ca", client_ca),
    ):
        if value is not None:
            command += [flag, str(value)]
    started = start_server_process(
        "bridge.entrypoints.query_service",
        command + list(arguments or ()),
        workdir,
        what="the query service",
        health_path="/health",
        log_name="query-service",
        environment=environment,
        startup_timeout=startup_timeout,
        tls=trust,
    )
    return QueryServiceProcess(started.process, started.url, started.log_path, tls=trust)


def add_access_arguments(parser: argparse.ArgumentParser) -> None:
    """--access-file and --allow-anonymous (docs/security.md "Query service")."""
    parser.add_argument(
        "--access-file",
        help="who may ask what (TOML; default ELBRIDGE_QUERY_ACCESS_FILE)",
    )
    parser.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="without an access file, answer anyone even on a non-loopback address",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.entrypoints.query_service",
        description="The bridge's query service for customs (CheckAvailability,"
        " ListSupportingDocuments) over SOAP/HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument("--ledger-url", required=True, help="the ledger's database URL")
    parser.add_argument("--path", default=DEFAULT_PATH, help="where the service listens")
    add_tls_arguments(parser)
    add_access_arguments(parser)
    parser.add_argument("--ready-file", type=Path, help="write the URL here once serving")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        options = serving_options_from(args, verbose=args.verbose)
        serve_query_service(
            args.host,
            args.port,
            args.ledger_url,
            path=args.path,
            ready_file=args.ready_file,
            options=options,
            access_file=args.access_file,
            allow_anonymous=args.allow_anonymous,
        )
    except ConfigError as error:
        print(f"query service: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
