"""EdgeCore goes away and comes back as a new process holding a different state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from mep_kubeedge_adapter.domain import DeviceId
from tests.kubeedge.test_eventbus import PUMP, THERMO
from tests.notify.conftest import Sink

from .conftest import (
    MEMBERSHIP,
    STATE,
    TWIN,
    StartStack,
    all_assigned_arrived,
    assert_no_loss,
    converge_to_edgecore,
    edgecore_devices,
    of_subscription,
)

pytestmark = pytest.mark.integration

VALVE = DeviceId("lab", "valve-1")

AFTER_RESTART = {
    "devices": [
        {
            "namespace": "default",
            "name": "thermo-1",
            "description": "test thermometer",
            "twins": {
                "temperature": {"type": "int", "expected": "26", "actual": "24"},
                "humidity": {"type": "string", "actual": "41"},
            },
        },
        {
            "namespace": "lab",
            "name": "valve-1",
            "twins": {"open": {"type": "boolean", "actual": "true"}},
        },
    ]
}
"""pump-1 was unbound, valve-1 bound, thermo-1's values and state changed while it was down."""


async def test_edgecore_restarted_with_a_changed_state(
    start_stack: StartStack, sinks: Callable[..., Awaitable[Sink]]
) -> None:
    stack = await start_stack()
    sink = await sinks()
    subscriptions = {
        kind: (await stack.api.subscribe(kind, sink.url))["id"]
        for kind in (TWIN, STATE, MEMBERSHIP)
    }
    eventbus = stack.adapter.eventbus

    await stack.edgecore.stop()
    async with asyncio.timeout(10):
        await eventbus.wait_status(lambda s: s["edgecore"] == "silent")
    _, body = await stack.api.readyz()
    assert body["eventbus"]["edgecore"] == "silent"
    assert body["eventbus"]["mqtt"] == "connected"
    # Nothing EdgeCore did not say is invented meanwhile: the registry keeps what it knew.
    assert {PUMP, THERMO} <= stack.registry.device_ids()

    devices = edgecore_devices(AFTER_RESTART)
    devices[0].state, devices[0].last_online = "online", "2026-01-01T00:00:00Z"
    new = await stack.restart_edgecore(devices)
    async with asyncio.timeout(10):
        await eventbus.wait_status(lambda s: s["edgecore"] == "responsive")
    await converge_to_edgecore(stack.registry, new.module)
    status, body = await stack.api.readyz()
    assert (status, body["eventbus"]["edgecore"], body["devices"]) == (200, "responsive", 2)

    for subscription in subscriptions.values():
        await all_assigned_arrived(stack, sink, subscription)
        assert_no_loss(stack, sink, subscription)
    membership = {
        (n["device"]["namespace"], n["device"]["name"]): n["changeType"]
        for n in of_subscription(sink, subscriptions[MEMBERSHIP])
    }
    assert membership == {
        (PUMP.namespace, PUMP.name): "REMOVED",
        (VALVE.namespace, VALVE.name): "ADDED",
    }
    temperature = [
        n["changes"]["temperature"]
        for n in of_subscription(sink, subscriptions[TWIN])
        if n["device"]["name"] == THERMO.name
    ]
    assert temperature[-1]["reported"]["value"] == "24"
    assert temperature[-1]["desired"]["value"] == "26"
    states = of_subscription(sink, subscriptions[STATE])
    assert [(n["device"]["name"], n["state"]) for n in states] == [(THERMO.name, "online")]
    assert set(await stack.api.subscriptions()) == set(subscriptions.values())
    assert stack.adapter.supervisor.restarts() == {
        "store-flush": 0,
        "notify-expiry": 0,
        "eventbus": 0,
    }
