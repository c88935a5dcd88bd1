"""A misbehaving device: twin documents for one device, at a steady rate, without end.

Run as a separate process (``python -m tests.resilience.flood HOST PORT DEVICE RATE``),
so the flood does not share the adapter's event loop; it publishes QoS 1 documents, as
EdgeCore does for a mapper that reports without pause, RATE per second, until it is
terminated.
"""

from __future__ import annotations

import json
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> int:
    host, port, device, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{time.time_ns()}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    topic = f"$hw/events/device/{device}/twin/update/document"
    value = 0
    start = time.monotonic()
    while True:
        value += 1
        ahead = start + value / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        now = time.time_ns() // 1_000_000
        current = {"actual": {"value": str(value), "metadata": {"timestamp": now}}}
        body = {
            "event_id": "",
            "timestamp": now,
            "twin": {"temperature": {"current": {**current, "metadata": {"type": "int"}}}},
        }
        info = client.publish(topic, json.dumps(body, separators=(",", ":")), qos=1)
        if value % 500 == 0:
            info.wait_for_publish(30)


if __name__ == "__main__":
    raise SystemExit(main())
