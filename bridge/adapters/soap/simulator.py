"""The customs single window simulator: a real SOAP 1.1 server over HTTP for the certificate
service (schemas/certex-service-1.0.wsdl), with its own SQLite store and fault injection.

It plays the customs side in tests and the demo:

- `GET <path>?wsdl` serves the WSDL with its soap:address set to where it listens, and
  `GET <path>?xsd=<file>` the schemas the WSDL imports.
- `POST <path>` takes a SubmitCertificate request, validates the payload strictly against the
  messages schema (which validates the certificate too), stores the certificate once per
  MessageId and answers ACCEPTED, or DUPLICATE with the first receipt for a resend. Anything
  invalid is answered with a SOAP Client fault naming every problem (Transient=false); its own
  trouble with a Server fault (Transient=true).
- Faults on demand: HTTP 503, a transient SOAP fault, an answer held back beyond the client's
  timeout (the certificate is stored, the answer comes too late: the resend must be a
  DUPLICATE), a dropped connection; on request also a gateway's HTTP 502 page and a connection
  dropped after the certificate was stored (the resend must be a DUPLICATE). Planned at start
  (flags or ELBRIDGE_SIM_FAULTS as JSON) and through `POST /admin/faults`
  `{"rate": 0.3, "kinds": ["http503", "drop"], "next": 2}`: the next N requests get the kinds
  in turn, after that each request one at random with probability `rate`.
- `POST <path>` with an UpdateCertificateStatus (contract 1.1): validated the same way, stored
  once per MessageId (DUPLICATE on a resend); a status update for a certificate version not
  held is answered UNKNOWN_CERTIFICATE (Transient=true).
- `GET /admin/received`, `/admin/statuses`, `/admin/stats`, `/admin/faults`, `/admin/health`
  as JSON.

Run: `python -m bridge.adapters.soap.simulator --host 127.0.0.1 --port 8088 --store received.db`, or
`start_simulator(workdir)` for a subprocess in its own process group."""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from bridge.adapters.soap import (
    MESSAGES_NAMESPACE,
    MESSAGES_SCHEMA_FILE,
    SOAP_ENV_NAMESPACE,
    SUBMIT_CERTIFICATE_ACTION,
    UPDATE_CERTIFICATE_STATUS_ACTION,
    WSDL_FILE,
)
from bridge.core.certificate import NAMESPACE as CERTIFICATE_NAMESPACE
from bridge.core.certificate import SCHEMA_FILE as CERTIFICATE_SCHEMA_FILE
from bridge.core.certificate import (
    StatusUpdate,
    licence_from_certificate_element,
    status_update_from_element,
    xsd_problems,
)
from bridge.core.errors import Rejected, XmlRefused, reasons
from bridge.core.paths import PROJECT_ROOT, SCHEMAS_DIR
from bridge.core.xmlsafe import DEFAULT_MAX_BYTES, parse_project_file, parse_xml, schema_from_file

FAULT_KINDS = ("http503", "transient_fault", "timeout", "drop")  # the default mix
# Known too, used only when asked for: a reverse proxy's HTML 502 page, and a connection that
# drops after the certificate was stored (the bridge never hears the answer).
EXTRA_FAULT_KINDS = ("http502", "drop_after_store")
KNOWN_FAULT_KINDS = FAULT_KINDS + EXTRA_FAULT_KINDS
_BAD_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
FAULTS_ENV = "ELBRIDGE_SIM_FAULTS"
DEFAULT_PATH = "/certex"

_WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
_WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
_XSD_NS = "http://www.w3.org/2001/XMLSchema"
_WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_TOKEN_WINDOW = timedelta(minutes=5)  # how far a UsernameToken's Created may be from now
_SCHEMA_FILES = (MESSAGES_SCHEMA_FILE, CERTIFICATE_SCHEMA_FILE)


_OPERATIONS = {
    f"{{{MESSAGES_NAMESPACE}}}SubmitCertificate": (
        "SubmitCertificate",
        SUBMIT_CERTIFICATE_ACTION,
    ),
    f"{{{MESSAGES_NAMESPACE}}}UpdateCertificateStatus": (
        "UpdateCertificateStatus",
        UPDATE_CERTIFICATE_STATUS_ACTION,
    ),
}


def _env(name: str) -> str:
    return f"{{{SOAP_ENV_NAMESPACE}}}{name}"


def _msg(name: str) -> str:
    return f"{{{MESSAGES_NAMESPACE}}}{name}"


# ------------------------------------------------------------------------------ fault plan


@dataclass(frozen=True)
class FaultPlan:
    """Which requests get which fault: the `next` N requests one each, kinds in turn; after
    that each request with probability `rate`, kind at random. `slow_seconds` is how long a
    "timeout" answer is held back; `seed` makes the random draws repeatable."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    next: int = 0
    slow_seconds: float = 5.0
    seed: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        """A plan from JSON-like data; ValueError naming every bad field."""
        unknown = set(data) - {"rate", "kinds", "next", "slow_seconds", "seed"}
        problems = [f"unknown field {name!r}" for name in sorted(unknown)]
        rate = data.get("rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            problems.append("rate must be a number from 0 to 1")
        kinds = data.get("kinds", FAULT_KINDS)
        if isinstance(kinds, str):
            kinds = [kind.strip() for kind in kinds.split(",") if kind.strip()]
        if not isinstance(kinds, list | tuple) or not kinds:
            problems.append(f"kinds must be a non-empty list of {', '.join(KNOWN_FAULT_KINDS)}")
            kinds = FAULT_KINDS
        bad = [kind for kind in kinds if kind not in KNOWN_FAULT_KINDS]
        if bad:
            problems.append(f"unknown fault kinds {bad}; known: {', '.join(KNOWN_FAULT_KINDS)}")
        upcoming = data.get("next", 0)
        if isinstance(upcoming, bool) or not isinstance(upcoming, int) or upcoming < 0:
            problems.append("next must be a whole number from 0")
        slow = data.get("slow_seconds", 5.0)
        if isinstance(slow, bool) or not isinstance(slow, int | float) or slow < 0:
            problems.append("slow_seconds must be a number from 0")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            problems.append("seed must be a whole number")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(float(rate), tuple(kinds), upcoming, float(slow), seed)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        return data


def fault_plan_from_env() -> FaultPlan:
    """The plan in ELBRIDGE_SIM_FAULTS (JSON), or no faults."""
    raw = os.environ.get(FAULTS_ENV, "").strip()
    return FaultPlan.from_dict(json.loads(raw)) if raw else FaultPlan()


class _Faults:
    """The live plan: thread-safe draws, and what was injected."""

    def __init__(self, plan: FaultPlan) -> None:
        self._lock = threading.Lock()
        self.set(plan)

    def set(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan
            self._remaining = plan.next
            self._turn = 0
            self._random = random.Random(plan.seed)

    def draw(self) -> str | None:
        with self._lock:
            plan = self.plan
            if self._remaining > 0:
                self._remaining -= 1
                kind = plan.kinds[self._turn % len(plan.kinds)]
                self._turn += 1
                return kind
            if plan.rate and self._random.random() < plan.rate:
                return self._random.choice(plan.kinds)
            return None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {**self.plan.as_dict(), "remaining": self._remaining}


# ---------------------------------------------------------------------------------- store


@dataclass(frozen=True)
class Receipt:
    status: str  # ACCEPTED | DUPLICATE
    receipt_id: str
    received_at: str


class _Refusal(Exception):
    """A request answered with a SOAP fault."""

    def __init__(self, faultcode: str, code: str, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.faultcode = faultcode
        self.code = code
        self.reason = reason
        self.transient = transient

    @classmethod
    def client(cls, code: str, reason: str) -> _Refusal:
        return cls("Client", code, reason, transient=False)


class ReceivedStore:
    """The customs side's own record of certificates received (not the bridge's ledger)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS received_certificate ("
            " message_id TEXT PRIMARY KEY,"
            " reference TEXT NOT NULL,"
            " version INTEGER NOT NULL,"
            " document TEXT NOT NULL,"
            " sender TEXT NOT NULL,"
            " sent_at TEXT NOT NULL,"
            " received_at TEXT NOT NULL,"
            " receipt_id TEXT NOT NULL UNIQUE)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS received_status ("
            " message_id TEXT PRIMARY KEY,"
            " reference TEXT NOT NULL,"
            " version INTEGER NOT NULL,"
            " sequence INTEGER NOT NULL,"
            " status TEXT NOT NULL,"
            " reason TEXT NOT NULL,"
            " effective_at TEXT NOT NULL,"
            " document TEXT NOT NULL,"
            " sender TEXT NOT NULL,"
            " sent_at TEXT NOT NULL,"
            " received_at TEXT NOT NULL,"
            " receipt_id TEXT NOT NULL UNIQUE)"
        )

    def record(
        self,
        message_id: str,
        reference: str,
        version: int,
        document: str,
        sender: str,
        sent_at: str,
    ) -> Receipt:
        """Store a certificate once per message id; a resend gets the first receipt."""
        with self._lock:
            row = self._db.execute(
                "SELECT document, receipt_id, received_at FROM received_certificate"
                " WHERE message_id = ?",
                (message_id,),
            ).fetchone()
            if row is not None:
                if row[0] != document:
                    raise _Refusal.client(
                        "MESSAGE_ID_REUSED",
                        f"message {message_id} was already received with a different"
                        f" certificate (receipt {row[1]}); a new certificate needs a new"
                        " MessageId",
                    )
                return Receipt("DUPLICATE", row[1], row[2])
            receipt_id = f"CSW-{uuid.uuid4().hex[:20].upper()}"
            received_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            self._db.execute(
                "INSERT INTO received_certificate VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    reference,
                    version,
                    document,
                    sender,
                    sent_at,
                    received_at,
                    receipt_id,
                ),
            )
            return Receipt("ACCEPTED", receipt_id, received_at)

    def record_status(
        self, message_id: str, update: StatusUpdate, document: str, sender: str, sent_at: str
    ) -> Receipt:
        """Store a status update once per message id (a resend gets the first receipt); one
        for a certificate version not held is refused as UNKNOWN_CERTIFICATE (transient: the
        certificate may still be on its way)."""
        with self._lock:
            row = self._db.execute(
                "SELECT document, receipt_id, received_at FROM received_status"
                " WHERE message_id = ?",
                (message_id,),
            ).fetchone()
            if row is not None:
                if row[0] != document:
                    raise _Refusal.client(
                        "MESSAGE_ID_REUSED",
                        f"message {message_id} was already received with a different status"
                        f" update (receipt {row[1]}); a new update needs a new MessageId",
                    )
                return Receipt("DUPLICATE", row[1], row[2])
            held = self._db.execute(
                "SELECT 1 FROM received_certificate WHERE reference = ? AND version = ?",
                (update.reference, update.version),
            ).fetchone()
            if held is None:
                raise _Refusal(
                    "Client",
                    "UNKNOWN_CERTIFICATE",
                    f"no certificate {update.reference} version {update.version} is held; send"
                    " its certificate first, then this update again",
                    transient=True,
                )
            receipt_id = f"CSW-{uuid.uuid4().hex[:20].upper()}"
            received_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            self._db.execute(
                "INSERT INTO received_status VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    update.reference,
                    update.version,
                    update.sequence,
                    update.status.value,
                    update.reason,
                    update.effective_at.isoformat(),
                    document,
                    sender,
                    sent_at,
                    received_at,
                    receipt_id,
                ),
            )
            return Receipt("ACCEPTED", receipt_id, received_at)

    def statuses(self) -> list[dict[str, Any]]:
        """Every status update stored, in the order received."""
        with self._lock:
            cursor = self._db.execute(
                "SELECT message_id, reference, version, sequence, status, reason, effective_at,"
                " document, sender, sent_at, received_at, receipt_id FROM received_status"
                " ORDER BY rowid"
            )
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(
                "SELECT message_id, reference, version, document, sender, sent_at, received_at,"
                " receipt_id FROM received_certificate ORDER BY received_at, rowid"
            )
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -------------------------------------------------------------------------------- service


def _envelope(payload: etree._Element) -> bytes:
    envelope = etree.Element(_env("Envelope"), nsmap={"soap-env": SOAP_ENV_NAMESPACE})
    etree.SubElement(envelope, _env("Body")).append(payload)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _leaf(parent: etree._Element, tag: str, text: str) -> None:
    etree.SubElement(parent, tag).text = text


def fault_envelope(faultcode: str, code: str, reason: str, *, transient: bool) -> bytes:
    """A SOAP 1.1 fault whose detail is a CertexFault."""
    fault = etree.Element(_env("Fault"), nsmap={"soap-env": SOAP_ENV_NAMESPACE})
    _leaf(fault, "faultcode", f"soap-env:{faultcode}")
    _leaf(fault, "faultstring", f"{code}: {reason}")
    detail = etree.SubElement(fault, "detail")
    certex = etree.SubElement(detail, _msg("CertexFault"), nsmap={"m": MESSAGES_NAMESPACE})
    _leaf(certex, _msg("Code"), code)
    _leaf(certex, _msg("Reason"), reason)
    _leaf(certex, _msg("Transient"), "true" if transient else "false")
    return _envelope(fault)


def _acknowledgement(
    message_id: str, receipt: Receipt, element: str = "SubmitCertificateResponse"
) -> bytes:
    answer = etree.Element(_msg(element), nsmap={"m": MESSAGES_NAMESPACE})
    _leaf(answer, _msg("MessageId"), message_id)
    _leaf(answer, _msg("Status"), receipt.status)
    _leaf(answer, _msg("ReceiptId"), receipt.receipt_id)
    _leaf(answer, _msg("ReceivedAt"), receipt.received_at)
    return _envelope(answer)


class CustomsService:
    """What the customs single window does with one SOAP request, apart from HTTP."""

    def __init__(
        self,
        store: ReceivedStore,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.credentials = credentials
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._local = threading.local()
        self._nonces: dict[str, datetime] = {}
        self._nonces_lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._counts_lock:
            self.counts[what] += 1

    def counts_now(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self.counts)

    def _schema(self) -> etree.XMLSchema:
        # An XMLSchema keeps its error log on itself: one per handler thread.
        schema = getattr(self._local, "schema", None)
        if schema is None:
            schema = schema_from_file(str(SCHEMAS_DIR / MESSAGES_SCHEMA_FILE))
            self._local.schema = schema
        return schema

    def answer(self, body: bytes, soap_action: str | None = None) -> tuple[int, bytes]:
        """(HTTP status, SOAP envelope) for one request body."""
        try:
            answer = self._submit(body, soap_action)
        except _Refusal as refusal:
            self.count("refused" if refusal.faultcode != "Server" else "server_faults")
            return 500, fault_envelope(
                refusal.faultcode, refusal.code, refusal.reason, transient=refusal.transient
            )
        except Exception as error:  # its own trouble, not the sender's: worth a retry
            self.count("server_faults")
            print(f"customs-sim: internal error: {error!r}", file=sys.stderr, flush=True)
            return 500, fault_envelope(
                "Server", "INTERNAL_ERROR", f"internal error: {error}", transient=True
            )
        return 200, answer

    def _submit(self, body: bytes, soap_action: str | None) -> bytes:
        try:
            envelope = parse_xml(body, max_bytes=self.max_bytes, what="the SOAP request")
        except XmlRefused as refused:
            raise _Refusal.client("INVALID_MESSAGE", str(refused)) from None
        if envelope.tag != _env("Envelope"):
            if etree.QName(envelope).localname == "Envelope":
                raise _Refusal(
                    "VersionMismatch",
                    "INVALID_MESSAGE",
                    f"only SOAP 1.1 envelopes ({SOAP_ENV_NAMESPACE}) are accepted",
                    transient=False,
                )
            raise _Refusal.client("INVALID_MESSAGE", "the request is not a SOAP envelope")
        if self.credentials is not None:
            self._authenticate(envelope.find(_env("Header")))
        body_element = envelope.find(_env("Body"))
        payload = None
        if body_element is not None:
            payload = next(body_element.iterchildren(etree.Element), None)
        operation = None if payload is None else _OPERATIONS.get(payload.tag)
        if operation is None:
            found = "nothing" if payload is None else etree.QName(payload).localname
            raise _Refusal.client(
                "UNKNOWN_OPERATION",
                f"the SOAP body holds {found}; expected SubmitCertificate or"
                " UpdateCertificateStatus",
            )
        name, expected_action = operation
        action = (soap_action or "").strip().strip('"')
        if action and action != expected_action:
            raise _Refusal.client(
                "UNKNOWN_OPERATION",
                f"SOAPAction {action} does not match {name} ({expected_action})",
            )
        problems = xsd_problems(self._schema(), payload, name)
        if problems:
            raise _Refusal.client("INVALID_MESSAGE", reasons(problems))
        message_id = payload.findtext(_msg("MessageId")) or ""
        if name == "UpdateCertificateStatus":
            return self._update_status(payload, message_id)
        certificate = payload.find(f"{{{CERTIFICATE_NAMESPACE}}}Certificate")
        try:
            licence = licence_from_certificate_element(
                certificate, source=f"certificate in message {message_id}"
            )
        except Rejected as refused:
            raise _Refusal.client("INVALID_MESSAGE", reasons(refused.problems)) from None
        # Exclusive C14N: the same bytes the bridge built, whatever envelope carried them.
        document = etree.tostring(certificate, method="c14n", exclusive=True).decode("utf-8")
        receipt = self.store.record(
            message_id,
            licence.number,
            licence.version,
            document,
            payload.findtext(_msg("Sender")) or "",
            payload.findtext(_msg("SentAt")) or "",
        )
        self.count(receipt.status.lower())
        return _acknowledgement(message_id, receipt)

    def _update_status(self, payload: etree._Element, message_id: str) -> bytes:
        element = payload.find(f"{{{CERTIFICATE_NAMESPACE}}}CertificateStatus")
        if element is None:  # the XSD admits any certificate-namespace element here
            raise _Refusal.client(
                "INVALID_MESSAGE", "UpdateCertificateStatus must carry a CertificateStatus"
            )
        try:
            update = status_update_from_element(
                element, source=f"status update in message {message_id}"
            )
        except Rejected as refused:
            raise _Refusal.client("INVALID_MESSAGE", reasons(refused.problems)) from None
        document = etree.tostring(element, method="c14n", exclusive=True).decode("utf-8")
        receipt = self.store.record_status(
            message_id,
            update,
            document,
            payload.findtext(_msg("Sender")) or "",
            payload.findtext(_msg("SentAt")) or "",
        )
        self.count(f"status_{receipt.status.lower()}")
        return _acknowledgement(message_id, receipt, "UpdateCertificateStatusResponse")

    def _authenticate(self, header: etree._Element | None) -> None:
        """WS-Security UsernameToken: password digest (or text), nonce not seen before, Created
        within five minutes of now; a wsu:Timestamp, when present, not expired."""

        def refuse(why: str) -> _Refusal:
            return _Refusal.client("AUTHENTICATION_FAILED", why)

        token = None
        if header is not None:
            token = header.find(f"{{{_WSSE_NS}}}Security/{{{_WSSE_NS}}}UsernameToken")
        if token is None:
            raise refuse("a WS-Security UsernameToken is required")
        expires = header.findtext(
            f"{{{_WSSE_NS}}}Security/{{{_WSU_NS}}}Timestamp/{{{_WSU_NS}}}Expires"
        )
        if expires:
            try:
                expired = datetime.fromisoformat(expires.replace("Z", "+00:00")) < datetime.now(UTC)
            except (TypeError, ValueError):
                raise refuse(f"the Timestamp's Expires {expires!r} is malformed") from None
            if expired:
                raise refuse(f"the message expired at {expires}")
        username, password = self.credentials or ("", "")
        given = token.find(f"{{{_WSSE_NS}}}Password")
        if token.findtext(f"{{{_WSSE_NS}}}Username") != username or given is None:
            raise refuse("unknown user or no password")
        if (given.get("Type") or "").endswith("#PasswordDigest"):
            nonce_text = token.findtext(f"{{{_WSSE_NS}}}Nonce") or ""
            created = token.findtext(f"{{{_WSU_NS}}}Created") or ""
            try:
                nonce = base64.b64decode(nonce_text, validate=True)
                created_at = datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                raise refuse("the token's Nonce or Created is malformed") from None
            if created_at.tzinfo is None:
                created_at = created_at.replace(tzinfo=UTC)
            now = datetime.now(UTC)
            if abs(now - created_at) > _TOKEN_WINDOW:
                raise refuse(f"the token was created at {created}, too far from now")
            expected = base64.b64encode(
                hashlib.sha1(nonce + created.encode() + password.encode()).digest()
            ).decode()
            if not hmac.compare_digest(expected, (given.text or "").strip()):
                raise refuse("the password digest does not match")
            with self._nonces_lock:
                self._nonces = {n: t for n, t in self._nonces.items() if now - t < _TOKEN_WINDOW}
                if nonce_text in self._nonces:
                    raise refuse("the token's nonce was used before (replay)")
                self._nonces[nonce_text] = now
        elif not hmac.compare_digest((given.text or "").encode(), password.encode()):
            raise refuse("the password does not match")


# ----------------------------------------------------------------------------------- HTTP


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

    return rewritten(WSDL_FILE), {name: rewritten(name) for name in _SCHEMA_FILES}


class CustomsSimulator(ThreadingHTTPServer):
    """The HTTP server: SOAP at `path`, the contract documents, and /admin/*."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        host: str,
        port: int,
        store_path: Path,
        *,
        path: str = DEFAULT_PATH,
        faults: FaultPlan | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        credentials: tuple[str, str] | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__((host, port), _Handler)
        self.service_path = path
        self.verbose = verbose
        self.faults = _Faults(faults or FaultPlan())
        self.store = ReceivedStore(Path(store_path))
        self.service = CustomsService(self.store, max_bytes=max_bytes, credentials=credentials)
        bound_host, bound_port = self.server_address[:2]
        self.url = f"http://{bound_host}:{bound_port}{path}"
        self.wsdl, self.schemas = _served_documents(self.url)

    def server_close(self) -> None:
        super().server_close()
        self.store.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a reused client pays no TCP handshake
    server_version = "customs-sim/1.0"
    server: CustomsSimulator

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and the
        # client's delayed ACK hold every answer back by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a "timeout" fault)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, indent=1).encode(), "application/json")

    def _body(self, limit: int) -> bytes | None:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self.close_connection = True
            self._send(411, b"Content-Length required\n", "text/plain; charset=utf-8")
            return None
        size = int(length)
        if size > limit:
            self.close_connection = True
            if size <= 8 * limit:  # read it away so the client hears the fault, not a reset
                left = size
                while left > 0:
                    chunk = self.rfile.read(min(65536, left))
                    if not chunk:
                        break
                    left -= len(chunk)
            self.server.service.count("refused")
            self._send(
                500,
                fault_envelope(
                    "Client",
                    "MESSAGE_TOO_LARGE",
                    f"the request is {size} bytes; at most {limit} are accepted",
                    transient=False,
                ),
                "text/xml; charset=utf-8",
            )
            return None
        return self.rfile.read(size)

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
        elif url.path == "/admin/health":
            self._json(200, {"status": "ok", "url": server.url, "pid": os.getpid()})
        elif url.path == "/admin/received":
            self._json(200, server.store.received())
        elif url.path == "/admin/statuses":
            self._json(200, server.store.statuses())
        elif url.path == "/admin/faults":
            self._json(200, server.faults.describe())
        elif url.path == "/admin/stats":
            self._json(200, server.service.counts_now())
        elif url.path == server.service_path:
            allow = {"Allow": "GET, POST"}
            self._send(405, b"POST SOAP requests here; GET ?wsdl\n", "text/plain", allow)
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        server = self.server
        if url.path == server.service_path:
            self._soap()
            return
        body = self._body(64 * 1024)
        if body is None:
            return
        if url.path == "/admin/faults":
            try:
                plan = FaultPlan.from_dict(json.loads(body or b"{}"))
            except (ValueError, TypeError, AttributeError) as error:
                self._json(400, {"error": str(error)})
                return
            server.faults.set(plan)
            self._json(200, server.faults.describe())
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _soap(self) -> None:
        server = self.server
        body = self._body(server.service.max_bytes)
        if body is None:
            return
        server.service.count("requests")
        kind = server.faults.draw()
        if kind:
            server.service.count(f"injected_{kind}")
        if kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "http503":
            self._send(
                503,
                b"the customs single window is unavailable\n",
                "text/plain; charset=utf-8",
                {"Retry-After": "1"},
            )
            return
        if kind == "http502":
            self._send(502, _BAD_GATEWAY_PAGE, "text/html")
            return
        if kind == "transient_fault":
            envelope = fault_envelope(
                "Server",
                "SERVICE_UNAVAILABLE",
                "the certificate register is busy; send the same message again later",
                transient=True,
            )
            self._send(500, envelope, "text/xml; charset=utf-8")
            return
        status, envelope = server.service.answer(body, self.headers.get("SOAPAction"))
        if kind == "drop_after_store":
            # Stored (or refused), but the connection goes before the answer does.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "timeout":
            # Stored, but the answer comes after the client stopped waiting.
            time.sleep(server.faults.plan.slow_seconds)
        self._send(status, envelope, "text/xml; charset=utf-8")


def serve(
    host: str,
    port: int,
    store_path: Path | str,
    *,
    path: str = DEFAULT_PATH,
    faults: FaultPlan | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    credentials: tuple[str, str] | None = None,
    ready_file: Path | None = None,
    verbose: bool = False,
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM). `port` 0 picks a free port; the URL is
    printed, and written to `ready_file` (JSON) once requests are accepted. Without `faults`
    the plan comes from ELBRIDGE_SIM_FAULTS; without `credentials`, from
    ELBRIDGE_SIM_USERNAME / ELBRIDGE_SIM_PASSWORD (none set: no WS-Security required)."""
    plan = faults if faults is not None else fault_plan_from_env()
    if credentials is None and os.environ.get("ELBRIDGE_SIM_USERNAME"):
        credentials = (
            os.environ["ELBRIDGE_SIM_USERNAME"],
            os.environ.get("ELBRIDGE_SIM_PASSWORD", ""),
        )
    server = CustomsSimulator(
        host,
        port,
        Path(store_path),
        path=path,
        faults=plan,
        max_bytes=max_bytes,
        credentials=credentials,
        verbose=verbose,
    )

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        print(f"customs single window simulator listening on {server.url}", flush=True)
        if ready_file is not None:
            partial = Path(f"{ready_file}.partial")
            partial.write_text(json.dumps({"url": server.url, "pid": os.getpid()}))
            partial.replace(ready_file)  # appears whole or not at all
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# ---------------------------------------------------------------------------- subprocess


class SimulatorProcess:
    """A simulator running as a subprocess in its own process group."""

    def __init__(self, process: subprocess.Popen, url: str, store_path: Path, log_path: Path):
        self.process = process
        self.url = url
        self.store_path = store_path
        self.log_path = log_path

    @property
    def wsdl_url(self) -> str:
        return f"{self.url}?wsdl"

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def _admin(self, path: str, data: dict[str, Any] | None = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(
            f"{self.base_url}/admin/{path}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)

    def set_faults(self, **plan: Any) -> dict[str, Any]:
        """Replace the fault plan (see FaultPlan); `set_faults()` clears it."""
        return self._admin("faults", plan)

    def faults(self) -> dict[str, Any]:
        return self._admin("faults")

    def received(self) -> list[dict[str, Any]]:
        """Every certificate stored, oldest first."""
        return self._admin("received")

    def statuses(self) -> list[dict[str, Any]]:
        """Every certificate status update stored, in the order received."""
        return self._admin("statuses")

    def stats(self) -> dict[str, int]:
        """Requests seen, faults injected, accepted, duplicate, refused..."""
        return self._admin("stats")

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

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_simulator(
    workdir: Path,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    store_path: Path | None = None,
    credentials: tuple[str, str] | None = None,
    max_bytes: int | None = None,
    startup_timeout: float = 30.0,
    **faults: Any,
) -> SimulatorProcess:
    """Start the simulator as a subprocess (its own process group, log in `workdir`) and return
    once it answers. `port` None picks a free port. `faults` is a FaultPlan as keywords
    (rate=, kinds=, next=, slow_seconds=, seed=); without them the simulator reads
    ELBRIDGE_SIM_FAULTS."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    plan = FaultPlan.from_dict(faults)
    store = Path(store_path) if store_path else workdir / "received.db"
    ready = workdir / f"simulator-{uuid.uuid4().hex[:8]}.ready"
    log_path = workdir / "simulator.log"
    command = [
        sys.executable,
        "-m",
        "bridge.adapters.soap.simulator",
        "--host",
        host,
        "--port",
        str(port or 0),
        "--store",
        str(store),
        "--ready-file",
        str(ready),
    ]
    if faults:  # else the plan in ELBRIDGE_SIM_FAULTS, if any, applies
        command += ["--faults", json.dumps(plan.as_dict())]
    if max_bytes is not None:
        command += ["--max-bytes", str(max_bytes)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if part
    )
    if credentials is not None:
        env["ELBRIDGE_SIM_USERNAME"], env["ELBRIDGE_SIM_PASSWORD"] = credentials
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
    simulator = None
    deadline = time.monotonic() + startup_timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the customs simulator exited with {process.returncode}:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            if simulator is None and ready.exists():
                url = json.loads(ready.read_text())["url"]
                simulator = SimulatorProcess(process, url, store, log_path)
            if simulator is not None:
                with contextlib.suppress(OSError, urllib.error.URLError):
                    if simulator._admin("health").get("status") == "ok":
                        ready.unlink(missing_ok=True)
                        return simulator
            time.sleep(0.05)
        raise RuntimeError(f"the customs simulator did not answer within {startup_timeout} s")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.adapters.soap.simulator",
        description="The customs single window simulator: certificate SOAP service over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088, help="0 picks a free port")
    parser.add_argument("--store", default="customs-sim.db", help="SQLite file it stores into")
    parser.add_argument("--path", default=DEFAULT_PATH, help="where the service listens")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--faults", help=f"fault plan as JSON (default: ${FAULTS_ENV})")
    parser.add_argument("--fault-rate", type=float)
    parser.add_argument("--fault-kinds", help=f"comma-separated: {','.join(KNOWN_FAULT_KINDS)}")
    parser.add_argument("--fault-next", type=int, help="fault the next N requests")
    parser.add_argument("--slow-seconds", type=float, help="how long a 'timeout' answer waits")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--ready-file", type=Path, help="write the URL here once serving")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    try:
        data = json.loads(args.faults) if args.faults else fault_plan_from_env().as_dict()
        flags = {
            "rate": args.fault_rate,
            "kinds": args.fault_kinds,
            "next": args.fault_next,
            "slow_seconds": args.slow_seconds,
            "seed": args.seed,
        }
        data.update({name: value for name, value in flags.items() if value is not None})
        plan = FaultPlan.from_dict(data)
    except ValueError as error:
        parser.error(f"fault plan: {error}")
    serve(
        args.host,
        args.port,
        Path(args.store),
        path=args.path,
        faults=plan,
        max_bytes=args.max_bytes,
        ready_file=args.ready_file,
        verbose=args.verbose,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
