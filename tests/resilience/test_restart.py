"""The adapter process is SIGTERMed (and once SIGKILLed) and restarted on its SQLite store.

``mep-kubeedge-adapter run`` as a real process; the subscriber, EdgeCore and the mapper stay.
After a clean stop the numbering continues at the next ``sequence``; after a crash it jumps
(``CRASH_SEQUENCE_GAP``) so that no number is ever used twice and the gap is visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator
from mep_kubeedge_adapter.store import CRASH_SEQUENCE_GAP
from tests.kubeedge.test_eventbus import PUMP, publish
from tests.notify.conftest import Sink
from tests.test_service import free_port

from .conftest import NODE, STATE, TWIN, Api, edgecore_devices, of_subscription, sequences

pytestmark = pytest.mark.integration


class AdapterProcess:
    """``python -m mep_kubeedge_adapter run``; its JSON log lines are read as they come."""

    def __init__(self, broker: MosquittoBroker, store: Path, port: int) -> None:
        self.env = {
            **os.environ,
            "MKA_NODE_NAME": NODE,
            "MKA_MQTT__URL": broker.url,
            "MKA_STORE__PATH": str(store),
            "MKA_API__HOST": "127.0.0.1",
            "MKA_API__PORT": str(port),
        }
        self.process: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self._new_line = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.events = []
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mep_kubeedge_adapter",
            "run",
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_for("eventbus_synced")

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    self.events.append(record)
            self._new_line.set()
        self._new_line.set()

    async def wait_for(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        """The first log record named ``event`` since the start (awaits log lines)."""
        async with asyncio.timeout(timeout):
            while True:
                for record in self.events:
                    if record.get("event") == event:
                        return record
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"the log ended before {event!r}")
                self._new_line.clear()
                await self._new_line.wait()

    async def stop(self, sig: signal.Signals) -> int:
        assert self.process is not None and self._reader is not None
        self.process.send_signal(sig)
        async with asyncio.timeout(15):
            code = await self.process.wait()
            await self._reader
        return code

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader


@pytest.fixture
async def adapter_process(broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[AdapterProcess]:
    process = AdapterProcess(broker, tmp_path / "state.sqlite3", free_port())
    try:
        yield process
    finally:
        await process.close()


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
