"""The resilience suite's harness: the whole adapter, with subscriptions attached, through outages.

Every test here starts a real ``Adapter`` (or a ``run`` process) beside the emulators on
loopback, subscribes through the REST API with an HTTP callback (``Sink`` from the notify
tests), takes something away and brings it back, then checks SPEC §6:

* nothing crashed: the API answers and ``/readyz`` tells the truth meanwhile;
* the registry converges to what EdgeCore (or the kube API) holds afterwards;
* every accepted subscription is still there;
* every notification that was not delivered is counted (``mka_notifications_total``
  ``dropped`` + ``coalesced``) and shows as a ``sequence`` gap of the same size.

Waiting is done on events (registry changes, EventBus status, sink requests); where the
only evidence is outside the adapter (the MEP emulator's registry), a deadline-bounded poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mep_kubeedge_adapter.api.deps import API_BASE
from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.edgecore import (
    DeviceTwinModule,
    EdgeCoreEmulator,
    EmulatedDevice,
    parse_devices,
)
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.service import Adapter
from mep_kubeedge_adapter.settings import Settings, load_settings
from tests.helpers import reported, until
from tests.kubeedge.test_eventbus import DEVICES, publish
from tests.notify.conftest import Sink
from tests.test_service import free_port

NODE = "edge-node"

TWIN = "DeviceTwinChangeSubscription"
STATE = "DeviceStateChangeSubscription"
MEMBERSHIP = "DeviceMembershipChangeSubscription"


def edgecore_devices(document: Mapping[str, Any] = DEVICES) -> list[EmulatedDevice]:
    """EdgeCore's devices (default: ``thermo-1`` and ``pump-1`` of the EventBus tests)."""
    return parse_devices(document)


def adapter_settings(broker: MosquittoBroker, store: Path, **groups: Mapping[str, Any]) -> Settings:
    """Loopback settings with quick EdgeCore probes; ``groups`` are merged over them."""
    overrides: dict[str, Any] = {
        "node_name": NODE,
        "mqtt": {"url": broker.url, "request_timeout": 1.0, "probe_interval": 0.3},
        "api": {"host": "127.0.0.1", "port": 0},
        "store": {"path": str(store)},
    }
    for group, values in groups.items():
        overrides[group] = {**overrides.get(group, {}), **values}
    return load_settings(overrides=overrides, environ={})


# ------------------------------------------------------------------ REST client


class Api:
    """The adapter's northbound API over HTTP, as an edge app calls it."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base.rstrip("/")

    async def subscribe(
        self,
        kind: str,
        callback: str | None = None,
        *,
        websocket: bool = False,
        **criteria: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"subscriptionType": kind, "requestWebsocketUri": websocket}
        if callback is not None:
            body["callbackReference"] = callback
        if criteria:
            body["filteringCriteria"] = criteria
        async with self.http.post(f"{self.base}{API_BASE}/subscriptions", json=body) as resp:
            answer = await resp.json()
            assert resp.status == 201, answer
        assert isinstance(answer, dict)
        return answer

    async def subscriptions(self) -> dict[str, dict[str, Any]]:
        async with self.http.get(f"{self.base}{API_BASE}/subscriptions") as resp:
            assert resp.status == 200
            listed = await resp.json()
        return {s["id"]: s for s in listed}

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.base}/readyz") as resp:
            body = await resp.json()
            return resp.status, body

    async def twin(self, device: DeviceId) -> dict[str, Any]:
        url = f"{self.base}{API_BASE}/devices/{device.namespace}/{device.name}/twin"
        async with self.http.get(url) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        assert isinstance(body, dict)
        return body

    async def metrics(self) -> str:
        async with self.http.get(f"{self.base}/metrics") as resp:
            assert resp.status == 200
            return await resp.text()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def sinks() -> AsyncIterator[Callable[..., Awaitable[Sink]]]:
    """Start callback endpoints on loopback (``Sink`` of the notify tests)."""
    started: list[Sink] = []

    async def make(statuses: Callable[[int], int] = lambda _n: 204) -> Sink:
        sink = Sink(statuses)
        await sink.start()
        started.append(sink)
        return sink

    yield make
    for sink in started:
        await sink.stop()


# ------------------------------------------------------------------ the adapter as a process


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


# ------------------------------------------------------------------ the running stack


@dataclass
class Stack:
    """Broker, EdgeCore emulator and a started adapter, with its API."""

    broker: MosquittoBroker
    edgecore: EdgeCoreEmulator
    adapter: Adapter
    api: Api
    exits: contextlib.AsyncExitStack = field(repr=False)

    @property
    def registry(self) -> DeviceRegistry:
        return self.adapter.registry

    @property
    def metrics(self) -> Metrics:
        return self.adapter.metrics

    async def restart_edgecore(self, devices: Iterable[EmulatedDevice]) -> EdgeCoreEmulator:
        """A new EdgeCore process on the same broker, holding ``devices``."""
        await self.edgecore.stop()
        self.edgecore = EdgeCoreEmulator(
            self.broker.host,
            self.broker.port,
            node_name=NODE,
            devices=devices,
            reconnect_interval=0.1,
        )
        await self.exits.enter_async_context(self.edgecore)
        return self.edgecore


StartStack = Callable[..., Awaitable[Stack]]


async def report(stack: Stack, device: DeviceId, prop: str, value: str) -> None:
    """A mapper reports ``value`` to EdgeCore; returns once the registry holds it."""
    body = {"event_id": "", "timestamp": 1, "twin": {prop: {"actual": {"value": value}}}}
    await publish(stack.broker, f"$hw/events/device/{device}/twin/update", json.dumps(body))
    await until(stack.registry, lambda: reported(stack.registry, device, prop) == value, 10)


@pytest.fixture
async def start_stack(
    broker: MosquittoBroker, tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[StartStack]:
    """``await start_stack(devices=..., **settings groups)``: a started, synced stack."""
    async with contextlib.AsyncExitStack() as exits:

        async def start(
            devices: Iterable[EmulatedDevice] | None = None,
            **groups: Mapping[str, Any],
        ) -> Stack:
            edgecore = await exits.enter_async_context(
                EdgeCoreEmulator(
                    broker.host,
                    broker.port,
                    node_name=NODE,
                    devices=edgecore_devices() if devices is None else devices,
                    reconnect_interval=0.1,
                    operation_timeout=3.0,
                )
            )
            adapter = await exits.enter_async_context(
                Adapter(adapter_settings(broker, tmp_path / "state.sqlite3", **groups))
            )
            async with asyncio.timeout(10):
                await adapter.eventbus.synced.wait()
            api = Api(http, f"http://127.0.0.1:{adapter.api_port}")
            return Stack(broker, edgecore, adapter, api, exits)

        yield start


# ------------------------------------------------------------------ convergence


def _module_ids(module: DeviceTwinModule) -> dict[DeviceId, EmulatedDevice]:
    return {DeviceId(d.namespace, d.name): d for d in module.devices.values()}


def edgecore_differences(registry: DeviceRegistry, module: DeviceTwinModule) -> list[str]:
    """How the registry's EventBus side differs from EdgeCore's state (empty: converged)."""
    wanted = _module_ids(module)
    held = {d.id: d for d in registry.devices() if d.in_eventbus}
    differences = [f"{d}: not in the registry" for d in sorted(wanted.keys() - held.keys())]
    differences += [f"{d}: not on EdgeCore" for d in sorted(held.keys() - wanted.keys())]
    for device_id in sorted(wanted.keys() & held.keys()):
        emulated, device = wanted[device_id], held[device_id]
        for name, twin in emulated.twins.items():
            if twin.deleted:
                continue
            prop = device.properties.get(name)
            reported = prop.reported.value if prop and prop.reported else None
            desired = prop.desired.value if prop and prop.desired else None
            actual = twin.actual.value if twin.actual else None
            expected = twin.expected.value if twin.expected else None
            if reported != actual:
                differences.append(f"{device_id} {name}: reported {reported!r} != {actual!r}")
            if desired != expected:
                differences.append(f"{device_id} {name}: desired {desired!r} != {expected!r}")
        if emulated.state and device.state != emulated.state:
            differences.append(f"{device_id}: state {device.state!r} != {emulated.state!r}")
    return differences


async def converge_to_edgecore(
    registry: DeviceRegistry, module: DeviceTwinModule, timeout: float = 10.0
) -> None:
    """Wait (on registry change events) until the registry matches EdgeCore."""
    try:
        await until(registry, lambda: not edgecore_differences(registry, module), timeout)
    except TimeoutError:
        raise AssertionError(
            f"the registry did not converge: {edgecore_differences(registry, module)}"
        ) from None


# ------------------------------------------------------------------ notifications and gaps


def of_subscription(sink: Sink, subscription_id: str) -> list[dict[str, Any]]:
    return [n for n in sink.received if n["subscriptionId"] == subscription_id]


def sequences(sink: Sink, subscription_id: str) -> list[int]:
    return [int(n["sequence"]) for n in of_subscription(sink, subscription_id)]


def gap(received: list[int], last: int) -> int:
    """Numbers in ``1..last`` that never arrived; received ones must strictly increase."""
    assert received == sorted(set(received)), f"sequences out of order or repeated: {received}"
    assert not received or received[-1] <= last
    return last - len(received)


def notification_count(metrics: Metrics, outcome: str, channel: str = "callback") -> float:
    value = metrics.registry.get_sample_value(
        "mka_notifications_total", {"channel": channel, "outcome": outcome}
    )
    return value or 0.0


def lost(metrics: Metrics, channel: str = "callback") -> float:
    """Notifications counted as not delivered: dropped plus coalesced away."""
    return notification_count(metrics, "dropped", channel) + notification_count(
        metrics, "coalesced", channel
    )


async def all_assigned_arrived(
    stack: Stack, sink: Sink, subscription_id: str, timeout: float = 10.0
) -> list[int]:
    """Wait until the sink holds the last sequence assigned to the subscription; its list."""
    dispatcher = stack.adapter.subscriptions.dispatcher

    def arrived() -> bool:
        got = sequences(sink, subscription_id)
        last = dispatcher.sequence(subscription_id) or 0
        return (got[-1] if got else 0) == last and dispatcher.pending(subscription_id) == 0

    await sink.wait_until(arrived, timeout)
    return sequences(sink, subscription_id)


def assert_no_loss(stack: Stack, sink: Sink, subscription_id: str) -> None:
    """Every notice numbered for the subscription arrived: no gap, nothing counted lost."""
    last = stack.adapter.subscriptions.dispatcher.sequence(subscription_id) or 0
    assert gap(sequences(sink, subscription_id), last) == 0
    assert sequences(sink, subscription_id)[:1] in ([], [1])
    assert lost(stack.metrics) == 0
