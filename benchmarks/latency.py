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

``ROUNDS`` back-to-back pairs (the adapter's runs, then the baseline's, on the same broker
and sink) are measured; for each channel the pair with the median p99 difference is the
figure, and every pair is listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

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
ROUNDS = 3


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


@dataclass
class _Pair:
    adapter: list[int]
    baseline: list[int]

    def p99_ms(self) -> tuple[float, float]:
        (a,) = percentiles(self.adapter, (99,))
        (b,) = percentiles(self.baseline, (99,))
        return a / 1e6, b / 1e6


def _median_pair(pairs: list[_Pair]) -> _Pair:
    ordered = sorted(pairs, key=lambda p: p.p99_ms()[0] - p.p99_ms()[1])
    return ordered[len(ordered) // 2]


def _figure(name: str, pairs: list[_Pair], count: int) -> Figure:
    chosen = _median_pair(pairs)
    samples, baseline = chosen.adapter, chosen.baseline
    p50, p90, p99, top = (v / 1e6 for v in percentiles(samples, (50, 90, 99, 100)))
    b50, b90, b99, btop = (v / 1e6 for v in percentiles(baseline, (50, 90, 99, 100)))
    added = p99 - b99
    listed = ", ".join(f"{a:.2f} / {b:.2f} ({a - b:+.2f})" for a, b in (p.p99_ms() for p in pairs))
    return Figure(
        name,
        p99,
        "ms p99",
        baseline=b99,
        target="p99 ≤ baseline p99 + 1 ms (median of 3 pairs)",
        met=added <= 1.0 and all(len(p.adapter) >= count for p in pairs),
        note=(
            f"median pair: adapter p50/p90/p99/max {p50:.2f}/{p90:.2f}/{p99:.2f}/{top:.2f} ms "
            f"({len(samples):,} samples); baseline {b50:.2f}/{b90:.2f}/{b99:.2f}/{btop:.2f} ms "
            f"({len(baseline):,}); p99 above baseline {added:+.2f} ms. "
            f"Pairs (adapter / baseline p99, ms): {listed}"
        ),
    )


async def _adapter_runs(
    s: aiohttp.ClientSession,
    broker: MosquittoBroker,
    sink: str,
    count: int,
    rate: float,
    warmup: int,
) -> tuple[list[int], list[int]]:
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
        callback = await _callback_run(s, broker, sink, count, rate)
        async with s.delete(f"{base}{API_BASE}/subscriptions/{created['id']}") as response:
            assert response.status == 204
        created = await subscribe(
            s,
            base,
            {"subscriptionType": "DeviceTwinChangeSubscription", "requestWebsocketUri": True},
        )
        await _websocket_run(s, broker, created["websocketUri"], warmup, rate)
        websocket = await _websocket_run(s, broker, created["websocketUri"], count, rate)
    return callback, websocket


async def _baseline_runs(
    s: aiohttp.ClientSession,
    broker: MosquittoBroker,
    sink: str,
    count: int,
    rate: float,
    warmup: int,
) -> tuple[list[int], list[int]]:
    relay = await spawn("bare-relay", broker.host, str(broker.port), f"{sink}/notify/0")
    try:
        await _callback_run(s, broker, sink, warmup, rate)
        callback = await _callback_run(s, broker, sink, count, rate)
        await _websocket_run(s, broker, relay.info["ws_url"], warmup, rate)
        websocket = await _websocket_run(s, broker, relay.info["ws_url"], count, rate)
    finally:
        await relay.stop()
    return callback, websocket


async def run(count: int = 5000, rate: float = 500.0, warmup: int = 250) -> Result:
    result = Result("B2", f"Added latency at {rate:.0f} documents/s")
    callbacks: list[_Pair] = []
    websockets: list[_Pair] = []
    async with MosquittoBroker() as broker, _sink() as (_, sink), aiohttp.ClientSession() as s:
        for _ in range(ROUNDS):
            adapter_callback, adapter_ws = await _adapter_runs(s, broker, sink, count, rate, warmup)
            bare_callback, bare_ws = await _baseline_runs(s, broker, sink, count, rate, warmup)
            callbacks.append(_Pair(adapter_callback, bare_callback))
            websockets.append(_Pair(adapter_ws, bare_ws))
    result.figures.append(_figure("HTTP callback", callbacks, count))
    result.figures.append(_figure("websocket", websockets, count))
    result.details.append(
        f"{count:,} documents per run at {rate:.0f}/s after {warmup} warm-up documents; "
        "latency includes the broker hop, which the baseline has too."
    )
    return result


if __name__ == "__main__":
    print(asyncio.run(run()))
