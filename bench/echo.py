"""`python -m bench.echo`: the bare round trip W4 compares the consumer with. A paho client
(MQTT v5, QoS 1, manual ack) that reads each event's JSON, parses its declaration with lxml,
acks it and publishes a small result naming the event, at QoS 1, as the bridge does after
its commit. Runs until SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import threading

import paho.mqtt.client as mqtt
from lxml import etree

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--result-topic", required=True)
    parser.add_argument("--client-id", required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    client.max_inflight_messages_set(0)

    def on_message(c: mqtt.Client, userdata, message: mqtt.MQTTMessage) -> None:
        document = json.loads(message.payload)
        if document.get("payload"):
            etree.fromstring(document["payload"].encode("utf-8"), _PARSER)
        c.ack(message.mid, message.qos)
        answer = {"in_reply_to": document.get("message_id"), "outcome": "echo"}
        c.publish(args.result_topic, json.dumps(answer).encode(), qos=1)

    client.on_connect = lambda c, *a: c.subscribe(args.topic, qos=1)
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    print("echo: running", flush=True)
    stop.wait()
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
