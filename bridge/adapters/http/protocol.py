"""uvicorn's h11 protocol with a request read deadline, the client certificate in the scope, and
a drop hook for the application.

uvicorn (0.54) times out only idle keep-alive connections: a client that opens a connection and
sends its headers or body a byte at a time keeps it for as long as it likes. Here every request
must arrive whole (headers and body) within `read_timeout` seconds of its first byte (or of the
connection, or of the previous answer); otherwise the client gets 408 when no answer has begun,
and the connection is closed. h11 is the parser because it bounds the header block
(h11_max_incomplete_event_size, 16 KiB by default) where httptools does not."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

# The scope extension through which an application drops its connection without answering.
DROP_EXTENSION = "elbridge.drop"
_TLS_CLOSE_GRACE = 0.5  # seconds a stopping server waits for a TLS close_notify
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 39\r\nconnection: close\r\n\r\nthe request was not sent in time; bye.\n"
)


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection (None when it is plain HTTP): the verified
    client certificate as PEM (`client_cert_chain`, leaf only) and its subject in RFC 4514
    form (`client_cert_name`), the TLS version."""
    ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    chain, name = [], None
    if der:
        from cryptography import x509

        chain = [ssl.DER_cert_to_PEM_cert(der)]
        name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,  # the handshake refused any certificate it could not verify
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,  # Python's ssl names the suite but does not give its number
    }


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with the read deadline `config.read_timeout` (set by `server.serve`), the
    TLS extension and the drop hook in every request's scope."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout: float = getattr(self.config, "read_timeout", 15.0)
        self._deadline: asyncio.TimerHandle | None = None
        self._request_begun = False  # bytes of the current request have come
        self._extensions: dict[str, Any] = {}
        self._lost = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = tls_extension(transport)
        self._extensions = {DROP_EXTENSION: self.drop}
        if tls is not None:
            self._extensions["tls"] = tls
        self._arm()  # a connection that never sends anything is cut too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._request_begun:
            self._request_begun = True
            self._arm()  # the request's own time starts with its first byte
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.scope is not None and "extensions" not in self.scope:
            # The task that runs the app for this request has not started yet.
            self.scope["extensions"] = dict(self._extensions)  # type: ignore[typeddict-unknown-key]
        cycle = self.cycle  # the previous request's, answered, until this one's headers are in
        if cycle is not None and not cycle.more_body and not cycle.response_complete:
            self._disarm()  # all of it is here: answering may take as long as it takes

    def on_response_complete(self) -> None:
        self._request_begun = False
        if not self.transport.is_closing():
            self._arm()  # the next request (a pipelined one may be half here already)
        super().on_response_complete()

    def drop(self) -> None:
        """Close the connection without an answer (what the application asked for)."""
        if self.cycle is not None:
            self.cycle.disconnected = True  # no "returned without a response" complaint
        self._disarm()
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _read_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # An answer already under way (a refusal while its body is read away) is not
        # interrupted by another; a connection that never began a request gets none.
        if self._request_begun and (
            cycle is None or cycle.response_complete or not cycle.response_started
        ):
            self.transport.write(_TIMED_OUT)
        if self.logger.isEnabledFor(logging.INFO):
            client = "{}:{}".format(*self.client) if self.client else "a client"
            self.logger.info("%s: no whole request within %s s; closed", client, self.read_timeout)
        self.transport.close()

    def shutdown(self) -> None:
        """A graceful stop: an idle connection is closed at once, one mid-request after its
        answer. A TLS connection's close waits for the client's close_notify, which a client
        holding an idle pooled connection never sends (asyncio would wait 30 s): an idle one
        is cut after a short grace."""
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()
        if idle and self.transport.get_extra_info("ssl_object") is not None:
            self.loop.call_later(_TLS_CLOSE_GRACE, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self._lost:
            self.transport.abort()
