"""Fixtures: a MEP emulator on a loopback port and Mp1Clients bound to its identities."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from mep_kubeedge_adapter.emulators.mep import AppIdentity, MepEmulator
from mep_kubeedge_adapter.mep.client import Mp1Client

T = TypeVar("T")


@pytest.fixture
def producer() -> AppIdentity:
    return AppIdentity.generate(required_services=[], app_name="adapter")


@pytest.fixture
def consumer() -> AppIdentity:
    return AppIdentity.generate(required_services=[], app_name="consumer")


@pytest.fixture
async def mep(producer: AppIdentity, consumer: AppIdentity) -> AsyncIterator[MepEmulator]:
    async with MepEmulator(
        identities=[producer, consumer], liveness_seconds=0.6, liveness_grace=0.3,
        lockout_window=5.0, lockout_seconds=1.0,
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
