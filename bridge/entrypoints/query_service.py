"""The bridge's query service for customs (schemas/certex-query-1.0.wsdl) as an HTTP app: SOAP
1.1 document/literal over HTTP, answering from the ledger.

- `GET <path>?wsdl` serves the WSDL with its soap:address set to where it listens, and
  `GET <path>?xsd=<file>` the schemas it imports; `GET /health` answers JSON.
- `POST <path>` takes CheckAvailability or ListSupportingDocuments, validates it strictly
  against the query schema and asks bridge.services.queries, which reads the ledger and the
  write-off rules' dry run; this module only translates between SOAP and the service. A request
  that breaks the contract gets a SOAP Client fault naming every problem; the service's own
  trouble a Server fault (Transient=true). A refused write-off is an answer, never a fault.

Run: `elbridge query-service serve`, `python -m bridge.entrypoints.query_service --ledger-url
URL`, or `start_query_service(workdir, ledger_url)` for a subprocess in its own process group."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from lxml import etree
from sqlalchemy import Engine

from bridge.adapters.soap import (
    CERTIFICATE_SCHEMA_FILE,
    MESSAGES_SCHEMA_FILE,
    QUERY_NAMESPACE,
    QUERY_SCHEMA_FILE,
    QUERY_WSDL_FILE,
)
from bridge.adapters.soap.http_server import (
    SoapEndpoint,
    SoapFault,
    SoapOperation,
    SoapServer,
    serve_until_stopped,
)
from bridge.adapters.soap.server_process import ServerProcess, start_server_process
from bridge.adapters.store.db import make_engine
from bridge.core.availability import Availability, AvailabilityRequest
from bridge.core.certificate import xsd_problems
from bridge.core.codes import normalise_eori
from bridge.core.documents import national_document_codes as national_document_codes_table
from bridge.core.errors import reasons
from bridge.core.model import ANNEX_I_LIST
from bridge.core.paths import SCHEMAS_DIR
from bridge.core.supporting_documents import SupportingDocument
from bridge.core.xmlsafe import schema_from_file
from bridge.services import queries
from bridge.services.config import load_settings

DEFAULT_PATH = "/certex-query"
MAX_REQUEST_BYTES = 256 * 1024  # a query is a few hundred bytes

_SCHEMA_FILES = (QUERY_SCHEMA_FILE, MESSAGES_SCHEMA_FILE, CERTIFICATE_SCHEMA_FILE)


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


class QueryApp:
    """The query service's SOAP operations on the ledger at `engine`: each validates its
    request, asks bridge.services.queries and writes the answer."""

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

    def endpoint(self, *, max_bytes: int = MAX_REQUEST_BYTES) -> SoapEndpoint:
        """The SOAP endpoint answering CheckAvailability and ListSupportingDocuments."""
        return SoapEndpoint(
            {
                _q("CheckAvailability"): SoapOperation(self.check_availability),
                _q("ListSupportingDocuments"): SoapOperation(self.list_supporting_documents),
            },
            name="query-service",
            max_bytes=max_bytes,
            validate=self.validate,
        )

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

    def check_availability(self, payload: etree._Element) -> etree._Element:
        request = availability_request(payload)
        answer = queries.availability(self.engine, request, self.today(), national=self.national)
        return availability_answer(answer)

    def list_supporting_documents(self, payload: etree._Element) -> etree._Element:
        on_date = _text(payload, "OnDate")
        on = date.fromisoformat(on_date[:10]) if on_date else self.today()
        holder = normalise_eori(_text(payload, "HolderEORI") or "")
        documents = queries.usable_documents(self.engine, holder, on)
        return supporting_documents_answer(holder, on, documents)


# --------------------------------------------------------------------------------- HTTP


def query_server(
    host: str,
    port: int,
    engine: Engine,
    *,
    path: str = DEFAULT_PATH,
    national_document_codes: str = "",
) -> SoapServer:
    """The HTTP server: the query service at `path`, its contract documents, and /health."""
    app = QueryApp(engine, national_document_codes=national_document_codes)
    server = SoapServer(
        host,
        port,
        app.endpoint(),
        path=path,
        wsdl_file=QUERY_WSDL_FILE,
        schema_files=_SCHEMA_FILES,
    )
    server.json_get["/health"] = lambda: {"status": "ok", "url": server.url, "pid": os.getpid()}
    return server


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
    server = query_server(
        host, port, engine, path=path, national_document_codes=national_document_codes
    )
    serve_until_stopped(
        server, banner="query service", ready_file=ready_file, on_close=engine.dispose
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
) -> QueryServiceProcess:
    """Start the query service as a subprocess (its own process group, log in `workdir`) on
    the ledger at `ledger_url`, and return once it answers. `port` None picks a free port."""
    arguments = ["--host", host, "--port", str(port or 0), "--ledger-url", ledger_url]
    started = start_server_process(
        "bridge.entrypoints.query_service",
        arguments,
        workdir,
        what="the query service",
        health_path="/health",
        log_name="query-service",
        startup_timeout=startup_timeout,
    )
    return QueryServiceProcess(started.process, started.url, started.log_path)


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
    parser.add_argument("--ready-file", type=Path, help="write the URL here once serving")
    args = parser.parse_args(argv)
    serve_query_service(
        args.host, args.port, args.ledger_url, path=args.path, ready_file=args.ready_file
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
