"""How the project's HTTP servers (the customs simulator, the query service) are told where and
how to listen: the --tls-cert, --tls-key and --client-ca flags over ELBRIDGE_HTTP_TLS_CERT,
ELBRIDGE_HTTP_TLS_KEY and ELBRIDGE_HTTP_CLIENT_CA (or their _FILE forms), and the limits
ELBRIDGE_HTTP_READ_TIMEOUT, ELBRIDGE_HTTP_MAX_BODY_BYTES and ELBRIDGE_HTTP_MAX_CONCURRENCY."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.core.errors import ConfigError
from bridge.services.config import Settings, load_settings

if TYPE_CHECKING:  # uvicorn is imported only by a command that serves
    from bridge.adapters.http.server import HttpOptions


def add_admin_token_argument(parser: argparse.ArgumentParser) -> None:
    """--admin-token (the simulator's; default: ELBRIDGE_SIM_ADMIN_TOKEN or ..._FILE)."""
    parser.add_argument(
        "--admin-token",
        help="token the /admin routes require (default: $ELBRIDGE_SIM_ADMIN_TOKEN, or the file"
        " $ELBRIDGE_SIM_ADMIN_TOKEN_FILE names; a flag shows in the process list)",
    )


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """--tls-cert, --tls-key, --client-ca (each defaulting to its ELBRIDGE_HTTP_* setting)."""
    parser.add_argument(
        "--tls-cert", help="server certificate chain, PEM: serve HTTPS (ELBRIDGE_HTTP_TLS_CERT)"
    )
    parser.add_argument(
        "--tls-key", help="the certificate's private key, PEM (ELBRIDGE_HTTP_TLS_KEY)"
    )
    parser.add_argument(
        "--client-ca",
        help="CA bundle, PEM: require client certificates it issued (ELBRIDGE_HTTP_CLIENT_CA)",
    )


@dataclass(frozen=True)
class ServingOptions:
    """What a server needs from the settings: how it listens (`http`), and the request body
    limit and concurrency its application enforces."""

    http: HttpOptions
    max_body_bytes: int
    max_concurrency: int


def serving_options(
    host: str,
    port: int,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    client_ca: str | None = None,
    verbose: bool = False,
    settings: Settings | None = None,
) -> ServingOptions:
    """The options for a server on host:port: TLS from the arguments given, else from the
    settings; a ConfigError when they do not make sense together."""
    from bridge.adapters.http.server import HttpOptions
    from bridge.adapters.http.tls import ServerTls

    settings = settings or load_settings()
    cert = tls_cert or settings.http_tls_cert
    key = tls_key or settings.http_tls_key
    ca = client_ca or settings.http_client_ca
    if ca and not (cert or key):
        raise ConfigError(
            "client certificates (--client-ca, ELBRIDGE_HTTP_CLIENT_CA) need HTTPS:"
            " give --tls-cert and --tls-key too"
        )
    for name, value in (
        ("ELBRIDGE_HTTP_READ_TIMEOUT", settings.http_read_timeout),
        ("ELBRIDGE_HTTP_MAX_BODY_BYTES", settings.http_max_body_bytes),
        ("ELBRIDGE_HTTP_MAX_CONCURRENCY", settings.http_max_concurrency),
    ):
        if value <= 0:
            raise ConfigError(f"{name}={value}: must be above 0")
    http = HttpOptions(
        host=host,
        port=port,
        tls=ServerTls(cert, key, ca) if cert or key else None,
        read_timeout=settings.http_read_timeout,
        verbose=verbose,
    )
    return ServingOptions(http, settings.http_max_body_bytes, settings.http_max_concurrency)


def serving_options_from(
    args: argparse.Namespace, *, verbose: bool = False, settings: Settings | None = None
) -> ServingOptions:
    """`serving_options` for a command whose parser has --host, --port and the arguments of
    `add_tls_arguments`."""
    return serving_options(
        args.host,
        args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        verbose=verbose,
        settings=settings,
    )
