"""The MEP loses its registry, goes down and comes back wiped: the adapter re-registers alone.

Meanwhile the API keeps serving and notifications keep flowing; the MEP emulator's registry
is the only evidence outside the adapter, so it is polled with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mep_kubeedge_adapter.emulators.mep import AppIdentity
from mep_kubeedge_adapter.mep.models import to_ser_name
from mep_kubeedge_adapter.mep.registrar import MepState
from tests.kubeedge.test_eventbus import PUMP
from tests.mep.conftest import ObservedMep, eventually
from tests.mep.test_registrar import names
from tests.notify.conftest import Sink

from .conftest import NODE, TWIN, StartStack, all_assigned_arrived, assert_no_loss, report

pytestmark = pytest.mark.integration

OURS = sorted([to_ser_name("kubeedge-devices", NODE), to_ser_name("iots", NODE)])


@pytest.fixture
def producer() -> AppIdentity:
    return AppIdentity.generate(required_services=[], app_name="adapter")


@pytest.fixture
async def mep(producer: AppIdentity) -> AsyncIterator[ObservedMep]:
    async with ObservedMep(
        identities=[producer], liveness_seconds=0.6, liveness_grace=0.3
    ) as emulator:
        yield emulator
        assert emulator.schema_violations == []


async def registered_once(mep: ObservedMep, producer: AppIdentity, exclude: set[str]) -> None:
    """Poll the MEP until it holds exactly our services, ACTIVE, none of them in ``exclude``."""

    async def probe() -> list[dict[str, object]]:
        return [
            s for s in mep.services() if s["_links"]["appInstanceId"] == producer.app_instance_id
        ]

    def accept(services: list[dict[str, object]]) -> bool:
        return (
            sorted(str(s["serName"]) for s in services) == OURS
            and all(s["state"] == "ACTIVE" for s in services)
            and not {str(s["serInstanceId"]) for s in services} & exclude
        )

    await eventually(probe, accept, timeout=8)


async def test_mep_wiped_down_and_back_wiped(
    start_stack: StartStack,
    sinks: Callable[..., Awaitable[Sink]],
    mep: ObservedMep,
    producer: AppIdentity,
) -> None:
    stack = await start_stack(
        mep={
            "url": mep.url,
            "app_instance_id": producer.app_instance_id,
            "ak": producer.ak,
            "sk": producer.sk,
            "heartbeat_interval": 0.3,
            "deregister_timeout": 3.0,
        }
    )
    registrar = stack.adapter.registrar
    assert registrar is not None
    async with asyncio.timeout(10):
        await registrar.wait_state(MepState.REGISTERED)
    assert names(mep, producer) == OURS
    sink = await sinks()
    sid = (await stack.api.subscribe(TWIN, sink.url))["id"]

    # The MEP loses its registry: the next heartbeat's 404 brings a re-registration.
    first = set(registrar.registered().values())
    mep.wipe()
    await registered_once(mep, producer, exclude=first)
    await report(stack, PUMP, "speed", "101")

    # The MEP goes down: /readyz says so, the API and notifications carry on.
    mep.down("close")
    async with asyncio.timeout(10):
        await registrar.wait_state(MepState.CONNECTING)
    status, body = await stack.api.readyz()
    assert (status, body["mep"]["state"]) == (200, "connecting")
    await report(stack, PUMP, "speed", "102")
    await all_assigned_arrived(stack, sink, sid)

    # It comes back having lost everything: registered again, exactly once.
    second = set(registrar.registered().values())
    mep.wipe()
    mep.up()
    async with asyncio.timeout(10):
        await registrar.wait_state(MepState.REGISTERED)
    await registered_once(mep, producer, exclude=first | second)
    assert set(registrar.registered().values()) == {s["serInstanceId"] for s in mep.services()}
    status, body = await stack.api.readyz()
    assert (status, body["mep"]["state"]) == (200, "registered")

    await report(stack, PUMP, "speed", "103")
    await all_assigned_arrived(stack, sink, sid)
    assert [n["changes"]["speed"]["reported"]["value"] for n in sink.received] == [
        "101",
        "102",
        "103",
    ]
    assert_no_loss(stack, sink, sid)
    assert list(await stack.api.subscriptions()) == [sid]
    assert stack.adapter.supervisor.restarts() == {
        "store-flush": 0,
        "notify-expiry": 0,
        "eventbus": 0,
        "mep-registrar": 0,
    }
