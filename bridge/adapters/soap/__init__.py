"""The customs certificate service over SOAP (schemas/certex-service-1.0.wsdl): the bridge's
zeep client (`client`) and the customs single window simulator that serves it (`simulator`)."""

SERVICE_NAMESPACE = "urn:elicensing-bridge:certex:service:1.0"
MESSAGES_NAMESPACE = "urn:elicensing-bridge:certex:messages:1.0"
SOAP_ENV_NAMESPACE = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_FILE = "certex-service-1.0.wsdl"
MESSAGES_SCHEMA_FILE = "certex-messages-1.0.xsd"
SUBMIT_CERTIFICATE_ACTION = f"{SERVICE_NAMESPACE}:SubmitCertificate"
UPDATE_CERTIFICATE_STATUS_ACTION = f"{SERVICE_NAMESPACE}:UpdateCertificateStatus"
