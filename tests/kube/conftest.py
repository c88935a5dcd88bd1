"""Fixtures for tests that drive the real ``kubernetes`` client against the fake API server.

Threading choice: the fake runs in the test's event loop, and every (synchronous, blocking)
``kubernetes`` client call is made from a worker thread via ``asyncio.to_thread``, so the loop
stays free to answer it. The same holds for the adapter's kube source, which runs the client in
threads too. Watch threads must end before the test does (the loop waits for its default
executor on close): pass ``timeout_seconds``, or let the fixture's teardown cut the connection
with :meth:`FakeApiServer.go_down`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from mep_kubeedge_adapter.backoff import Backoff
from mep_kubeedge_adapter.domain import ChangeEvent
from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer
from mep_kubeedge_adapter.kubeedge.kubesource import KubeSource
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import KubeSettings

DATA = Path(__file__).parent / "data"
GROUP = "devices.kubeedge.io"
NAMESPACES = ("other", "lab", "plant", "plant-1", "plant-2")
"""Namespaces the device tests use besides ``default`` (namespaces are real objects)."""


def load_yaml(relative: str) -> dict[str, Any]:
    """One YAML document from ``tests/kube/data``."""
    with (DATA / relative).open(encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
async def fake_apiserver() -> AsyncIterator[FakeApiServer]:
    """A started fake API server (KubeEdge 1.23 profile) with a short bookmark interval."""
    async with FakeApiServer(bookmark_interval=0.2, namespaces=NAMESPACES) as fake:
        yield fake


@pytest.fixture
def kube_client(fake_apiserver: FakeApiServer) -> Iterator[client.ApiClient]:
    """A ``kubernetes.client.ApiClient`` configured for the fake, closed afterwards."""
    configuration = client.Configuration(host=fake_apiserver.url)
    api_client = client.ApiClient(configuration)
    try:
        yield api_client
    finally:
        api_client.close()  # type: ignore[no-untyped-call]
        api_client.rest_client.close()


class WatchThread:
    """Runs ``Watch.stream`` in a thread and hands its events to the loop, for assertions.

    ``events`` receives each event dict; when the stream ends it receives the exception that
    ended it, or ``None`` for a clean end.
    """

    def __init__(self, stream: Callable[[], Iterator[dict[str, Any]]], w: watch.Watch) -> None:
        self.watch = w
        self.events: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        result: BaseException | None = None
        try:
            for event in self._stream():
                self._loop.call_soon_threadsafe(self.events.put_nowait, event)
        except BaseException as e:
            result = e
        self._loop.call_soon_threadsafe(self.events.put_nowait, result)

    async def next(self, within: float = 5.0) -> dict[str, Any] | BaseException | None:
        async with asyncio.timeout(within):
            return await self.events.get()

    async def join(self, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            await asyncio.to_thread(self._thread.join)


# --------------------------------------------------------------------------------------------
# the adapter's kube source against the fake


NODE = "edge-1"


class RegistryEvents:
    """Records every registry change event and lets a test await a condition on them."""

    def __init__(self, registry: DeviceRegistry) -> None:
        self.events: list[ChangeEvent] = []
        self._changed = asyncio.Event()
        registry.subscribe(self._on_event)

    def _on_event(self, event: ChangeEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked after every change event."""
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class RunningSource:
    """A :class:`KubeSource` running as a task, with its registry, metrics and recorder."""

    source: KubeSource
    registry: DeviceRegistry
    metrics: Metrics
    recorded: RegistryEvents
    task: asyncio.Task[None]

    async def until_status(
        self, predicate: Callable[[dict[str, Any]], bool], within: float = 5.0
    ) -> None:
        async with asyncio.timeout(within):
            await self.source.wait_status(predicate)

    async def synced(self) -> None:
        """Every served resource listed and watched."""
        await self.until_status(lambda s: s["synced"] and s["connected"])

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    async def stop(self, within: float = 5.0) -> None:
        self.task.cancel()
        async with asyncio.timeout(within):
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


StartSource = Callable[..., Awaitable[RunningSource]]


def fast_backoff() -> Backoff:
    return Backoff(base=0.02, cap=0.2)


@pytest.fixture
async def start_source(fake_apiserver: FakeApiServer) -> AsyncIterator[StartSource]:
    """Start a kube source (MetaServer-style plain HTTP) on the fake; stopped after the test.

    Keyword arguments are ``KubeSettings`` fields; ``node`` is the node name.
    """
    running: list[RunningSource] = []

    async def start(node: str = NODE, **kube: Any) -> RunningSource:
        kube = {"source": "metaserver", "url": fake_apiserver.url, **kube}
        settings = KubeSettings(**kube)
        registry = DeviceRegistry()
        metrics = Metrics()
        recorded = RegistryEvents(registry)
        source = KubeSource(settings, node, registry, metrics, backoff=fast_backoff)
        task = asyncio.create_task(source.run(), name="kube")
        started = RunningSource(source, registry, metrics, recorded, task)
        running.append(started)
        return started

    yield start
    for started in running:
        await started.stop()
