"""The bridge's query service for customs (schemas/certex-query-1.0.wsdl): a SOAP 1.1
document/literal server over HTTP, answering from the ledger.

- `GET <path>?wsdl` serves the WSDL with its soap:address set to where it listens, and
  `GET <path>?xsd=<file>` the schemas it imports; `GET /health` answers JSON.
- `POST <path>` takes CheckAvailability or ListSupportingDocuments, validates it strictly
  against the query schema, reads the ledger (one read-only connection per request) and
  answers. The decision comes from the pure core (`bridge.core.availability`, i.e. the write-off
  rules' dry run); balances from the one reconciliation query. A request that breaks the
  contract gets a SOAP Client fault naming every problem; the service's own trouble a Server
  fault (Transient=true). A refused write-off is an answer, never a fault.

Run: `elbridge query-service serve`, `python -m bridge.adapters.soap.query_service --ledger-url
URL`,
or `start_query_service(workdir, ledger_url)` for a subprocess in its own process group."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lxml import etree
from sqlalchemy import Engine

from bridge.adapters.soap import MESSAGES_SCHEMA_FILE, SOAP_ENV_NAMESPACE
from bridge.adapters.soap.simulator import fault_envelope
from bridge.adapters.store.db import make_engine
from bridge.adapters.store.ledger import known_to_customs
from bridge.adapters.store.licence_events import licence_numbers_of_holder
from bridge.adapters.store.licences import load_licences
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.core.availability import (
    Availability,
    AvailabilityRequest,
    SupportingDocument,
    check_availability,
    line_totals_from,
    supporting_documents,
)
from bridge.core.certificate import xsd_problems
from bridge.core.codes import normalise_eori
from bridge.core.documents import national_document_codes as national_document_codes_table
from bridge.core.errors import XmlRefused, reasons
from bridge.core.paths import PROJECT_ROOT, SCHEMAS_DIR
from bridge.core.xmlsafe import parse_project_file, parse_xml, schema_from_file
from bridge.services.config import load_settings

QUERY_NAMESPACE = "urn:elicensing-bridge:certex:query:1.0"
QUERY_SERVICE_NAMESPACE = "urn:elicensing-bridge:certex:query-service:1.0"
QUERY_WSDL_FILE = "certex-query-1.0.wsdl"
QUERY_SCHEMA_FILE = "certex-query-1.0.xsd"
CERTIFICATE_SCHEMA_FILE = "certex-certificate-1.0.xsd"
DEFAULT_PATH = "/certex-query"
MAX_REQUEST_BYTES = 256 * 1024  # a query is a few hundred bytes

_SCHEMA_FILES = (QUERY_SCHEMA_FILE, MESSAGES_SCHEMA_FILE, CERTIFICATE_SCHEMA_FILE)
_XSD_NS = "http://www.w3.org/2001/XMLSchema"
_WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
_OPERATIONS = ("CheckAvailability", "ListSupportingDocuments")


def _q(name: str) -> str:
    return f"{{{QUERY_NAMESPACE}}}{name}"


def _env(name: str) -> str:
    return f"{{{SOAP_ENV_NAMESPACE}}}{name}"


class _Fault(Exception):
    def __init__(self, faultcode: str, code: str, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.faultcode, self.code, self.reason, self.transient = faultcode, code, reason, transient

    @classmethod
    def client(cls, code: str, reason: str) -> _Fault:
        return cls("Client", code, reason, transient=False)


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
        raise _Fault.client("INVALID_MESSAGE", f"{element.text!r} is not a decimal") from None


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
    if answer.line_number is not None:
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
            _leaf(row, "ControlListEntry", line.control_list_entry)
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


def _envelope(payload: etree._Element) -> bytes:
    envelope = etree.Element(_env("Envelope"), nsmap={"soap-env": SOAP_ENV_NAMESPACE})
    etree.SubElement(envelope, _env("Body")).append(payload)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


# ------------------------------------------------------------------------------ service


class QueryService:
    """What the query service does with one SOAP request body, apart from HTTP."""

    def __init__(
        self,
        engine: Engine,
        *,
        today: Callable[[], date] | None = None,
        national_document_codes: str = "",
    ) -> None:
        self.engine = engine
        self.today = today or (lambda: datetime.now(UTC).date())
        # The deployment's national codes, read as the write-offs read them (Settings).
        self.national = national_document_codes_table(national_document_codes)
        self._local = threading.local()

    def _schema(self) -> etree.XMLSchema:
        # An XMLSchema keeps its error log on itself: one per handler thread.
        schema = getattr(self._local, "schema", None)
        if schema is None:
            schema = schema_from_file(str(SCHEMAS_DIR / QUERY_SCHEMA_FILE))
            self._local.schema = schema
        return schema

    def answer(self, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, SOAP envelope) for one request body."""
        try:
            return 200, _envelope(self._answer(body))
        except _Fault as fault:
            return 500, fault_envelope(
                fault.faultcode, fault.code, fault.reason, transient=fault.transient
            )
        except Exception as error:  # its own trouble, not the caller's: worth asking again
            print(f"query-service: internal error: {error!r}", file=sys.stderr, flush=True)
            return 500, fault_envelope(
                "Server", "INTERNAL_ERROR", f"internal error: {error}", transient=True
            )

    def _answer(self, body: bytes) -> etree._Element:
        try:
            envelope = parse_xml(body, max_bytes=MAX_REQUEST_BYTES, what="the SOAP request")
        except XmlRefused as refused:
            raise _Fault.client("INVALID_MESSAGE", str(refused)) from None
        if envelope.tag != _env("Envelope"):
            raise _Fault.client("INVALID_MESSAGE", "the request is not a SOAP 1.1 envelope")
        body_element = envelope.find(_env("Body"))
        payload = None
        if body_element is not None:
            payload = next(body_element.iterchildren(etree.Element), None)
        name = None if payload is None else etree.QName(payload).localname
        if payload is None or payload.tag not in {_q(op) for op in _OPERATIONS}:
            raise _Fault.client(
                "UNKNOWN_OPERATION",
                f"the SOAP body holds {name or 'nothing'}; expected {' or '.join(_OPERATIONS)}",
            )
        problems = xsd_problems(self._schema(), payload, name)
        if problems:
            raise _Fault.client("INVALID_MESSAGE", reasons(problems))
        if name == "CheckAvailability":
            return self.check_availability(availability_request(payload))
        on_date = _text(payload, "OnDate")
        on = date.fromisoformat(on_date[:10]) if on_date else self.today()
        return self.list_supporting_documents(_text(payload, "HolderEORI") or "", on)

    def check_availability(self, request: AvailabilityRequest) -> etree._Element:
        number = request.reference
        with self.engine.connect() as conn:
            licence = load_licences(conn, [number]).get(number)
            rows = reconciliation_rows(conn, number) if licence is not None else []
            known = number in known_to_customs(conn, [number])
        answer = check_availability(
            licence,
            line_totals_from(rows),
            request,
            self.today(),
            known_to_customs=known,
            national=self.national,
        )
        return availability_answer(answer)

    def list_supporting_documents(self, holder: str, on: date) -> etree._Element:
        eori = normalise_eori(holder)
        with self.engine.connect() as conn:
            numbers = licence_numbers_of_holder(conn, eori)
            licences = load_licences(conn, numbers)
            rows = {number: reconciliation_rows(conn, number) for number in licences}
            known = known_to_customs(conn, numbers)
        documents = supporting_documents(licences.values(), rows, known, on)
        return supporting_documents_answer(eori, on, documents)


# --------------------------------------------------------------------------------- HTTP


def _served_documents(url: str) -> tuple[bytes, dict[str, bytes]]:
    """The WSDL with its real address, and the schemas with imports pointing back here."""

    def rewritten(name: str) -> bytes:
        tree = parse_project_file(SCHEMAS_DIR / name)
        for element in tree.iter(f"{{{_XSD_NS}}}import", f"{{{_XSD_NS}}}include"):
            location = element.get("schemaLocation")
            if location in _SCHEMA_FILES:
                element.set("schemaLocation", f"{url}?xsd={location}")
        for address in tree.iter(f"{{{_WSDL_SOAP_NS}}}address"):
            address.set("location", url)
        return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")

    return rewritten(QUERY_WSDL_FILE), {name: rewritten(name) for name in _SCHEMA_FILES}


class QueryServer(ThreadingHTTPServer):
    """The HTTP server: SOAP at `path`, the contract documents, and /health."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        host: str,
        port: int,
        engine: Engine,
        *,
        path: str = DEFAULT_PATH,
        national_document_codes: str = "",
    ) -> None:
        super().__init__((host, port), _Handler)
        self.service_path = path
        self.service = QueryService(engine, national_document_codes=national_document_codes)
        bound_host, bound_port = self.server_address[:2]
        self.url = f"http://{bound_host}:{bound_port}{path}"
        self.wsdl, self.schemas = _served_documents(self.url)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a reused client pays no TCP handshake
    server_version = "elbridge-query/1.0"
    server: QueryServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        server = self.server
        if url.path == server.service_path and "wsdl" in {key.lower() for key in query}:
            self._send(200, server.wsdl, "text/xml; charset=utf-8")
        elif url.path == server.service_path and "xsd" in query:
            document = server.schemas.get(query["xsd"][0])
            if document is None:
                self._send(404, b"no such schema\n", "text/plain; charset=utf-8")
            else:
                self._send(200, document, "text/xml; charset=utf-8")
        elif url.path == "/health":
            body = json.dumps({"status": "ok", "url": server.url, "pid": os.getpid()})
            self._send(200, body.encode(), "application/json")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        if urlsplit(self.path).path != self.server.service_path:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self.close_connection = True
            self._send(411, b"Content-Length required\n", "text/plain; charset=utf-8")
            return
        size = int(length)
        if size > MAX_REQUEST_BYTES:
            self.close_connection = True
            fault = fault_envelope(
                "Client",
                "MESSAGE_TOO_LARGE",
                f"the request is {size} bytes; at most {MAX_REQUEST_BYTES} are accepted",
                transient=False,
            )
            self._send(500, fault, "text/xml; charset=utf-8")
            return
        status, envelope = self.server.service.answer(self.rfile.read(size))
        self._send(status, envelope, "text/xml; charset=utf-8")


def serve_query_service(
    host: str,
    port: int,
    ledger_url: str,
    *,
    path: str = DEFAULT_PATH,
    ready_file: Path | None = None,
    national_document_codes: str | None = None,
) -> None:
    """Serve the query service on the ledger at `ledger_url` until interrupted (Ctrl-C or
    SIGTERM). `port` 0 picks a free port; the URL is printed, and written to `ready_file`
    (JSON) once requests are accepted. National document codes: as given, else the
    settings' (ELBRIDGE_NATIONAL_DOCUMENT_CODES), the same the write-offs use."""
    if national_document_codes is None:
        national_document_codes = load_settings().national_document_codes
    engine = make_engine(ledger_url)
    server = QueryServer(
        host, port, engine, path=path, national_document_codes=national_document_codes
    )

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        print(f"query service listening on {server.url}", flush=True)
        if ready_file is not None:
            partial = Path(f"{ready_file}.partial")
            partial.write_text(json.dumps({"url": server.url, "pid": os.getpid()}))
            partial.replace(ready_file)
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.dispose()


# --------------------------------------------------------------------------- subprocess


class QueryServiceProcess:
    """A query service running as a subprocess in its own process group."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    @property
    def wsdl_url(self) -> str:
        return f"{self.url}?wsdl"

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/health", timeout=10) as answer:
            return json.load(answer)

    def stop(self) -> None:
        """Stop the whole process group and wait for it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def __enter__(self) -> QueryServiceProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_query_service(
    workdir: Path,
    ledger_url: str,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 30.0,
) -> QueryServiceProcess:
    """Start the query service as a subprocess (its own process group, log in `workdir`) on
    the ledger at `ledger_url`, and return once it answers. `port` None picks a free port."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / f"query-service-{uuid.uuid4().hex[:8]}.ready"
    log_path = workdir / "query-service.log"
    command = [
        sys.executable,
        "-m",
        "bridge.adapters.soap.query_service",
        "--host",
        host,
        "--port",
        str(port or 0),
        "--ledger-url",
        ledger_url,
        "--ready-file",
        str(ready),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if part
    )
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=str(workdir),
        )
    service = None
    deadline = time.monotonic() + startup_timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the query service exited with {process.returncode}:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            if service is None and ready.exists():
                service = QueryServiceProcess(
                    process, json.loads(ready.read_text())["url"], log_path
                )
            if service is not None:
                with contextlib.suppress(OSError, urllib.error.URLError):
                    if service.health().get("status") == "ok":
                        ready.unlink(missing_ok=True)
                        return service
            time.sleep(0.05)
        raise RuntimeError(f"the query service did not answer within {startup_timeout} s")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.adapters.soap.query_service",
        description="The bridge's query service for customs (CheckAvailability,"
        " ListSupportingDocuments) over SOAP/HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument("--ledger-url", required=True, help="the ledger's database URL")
    parser.add_argument("--path", default=DEFAULT_PATH, help="where the service listens")
    parser.add_argument("--ready-file", type=Path, help="write the URL here once serving")
    args = parser.parse_args(argv)
    serve_query_service(
        args.host, args.port, args.ledger_url, path=args.path, ready_file=args.ready_file
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
