"""The customs single window simulator: a test double of the customs side, a real SOAP 1.1
server over HTTP for the certificate service (schemas/certex-service-1.0.wsdl), with its own
SQLite store and fault injection. It plays the customs side in tests, benchmarks, chaos runs
and the demo.

- `GET <path>?wsdl` serves the WSDL with its soap:address set to where it listens, and
  `GET <path>?xsd=<file>` the schemas the WSDL imports.
- `POST <path>` takes a SubmitCertificate request, validates the payload strictly against the
  messages schema with xmlschema (which validates the certificate too; `validation`), stores
  the certificate once per MessageId and answers ACCEPTED, or DUPLICATE with the first receipt
  for a resend. Anything invalid is answered with a SOAP Client fault naming every problem by
  xmlschema's path and reason (Transient=false); its own trouble with a Server fault
  (Transient=true).
- Faults on demand (`faults`): HTTP 503, a transient SOAP fault, an answer held back beyond
  the client's timeout (the certificate is stored, the answer comes too late: the resend must
  be a DUPLICATE), a dropped connection; on request also a gateway's HTTP 502 page and a
  connection dropped after the certificate was stored. Planned at start (flags or
  ELBRIDGE_SIM_FAULTS as JSON) and through `POST /admin/faults`
  `{"rate": 0.3, "kinds": ["http503", "drop"], "next": 2}`: the next N requests get the kinds
  in turn, after that each request one at random with probability `rate`.
- `POST <path>` with a SubmitCertificates (contract 1.5, `GET <path>?wsdl=1.5`): the request
  validated once, each certificate judged as a SubmitCertificate of it would be (its problems,
  its signature, its MessageId) and answered in its own Outcome, the accepted ones stored in
  one transaction. `--contract 1.0` (ELBRIDGE_SIM_CONTRACT) leaves the operation out, as at a
  receiver not yet on 1.5: UNKNOWN_OPERATION.
- `POST <path>` with an UpdateCertificateStatus (contract 1.1): validated the same way, stored
  once per MessageId (DUPLICATE on a resend); a status update for a certificate version not
  held is answered UNKNOWN_CERTIFICATE (Transient=true).
- `GET /admin/received`, `/admin/statuses`, `/admin/stats`, `/admin/faults`, `/admin/callers`
  (who sent requests: client certificate subject and subjectAltName) as JSON, each only with
  `Authorization: Bearer <admin token>` (--admin-token, ELBRIDGE_SIM_ADMIN_TOKEN or its _FILE;
  none set: closed); `/admin/health` open.
- Served by uvicorn (bridge.adapters.http): HTTPS with --tls-cert/--tls-key, client
  certificates required with --client-ca (or ELBRIDGE_HTTP_*), read timeout, body limit.
- Before releasing goods, customs ask the bridge's query service (`release`).

Modules: `app` (HTTP app, `serve`, `main`), `handlers` (the SOAP operations), `validation`
(xmlschema), `security` (WS-Security), `store` (its SQLite file), `faults` (the fault plan),
`process` (`start_simulator`: a subprocess in its own process group), `release`."""

from bridge.entrypoints.customs_sim.faults import KNOWN_FAULT_KINDS, FaultPlan
from bridge.entrypoints.customs_sim.process import SimulatorProcess, start_simulator

__all__ = ["KNOWN_FAULT_KINDS", "FaultPlan", "SimulatorProcess", "start_simulator"]
