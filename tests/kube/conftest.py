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
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes import client, watch

# pytest puts tests/ on sys.path (rootdir conftest, no tests/__init__.py), so the fake is
# the top-level package "fakekube" at run time; mypy, checking the "tests" package, knows it
# as "tests.fakekube".
if TYPE_CHECKING:
    from tests.fakekube import FakeApiServer
else:
    from fakekube import FakeApiServer

DATA = Path(__file__).parent / "data"
GROUP = "devices.kubeedge.io"


def load_yaml(relative: str) -> dict[str, Any]:
    """One YAML document from ``tests/kube/data``."""
    with (DATA / relative).open(encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
async def fake_apiserver() -> AsyncIterator[FakeApiServer]:
    """A started fake API server (KubeEdge 1.23 profile) with a short bookmark interval."""
    async with FakeApiServer(bookmark_interval=0.2) as fake:
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
