"""The adapter process is SIGTERMed (and once SIGKILLed) and restarted on its SQLite store.

``mep-kubeedge-adapter run`` as a real process; the subscriber, EdgeCore and the mapper stay.
After a clean stop the numbering continues at the next ``sequence``; after a crash it jumps
(``CRASH_SEQUENCE_GAP``) so that no number is ever used twice and the gap is visible.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator
from mep_kubeedge_adapter.store import CRASH_SEQUENCE_GAP
from tests.kubeedge.test_eventbus import PUMP, publish
from tests.notify.conftest import Sink

from .conftest import (
    NODE,
    STATE,
    TWIN,
    AdapterProcess,
    Api,
    edgecore_devices,
    of_subscription,
    sequences,
)

pytestmark = pytest.mark.integration


async def mapper_reports(broker: MosquittoBroker, speed: str) -> None:
    body = {"event_id": "", "timestamp": 1, "twin": {"speed": {"actual": {"value": speed}}}}
    await publish(broker, f"$hw/events/device/{PUMP}/twin/update", json.dumps(body))


def speed_sequences(sink: Sink, subscription_id: str, speed: str) -> list[int]:
    return [
        int(n["sequence"])
        for n in of_subscription(sink, subscription_id)
        if n["changes"].get("speed", {}).get("reported", {}).get("value") == speed
    ]


async def test_sigterm_and_crash_restarts_keep_subscriptions_and_numbering(
    broker: MosquittoBroker,
    adapter_process: AdapterProcess,
    sinks: Callable[..., Awaitable[Sink]],
    http: aiohttp.ClientSession,
) -> None:
    edgecore = EdgeCoreEmulator(
        broker.host, broker.port, node_name=NODE, devices=edgecore_devices()
    )
    async with edgecore:
        await adapter_process.start()
        api = Api(http, f"http://127.0.0.1:{adapter_process.env['MKA_API__PORT']}")
        sink = await sinks()
        twins = await api.subscribe(TWIN, sink.url, devices=[str(PUMP)])
        states = await api.subscribe(STATE, websocket=True, devices=[str(PUMP)])
        accepted = await api.subscriptions()
        sid = twins["id"]
        await mapper_reports(broker, "201")
        await sink.wait_until(lambda: bool(speed_sequences(sink, sid, "201")), 10)

        # SIGTERM: a clean stop in reverse order, exit 0.
        assert await adapter_process.stop(signal.SIGTERM) == 0
        stopped = [e["step"] for e in adapter_process.events if e.get("event") == "stopped"]
        assert stopped[-1] == "store"
        last = sequences(sink, sid)[-1]
        # EdgeCore moves on while the adapter is away.
        await mapper_reports(broker, "202")
        assert edgecore.module.devices[str(PUMP)].twins["speed"].actual.value == "202"  # type: ignore[union-attr]

        await adapter_process.start()
        assert await api.subscriptions() == accepted
        await sink.wait_until(lambda: bool(speed_sequences(sink, sid, "202")), 10)
        after = [s for s in sequences(sink, sid) if s > last]
        # Numbering goes on where it stopped: no number reused, none skipped.
        assert after[0] == last + 1
        assert sequences(sink, sid) == list(range(1, after[-1] + 1))
        twin = await api.twin(PUMP)
        assert twin["properties"]["speed"]["reported"]["value"] == "202"

        # SIGKILL: nothing flushed on the way out; the next start skips ahead.
        last = sequences(sink, sid)[-1]
        assert await adapter_process.stop(signal.SIGKILL) == -signal.SIGKILL
        await adapter_process.start()
        await adapter_process.wait_for("store_recovered_unclean_stop")
        assert await api.subscriptions() == accepted
        await mapper_reports(broker, "203")
        await sink.wait_until(lambda: bool(speed_sequences(sink, sid, "203")), 10)
        received = sequences(sink, sid)
        assert received == sorted(set(received))
        after = [s for s in received if s > last]
        assert last < CRASH_SEQUENCE_GAP < after[0] <= last + CRASH_SEQUENCE_GAP + 1
        _, body = await api.readyz()
        assert body["devices"] == 2
        assert states["id"] in await api.subscriptions()
        assert await adapter_process.stop(signal.SIGTERM) == 0
