"""MQTT adapters: the mosquitto broker process and its locked-down configuration, the declaration
subscriber, the QoS 1 publisher, and their options (host, login, TLS, protocol, session)."""
