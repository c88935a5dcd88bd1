"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import cast

import looptime

from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.registry import DeviceRegistry


@contextlib.contextmanager
def virtual_time() -> Iterator[None]:
    """Run the block on virtual time: the running loop's clock jumps to its next timer
    whenever nothing is ready, so sleeps, timeouts and periodic loops of seconds or
    minutes pass at once and exactly (``looptime``).

    Only for tests whose parties all run on this loop and time themselves with its clock
    (``loop.time()``, sleeps, timeouts). HTTP over loopback between such parties is fine: the
    kernel normally hands the bytes to the peer socket within the send, and the clock moves
    only after many polls found nothing to do. Threads (aiosqlite, ``asyncio.to_thread``, the
    kubernetes client) and other processes (mosquitto) answer in real time, and the clock
    jumps past their timeouts. The clock continues from its real value, so timers set before
    keep their place; leave the block only when the test's parties have stopped.
    """
    loop = asyncio.get_running_loop()
    patched = looptime.patch_event_loop(
        cast(asyncio.BaseEventLoop, loop), start=loop.time(), _enabled=False
    )
    with patched.looptime_enabled():
        yield


async def until(
    registry: DeviceRegistry, predicate: Callable[[], bool], timeout: float = 15
) -> None:
    """Wait for the registry to reach a state, woken by its change events (no polling)."""
    changed = asyncio.Event()
    unsubscribe = registry.subscribe(lambda _event: changed.set())
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await changed.wait()
                changed.clear()
    finally:
        unsubscribe()


def reported(registry: DeviceRegistry, device: DeviceId, prop: str) -> str | None:
    """The reported value of a property, or None."""
    current = registry.get(device)
    if current is None or prop not in current.properties:
        return None
    value = current.properties[prop].reported
    return value.value if value else None


def desired(registry: DeviceRegistry, device: DeviceId, prop: str) -> str | None:
    """The desired value of a property, or None."""
    current = registry.get(device)
    if current is None or prop not in current.properties:
        return None
    value = current.properties[prop].desired
    return value.value if value else None
