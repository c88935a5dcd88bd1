"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.registry import DeviceRegistry


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
