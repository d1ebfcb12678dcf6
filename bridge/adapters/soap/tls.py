"""TLS for the bridge's SOAP clients: whom a client trusts (a CA bundle the server's certificate
is checked against), how it proves who it is (a client certificate and key, for mutual TLS), and
what a TLS failure during a call means.

The files are checked when a client is made (`ClientTls.check`): a missing, unreadable,
malformed, encrypted, expired or mismatched file stops the process at start with a ConfigError
naming the setting and the file. On the wire `TlsAdapter` hands requests these files on every
request, whatever the session or the environment (REQUESTS_CA_BUNDLE) would say; the host name
is checked as requests always does.

A TLS failure during a call (`tls_failure`) is a `TlsFailure`: a configuration error, never a
failed delivery, since sending the same message again cannot succeed until someone fixes a
certificate, a key, a CA bundle or a URL. It names the host, the reason and what to check."""

from __future__ import annotations

import http.client
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from requests.adapters import HTTPAdapter

from bridge.core.errors import ConfigError

# What the peer says when it refuses our client certificate (or the lack of one); OpenSSL's
# reason names for the TLS alerts a server sends then.
_CLIENT_CERTIFICATE_REFUSED = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_DECRYPT_ERROR",
    }
)
# The address answers, but not in TLS (plain HTTP on an https:// URL, a wrong port).
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"})
# X509_V_ERR_* codes of the server certificate's own dates and name.
_EXPIRED, _NOT_YET_VALID = 10, 9
_NAME_MISMATCH = frozenset({62, 63, 64})  # host name, e-mail, IP address
# A connection the server closes at or right after the handshake, before any answer: how
# servers built on asyncio's TLS (uvicorn among them) refuse a client certificate, without
# the alert. Alone it might be a server going down; the client tries once more to tell.
_CLOSED = (
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    ssl.SSLSyscallError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    http.client.RemoteDisconnected,
)
_OPENSSL_NOISE = re.compile(r"^\[[A-Z0-9_]+(: [A-Z0-9_]+)?\] | \(_ssl\.c:\d+\)$")


@dataclass(frozen=True, slots=True)
class ClientTls:
    """The TLS files of one client: `ca_file` (PEM CA bundle, or a folder of hashed CA files,
    the server's certificate is checked against; empty: certifi's public CAs, as requests uses),
    `cert_file` and `key_file` (PEM client certificate and its unencrypted key; the key may be
    in the certificate's file). `settings` is the prefix of the settings that name the files
    (ELBRIDGE_SOAP gives ELBRIDGE_SOAP_CA_FILE...), for the messages."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    settings: str = "ELBRIDGE_SOAP"

    @property
    def verify(self) -> str:
        """What requests checks the server against (its `verify`)."""
        return self.ca_file or certifi.where()

    @property
    def client_cert(self) -> tuple[str, str] | str | None:
        """The client certificate as requests takes it (its `cert`), None without one."""
        if not self.cert_file:
            return None
        return (self.cert_file, self.key_file) if self.key_file else self.cert_file

    def setting(self, name: str) -> str:
        return f"{self.settings}_{name}"

    def check(self, url: str, *, now: datetime | None = None) -> None:
        """Refuse, with a ConfigError naming the setting and the file, TLS files that cannot
        work for `url`: given for a plain http:// URL, missing or unreadable, not PEM, an
        encrypted key, a key that is not the certificate's, a client certificate outside its
        validity dates. Reads the files; sends nothing."""
        given = [
            (name, path)
            for name, path in (
                ("CA_FILE", self.ca_file),
                ("CERT_FILE", self.cert_file),
                ("KEY_FILE", self.key_file),
            )
            if path
        ]
        if given and urlsplit(url).scheme.lower() != "https":
            named = ", ".join(self.setting(name) for name, _ in given)
            raise ConfigError(
                f"{named} set, but the service URL {url} is not https://: no TLS would be used;"
                " give the https:// URL"
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca_file:
            self._check_ca(context)
        if self.key_file and not self.cert_file:
            raise ConfigError(
                f"{self.setting('KEY_FILE')}={self.key_file} is set without"
                f" {self.setting('CERT_FILE')}: give the client certificate too"
            )
        if self.cert_file:
            self._check_client_certificate(context, now or datetime.now(UTC))

    def _check_ca(self, context: ssl.SSLContext) -> None:
        where = f"{self.setting('CA_FILE')}={self.ca_file}"
        path = Path(self.ca_file).expanduser()
        try:
            if path.is_dir():
                context.load_verify_locations(capath=str(path))
                return
            context.load_verify_locations(cafile=str(path))
        except ssl.SSLError as error:
            raise ConfigError(f"{where}: holds no PEM CA certificate ({_reason(error)})") from None
        except OSError as error:
            raise ConfigError(f"{where}: cannot read the file ({error.strerror})") from None

    def _check_client_certificate(self, context: ssl.SSLContext, now: datetime) -> None:
        cert_where = f"{self.setting('CERT_FILE')}={self.cert_file}"
        key_name = "KEY_FILE" if self.key_file else "CERT_FILE"
        key_path = self.key_file or self.cert_file
        key_where = f"{self.setting(key_name)}={key_path}"
        cert_pem = _read(cert_where, self.cert_file)
        key_pem = _read(key_where, key_path) if self.key_file else cert_pem
        try:
            certificate = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise ConfigError(f"{cert_where}: not a PEM certificate") from None
        try:
            serialization.load_pem_private_key(key_pem, password=None)
        except TypeError:  # cryptography's word for "encrypted, and no password given"
            raise ConfigError(
                f"{key_where}: the private key is encrypted; give it unencrypted, readable by"
                " the bridge's user only"
            ) from None
        except ValueError:
            raise ConfigError(f"{key_where}: holds no PEM private key") from None
        if certificate.not_valid_after_utc < now:
            raise ConfigError(
                f"{cert_where}: the client certificate expired on"
                f" {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
            )
        if certificate.not_valid_before_utc > now:
            raise ConfigError(
                f"{cert_where}: the client certificate is valid only from"
                f" {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            )
        try:
            context.load_cert_chain(self.cert_file, self.key_file or None, password=_no_password)
        except ssl.SSLError as error:
            if error.reason == "KEY_VALUES_MISMATCH":
                raise ConfigError(f"{key_where}: not the key of {cert_where}") from None
            raise ConfigError(
                f"{cert_where}: the certificate and key cannot be used ({_reason(error)})"
            ) from None


def _read(where: str, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise ConfigError(f"{where}: cannot read the file ({error.strerror})") from None


def _no_password() -> bytes:
    # Without a callback OpenSSL would ask for a passphrase on the terminal.
    raise ConfigError("the private key is encrypted")


class TlsAdapter(HTTPAdapter):
    """requests' adapter with the client's TLS files on every request: the session's `verify`
    and `cert` and the REQUESTS_CA_BUNDLE variable cannot widen or drop them."""

    def __init__(self, tls: ClientTls, **kwargs) -> None:
        self.tls = tls
        super().__init__(**kwargs)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        try:
            return super().send(
                request,
                stream=stream,
                timeout=timeout,
                verify=self.tls.verify,
                cert=self.tls.client_cert,
                proxies=proxies,
            )
        except requests.exceptions.RequestException:
            raise
        except OSError as error:  # requests' word for a TLS file gone since the start
            host, port = _host_port(request.url or "")
            raise TlsFailure(
                host, port, str(error), "the file was readable at start", "tls-files"
            ) from None


def tls_session(tls: ClientTls) -> requests.Session:
    """A requests session whose https:// requests use `tls` (for zeep: Transport(session=...)).
    Check the files first (`tls.check`)."""
    session = requests.Session()
    session.mount("https://", TlsAdapter(tls))
    return session


class TlsFailure(ConfigError):
    """A TLS connection to `host`:`port` failed in a way no retry can mend: the server's
    certificate is not trusted, has expired or names another host; the server refused the
    client certificate (or its absence); the address does not speak TLS. `code` says which,
    `reason` what TLS said, `advice` what to check."""

    def __init__(self, host: str, port: int, reason: str, advice: str, code: str) -> None:
        super().__init__(f"TLS to {host}:{port} failed: {reason} — {advice}")
        self.host = host
        self.port = port
        self.reason = reason
        self.advice = advice
        self.code = code


def tls_failure(
    error: BaseException, url: str, tls: ClientTls, *, closed_counts: bool = False
) -> TlsFailure | None:
    """The TlsFailure `error` (raised by a request to `url`) amounts to, or None when it is no
    TLS failure. With `closed_counts`, a connection the server closed during or right after a
    fresh handshake, before any answer, counts as refusing the client (see _CLOSED): the caller
    says so once it has seen it twice in a row."""
    host, port = _host_port(url)
    causes = list(_causes(error))
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return _server_certificate(host, port, cause, tls)
    for cause in causes:
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, _CLOSED):
            return _refused(host, port, cause, tls)
    if closed_counts and any(isinstance(cause, _CLOSED) for cause in causes):
        who = (
            f"the client certificate {tls.cert_file}"
            if tls.cert_file
            else "a client without a certificate"
        )
        return TlsFailure(
            host,
            port,
            "the server closed the connection at the TLS handshake, twice, without an answer:"
            f" it refuses {who}",
            _client_advice(tls),
            "tls-client-refused",
        )
    return None


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or url, port or (443 if parts.scheme.lower() == "https" else 80)


def closed_at_handshake(error: BaseException) -> bool:
    """Whether `error` is a connection closed by the server without an answer (see _CLOSED)."""
    return any(isinstance(cause, _CLOSED) for cause in _causes(error))


def _server_certificate(
    host: str, port: int, error: ssl.SSLCertVerificationError, tls: ClientTls
) -> TlsFailure:
    reason = f"certificate verify failed: {error.verify_message}"
    if error.verify_code == _EXPIRED:
        advice = "the server's certificate has expired: its owner must renew it"
    elif error.verify_code == _NOT_YET_VALID:
        advice = "the server's certificate is not valid yet: check this machine's clock"
    elif error.verify_code in _NAME_MISMATCH:
        advice = (
            f"the server's certificate is not issued for {host}: check the host name of the"
            " service URL"
        )
    else:
        advice = f"check {tls.setting('CA_FILE')}"
        if not tls.ca_file:
            advice += " (not set: only public CAs are trusted)"
    return TlsFailure(host, port, reason, advice, "tls-server-certificate")


def _refused(host: str, port: int, error: ssl.SSLError, tls: ClientTls) -> TlsFailure:
    reason = _reason(error)
    if error.reason in _CLIENT_CERTIFICATE_REFUSED:
        return TlsFailure(host, port, reason, _client_advice(tls), "tls-client-refused")
    if error.reason in _NOT_TLS:
        return TlsFailure(
            host,
            port,
            reason,
            "the server does not speak TLS there: check the service URL",
            "tls-not-tls",
        )
    files = ", ".join(tls.setting(name) for name in ("CA_FILE", "CERT_FILE", "KEY_FILE"))
    return TlsFailure(host, port, reason, f"check {files}", "tls-failed")


def _client_advice(tls: ClientTls) -> str:
    if not tls.cert_file:
        return (
            f"the server requires a client certificate: set {tls.setting('CERT_FILE')} and"
            f" {tls.setting('KEY_FILE')}"
        )
    return (
        f"check {tls.setting('CERT_FILE')} and {tls.setting('KEY_FILE')} (issued by a CA the"
        " server trusts, for an identity it knows, not expired)"
    )


def _reason(error: ssl.SSLError) -> str:
    text = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], str) else str(error)
    return _OPENSSL_NOISE.sub("", text).strip() or str(error.reason or error)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it wraps: requests and urllib3 keep the cause in `args`, `reason` or
    the exception chain."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += [arg for arg in current.args if isinstance(arg, BaseException)]
        stack.extend(each for each in linked if isinstance(each, BaseException))
