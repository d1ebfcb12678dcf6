"""Serve an ASGI application with uvicorn, hardened: a deadline for reading each request, TLS
(client certificates required when a client CA is given), no trust in proxy headers, and a
graceful stop on SIGTERM or Ctrl-C: no new connections, requests in flight answered, then exit
with status 0."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import uvicorn

from bridge.adapters.http.protocol import GuardedH11Protocol
from bridge.adapters.http.tls import ServerTls, server_context
from bridge.core.errors import ConfigError


class Listening(Protocol):
    """An ASGI application that is told its base URL (scheme://host:port) before serving, and
    answers the URL to announce (its service's)."""

    def listening_at(self, base_url: str) -> str: ...

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


@dataclass(frozen=True)
class HttpOptions:
    """Where and how a server listens. `read_timeout`: seconds a client has to send a whole
    request (headers and body), also how long an idle keep-alive connection stays open;
    `shutdown_timeout`: how long a stop waits for requests in flight."""

    host: str = "127.0.0.1"
    port: int = 0
    tls: ServerTls | None = None
    read_timeout: float = 15.0
    shutdown_timeout: float = 30.0
    backlog: int = 1024
    verbose: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A socket bound to host:port (0: a free port); ConfigError saying why it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def serve(
    app: Listening,
    options: HttpOptions,
    *,
    banner: str,
    ready_file: Path | None = None,
    on_close: Callable[[], None] | None = None,
) -> None:
    """Serve `app` until SIGTERM or Ctrl-C, then stop gracefully and call `on_close`. The URL
    is printed after `banner` and written to `ready_file` (JSON: url, pid) once connections
    are accepted. A TLS file that cannot be used, or an address taken, is a ConfigError
    before anything is served."""
    context = server_context(options.tls) if options.tls else None
    if options.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = uvicorn.Config(
        app,
        http=GuardedH11Protocol,
        lifespan="off",
        log_config=None,
        log_level=logging.INFO if options.verbose else logging.WARNING,
        access_log=options.verbose,
        proxy_headers=False,  # the client address is the peer's, whatever headers say
        server_header=False,
        timeout_keep_alive=max(1, math.ceil(options.read_timeout)),
        timeout_graceful_shutdown=math.ceil(options.shutdown_timeout),
        ssl_context_factory=None if context is None else (lambda _config, _default: context),
    )
    config.read_timeout = options.read_timeout  # type: ignore[attr-defined]  # our protocol's
    sock = listen(options.host, options.port, options.backlog)
    host, port = sock.getsockname()[:2]
    url = app.listening_at(f"{options.scheme}://{f'[{host}]' if ':' in host else host}:{port}")
    server = uvicorn.Server(config)

    def stop(_signum: int, _frame: Any) -> None:
        # Before uvicorn takes the signals over, and once more after its graceful stop (it
        # re-raises the signal it got): stop, and let the process end with status 0.
        server.should_exit = True

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        print(f"{banner} listening on {url}", flush=True)
        if ready_file is not None:
            partial = Path(f"{ready_file}.partial")
            partial.write_text(json.dumps({"url": url, "pid": os.getpid()}))
            partial.replace(ready_file)  # appears whole or not at all

    async def run() -> None:
        announcing = asyncio.create_task(announce())
        try:
            await server.serve(sockets=[sock])
        finally:
            announcing.cancel()

    try:
        config.load()
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(run())
    finally:
        sock.close()
        if on_close is not None:
            on_close()
