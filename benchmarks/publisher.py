"""A separate process that publishes twin documents (QoS 1) on a broker, as EdgeCore would.

Usage: python -m benchmarks.publisher HOST PORT COUNT DEVICES [RATE]

Documents go round-robin to ``default/dev-0`` … ``dev-{DEVICES-1}``, one ``temperature``
twin each. The reported value is the publication time (``time.time_ns()``), so a
subscriber on the same host can compute the end-to-end latency from the payload.
RATE 0 (default) publishes as fast as paho can; a positive RATE paces the publication
on a fixed schedule (documents per second). It prints nothing; the receiving side measures.
"""

from __future__ import annotations

import json
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def document(device: int, value: int, previous: int) -> tuple[str, bytes]:
    now = value // 1_000_000
    topic = f"$hw/events/device/default/dev-{device}/twin/update/document"
    body = {
        "event_id": "",
        "timestamp": now,
        "twin": {
            "temperature": {
                "last": {
                    "actual": {"value": str(previous), "metadata": {"timestamp": now - 1}},
                    "optional": True,
                    "metadata": {"type": "int"},
                },
                "current": {
                    "actual": {"value": str(value), "metadata": {"timestamp": now}},
                    "optional": True,
                    "metadata": {"type": "int"},
                },
            }
        },
    }
    return topic, json.dumps(body, separators=(",", ":")).encode()


def main() -> int:
    host, port, count, devices = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{time.time_ns()}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    infos = []
    previous = [0] * devices
    start = time.monotonic()
    for seq in range(count):
        if rate > 0:
            delay = start + seq / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        device = seq % devices
        value = time.time_ns()
        topic, payload = document(device, value, previous[device])
        previous[device] = value
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.loop_stop()
    client.disconnect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
