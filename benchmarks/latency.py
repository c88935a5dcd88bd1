"""B2 added latency: a twin document on the broker → the notification at its subscriber.

Method: a publisher process sends twin documents at a fixed rate (QoS 1, round-robin
over 100 devices); each document's reported value is its publication time
(``time.time_ns()``). The adapter (its own process, default settings) applies it and
notifies one subscriber: by HTTP callback to a sink process, which takes
``time.time_ns()`` on receipt, or on a websocket read by this process. Latency =
receipt time - publication time, per document, on one host (one clock). The baseline
is the same chain without the adapter: a bare aiomqtt subscriber that parses the
document and forwards the value by aiohttp POST to the same sink (one ordered worker,
like the adapter's), or on a bare aiohttp websocket, measured the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from benchmarks.common import (
    API_BASE,
    Child,
    Figure,
    Result,
    adapter_process,
    edgecore,
    percentiles,
    publish,
    spawn,
    subscribe,
)
from benchmarks.procs import reported_value
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker

DEVICES = 100


@asynccontextmanager
async def _sink() -> AsyncIterator[tuple[Child, str]]:
    child = await spawn("sink", "1")
    try:
        yield child, f"http://127.0.0.1:{child.info['ports'][0]}"
    finally:
        await child.stop()


async def _callback_run(
    session: aiohttp.ClientSession, broker: MosquittoBroker, sink: str, count: int, rate: float
) -> list[int]:
    async with session.post(f"{sink}/reset?latency=1") as response:
        assert response.status == 204
    await publish(broker, count, DEVICES, rate)
    deadline = time.monotonic() + 30
    while True:
        async with session.get(f"{sink}/stats") as response:
            stats = await response.json()
        if stats["count"] >= count or time.monotonic() > deadline:
            samples: list[int] = stats["latency_ns"]
            return samples
        await asyncio.sleep(0.2)


async def _websocket_run(
    session: aiohttp.ClientSession, broker: MosquittoBroker, url: str, count: int, rate: float
) -> list[int]:
    samples: list[int] = []
    async with session.ws_connect(url) as ws:
        await asyncio.sleep(0.2)

        async def read() -> None:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    value = reported_value(json.loads(message.data))
                    if value is not None:
                        samples.append(time.time_ns() - value)
                        if len(samples) >= count:
                            return

        reader = asyncio.create_task(read())
        await publish(broker, count, DEVICES, rate)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 30)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return samples


def _figure(name: str, samples: list[int], baseline: list[int], count: int) -> Figure:
    p50, p90, p99, top = (v / 1e6 for v in percentiles(samples, (50, 90, 99, 100)))
    b50, b90, b99, btop = (v / 1e6 for v in percentiles(baseline, (50, 90, 99, 100)))
    added = p99 - b99
    return Figure(
        name,
        p99,
        "ms p99",
        baseline=b99,
        target="p99 ≤ 3 ms",
        met=p99 <= 3.0 and len(samples) >= count,
        note=(
            f"adapter p50/p90/p99/max {p50:.2f}/{p90:.2f}/{p99:.2f}/{top:.2f} ms "
            f"({len(samples):,} samples); baseline {b50:.2f}/{b90:.2f}/{b99:.2f}/{btop:.2f} ms "
            f"({len(baseline):,}); p99 above baseline {added:+.2f} ms"
        ),
    )


async def run(count: int = 5000, rate: float = 500.0, warmup: int = 250) -> Result:
    result = Result("B2", f"Added latency at {rate:.0f} documents/s")
    async with MosquittoBroker() as broker, _sink() as (_, sink), aiohttp.ClientSession() as s:
        async with edgecore(broker, DEVICES), adapter_process(broker) as (_, base):
            created = await subscribe(
                s,
                base,
                {
                    "subscriptionType": "DeviceTwinChangeSubscription",
                    "callbackReference": f"{sink}/notify/0",
                },
            )
            await _callback_run(s, broker, sink, warmup, rate)
            adapter_callback = await _callback_run(s, broker, sink, count, rate)
            async with s.delete(f"{base}{API_BASE}/subscriptions/{created['id']}") as response:
                assert response.status == 204
            created = await subscribe(
                s,
                base,
                {"subscriptionType": "DeviceTwinChangeSubscription", "requestWebsocketUri": True},
            )
            await _websocket_run(s, broker, created["websocketUri"], warmup, rate)
            adapter_ws = await _websocket_run(s, broker, created["websocketUri"], count, rate)
        relay = await spawn("bare-relay", broker.host, str(broker.port), f"{sink}/notify/0")
        try:
            await _callback_run(s, broker, sink, warmup, rate)
            bare_callback = await _callback_run(s, broker, sink, count, rate)
            await _websocket_run(s, broker, relay.info["ws_url"], warmup, rate)
            bare_ws = await _websocket_run(s, broker, relay.info["ws_url"], count, rate)
        finally:
            await relay.stop()
    result.figures.append(_figure("HTTP callback", adapter_callback, bare_callback, count))
    result.figures.append(_figure("websocket", adapter_ws, bare_ws, count))
    result.details.append(
        f"{count:,} documents per run at {rate:.0f}/s after {warmup} warm-up documents; "
        "latency includes the broker hop, which the baseline has too."
    )
    return result


if __name__ == "__main__":
    print(asyncio.run(run()))
