"""MQTT adapters: the mosquitto broker process, the declaration subscriber, the QoS 1 publisher,
and their options (host, login, session)."""
