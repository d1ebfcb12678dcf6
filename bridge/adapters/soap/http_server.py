"""SOAP 1.1 over HTTP for the project's own servers (the customs single window simulator, the
bridge's query service): one request in, one envelope out.

- `SoapEndpoint` turns a request body into an answer: parse the envelope with the hardened
  parser (bridge.core.xmlsafe), authenticate and validate when asked to, dispatch the body's
  element to its operation's handler, wrap what it returns, or answer a SOAP fault whose detail
  is a CertexFault (Code, Reason, Transient). It knows nothing of HTTP.
- `SoapService` is the ASGI application (Starlette) serving an endpoint: SOAP POSTs at its
  path (chunked bodies too, each within its size limit: 413 before reading one declared
  larger), the WSDL and the schemas it imports with the real address, JSON routes beside it
  (admin ones behind a bearer token). Handlers run in worker threads, at most
  `max_concurrency` at once; reading a body holds no thread. bridge.adapters.http.server
  serves it (uvicorn).

Handlers are plain functions `(operation element) -> response element` that raise SoapFault to
refuse; one declared `with_call` also gets the `SoapCall` (who is calling: the peer's
certificate, address and headers; the envelope's Header)."""

from __future__ import annotations

import hmac
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.adapters.http.request import (
    BodyTooLarge,
    Dropped,
    RefusedUnread,
    RequestContext,
    read_body,
    request_context,
)
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
_IMPORT, _INCLUDE = f"{{{_XSD_NS}}}import", f"{{{_XSD_NS}}}include"


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


@dataclass(frozen=True)
class SoapCall:
    """One SOAP request as an operation sees it besides its payload: who sent it over which
    connection (`caller`), the envelope's Header (None without one) and the SOAPAction."""

    caller: RequestContext = field(default_factory=RequestContext)
    header: etree._Element | None = None
    action: str = ""


Handler = Callable[[etree._Element], etree._Element]
CallHandler = Callable[[etree._Element, SoapCall], etree._Element]


@dataclass(frozen=True)
class SoapOperation:
    """An operation: its handler, and the SOAPAction a request for it may name (None: any).
    With `with_call`, the handler is `handler(payload, call)` (see SoapCall)."""

    handler: Handler | CallHandler
    action: str | None = None
    with_call: bool = False


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

    def answer(
        self, body: bytes, soap_action: str | None = None, caller: RequestContext | None = None
    ) -> SoapAnswer:
        """The answer to one request body, the SOAPAction header it came with and who sent it
        (`caller`; None: nothing known, as for a call from within the process)."""
        try:
            return SoapAnswer(
                200, soap_envelope(self._dispatch(body, soap_action, caller or RequestContext()))
            )
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

    def too_large(self, size: int | None, limit: int | None = None) -> SoapAnswer:
        """The answer (HTTP 413) to a request of `size` bytes (None: a chunked one that went
        past the limit), over `limit` (default: max_bytes) and left unread."""
        limit = self.max_bytes if limit is None else limit
        told = f"{size} bytes" if size is not None else f"over {limit} bytes (sent in chunks)"
        fault = SoapFault.client(
            "MESSAGE_TOO_LARGE", f"the request is {told}; at most {limit} are accepted"
        )
        return SoapAnswer(413, self.refuse(fault).body, fault)

    def _dispatch(
        self, body: bytes, soap_action: str | None, caller: RequestContext
    ) -> etree._Element:
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
        header = envelope.find(_env("Header"))
        if self.authenticate is not None:
            self.authenticate(header)
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
        if operation.with_call:
            return operation.handler(payload, SoapCall(caller, header, action))  # type: ignore[call-arg]
        return operation.handler(payload)  # type: ignore[call-arg]


# -------------------------------------------------------------------- contract documents


def served_contract(url: str, wsdl_file: str) -> tuple[bytes, dict[str, bytes]]:
    """The WSDL (from schemas/) with its soap:address set to `url`, and every schema it
    imports, directly or through another schema, with their imports pointing back at
    `url?xsd=<file>`."""
    trees = {wsdl_file: parse_project_file(SCHEMAS_DIR / wsdl_file)}
    waiting = [wsdl_file]
    while waiting:
        for element in trees[waiting.pop()].iter(_IMPORT, _INCLUDE):
            location = element.get("schemaLocation") or ""
            # A file name of schemas/ only: no path, no URL.
            local = location and Path(location).name == location
            if local and location not in trees and (SCHEMAS_DIR / location).is_file():
                trees[location] = parse_project_file(SCHEMAS_DIR / location)
                waiting.append(location)
    for tree in trees.values():
        for element in tree.iter(_IMPORT, _INCLUDE):
            location = element.get("schemaLocation")
            if location in trees:
                element.set("schemaLocation", f"{url}?xsd={location}")
        for address in tree.iter(f"{{{_WSDL_SOAP_NS}}}address"):
            address.set("location", url)
    documents = {
        name: etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
        for name, tree in trees.items()
    }
    return documents.pop(wsdl_file), documents


# ----------------------------------------------------------------------------------- HTTP

XML_CONTENT = "text/xml; charset=utf-8"
TEXT_CONTENT = "text/plain; charset=utf-8"
JSON_CONTENT = "application/json"
ADMIN_MAX_BYTES = 64 * 1024  # what a JSON route reads at most
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

JsonGet = Callable[[], Any]
JsonPost = Callable[[bytes], tuple[int, Any]]


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=1).encode()


def _text(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(text.encode(), status, headers=dict(headers or {}), media_type=TEXT_CONTENT)


class SoapService:
    """The ASGI application serving `endpoint` at `path` (POST; GET ?wsdl and ?xsd=<file>; the
    WSDL of another contract version at ?wsdl=<version>, as `wsdl_versions` map them),
    with JSON routes beside it (`add_json`); admin routes answer only a request carrying
    `Authorization: Bearer <admin_token>` (none set: they answer nobody).

    A SOAP body is read whole, within the smaller of the endpoint's max_bytes and
    `max_body_bytes`, before a worker thread is taken for it: a slow client holds no thread.
    At most `max_concurrency` handlers run at once; more requests wait their turn."""

    def __init__(
        self,
        endpoint: SoapEndpoint,
        *,
        path: str,
        wsdl_file: str,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        admin_token: str | None = None,
        admin_realm: str = "admin",
        wsdl_versions: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.service_path = path
        self.wsdl_file = wsdl_file
        self.wsdl_versions = dict(wsdl_versions or {})
        self.versioned_wsdl: dict[str, bytes] = {}
        self.max_body_bytes = max_body_bytes
        self.max_concurrency = max_concurrency
        self._admin_token = admin_token or None
        self._admin_realm = admin_realm
        self._limiter: anyio.CapacityLimiter | None = None
        self.base_url = ""
        self.url = ""
        self.wsdl = b""
        self.schemas: dict[str, bytes] = {}
        self._app = Starlette(routes=[Route(path, self._service, methods=["GET", "POST"])])

    def listening_at(self, base_url: str) -> str:
        """Where the service is reached (scheme://host:port): the WSDL's address follows. The
        service's URL."""
        self.base_url = base_url
        self.url = f"{base_url}{self.service_path}"
        self.wsdl, self.schemas = served_contract(self.url, self.wsdl_file)
        for version, wsdl_file in self.wsdl_versions.items():
            self.versioned_wsdl[version], schemas = served_contract(self.url, wsdl_file)
            self.schemas.update(schemas)
        return self.url

    def add_json(
        self,
        path: str,
        *,
        get: JsonGet | None = None,
        post: JsonPost | None = None,
        admin: bool = True,
    ) -> None:
        """A JSON route: `get()` answers data, `post(body)` (status, data); behind the admin
        token unless `admin` is False."""

        async def route(request: Request) -> ASGIApp:
            if admin:
                refused = self._refuse_unless_admin(request)
                if refused is not None:
                    return refused
            if request.method in ("GET", "HEAD") and get is not None:
                return Response(_json_bytes(await self.call(get)), media_type=JSON_CONTENT)
            if request.method == "POST" and post is not None:
                try:
                    body = await read_body(request, min(ADMIN_MAX_BYTES, self.max_body_bytes))
                except BodyTooLarge as too_large:
                    error = _json_bytes({"error": str(too_large)})
                    return RefusedUnread(413, error, JSON_CONTENT, declared=too_large.size)
                except ClientDisconnect:
                    return Dropped()
                status, data = await self.call(lambda: post(body))
                return Response(_json_bytes(data), status, media_type=JSON_CONTENT)
            allowed = ", ".join(m for m, f in (("GET", get), ("POST", post)) if f is not None)
            return RefusedUnread(405, b"method not allowed\n", TEXT_CONTENT, {"Allow": allowed})

        self._app.router.routes.append(Route(path, route, methods=["GET", "POST"]))

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` in a worker thread, at most max_concurrency at once."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrency)
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    def _refuse_unless_admin(self, request: Request) -> ASGIApp | None:
        challenge = {"WWW-Authenticate": f'Bearer realm="{self._admin_realm}"'}
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if self._admin_token is None:
            why = "no admin token is configured: the admin routes are closed"
        elif scheme.lower() != "bearer" or not token.strip():
            why = "an admin token is required (Authorization: Bearer <token>)"
        elif not hmac.compare_digest(token.strip().encode(), self._admin_token.encode()):
            why = "the admin token is wrong"
        else:
            return None
        return RefusedUnread(401, _json_bytes({"error": why}), JSON_CONTENT, challenge)

    async def _service(self, request: Request) -> ASGIApp:
        if request.method in ("GET", "HEAD"):
            return self._contract(request)
        limit = min(self.endpoint.max_bytes, self.max_body_bytes)
        try:
            body = await read_body(request, limit)
        except BodyTooLarge as too_large:
            answer = self.endpoint.too_large(too_large.size, limit)
            return RefusedUnread(answer.status, answer.body, XML_CONTENT, declared=too_large.size)
        except ClientDisconnect:
            return Dropped()  # gone, or cut off by the read timeout: nobody to answer
        return await self.answer_soap(request, body)

    def _contract(self, request: Request) -> Response:
        query = {key.lower(): value for key, value in request.query_params.multi_items()}
        if "wsdl" in query:
            version = query["wsdl"].strip()
            if not version:
                return Response(self.wsdl, media_type=XML_CONTENT)
            document = self.versioned_wsdl.get(version)
            if document is None:
                known = ", ".join(sorted(self.versioned_wsdl)) or "none"
                return _text(404, f"no WSDL of version {version} here (others: {known})\n")
            return Response(document, media_type=XML_CONTENT)
        if "xsd" in query:
            document = self.schemas.get(query["xsd"])
            if document is None:
                return _text(404, "no such schema\n")
            return Response(document, media_type=XML_CONTENT)
        return _text(405, "POST SOAP requests here; GET ?wsdl\n", {"Allow": "GET, POST"})

    async def answer_soap(self, request: Request, body: bytes) -> ASGIApp:
        """The answer to one SOAP request body (a subclass may step in here: the simulator's
        faults)."""
        caller = request_context(request.scope)
        answer = await self.call(
            self.endpoint.answer, body, request.headers.get("soapaction"), caller
        )
        return Response(answer.body, answer.status, media_type=XML_CONTENT)
