"""SOAP 1.1 over HTTP for the project's own servers (the customs single window simulator, the
bridge's query service): one request in, one envelope out.

- `SoapEndpoint` turns a request body into an answer: parse the envelope with the hardened
  parser (bridge.core.xmlsafe), authenticate and validate when asked to, dispatch the body's
  element to its operation's handler, wrap what it returns, or answer a SOAP fault whose detail
  is a CertexFault (Code, Reason, Transient).
- `SoapServer` serves an endpoint on the standard library's threading HTTP server: the request
  read within its size cap, the WSDL and the schemas it imports with the real address, JSON
  routes beside it; `serve_until_stopped` runs it until Ctrl-C or SIGTERM.

Handlers are plain functions `(operation element) -> response element` that raise SoapFault to
refuse; nothing in them knows HTTP, so the same handlers can sit behind another server."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from bridge.adapters.soap import MESSAGES_NAMESPACE, SOAP_ENV_NAMESPACE
from bridge.core.errors import XmlRefused
from bridge.core.paths import SCHEMAS_DIR
from bridge.core.xmlsafe import DEFAULT_MAX_BYTES, parse_project_file, parse_xml

XML_CONTENT = "text/xml; charset=utf-8"
TEXT_CONTENT = "text/plain; charset=utf-8"
JSON_CONTENT = "application/json"
ADMIN_MAX_BYTES = 64 * 1024  # what a JSON route reads at most

_XSD_NS = "http://www.w3.org/2001/XMLSchema"
_WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"


def _env(name: str) -> str:
    return f"{{{SOAP_ENV_NAMESPACE}}}{name}"


def _msg(name: str) -> str:
    return f"{{{MESSAGES_NAMESPACE}}}{name}"


# ------------------------------------------------------------------------------ envelopes


class SoapFault(Exception):
    """A request answered with a SOAP fault: `faultcode` (Client, Server, VersionMismatch), the
    CertexFault `code` and `reason`, and whether sending the same request later may help."""

    def __init__(self, faultcode: str, code: str, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.faultcode = faultcode
        self.code = code
        self.reason = reason
        self.transient = transient

    @classmethod
    def client(cls, code: str, reason: str) -> SoapFault:
        """The sender's mistake: the same request gets the same fault."""
        return cls("Client", code, reason, transient=False)

    def envelope(self) -> bytes:
        return fault_envelope(self.faultcode, self.code, self.reason, transient=self.transient)


def soap_envelope(payload: etree._Element) -> bytes:
    """A SOAP 1.1 envelope whose body holds `payload`."""
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
    return soap_envelope(fault)


# ------------------------------------------------------------------------------- endpoint

Handler = Callable[[etree._Element], etree._Element]


@dataclass(frozen=True)
class SoapOperation:
    """An operation: its handler, and the SOAPAction a request for it may name (None: any)."""

    handler: Handler
    action: str | None = None


@dataclass(frozen=True)
class SoapAnswer:
    """An HTTP status and the envelope to send; `fault` when it is one."""

    status: int
    body: bytes
    fault: SoapFault | None = None


class SoapEndpoint:
    """What a SOAP service does with one request body, apart from HTTP.

    `operations` maps the qualified tag of a body element to its operation. `authenticate`
    (given the Header, or None) and `validate` (given the body element) refuse by raising
    SoapFault; `observe` hears every fault answered. A handler's own trouble (any other
    exception) is a Server fault INTERNAL_ERROR marked transient."""

    def __init__(
        self,
        operations: Mapping[str, SoapOperation],
        *,
        name: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        authenticate: Callable[[etree._Element | None], None] | None = None,
        validate: Callable[[etree._Element], None] | None = None,
        observe: Callable[[SoapFault], None] | None = None,
    ) -> None:
        self.operations = dict(operations)
        self.name = name
        self.max_bytes = max_bytes
        self.authenticate = authenticate
        self.validate = validate
        self.observe = observe

    def answer(self, body: bytes, soap_action: str | None = None) -> SoapAnswer:
        """The answer to one request body (and the SOAPAction header it came with)."""
        try:
            return SoapAnswer(200, soap_envelope(self._dispatch(body, soap_action)))
        except SoapFault as fault:
            return self.refuse(fault)
        except Exception as error:  # its own trouble, not the sender's: worth asking again
            print(f"{self.name}: internal error: {error!r}", file=sys.stderr, flush=True)
            internal = SoapFault(
                "Server", "INTERNAL_ERROR", f"internal error: {error}", transient=True
            )
            return self.refuse(internal)

    def refuse(self, fault: SoapFault) -> SoapAnswer:
        """The answer that is `fault` (HTTP 500, as SOAP 1.1 over HTTP has it)."""
        if self.observe is not None:
            self.observe(fault)
        return SoapAnswer(500, fault.envelope(), fault)

    def too_large(self, size: int) -> SoapAnswer:
        """The answer to a request of `size` bytes, over the limit and left unread."""
        return self.refuse(
            SoapFault.client(
                "MESSAGE_TOO_LARGE",
                f"the request is {size} bytes; at most {self.max_bytes} are accepted",
            )
        )

    def _dispatch(self, body: bytes, soap_action: str | None) -> etree._Element:
        try:
            envelope = parse_xml(body, max_bytes=self.max_bytes, what="the SOAP request")
        except XmlRefused as refused:
            raise SoapFault.client("INVALID_MESSAGE", str(refused)) from None
        if envelope.tag != _env("Envelope"):
            if etree.QName(envelope).localname == "Envelope":
                raise SoapFault(
                    "VersionMismatch",
                    "INVALID_MESSAGE",
                    f"only SOAP 1.1 envelopes ({SOAP_ENV_NAMESPACE}) are accepted",
                    transient=False,
                )
            raise SoapFault.client("INVALID_MESSAGE", "the request is not a SOAP envelope")
        if self.authenticate is not None:
            self.authenticate(envelope.find(_env("Header")))
        body_element = envelope.find(_env("Body"))
        payload = None
        if body_element is not None:
            payload = next(body_element.iterchildren(etree.Element), None)
        operation = None if payload is None else self.operations.get(payload.tag)
        if operation is None:
            found = "nothing" if payload is None else etree.QName(payload).localname
            expected = " or ".join(etree.QName(tag).localname for tag in self.operations)
            raise SoapFault.client(
                "UNKNOWN_OPERATION", f"the SOAP body holds {found}; expected {expected}"
            )
        action = (soap_action or "").strip().strip('"')
        if action and operation.action and action != operation.action:
            name = etree.QName(payload).localname
            raise SoapFault.client(
                "UNKNOWN_OPERATION",
                f"SOAPAction {action} does not match {name} ({operation.action})",
            )
        if self.validate is not None:
            self.validate(payload)
        return operation.handler(payload)


# -------------------------------------------------------------------- contract documents


def served_contract(
    url: str, wsdl_file: str, schema_files: Iterable[str]
) -> tuple[bytes, dict[str, bytes]]:
    """The WSDL (from schemas/) with its soap:address set to `url`, and the schemas it imports
    with their imports pointing back at `url?xsd=<file>`."""
    names = tuple(schema_files)

    def rewritten(name: str) -> bytes:
        tree = parse_project_file(SCHEMAS_DIR / name)
        for element in tree.iter(f"{{{_XSD_NS}}}import", f"{{{_XSD_NS}}}include"):
            location = element.get("schemaLocation")
            if location in names:
                element.set("schemaLocation", f"{url}?xsd={location}")
        for address in tree.iter(f"{{{_WSDL_SOAP_NS}}}address"):
            address.set("location", url)
        return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")

    return rewritten(wsdl_file), {name: rewritten(name) for name in names}


# ----------------------------------------------------------------------------------- HTTP

JsonGet = Callable[[], Any]
JsonPost = Callable[[bytes], tuple[int, Any]]


class SoapServer(ThreadingHTTPServer):
    """An endpoint served at `path` (POST; GET ?wsdl and ?xsd=<file>), with JSON routes beside
    it: `json_get[path]()` answers data, `json_post[path](body)` (status, data)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        host: str,
        port: int,
        endpoint: SoapEndpoint,
        *,
        path: str,
        wsdl_file: str,
        schema_files: Iterable[str],
        handler: type[SoapRequestHandler] | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__((host, port), handler or SoapRequestHandler)
        self.endpoint = endpoint
        self.service_path = path
        self.verbose = verbose
        self.json_get: dict[str, JsonGet] = {}
        self.json_post: dict[str, JsonPost] = {}
        bound_host, bound_port = self.server_address[:2]
        self.url = f"http://{bound_host}:{bound_port}{path}"
        self.wsdl, self.schemas = served_contract(self.url, wsdl_file, schema_files)


class SoapRequestHandler(BaseHTTPRequestHandler):
    """Reads one request and sends its answer; `answer_soap` is where a subclass may step in
    between a SOAP request read and its answer sent."""

    protocol_version = "HTTP/1.1"  # keep-alive: a reused client pays no TCP handshake
    server_version = "elbridge-soap/1.0"
    server: SoapServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and the
        # client's delayed ACK hold every answer back by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """Send a whole answer; a client gone meanwhile only closes the connection."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting

    def send_json(self, status: int, data: Any) -> None:
        self.send(status, json.dumps(data, indent=1).encode(), JSON_CONTENT)

    def read_body(self, limit: int) -> bytes | None:
        """The request body, or None once an answer is sent: 411 without a Content-Length, a
        MESSAGE_TOO_LARGE fault over `limit` (the body read away, when not absurdly large, so
        that the client hears the fault rather than a reset)."""
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self.close_connection = True
            self.send(411, b"Content-Length required\n", TEXT_CONTENT)
            return None
        size = int(length)
        if size > limit:
            self.close_connection = True
            if size <= 8 * limit:
                left = size
                while left > 0:
                    chunk = self.rfile.read(min(65536, left))
                    if not chunk:
                        break
                    left -= len(chunk)
            answer = self.server.endpoint.too_large(size)
            self.send(answer.status, answer.body, XML_CONTENT)
            return None
        return self.rfile.read(size)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        server = self.server
        route = server.json_get.get(url.path)
        if url.path == server.service_path and "wsdl" in {key.lower() for key in query}:
            self.send(200, server.wsdl, XML_CONTENT)
        elif url.path == server.service_path and "xsd" in query:
            document = server.schemas.get(query["xsd"][0])
            if document is None:
                self.send(404, b"no such schema\n", TEXT_CONTENT)
            else:
                self.send(200, document, XML_CONTENT)
        elif url.path == server.service_path:
            allow = {"Allow": "GET, POST"}
            self.send(405, b"POST SOAP requests here; GET ?wsdl\n", TEXT_CONTENT, allow)
        elif route is not None:
            self.send_json(200, route())
        else:
            self.send(404, b"not found\n", TEXT_CONTENT)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        server = self.server
        if path == server.service_path:
            body = self.read_body(server.endpoint.max_bytes)
            if body is not None:
                self.answer_soap(body)
            return
        route = server.json_post.get(path)
        if route is None:
            self.close_connection = True  # its body is left unread
            self.send(404, b"not found\n", TEXT_CONTENT)
            return
        body = self.read_body(ADMIN_MAX_BYTES)
        if body is not None:
            self.send_json(*route(body))

    def answer_soap(self, body: bytes) -> None:
        """Answer one SOAP request body."""
        answer = self.server.endpoint.answer(body, self.headers.get("SOAPAction"))
        self.send(answer.status, answer.body, XML_CONTENT)


def serve_until_stopped(
    server: SoapServer,
    *,
    banner: str,
    ready_file: Path | None = None,
    on_close: Callable[[], None] | None = None,
) -> None:
    """Serve until Ctrl-C or SIGTERM, then close the server (and call `on_close`). The URL is
    printed after `banner`, and written to `ready_file` (JSON: url, pid) once requests are
    accepted."""

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        print(f"{banner} listening on {server.url}", flush=True)
        if ready_file is not None:
            partial = Path(f"{ready_file}.partial")
            partial.write_text(json.dumps({"url": server.url, "pid": os.getpid()}))
            partial.replace(ready_file)  # appears whole or not at all
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if on_close is not None:
            on_close()
