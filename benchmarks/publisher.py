"""A separate process that floods a broker with twin documents (QoS 1), as EdgeCore would.

Usage: python -m benchmarks.publisher HOST PORT COUNT DEVICES
It prints nothing; the subscriber side measures.
"""

from __future__ import annotations

import json
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def document(device: int, seq: int) -> tuple[str, bytes]:
    now = int(time.time() * 1000)
    topic = f"$hw/events/device/default/dev-{device}/twin/update/document"
    body = {
        "event_id": "",
        "timestamp": now,
        "twin": {
            "temperature": {
                "last": {
                    "actual": {"value": str(seq - 1), "metadata": {"timestamp": now - 1}},
                    "optional": True,
                    "metadata": {"type": "int"},
                },
                "current": {
                    "actual": {"value": str(seq), "metadata": {"timestamp": now}},
                    "optional": True,
                    "metadata": {"type": "int"},
                },
            }
        },
    }
    return topic, json.dumps(body, separators=(",", ":")).encode()


def main() -> int:
    host, port, count, devices = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    infos = []
    for seq in range(count):
        topic, payload = document(seq % devices, seq)
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.loop_stop()
    client.disconnect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
