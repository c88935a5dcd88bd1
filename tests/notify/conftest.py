"""Fixtures for notification tests: callback sinks on loopback, a started subscription service.

Sinks are real aiohttp servers on 127.0.0.1, port 0. Tests wait on what a sink
received (``Sink.wait_for``), never on time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mep_kubeedge_adapter.domain import DeviceId, TwinState, TwinValue
from mep_kubeedge_adapter.notify.callbacks import DeliverySettings
from mep_kubeedge_adapter.notify.subscriptions import SubscriptionLimits, SubscriptionService
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry, DeviceSpec
from mep_kubeedge_adapter.settings import ApiSettings
from mep_kubeedge_adapter.store import SubscriptionStore
from mep_kubeedge_adapter.supervisor import Supervisor

BASE_URL = "http://adapter.test:8080/kubeedge_devices/v1"
FAST = DeliverySettings(
    backoff_base=0.005,
    backoff_cap=0.02,
    shutdown_grace=0.2,
    heartbeat=0.5,
    request_timeout=5.0,
)


class Clock:
    """A settable wall clock in Unix ms."""

    def __init__(self, now: int = 1_795_641_101_256) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Monotonic:
    """A settable monotonic clock in seconds (how old a pending notice is)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sink:
    """A callback endpoint that records JSON bodies.

    ``statuses`` answers attempt *n* (1-based) with a status; ``gate``, when given,
    holds every request until it is set (``entered`` is set when one is held).
    """

    def __init__(
        self,
        statuses: Callable[[int], int] = lambda _n: 204,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.statuses = statuses
        self.gate = gate
        self.entered = asyncio.Event()
        self.attempts = 0
        self.received: list[dict[str, Any]] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Event]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/notify"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/notify", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        attempt = self.attempts
        body = await request.json()
        if self.gate is not None and not self.gate.is_set():
            self.entered.set()
            await self.gate.wait()
        status = self.statuses(attempt)
        if 200 <= status < 300:
            self.received.append(body)
        self._check()
        return web.Response(status=status)

    def _check(self) -> None:
        for condition, event in self._waiters:
            if condition():
                event.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 3.0) -> None:
        """Return once ``condition()`` holds after a request; fail after ``timeout``."""
        if condition():
            return
        event = asyncio.Event()
        entry = (condition, event)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._waiters.remove(entry)

    async def wait_for(self, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Return once ``count`` notifications were received."""
        await self.wait_until(lambda: len(self.received) >= count, timeout)
        return self.received


SinkFactory = Callable[..., Awaitable[Sink]]
ServiceFactory = Callable[..., Awaitable[SubscriptionService]]


@pytest.fixture
async def sink_factory() -> AsyncIterator[SinkFactory]:
    sinks: list[Sink] = []

    async def make(
        statuses: Callable[[int], int] = lambda _n: 204, gate: asyncio.Event | None = None
    ) -> Sink:
        sink = Sink(statuses, gate)
        await sink.start()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        await sink.stop()


@pytest.fixture
async def sink(sink_factory: SinkFactory) -> Sink:
    return await sink_factory()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(clock: Clock) -> DeviceRegistry:
    return DeviceRegistry(clock=clock)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SubscriptionStore]:
    async with SubscriptionStore(tmp_path / "state.sqlite3") as opened:
        yield opened


@pytest.fixture
async def service_factory(
    store: SubscriptionStore, registry: DeviceRegistry, metrics: Metrics, clock: Clock
) -> AsyncIterator[ServiceFactory]:
    """Started services on the shared store and registry, each with its expiry loop under a
    supervisor, as the adapter runs them; stopped at the end."""
    started: list[SubscriptionService] = []
    supervisor = Supervisor()

    async def make(
        delivery: DeliverySettings = FAST,
        api: ApiSettings | None = None,
        store_: SubscriptionStore | None = None,
        expiry_interval: float = 60.0,
        limits: SubscriptionLimits | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> SubscriptionService:
        service = SubscriptionService(
            store_ or store,
            registry,
            metrics,
            api or ApiSettings(),
            delivery=delivery,
            clock=clock,
            monotonic=monotonic,
            limits=limits,
            expiry_interval=expiry_interval,
            fallback_base_url=lambda: BASE_URL,
            local_addresses=lambda: ["192.0.2.10"],
        )
        await service.start()
        started.append(service)
        supervisor.start(f"notify-expiry-{len(started)}", service.run_expiry)
        return service

    yield make
    await supervisor.stop()
    for service in started:
        await service.stop()


@pytest.fixture
async def service(service_factory: ServiceFactory) -> SubscriptionService:
    return await service_factory()


THERMO = DeviceId("default", "thermo-1")
PUMP = DeviceId("plant", "pump-7")


def add_devices(registry: DeviceRegistry) -> None:
    """Two devices with models and labels, known to the kube source."""
    registry.upsert_spec(
        DeviceSpec(
            id=THERMO,
            model="thermometer",
            node="edge-1",
            labels={"room": "lab", "tier": "gold"},
            declared_properties=("temperature", "humidity"),
        )
    )
    registry.upsert_spec(
        DeviceSpec(
            id=PUMP,
            model="pump",
            node="edge-1",
            labels={"room": "hall"},
            declared_properties=("speed",),
        )
    )


def report(registry: DeviceRegistry, device: DeviceId, ts: int, **values: str) -> None:
    """The device reports ``values`` at ``ts`` (ms), as EdgeCore would tell the registry."""
    registry.apply_twin_states(
        device, {name: TwinState(actual=TwinValue(value, ts)) for name, value in values.items()}
    )


def sample(metrics: Metrics, channel: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "mka_notifications_total", {"channel": channel, "outcome": outcome}
    )
    return value or 0.0
