"""What an application of the project's HTTP servers reads from a request besides its URL: who
is calling (`RequestContext`), the body within a limit, and the answers sent without reading it
(413 over the limit, 401 to a caller without the token) or without any answer at all (drop)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from bridge.adapters.http.protocol import DROP_EXTENSION

# A refused body is read away (and thrown away) up to this much, so that the client, still
# sending, hears the refusal rather than a connection reset; past it, the connection just goes.
DRAIN_MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class RequestContext:
    """Who sent a request, as the connection shows it: the verified client certificate's
    subject (RFC 4514, e.g. "CN=customs.example,O=Customs"), its common names and its
    subjectAltName values as plain strings (DNS names, IP addresses, e-mail addresses, URIs);
    the client's address; the request's headers (names in lower case). Without TLS or without
    a client certificate, the peer fields are None and empty."""

    client_address: str | None = None
    peer_subject: str | None = None
    peer_common_names: tuple[str, ...] = ()
    peer_san: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    tls: bool = False

    @property
    def identities(self) -> tuple[str, ...]:
        """Every name the client certificate vouches for: subjectAltName values, then common
        names (empty without one)."""
        return self.peer_san + tuple(n for n in self.peer_common_names if n not in self.peer_san)


def request_context(scope: Scope) -> RequestContext:
    """The RequestContext of an ASGI request (the peer from the ASGI TLS extension)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    client = scope.get("client")
    tls = (scope.get("extensions") or {}).get("tls")
    subject, names, san = None, (), ()
    if tls and tls.get("client_cert_chain"):
        subject, names, san = _peer(tls["client_cert_chain"][0])
    return RequestContext(
        client_address=None if not client else str(client[0]),
        peer_subject=subject,
        peer_common_names=names,
        peer_san=san,
        headers=headers,
        tls=bool(tls),
    )


def _peer(pem: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    certificate = x509.load_der_x509_certificate(ssl.PEM_cert_to_DER_cert(pem))
    names = tuple(
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    )
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        san: tuple[str, ...] = ()
    else:
        kinds = (x509.DNSName, x509.IPAddress, x509.RFC822Name, x509.UniformResourceIdentifier)
        san = tuple(
            str(value) for kind in kinds for value in extension.value.get_values_for_type(kind)
        )
    return certificate.subject.rfc4514_string(), names, san


# ------------------------------------------------------------------------------- bodies


class BodyTooLarge(Exception):
    """A request body over `limit` bytes: `size` is its declared length, or None when it was
    sent in chunks (then it was read up to the limit and no further)."""

    def __init__(self, limit: int, size: int | None) -> None:
        self.limit = limit
        self.size = size
        told = f"{size} bytes" if size is not None else f"over {limit} bytes (chunked)"
        super().__init__(f"the request body is {told}; at most {limit} are accepted")


def declared_length(request: Request) -> int | None:
    """The Content-Length of a request (None: chunked; the server refused a malformed one)."""
    value = (request.headers.get("content-length") or "").strip()
    return int(value) if value.isdigit() else None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body of `request`, at most `limit` bytes: BodyTooLarge before reading when
    its declared length is over, or as soon as a chunked body passes the limit.
    ClientDisconnect when the client goes (or is cut off by the read timeout) meanwhile."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit, declared)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, None)
        parts.append(chunk)
    return b"".join(parts)


class RefusedUnread:
    """An ASGI response sent before (or instead of) reading the request's body: the answer
    goes out at once with Connection: close; then the body still on its way is read and
    thrown away up to DRAIN_MAX_BYTES (within the read timeout), so that a client busy sending
    hears the answer instead of a reset."""

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
        *,
        declared: int | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})
        self.declared = declared

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = [
            (b"content-type", self.content_type.encode("latin-1")),
            (b"content-length", str(len(self.body)).encode()),
            (b"connection", b"close"),
        ]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        if self.declared is None or self.declared <= DRAIN_MAX_BYTES:
            await _drain(receive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _drain(receive: Receive) -> None:
    thrown = 0
    while thrown <= DRAIN_MAX_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return  # gone, or cut off
        thrown += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class Dropped:
    """An ASGI "response" that closes the connection without any answer (the server's drop
    hook; on a server without one, a bare 500)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        drop = (scope.get("extensions") or {}).get(DROP_EXTENSION)
        if drop is None:
            raise ConnectionAbortedError("this server cannot drop a connection")
        drop()
