"""Fixtures: a MEP emulator on a loopback port and Mp1Clients bound to its identities."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp import web

from mep_kubeedge_adapter.emulators.mep import AppIdentity, MepEmulator
from mep_kubeedge_adapter.mep.client import Mp1Client

T = TypeVar("T")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ObservedMep(MepEmulator):
    """The emulator plus a probe on ``POST …/services``: in-flight count and an optional delay.

    ``register_delay`` holds each registration that long before the emulator handles it, so
    concurrent registrations overlap and ``max_in_flight`` shows how many a client sends at
    once.
    """

    def __init__(self, *args: Any, register_delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_delay = register_delay
        self.in_flight = 0
        self.max_in_flight = 0

    def build_app(self) -> web.Application:
        app = super().build_app()

        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
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
    """Poll ``probe`` until ``accept`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value {value!r}")
        await asyncio.sleep(0.05)
