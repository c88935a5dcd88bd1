"""B3 fan-out: notifications per second delivered to 100 subscribers.

Callbacks: 100 ``DeviceTwinChangeSubscription``s, each with its own callback host
(a sink process listening on 100 loopback ports, so each subscriber gets the adapter's
per-host connection pool as separate apps would). A publisher process sends a burst
of twin documents; every document becomes 100 notifications. The figure is the
notifications the sink received divided by the time from the first to the last.
The baseline is a bare aiohttp client (one session, one ordered worker per URL, so
100 requests in flight) POSTing the same number of bodies of the same size to the
same sink.

Websockets: 100 websocket-only subscriptions, one socket each, read by a separate
process with aiohttp's websocket client; figure = frames received / time from first
to last. The baseline is a bare aiohttp websocket server sending ``json.dumps`` frames
of the same size to the same reader, one ``send_str`` each (this is near the reader's
ceiling too).

Bursts stay below the per-subscriber coalescing bound (1,000 pending), so every
notification is delivered.
"""

# Setup and result files are tiny and read outside the measured windows.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import (
    API_BASE,
    Child,
    Figure,
    Result,
    adapter_process,
    edgecore,
    publish,
    spawn,
    subscribe,
)
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker

DEVICES = 100
SUBSCRIBERS = 100


async def _sink_count(session: aiohttp.ClientSession, sink: str, expected: int) -> dict[str, Any]:
    """Wait until the sink counted ``expected`` or nothing arrived for 3 s."""
    last_count = -1
    idle_since = time.monotonic()
    deadline = time.monotonic() + 120
    while True:
        async with session.get(f"{sink}/stats") as response:
            stats: dict[str, Any] = await response.json()
        if stats["count"] >= expected or time.monotonic() > deadline:
            return stats
        if stats["count"] != last_count:
            last_count = stats["count"]
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > 3:
            return stats
        await asyncio.sleep(0.2)


async def _reset(session: aiohttp.ClientSession, sink: str) -> None:
    async with session.post(f"{sink}/reset") as response:
        assert response.status == 204


async def _read_websockets(urls: list[str], expected: int, start: Any) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(urls, handle)
    reader: Child = await spawn("ws-reader", handle.name, str(expected), "3")
    try:
        await start()
        return await reader.result(timeout=180)
    finally:
        await reader.stop()
        Path(handle.name).unlink(missing_ok=True)


def sample_notification(subscription: str, href: str) -> dict[str, Any]:
    """A twin notification of the adapter's shape and size (SPEC §4)."""
    value = str(time.time_ns())
    return {
        "notificationType": "DeviceTwinChangeNotification",
        "subscriptionId": subscription,
        "sequence": 123,
        "timeStamp": {"seconds": int(time.time()), "nanoSeconds": 123000000},
        "device": {"namespace": "default", "name": "dev-42"},
        "changes": {
            "temperature": {
                "reported": {"value": value, "timestamp": "2024-05-01T10:00:00.123Z"},
                "previous": {"value": value, "timestamp": "2024-05-01T10:00:00.023Z"},
            }
        },
        "_links": {"subscription": {"href": href}},
    }


async def run(documents: int = 500, ws_documents: int = 900) -> Result:
    result = Result("B3", f"Fan-out to {SUBSCRIBERS} subscribers")
    expected = documents * SUBSCRIBERS
    ws_expected = ws_documents * SUBSCRIBERS
    sink_child = await spawn("sink", str(SUBSCRIBERS))
    ports: list[int] = sink_child.info["ports"]
    sink = f"http://127.0.0.1:{ports[0]}"
    urls = [f"http://127.0.0.1:{port}/notify/{n}" for n, port in enumerate(ports)]
    try:
        async with MosquittoBroker() as broker, aiohttp.ClientSession() as session:
            async with edgecore(broker, DEVICES), adapter_process(broker) as (_, base):
                ids = []
                for url in urls:
                    created = await subscribe(
                        session,
                        base,
                        {
                            "subscriptionType": "DeviceTwinChangeSubscription",
                            "callbackReference": url,
                        },
                    )
                    ids.append(created["id"])
                await _reset(session, sink)
                await publish(broker, 20, DEVICES)
                await _sink_count(session, sink, 20 * SUBSCRIBERS)
                await _reset(session, sink)
                await publish(broker, documents, DEVICES)
                callbacks = await _sink_count(session, sink, expected)
                for sid in ids:
                    async with session.delete(f"{base}{API_BASE}/subscriptions/{sid}") as response:
                        assert response.status == 204
                ws_urls = [
                    (
                        await subscribe(
                            session,
                            base,
                            {
                                "subscriptionType": "DeviceTwinChangeSubscription",
                                "requestWebsocketUri": True,
                            },
                        )
                    )["websocketUri"]
                    for _ in range(SUBSCRIBERS)
                ]

                async def burst() -> None:
                    await asyncio.sleep(0.5)
                    await publish(broker, ws_documents, DEVICES)

                websockets = await _read_websockets(ws_urls, ws_expected, burst)
            body = json.dumps(
                sample_notification(ids[0], f"{base}{API_BASE}/subscriptions/{ids[0]}")
            )
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "urls.json").write_text(json.dumps(urls))
                Path(tmp, "body.json").write_text(body)
                await _reset(session, sink)
                poster = await spawn(
                    "bare-poster",
                    str(Path(tmp, "urls.json")),
                    str(expected),
                    str(Path(tmp, "body.json")),
                    wait_ready=False,
                )
                await poster.result(timeout=180)
                bare = await _sink_count(session, sink, expected)
            fanout = await spawn("bare-ws-fanout", str(SUBSCRIBERS))
            try:
                port = fanout.info["port"]

                async def go() -> None:
                    await asyncio.sleep(0.5)
                    async with (
                        aiohttp.ClientSession() as s,
                        s.post(
                            f"http://127.0.0.1:{port}/go?frames={ws_documents}", data=body
                        ) as response,
                    ):
                        assert response.status == 204

                bare_ws = await _read_websockets(
                    [f"ws://127.0.0.1:{port}/ws"] * SUBSCRIBERS, ws_expected, go
                )
            finally:
                await fanout.stop()
    finally:
        await sink_child.stop()

    def rate(stats: dict[str, Any]) -> float:
        return float(stats["count"]) / stats["seconds"] if stats["seconds"] else 0.0

    callback_rate, bare_rate = rate(callbacks), rate(bare)
    ws_rate, bare_ws_rate = rate(websockets), rate(bare_ws)
    result.figures.append(
        Figure(
            "HTTP callbacks",
            callback_rate,
            "notifications/s",
            baseline=bare_rate,
            target="≥ 0.75 x bare aiohttp client",
            met=bare_rate > 0
            and callback_rate / bare_rate >= 0.75
            and callbacks["count"] >= expected,
            note=f"{callbacks['count']:,} of {expected:,} delivered",
        )
    )
    result.figures.append(
        Figure(
            "websockets",
            ws_rate,
            "messages/s",
            baseline=bare_ws_rate,
            target="≥ 0.6 x bare aiohttp server",
            met=bare_ws_rate > 0
            and ws_rate / bare_ws_rate >= 0.6
            and websockets["count"] >= ws_expected,
            note=f"{websockets['count']:,} of {ws_expected:,} delivered",
        )
    )
    result.details.append(
        f"callbacks: {documents} documents x {SUBSCRIBERS} subscriptions; websockets: "
        f"{ws_documents} documents x {SUBSCRIBERS} sockets; notification body {len(body)} bytes."
    )
    return result


if __name__ == "__main__":
    print(asyncio.run(run()))
