"""What the customs single window does with a certificate or a status update, apart from HTTP:
the SOAP operations of schemas/certex-service-1.0.wsdl as plain functions of the body element,
and the counts the simulator reports."""

from __future__ import annotations

import threading
from collections import Counter

from lxml import etree

from bridge.adapters.signing import TrustedAuthorities
from bridge.adapters.soap import (
    MESSAGES_NAMESPACE,
    SUBMIT_CERTIFICATE_ACTION,
    UPDATE_CERTIFICATE_STATUS_ACTION,
)
from bridge.adapters.soap.http_server import SoapEndpoint, SoapFault, SoapOperation
from bridge.core.certificate import NAMESPACE as CERTIFICATE_NAMESPACE
from bridge.core.certificate import licence_from_certificate_element, status_update_from_element
from bridge.core.errors import Rejected, reasons
from bridge.core.xmlsafe import DEFAULT_MAX_BYTES
from bridge.entrypoints.customs_sim.security import UsernameTokenCheck
from bridge.entrypoints.customs_sim.store import Receipt, ReceivedStore
from bridge.entrypoints.customs_sim.validation import check_signature, contract_problems


def _msg(name: str) -> str:
    return f"{{{MESSAGES_NAMESPACE}}}{name}"


def _acknowledgement(message_id: str, receipt: Receipt, element: str) -> etree._Element:
    answer = etree.Element(_msg(element), nsmap={"m": MESSAGES_NAMESPACE})
    for name, text in (
        ("MessageId", message_id),
        ("Status", receipt.status),
        ("ReceiptId", receipt.receipt_id),
        ("ReceivedAt", receipt.received_at),
    ):
        etree.SubElement(answer, _msg(name)).text = text
    return answer


def _c14n(element: etree._Element) -> str:
    # Exclusive C14N: the same bytes the bridge built, whatever envelope carried them.
    return etree.tostring(element, method="c14n", exclusive=True).decode("utf-8")


class CustomsService:
    """The certificate service on `store`: SubmitCertificate and UpdateCertificateStatus, each
    validated against the contract (xmlschema, see validation) before it is read and stored
    once per MessageId; a certificate's signature checked against `trusted` authorities when
    any are given (validation.check_signature)."""

    def __init__(self, store: ReceivedStore, trusted: TrustedAuthorities | None = None) -> None:
        self.store = store
        self.trusted = trusted
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()

    def endpoint(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        credentials: tuple[str, str] | None = None,
    ) -> SoapEndpoint:
        """The SOAP endpoint of the service: WS-Security required when `credentials` are
        given, every fault counted (refused, or server_faults)."""
        return SoapEndpoint(
            {
                _msg("SubmitCertificate"): SoapOperation(
                    self.submit_certificate, SUBMIT_CERTIFICATE_ACTION
                ),
                _msg("UpdateCertificateStatus"): SoapOperation(
                    self.update_certificate_status, UPDATE_CERTIFICATE_STATUS_ACTION
                ),
            },
            name="customs-sim",
            max_bytes=max_bytes,
            authenticate=None if credentials is None else UsernameTokenCheck(credentials),
            validate=self.validate,
            observe=self._count_fault,
        )

    def count(self, what: str) -> None:
        with self._counts_lock:
            self.counts[what] += 1

    def counts_now(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self.counts)

    def _count_fault(self, fault: SoapFault) -> None:
        self.count("server_faults" if fault.faultcode == "Server" else "refused")

    @staticmethod
    def validate(payload: etree._Element) -> None:
        """Refuse a request that breaks the messages schema, naming every problem."""
        problems = contract_problems(payload)
        if problems:
            raise SoapFault.client("INVALID_MESSAGE", "\n".join(problems))

    def submit_certificate(self, payload: etree._Element) -> etree._Element:
        """Store the certificate once per MessageId: ACCEPTED, or DUPLICATE with the first
        receipt for a resend; the same MessageId with another certificate is refused."""
        message_id = payload.findtext(_msg("MessageId")) or ""
        certificate = payload.find(f"{{{CERTIFICATE_NAMESPACE}}}Certificate")
        if certificate is None:  # the XSD admits any certificate-namespace element here
            raise SoapFault.client("INVALID_MESSAGE", "SubmitCertificate must carry a Certificate")
        try:
            # The bridge's own reading of it: its schema check again, and the rules XSD
            # cannot say (an entry without a list is in the Annex I spelling; document code
            # and general authorisation agree).
            licence = licence_from_certificate_element(
                certificate, source=f"certificate in message {message_id}"
            )
        except Rejected as refused:
            raise SoapFault.client("INVALID_MESSAGE", reasons(refused.problems)) from None
        check_signature(certificate, self.trusted)  # before anything is stored
        receipt = self.store.record(
            message_id,
            licence.number,
            licence.version,
            _c14n(certificate),
            payload.findtext(_msg("Sender")) or "",
            payload.findtext(_msg("SentAt")) or "",
        )
        self.count(receipt.status.lower())
        return _acknowledgement(message_id, receipt, "SubmitCertificateResponse")

    def update_certificate_status(self, payload: etree._Element) -> etree._Element:
        """Store the status update once per MessageId; one for a certificate version not held
        is refused UNKNOWN_CERTIFICATE (transient: its certificate may be on its way)."""
        message_id = payload.findtext(_msg("MessageId")) or ""
        element = payload.find(f"{{{CERTIFICATE_NAMESPACE}}}CertificateStatus")
        if element is None:  # the XSD admits any certificate-namespace element here
            raise SoapFault.client(
                "INVALID_MESSAGE", "UpdateCertificateStatus must carry a CertificateStatus"
            )
        try:
            update = status_update_from_element(
                element, source=f"status update in message {message_id}"
            )
        except Rejected as refused:
            raise SoapFault.client("INVALID_MESSAGE", reasons(refused.problems)) from None
        receipt = self.store.record_status(
            message_id,
            update,
            _c14n(element),
            payload.findtext(_msg("Sender")) or "",
            payload.findtext(_msg("SentAt")) or "",
        )
        self.count(f"status_{receipt.status.lower()}")
        return _acknowledgement(message_id, receipt, "UpdateCertificateStatusResponse")
