"""MQTT adapters: the mosquitto broker process, the declaration subscriber, the event publisher."""
