"""The kube API server answers 410 Gone, drops its watches and goes away, under a full adapter.

The adapter reads Device CRs from the fake API server (``mep_kubeedge_adapter/emulators/kubeapi``) beside the EventBus;
subscribers to membership and twin changes are attached throughout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer
from mep_kubeedge_adapter.registry import DeviceRegistry
from tests.helpers import until
from tests.kube.test_kubesource import NS, device, model
from tests.notify.conftest import Sink

from .conftest import (
    MEMBERSHIP,
    NODE,
    TWIN,
    StartStack,
    all_assigned_arrived,
    assert_no_loss,
    of_subscription,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(bookmark_interval=0.2) as server:
        yield server


def bound(fake: FakeApiServer) -> dict[DeviceId, dict[str, str]]:
    """Device CRs bound to our node → their desired values."""
    return {
        DeviceId(o["metadata"]["namespace"], o["metadata"]["name"]): {
            p["name"]: p["desired"]["value"] for p in o["spec"]["properties"] if "desired" in p
        }
        for o in fake.objects("Device")
        if o["spec"].get("nodeName") == NODE
    }


def kube_differences(registry: DeviceRegistry, fake: FakeApiServer) -> list[str]:
    wanted = bound(fake)
    held = {d.id: d for d in registry.devices() if d.in_kube}
    differences = [f"{d}: missing" for d in wanted.keys() - held.keys()]
    differences += [f"{d}: not bound" for d in held.keys() - wanted.keys()]
    for device_id in wanted.keys() & held.keys():
        properties = held[device_id].properties
        for name, value in wanted[device_id].items():
            desired = properties[name].desired if name in properties else None
            if desired is None or desired.value != value:
                differences.append(f"{device_id} {name}: desired {desired} != {value!r}")
    return differences


async def converge_to_kube(registry: DeviceRegistry, fake: FakeApiServer) -> None:
    try:
        await until(registry, lambda: not kube_differences(registry, fake), 10)
    except TimeoutError:
        raise AssertionError(f"not converged: {kube_differences(registry, fake)}") from None


def set_desired(value: str) -> Callable[[dict[str, Any]], None]:
    return lambda o: o["spec"]["properties"][0].update(desired={"value": value})


async def test_kube_api_410_dropped_watches_and_outage(
    start_stack: StartStack, sinks: Callable[..., Awaitable[Sink]], fake: FakeApiServer
) -> None:
    fake.create(model())
    for name in ("a", "b", "c"):
        fake.create(device(name, node=NODE))
    fake.create(device("elsewhere", node="other-node"))
    stack = await start_stack(kube={"source": "metaserver", "url": fake.url})
    kube = stack.adapter.kube
    assert kube is not None
    async with asyncio.timeout(10):
        await kube.wait_status(lambda s: s["synced"] and s["connected"])
    await converge_to_kube(stack.registry, fake)
    sink = await sinks()
    members = (await stack.api.subscribe(MEMBERSHIP, sink.url))["id"]
    twins = (await stack.api.subscribe(TWIN, sink.url))["id"]

    # Down while things change, and back with the history compacted: 410, then a re-list.
    await fake.go_down()
    async with asyncio.timeout(10):
        await kube.wait_status(lambda s: not s["connected"])
    _, body = await stack.api.readyz()
    assert body["kube"]["connected"] is False
    fake.modify("Device", NS, "a", set_desired("30"))
    fake.delete("Device", NS, "b")
    fake.create(device("d", node=NODE))
    fake.compact()
    await fake.come_up()
    await converge_to_kube(stack.registry, fake)
    async with asyncio.timeout(10):
        await kube.wait_status(lambda s: s["synced"] and s["connected"])
    expired = stack.metrics.registry.get_sample_value(
        "mka_kube_relists_total", {"resource": "devices", "reason": "expired"}
    )
    assert expired == 1

    # Watches cut mid-stream resume where they were, without a re-list.
    await fake.wait_for_watches(3)
    fake.drop_watches()
    fake.create(device("e", node=NODE))
    fake.modify("Device", NS, "c", set_desired("31"))
    await converge_to_kube(stack.registry, fake)
    # Compacted again while watching: the next watch (after a clean drop) gets a 410.
    await fake.wait_for_watches(3)
    fake.compact()
    fake.drop_watches(abrupt=False)
    fake.delete("Device", NS, "e")
    fake.modify("Device", NS, "a", set_desired("32"))
    await converge_to_kube(stack.registry, fake)

    await all_assigned_arrived(stack, sink, members)
    await all_assigned_arrived(stack, sink, twins)
    changes = [(n["device"]["name"], n["changeType"]) for n in of_subscription(sink, members)]
    assert sorted(changes) == sorted(
        [("b", "REMOVED"), ("d", "ADDED"), ("e", "ADDED"), ("e", "REMOVED")]
    )
    desired = [
        (n["device"]["name"], n["changes"]["temperature"]["desired"]["value"])
        for n in of_subscription(sink, twins)
        if "desired" in n["changes"].get("temperature", {})
    ]
    assert desired == [("a", "30"), ("c", "31"), ("a", "32")]
    assert_no_loss(stack, sink, members)
    assert_no_loss(stack, sink, twins)
    assert set(await stack.api.subscriptions()) == {members, twins}
    assert stack.adapter.supervisor.restarts() == {
        "store-flush": 0,
        "notify-expiry": 0,
        "eventbus": 0,
        "kube": 0,
    }


async def test_kube_api_restarted_answers_429_and_503_first(
    start_stack: StartStack, sinks: Callable[..., Awaitable[Sink]], fake: FakeApiServer
) -> None:
    """A restarted kube-apiserver refuses the first watches while it starts (503,
    ``Retry-After: 5``) and while its watch cache fills (429 "storage is (re)initializing",
    ``Retry-After: 1``): /readyz says so meanwhile, the adapter follows that pace, and
    nothing changed during the outage is lost."""
    fake.create(model())
    for name in ("a", "b"):
        fake.create(device(name, node=NODE))
    stack = await start_stack(kube={"source": "metaserver", "url": fake.url})
    kube = stack.adapter.kube
    assert kube is not None
    async with asyncio.timeout(10):
        await kube.wait_status(lambda s: s["synced"] and s["connected"])
    sink = await sinks()
    members = (await stack.api.subscribe(MEMBERSHIP, sink.url))["id"]

    await fake.go_down()
    async with asyncio.timeout(10):
        await kube.wait_status(lambda s: not s["connected"])
    fake.delete("Device", NS, "b")
    fake.create(device("c", node=NODE))
    await fake.come_up(unavailable=1, initializing=2)

    def refused(status: dict[str, Any]) -> bool:
        return any("HTTP 429" in (r["lastError"] or "") for r in status["resources"].values())

    async with asyncio.timeout(30):
        await kube.wait_status(refused)
    _, body = await stack.api.readyz()
    assert body["kube"]["connected"] is False
    await converge_to_kube(stack.registry, fake)
    async with asyncio.timeout(30):
        await kube.wait_status(lambda s: s["synced"] and s["connected"])
    await all_assigned_arrived(stack, sink, members)
    changes = [(n["device"]["name"], n["changeType"]) for n in of_subscription(sink, members)]
    assert sorted(changes) == [("b", "REMOVED"), ("c", "ADDED")]
    assert_no_loss(stack, sink, members)
