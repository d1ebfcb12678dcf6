"""How the customs side checks what it receives against the contract: with the xmlschema
library, a validator independent of the bridge's own (lxml/libxml2), so a certificate the
bridge's validation let through wrongly is still caught here, named by xmlschema's path and
reason.

The messages schema (which imports the certificate schema, and admits the certificate and the
status update strictly) is built once per process, on first use: building it takes a tenth of
a second, validating a certificate about a millisecond, and a built schema validates from
several threads at once."""

from __future__ import annotations

import threading
from decimal import Decimal

import xmlschema
from lxml import etree

from bridge.adapters.soap import MESSAGES_NAMESPACE, MESSAGES_SCHEMA_FILE
from bridge.core.certificate import NAMESPACE as CERTIFICATE_NAMESPACE
from bridge.core.paths import SCHEMAS_DIR

# The prefixes xmlschema's paths are written with.
PREFIXES = {"m": MESSAGES_NAMESPACE, "cert": CERTIFICATE_NAMESPACE}
# What the body element of each operation carries, and what its refusal is called.
_DOCUMENTS = {"cert:Certificate": "certificate", "cert:CertificateStatus": "status update"}

_schema: xmlschema.XMLSchema | None = None
_building = threading.Lock()


def messages_schema() -> xmlschema.XMLSchema:
    """The messages schema as xmlschema builds it, the same object for the whole process.
    Its imports are read from schemas/ only (sandboxed: no other file, no network)."""
    global _schema
    if _schema is None:
        with _building:
            if _schema is None:
                _schema = xmlschema.XMLSchema(
                    str(SCHEMAS_DIR / MESSAGES_SCHEMA_FILE), allow="sandbox"
                )
    return _schema


def contract_problems(payload: etree._Element) -> list[str]:
    """Every way the body element of a request (SubmitCertificate, UpdateCertificateStatus)
    breaks the messages schema, each as "<what> refused: <path>: <reason> (xmlschema)", where
    <what> is the certificate, the status update or the message around them and <path> is
    xmlschema's, from the certificate or status update when the problem is inside it; [] when
    valid."""
    # The element is parsed already (bridge.core.xmlsafe); xmlschema reads nothing else.
    resource = xmlschema.XMLResource(payload, allow="none")
    errors = messages_schema().iter_errors(resource, namespaces=PREFIXES)
    return [_described(error) for error in errors]


def _described(error: xmlschema.XMLSchemaValidationError) -> str:
    path = error.path or "/"
    what = "message"
    steps = path.split("/")
    for depth, step in enumerate(steps):
        name = step.split("[", 1)[0]
        if name in _DOCUMENTS:
            what = _DOCUMENTS[name]
            path = "/" + "/".join(steps[depth:])
            break
    reason = error.reason or error.message
    value = error.obj
    if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
        reason = f"{reason}, got {str(value)!r}"
    return f"{what} refused: {path}: {reason} (xmlschema)"
