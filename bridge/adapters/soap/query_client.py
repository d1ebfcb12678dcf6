"""A client for the bridge's query service (schemas/certex-query-1.0.wsdl), as a customs
system uses it: zeep over requests, one client per service URL, built on first use and reused.
It only asks and reads the answers; what customs make of them is theirs
(bridge.entrypoints.customs_sim.release)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import requests
from zeep import Client, Transport
from zeep import Settings as ZeepSettings
from zeep import exceptions as zeep_errors
from zeep.wsse.username import UsernameToken

from bridge.adapters.soap import MESSAGES_NAMESPACE, QUERY_SERVICE_NAMESPACE, QUERY_WSDL_FILE
from bridge.adapters.soap.tls import ClientTls, tls_failure, tls_session
from bridge.core.errors import BridgeError, ConfigError
from bridge.core.model import ANNEX_I_LIST
from bridge.core.paths import SCHEMAS_DIR
from bridge.core.supporting_documents import SupportingDocument, SupportingLine

BINDING = f"{{{QUERY_SERVICE_NAMESPACE}}}CertexQueryBinding"


class QueryFailed(BridgeError):
    """The query service could not answer; `transient`: asking again later may help."""

    def __init__(self, reason: str, *, transient: bool, code: str = "query-failed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.code = code


@dataclass(frozen=True, slots=True)
class Finding:
    """One refusal or warning in an answer: its code and why."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class AvailabilityAnswer:
    """CheckAvailability's answer; `goods_item` and `document_code` say which declaration
    document it is about when it comes from `check_before_release`."""

    reference: str
    available: bool
    code: str | None
    reason: str
    refusals: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    line_item_number: int | None = None
    remaining_quantity: Decimal | None = None
    unit: str | None = None
    remaining_amount: Decimal | None = None
    currency: str | None = None
    goods_item: int | None = None
    document_code: str | None = None


class QueryClient:
    """Calls the query service at `url` (its SOAP endpoint). The zeep client and its HTTP
    session are built on first use and reused; one per thread.

    As whom: a WS-Security UsernameToken with a password digest (fresh nonce and Created per
    call) when `username` is given; a TLS client certificate `cert_file` with its `key_file`
    (PEM). Over https the server's certificate is checked against `ca_file` (PEM bundle),
    else the public authorities (bridge.adapters.soap.tls; its messages call the three
    QUERY_CLIENT_CA_FILE, QUERY_CLIENT_CERT_FILE, QUERY_CLIENT_KEY_FILE)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.username = username
        self._password = password
        self.tls = ClientTls(ca_file or "", cert_file or "", key_file or "", "QUERY_CLIENT")
        self._service = None
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the client's connections (it opens new ones if used again)."""
        with self._lock:
            if self._session is not None:
                self._session.close()
            self._service = self._session = None

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _proxy(self):
        with self._lock:
            if self._service is None:
                if self.url.lower().startswith("https:"):
                    self.tls.check(self.url)  # a ConfigError naming the file, before any call
                    session = tls_session(self.tls)
                else:
                    session = requests.Session()
                self._session = session
                transport = Transport(
                    session=session, timeout=self.timeout, operation_timeout=self.timeout
                )
                wsse = None
                if self.username:
                    wsse = UsernameToken(
                        self.username, self._password or "", use_digest=True, zulu_timestamp=True
                    )
                client = Client(
                    str(SCHEMAS_DIR / QUERY_WSDL_FILE),
                    transport=transport,
                    wsse=wsse,
                    settings=ZeepSettings(strict=True, forbid_dtd=True, forbid_entities=True),
                )
                self._service = client.create_service(BINDING, self.url)
            return self._service

    def _call(self, operation: str, **values):
        try:
            return getattr(self._proxy(), operation)(**values)
        except ConfigError as error:
            raise QueryFailed(str(error), transient=False, code="tls-failed") from None
        except requests.exceptions.RequestException as error:
            failure = tls_failure(error, self.url, self.tls)
            if failure is not None:  # a certificate, a key, a CA bundle: no retry mends it
                raise QueryFailed(str(failure), transient=False, code=failure.code) from None
            raise _exchange_failed(self.url, self.timeout, error) from None
        except zeep_errors.Fault as fault:
            raise _fault(fault) from None
        except zeep_errors.TransportError as error:
            status = error.status_code or 0
            raise QueryFailed(
                f"HTTP {status} from {self.url}", transient=status >= 500, code=f"http-{status}"
            ) from None
        except zeep_errors.Error as error:
            raise QueryFailed(
                f"the answer from {self.url} breaks the contract: {error}",
                transient=False,
                code="invalid-response",
            ) from None

    def check_availability(
        self,
        reference: str,
        *,
        line_item_number: int | None = None,
        cn_code: str | None = None,
        control_list_entry: str | None = None,
        quantity: Decimal | None = None,
        unit: str | None = None,
        amount: Decimal | None = None,
        currency: str | None = None,
        on_date: date | None = None,
        exporter_eori: str | None = None,
        destination: str | None = None,
        document_code: str | None = None,
        country: str | None = None,
    ) -> AvailabilityAnswer:
        """Whether the write-off described would be accepted now against licence `reference`,
        with the line's remaining balance and every reason when not. Raises QueryFailed."""
        values = {
            "Reference": reference,
            "DocumentCode": document_code,
            "LineItemNumber": line_item_number,
            "CNCode": cn_code,
            "ControlListEntry": control_list_entry,
            "OnDate": on_date,
            "ExporterEORI": exporter_eori,
            "Destination": destination,
            "CustomsCountry": country,
        }
        if quantity is not None:
            values["Quantity"] = {"_value_1": quantity, "unitCode": unit}
        if amount is not None:
            values["Amount"] = {"_value_1": amount, "currencyID": currency}
        reply = self._call(
            "CheckAvailability", **{k: v for k, v in values.items() if v is not None}
        )
        quantity = reply.RemainingQuantity
        amount = reply.RemainingAmount
        return AvailabilityAnswer(
            reference=reply.Reference,
            available=bool(reply.Available),
            code=reply.Code,
            reason=reply.Reason or "",
            refusals=tuple(Finding(r.Code, r.Reason) for r in reply.Refusal or ()),
            warnings=tuple(Finding(w.Code, w.Reason) for w in reply.Warning or ()),
            line_item_number=reply.LineItemNumber,
            remaining_quantity=None if quantity is None else quantity._value_1,
            unit=None if quantity is None else quantity.unitCode,
            remaining_amount=None if amount is None else amount._value_1,
            currency=None if amount is None else amount.currencyID,
        )

    def list_supporting_documents(
        self, holder_eori: str, on: date | None = None
    ) -> list[SupportingDocument]:
        """The licences the holder may use on `on` (default: the service's today), with every
        line's balance. Raises QueryFailed."""
        values = {"HolderEORI": holder_eori}
        if on is not None:
            values["OnDate"] = on
        reply = self._call("ListSupportingDocuments", **values)
        return [_document(element) for element in reply.SupportingDocument or ()]


def _fault(fault: zeep_errors.Fault) -> QueryFailed:
    detail = fault.detail
    certex = None if detail is None else detail.find(f"{{{MESSAGES_NAMESPACE}}}CertexFault")
    if certex is None:
        return QueryFailed(f"the query service answered a fault: {fault.message}", transient=False)
    code = certex.findtext(f"{{{MESSAGES_NAMESPACE}}}Code") or "UNKNOWN"
    reason = certex.findtext(f"{{{MESSAGES_NAMESPACE}}}Reason") or ""
    transient = (certex.findtext(f"{{{MESSAGES_NAMESPACE}}}Transient") or "") in ("true", "1")
    return QueryFailed(
        f"the query service answered {code}: {reason}",
        transient=transient,
        code=f"fault-{code.lower()}",
    )


def _measure(element) -> tuple[Decimal | None, str | None]:
    if element is None:
        return None, None
    return element._value_1, getattr(element, "unitCode", None) or getattr(
        element, "currencyID", None
    )


def _document(element) -> SupportingDocument:
    lines = []
    for line in element.Line:
        authorised_q, unit = _measure(line.AuthorisedQuantity)
        written_q, _ = _measure(line.WrittenOffQuantity)
        remaining_q, _ = _measure(line.RemainingQuantity)
        recorded_q, recorded_unit = _measure(line.RecordedQuantity)
        authorised_v, currency = _measure(line.AuthorisedAmount)
        written_v, _ = _measure(line.WrittenOffAmount)
        remaining_v, _ = _measure(line.RemainingAmount)
        recorded_v, recorded_currency = _measure(line.RecordedAmount)
        # Since 1.3 the entry may name its list (absent: the EU dual-use list).
        entry = line.ControlListEntry
        lines.append(
            SupportingLine(
                line_number=line.LineItemNumber,
                control_list_entry=getattr(entry, "_value_1", entry),
                control_list=getattr(entry, "list", None) or ANNEX_I_LIST,
                cn_code=line.CNCode,
                unit=unit or recorded_unit,
                authorised_quantity=authorised_q,
                written_off_quantity=written_q if written_q is not None else recorded_q or 0,
                remaining_quantity=remaining_q,
                currency=currency or recorded_currency,
                authorised_value=authorised_v,
                written_off_value=written_v if written_v is not None else recorded_v or 0,
                remaining_value=remaining_v,
            )
        )
    return SupportingDocument(
        document_code=element.DocumentCode,
        reference=element.Reference,
        version=int(element.Version),
        status=element.Status,
        valid_from=element.Validity.From,
        valid_to=element.Validity.To,
        general_authorisation=element.GeneralAuthorisation,
        lines=tuple(lines),
    )


def _exchange_failed(url: str, timeout: float, error: Exception) -> QueryFailed:
    if isinstance(error, requests.exceptions.Timeout):
        return QueryFailed(
            f"no answer from {url} within {timeout} s", transient=True, code="timeout"
        )
    return QueryFailed(
        f"no exchange with {url}: {str(error)[:200]}", transient=True, code="connection-failed"
    )


_clients: dict[tuple, QueryClient] = {}
_clients_lock = threading.Lock()


def query_client(url: str, **options) -> QueryClient:
    """The one client for `url` with these QueryClient `options` in this process (building a
    zeep client costs far more than a call)."""
    key = (url, tuple(sorted(options.items())))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = QueryClient(url, **options)
        return client
