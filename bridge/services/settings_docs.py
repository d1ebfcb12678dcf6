"""What each setting means, for `elbridge config show` and docs/settings.md (whose table is
generated from this and bridge/services/config.py by bridge.entrypoints.cli_config, and checked
by tests/unit/test_settings_docs.py: a setting added without its meaning fails that test)."""

from __future__ import annotations

MEANINGS: dict[str, str] = {
    "home": "working folder: the SQLite ledger, the inbox, reports, the simulator's files",
    "database_url": "the ledger's SQLAlchemy URL (empty: SQLite file ledger.db in home)",
    "mqtt_host": "MQTT broker host (declaration events in, results out)",
    "mqtt_port": "MQTT broker port (8883 is usual with TLS)",
    "mqtt_username": "MQTT login (empty: anonymous)",
    "mqtt_password": "MQTT password",
    "mqtt_protocol": '"5" (MQTT v5, shared subscriptions) or "3.1.1"',
    "mqtt_ca_file": "CA bundle (PEM) the broker's certificate is checked against; set: TLS on",
    "mqtt_cert_file": "client certificate (PEM) for brokers that require one (needs the CA file)",
    "mqtt_key_file": "the client certificate's private key (PEM)",
    "mqtt_client_id": "the consumer's client id: its persistent session at the broker",
    "mqtt_topic": "topic the declaration events arrive on",
    "mqtt_shared_group": "share the events among consumers of this group ($share/GROUP/topic, "
    "MQTT 5); empty: this consumer takes every event",
    "mqtt_result_topic": "topic one result per event is published to (QoS 1)",
    "mqtt_session_expiry": "seconds the broker keeps the session (and queued events) while the "
    "consumer is away",
    "batch_size": "declaration events applied in one ledger transaction at most",
    "batch_wait_ms": "milliseconds a batch waits for more events after its first",
    "max_message_bytes": "larger declaration events are quarantined unread",
    "soap_url": "the customs certificate service's endpoint (SOAP)",
    "soap_username": "WS-Security UsernameToken login to customs (empty: none sent)",
    "soap_password": "WS-Security UsernameToken password",
    "soap_ca_file": "CA bundle (PEM) customs' server certificate is checked against "
    "(empty: the system's)",
    "soap_cert_file": "client certificate (PEM) for mutual TLS with customs",
    "soap_key_file": "the client certificate's private key (PEM)",
    "soap_timeout": "seconds customs may take to answer for one certificate (n times that for "
    "a batch of n)",
    "soap_retry_budget_hours": "hours a message is retried while customs cannot take it (503, "
    "no answer, connection refused), from its first failure; then it fails (0: at once)",
    "soap_backoff_cap_seconds": "the longest wait between two attempts at a message (waits "
    "double from 0.5 s up to it)",
    "soap_senders": "certificates in flight to customs at once (each licence still in order)",
    "soap_batch_size": "certificates per SubmitCertificates call (contract 1.5), each with its "
    "own outcome; 1: one call per certificate (receivers on 1.0 get one per call anyway)",
    "national_document_codes": "national document codes read as dual-use licences, "
    '"9104=individual,..."',
    "mappings_dir": "folders of national mappings (*.yaml), separated by the path separator; "
    "empty: the project's mappings/",
    "sender_id": "the sender named in every certificate message",
    "signing_key_file": "the issuing authority's signing key (PEM); with the certificate: every "
    "certificate is signed",
    "signing_cert_file": "the issuing authority's X.509 certificate (PEM)",
    "http_tls_cert": "certificate chain (PEM) the bridge's HTTP services serve HTTPS with",
    "http_tls_key": "the HTTP services' private key (PEM)",
    "http_client_ca": "CA bundle (PEM): the HTTP services require client certificates it issued",
    "http_read_timeout": "seconds an HTTP client may take to send its request",
    "http_max_body_bytes": "larger HTTP request bodies are refused before reading",
    "http_max_concurrency": "HTTP requests served at once; more wait or are refused",
    "query_access_file": "who may ask the query service what (TOML)",
    "console_users_file": "the console's users (TOML; empty: HOME/console/users.toml)",
    "console_secret": "the key console session cookies are signed with (empty: made once, kept "
    "in HOME/console/secret)",
    "console_session_hours": "hours a console login lasts",
    "console_expiring_days": "a licence ending within this many days counts as expiring soon",
    "console_public_url": "the address people open the console at behind Airflow or a proxy "
    "(e.g. https://airflow.example/elbridge-console/): its origin may post the forms; https makes "
    "the session cookie Secure",
    "health_timeout": "seconds each dependency check of /ready and `elbridge status` may take",
    "health_latency_window_hours": "hours of deliveries the delivery latency figures cover",
    "metrics_token": "bearer token /ready and /metrics ask for (empty: anyone who reaches them)",
    "undelivered_alarm_minutes": "a certificate failed, or pending longer than this, keeps the "
    "delivery DAG red",
    "declaration_run_minutes": "how long one scheduled run of the write-off DAG consumes (0.1-240)",
    "reports_dir": "the daily reports' folder, one sub-folder a day (empty: HOME/reports)",
    "reports_mode": "octal mode of report files (folders get the matching search bits)",
}

# Variables read outside the Settings (by one command or process), documented beside them.
OTHER_VARIABLES: dict[str, str] = {
    "ELBRIDGE_SETTINGS_FILE": "the TOML settings file read when --settings is not given",
    "ELBRIDGE_DATABASE_OWNER_URL": "the ledger as its owner, for `elbridge db` (default: the "
    "ledger's URL); also _FILE",
    "ELBRIDGE_SIGNING_KEY_PASSWORD": "the passphrase of an encrypted signing key; also _FILE",
    "ELBRIDGE_SIM_ADMIN_TOKEN": "the customs simulator's /admin token; also _FILE",
    "ELBRIDGE_SIM_USERNAME": "the login the customs simulator requires (with the password)",
    "ELBRIDGE_SIM_PASSWORD": "the password the customs simulator requires",
    "ELBRIDGE_SIM_TRUSTED_AUTHORITIES": "authority certificates (PEM files, path-separated) whose "
    "signatures the simulator accepts",
    "ELBRIDGE_SIM_FAULTS": "the simulator's fault plan (JSON), for tests and rehearsals",
    "ELBRIDGE_SIM_CONTRACT": "the contract version the simulator serves: 1.5 (default, with "
    "SubmitCertificates) or 1.0 (without, as a receiver not yet on 1.5)",
    "ELBRIDGE_DECLARATION_SAMPLES": "folder of the demo's WCO declaration samples",
}
