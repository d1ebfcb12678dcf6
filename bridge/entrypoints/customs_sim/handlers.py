"""What the customs single window does with a certificate or a status update, apart from HTTP:
the SOAP operations of schemas/certex-service-1.0.wsdl (and of its 1.5, SubmitCertificates) as
plain functions of the body element, and the counts the simulator reports."""

from __future__ import annotations

import threading
from collections import Counter

from lxml import etree

from bridge.adapters.signing import TrustedAuthorities
from bridge.adapters.soap import (
    MESSAGES_NAMESPACE,
    SUBMIT_CERTIFICATE_ACTION,
    SUBMIT_CERTIFICATES_ACTION,
    UPDATE_CERTIFICATE_STATUS_ACTION,
)
from bridge.adapters.soap.http_server import SoapEndpoint, SoapFault, SoapOperation
from bridge.core.certificate import NAMESPACE as CERTIFICATE_NAMESPACE
from bridge.core.certificate import licence_from_certificate_element, status_update_from_element
from bridge.core.errors import Rejected, reasons
from bridge.core.xmlsafe import DEFAULT_MAX_BYTES
from bridge.entrypoints.customs_sim.security import UsernameTokenCheck
from bridge.entrypoints.customs_sim.store import Receipt, ReceivedStore
from bridge.entrypoints.customs_sim.validation import (
    batch_problems,
    check_signature,
    contract_problems,
)

CONTRACTS = ("1.5", "1.0")  # what the simulator can speak; 1.0: without SubmitCertificates


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
    any are given (validation.check_signature). With `contract` "1.5" (the default) also
    SubmitCertificates, each of its certificates judged as SubmitCertificate judges one and
    the batch stored in one transaction; with "1.0" that operation is unknown, as at a
    receiver that has not moved to 1.5."""

    def __init__(
        self,
        store: ReceivedStore,
        trusted: TrustedAuthorities | None = None,
        contract: str = CONTRACTS[0],
    ) -> None:
        if contract not in CONTRACTS:
            raise ValueError(f"contract {contract!r}: one of {', '.join(CONTRACTS)}")
        self.store = store
        self.trusted = trusted
        self.contract = contract
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
        operations = {
            _msg("SubmitCertificate"): SoapOperation(
                self.submit_certificate, SUBMIT_CERTIFICATE_ACTION
            ),
            _msg("UpdateCertificateStatus"): SoapOperation(
                self.update_certificate_status, UPDATE_CERTIFICATE_STATUS_ACTION
            ),
        }
        if self.contract != "1.0":
            operations[_msg("SubmitCertificates")] = SoapOperation(
                self.submit_certificates, SUBMIT_CERTIFICATES_ACTION
            )
        return SoapEndpoint(
            operations,
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
        """Refuse a request that breaks the messages schema, naming every problem. A
        SubmitCertificates is validated by its handler, certificate by certificate."""
        if payload.tag == _msg("SubmitCertificates"):
            return
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

    def submit_certificates(self, payload: etree._Element) -> etree._Element:
        """(1.5) Judge each Submission's certificate as `submit_certificate` judges one alone
        and store the accepted ones in one transaction: one Outcome per Submission, in order,
        its Acknowledgement or its Refusal (the fault a SubmitCertificate of it would get).
        A problem of the request around the certificates refuses it whole, storing nothing."""
        around, inside = batch_problems(payload)
        if around:
            raise SoapFault.client("INVALID_MESSAGE", "\n".join(around))
        submissions = payload.findall(_msg("Submission"))
        verdicts: list[SoapFault | None] = []
        to_store: list[tuple[str, str, int, str]] = []
        for index, submission in enumerate(submissions):
            message_id = submission.findtext(_msg("MessageId")) or ""
            try:
                if index in inside:
                    raise SoapFault.client("INVALID_MESSAGE", "\n".join(inside[index]))
                certificate = submission.find(f"{{{CERTIFICATE_NAMESPACE}}}Certificate")
                if certificate is None:  # the XSD admits any certificate-namespace element
                    raise SoapFault.client(
                        "INVALID_MESSAGE", "a Submission must carry a Certificate"
                    )
                try:
                    licence = licence_from_certificate_element(
                        certificate, source=f"certificate in message {message_id}"
                    )
                except Rejected as refused:
                    raise SoapFault.client("INVALID_MESSAGE", reasons(refused.problems)) from None
                check_signature(certificate, self.trusted)
            except SoapFault as refused:
                self._count_fault(refused)
                verdicts.append(refused)
                continue
            verdicts.append(None)
            to_store.append((message_id, licence.number, licence.version, _c14n(certificate)))
        stored = iter(
            self.store.record_many(
                to_store,
                payload.findtext(_msg("Sender")) or "",
                payload.findtext(_msg("SentAt")) or "",
            )
        )
        answer = etree.Element(_msg("SubmitCertificatesResponse"), nsmap={"m": MESSAGES_NAMESPACE})
        for submission, verdict in zip(submissions, verdicts, strict=True):
            outcome = etree.SubElement(answer, _msg("Outcome"))
            etree.SubElement(outcome, _msg("MessageId")).text = submission.findtext(
                _msg("MessageId")
            )
            result = verdict if verdict is not None else next(stored)
            if isinstance(result, SoapFault):
                if verdict is None:
                    self._count_fault(result)
                refusal = etree.SubElement(outcome, _msg("Refusal"))
                for name, text in (
                    ("Code", result.code),
                    ("Reason", result.reason),
                    ("Transient", "true" if result.transient else "false"),
                ):
                    etree.SubElement(refusal, _msg(name)).text = text
            else:
                self.count(result.status.lower())
                acknowledgement = etree.SubElement(outcome, _msg("Acknowledgement"))
                for name, text in (
                    ("Status", result.status),
                    ("ReceiptId", result.receipt_id),
                    ("ReceivedAt", result.received_at),
                ):
                    etree.SubElement(acknowledgement, _msg(name)).text = text
        self.count("batches")
        return answer

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
