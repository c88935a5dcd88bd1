"""Fixtures: a MEP emulator on a loopback port and Mp1Clients bound to its identities.

Tests of timing (heartbeats, liveness windows, lock-outs, retry waits) use the
``virtual_clock`` fixture ahead of ``mep``: the emulator, the client and the registrar all run
on the test's event loop and read its clock, so on virtual time their seconds pass at once and
exactly while the HTTP between them stays real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp import web

from mep_kubeedge_adapter.emulators.mep import AppIdentity, MepEmulator
from mep_kubeedge_adapter.mep.client import Mp1Client
from tests.helpers import virtual_time

T = TypeVar("T")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ObservedMep(MepEmulator):
    """The emulator plus a probe on ``POST …/services``: in-flight count and an optional delay;
    and a record of the heartbeats it accepted.

    ``register_delay`` holds each registration that long before the emulator handles it, so
    concurrent registrations overlap and ``max_in_flight`` shows how many a client sends at
    once. ``beats`` maps a service instance id to the loop times of its accepted liveness PUTs.
    """

    def __init__(self, *args: Any, register_delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_delay = register_delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.beats: dict[str, list[float]] = {}

    def build_app(self) -> web.Application:
        app = super().build_app()

        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method == "PUT" and request.path.endswith("/liveness"):
                response = await handler(request)
                if response.status == 204:
                    sid = request.match_info["serInstanceId"]
                    self.beats.setdefault(sid, []).append(asyncio.get_running_loop().time())
                return response
            if request.method != "POST" or not request.path.endswith("/services"):
                return await handler(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.register_delay:
                    await asyncio.sleep(self.register_delay)
                return await handler(request)
            finally:
                self.in_flight -= 1

        app.middlewares.insert(0, observe)
        return app


@pytest.fixture
async def virtual_clock() -> AsyncIterator[None]:
    """The test on virtual time (``tests.helpers.virtual_time``); request it before ``mep``
    (``pytest.mark.usefixtures``) so that the emulator starts and stops on the same clock."""
    with virtual_time():
        yield


@pytest.fixture
def producer() -> AppIdentity:
    return AppIdentity.generate(required_services=[], app_name="adapter")


@pytest.fixture
def consumer() -> AppIdentity:
    return AppIdentity.generate(required_services=[], app_name="consumer")


@pytest.fixture
async def mep(producer: AppIdentity, consumer: AppIdentity) -> AsyncIterator[ObservedMep]:
    async with ObservedMep(
        identities=[producer, consumer],
        liveness_seconds=0.6,
        liveness_grace=0.3,
        lockout_window=5.0,
        lockout_seconds=1.0,
    ) as emulator:
        yield emulator
        assert emulator.schema_violations == []


@pytest.fixture
async def client(mep: MepEmulator, producer: AppIdentity) -> AsyncIterator[Mp1Client]:
    async with Mp1Client(mep.url, producer.app_instance_id, producer.ak, producer.sk) as c:
        yield c


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float = 5.0
) -> T:
    """Poll ``probe`` until ``accept`` holds, failing after ``timeout`` seconds of the loop's
    clock (virtual seconds on virtual time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value {value!r}")
        await asyncio.sleep(0.05)
