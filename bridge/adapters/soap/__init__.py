"""SOAP over HTTP: the bridge's zeep client for the customs certificate service
(schemas/certex-service-1.0.wsdl, and 1.5 with SubmitCertificates: `client`), the client
customs use for the bridge's query service (schemas/certex-query-1.0.wsdl, `query_client`),
and the small SOAP 1.1 server layer both of the project's own servers stand on
(`http_server`, `server_process`)."""

SERVICE_NAMESPACE = "urn:elicensing-bridge:certex:service:1.0"
MESSAGES_NAMESPACE = "urn:elicensing-bridge:certex:messages:1.0"
SOAP_ENV_NAMESPACE = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_FILE = "certex-service-1.0.wsdl"
MESSAGES_SCHEMA_FILE = "certex-messages-1.0.xsd"
CERTIFICATE_SCHEMA_FILE = "certex-certificate-1.0.xsd"
SUBMIT_CERTIFICATE_ACTION = f"{SERVICE_NAMESPACE}:SubmitCertificate"
# Contract 1.5: the same service with SubmitCertificates (several certificates per request),
# its messages in a schema that includes the 1.0 one unchanged.
BATCH_WSDL_FILE = "certex-service-1.5.wsdl"
BATCH_MESSAGES_SCHEMA_FILE = "certex-messages-1.5.xsd"
SUBMIT_CERTIFICATES_ACTION = f"{SERVICE_NAMESPACE}:SubmitCertificates"
UPDATE_CERTIFICATE_STATUS_ACTION = f"{SERVICE_NAMESPACE}:UpdateCertificateStatus"

QUERY_NAMESPACE = "urn:elicensing-bridge:certex:query:1.0"
QUERY_SERVICE_NAMESPACE = "urn:elicensing-bridge:certex:query-service:1.0"
QUERY_WSDL_FILE = "certex-query-1.0.wsdl"
QUERY_SCHEMA_FILE = "certex-query-1.0.xsd"
