"""The broker is killed mid-stream and restarted: the adapter reconnects, resyncs, loses nothing."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable

import pytest

from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.device import SimulatedDevice, parse_property
from tests.helpers import until
from tests.kubeedge.test_eventbus import PUMP, THERMO
from tests.notify.conftest import Sink

from .conftest import (
    STATE,
    TWIN,
    StartStack,
    all_assigned_arrived,
    assert_no_loss,
    converge_to_edgecore,
    of_subscription,
    report,
)
from .mqtt_proxy import MqttProxy

pytestmark = pytest.mark.integration


async def test_broker_killed_during_a_stream(
    start_stack: StartStack, sinks: Callable[..., Awaitable[Sink]]
) -> None:
    stack = await start_stack()
    sink = await sinks()
    twins = await stack.api.subscribe(TWIN, sink.url)
    states = await stack.api.subscribe(STATE, sink.url, devices=[str(THERMO)])
    broker = stack.broker
    device = SimulatedDevice(
        broker.host,
        broker.port,
        str(THERMO),
        [parse_property("humidity:int:randomwalk:min=0,max=1000,step=50,start=500,seed=7")],
        rate=20,
        reconnect_interval=0.1,
    )
    async with device:
        # The stream flows: the device's humidity reports reach the subscriber (its temperature
        # follows the desired value EdgeCore holds, so it settles).
        await sink.wait_until(lambda: len(of_subscription(sink, twins["id"])) >= 3, timeout=5)

        await broker.stop(abrupt=True)
        async with asyncio.timeout(10):
            await stack.adapter.eventbus.wait_status(lambda s: s["mqtt"] == "disconnected")
        status, body = await stack.api.readyz()
        assert status == 503
        assert body["eventbus"]["mqtt"] == "disconnected"
        # EdgeCore's state changes while nobody can tell the adapter (a DMI report, say).
        stack.edgecore.module.handle(
            f"$hw/events/device/{PUMP}/twin/update",
            json.dumps(
                {"event_id": "", "timestamp": 1, "twin": {"speed": {"actual": {"value": "77"}}}}
            ).encode(),
        )
        before = len(of_subscription(sink, twins["id"]))

        await broker.start()
        # The EdgeCore emulator was cut off mid-publish and only notices when its publish
        # times out (its MQTT operation timeout, 3 s here): the adapter reconnects at once but
        # keeps probing until EdgeCore answers, unready meanwhile.
        async with asyncio.timeout(15):
            await stack.adapter.eventbus.wait_status(lambda s: s["mqtt"] == "connected")
            await stack.adapter.eventbus.synced.wait()
        # The stream resumes (the device reconnected by itself) ...
        await sink.wait_until(
            lambda: any(
                n["device"]["name"] == THERMO.name
                for n in of_subscription(sink, twins["id"])[before:]
            ),
            timeout=10,
        )
    # ... and once the device stopped (it says offline), the registry is EdgeCore's state.
    await converge_to_edgecore(stack.registry, stack.edgecore.module)
    await until(stack.registry, lambda: stack.registry.get(THERMO).state == "offline")  # type: ignore[union-attr]
    status, _ = await stack.api.readyz()
    assert status == 200
    twin = await stack.api.twin(PUMP)
    assert twin["properties"]["speed"]["reported"]["value"] == "77"

    # The change made during the outage was notified; nothing was lost on either subscription.
    received = await all_assigned_arrived(stack, sink, twins["id"])
    assert any(
        n["changes"].get("speed", {}).get("reported", {}).get("value") == "77"
        for n in of_subscription(sink, twins["id"])
    )
    await all_assigned_arrived(stack, sink, states["id"])
    assert [n["state"] for n in of_subscription(sink, states["id"])][-1] == "offline"
    assert_no_loss(stack, sink, twins["id"])
    assert_no_loss(stack, sink, states["id"])
    assert len(received) > before
    assert set(await stack.api.subscriptions()) == {twins["id"], states["id"]}
    assert stack.adapter.supervisor.restarts() == {
        "store-flush": 0,
        "notify-expiry": 0,
        "eventbus": 0,
    }
    # One loss; a connection attempt may also have landed while the broker was still down.
    attempts = re.search(r"^mka_mqtt_reconnects_total (\S+)$", await stack.api.metrics(), re.M)
    assert attempts is not None and float(attempts.group(1)) >= 1


async def test_a_session_that_goes_deaf_is_re_established(
    start_stack: StartStack, broker: MosquittoBroker
) -> None:
    """The adapter's session stays connected and its pings are answered, but the broker's
    messages stop reaching it. EdgeCore then looks silent; after ``silent_probes``
    unanswered probes the adapter drops the session and connects again, and meanwhile
    ``/readyz`` says what is wrong."""
    async with MqttProxy(broker.host, broker.port) as proxy:
        stack = await start_stack(mqtt={"url": proxy.url, "silent_probes": 2})
        eventbus = stack.adapter.eventbus
        proxy.connected.clear()
        proxy.deafen()

        async with asyncio.timeout(15):
            await eventbus.wait_status(lambda s: s["edgecore"] == "silent")
        status, body = await stack.api.readyz()
        assert body["eventbus"]["mqtt"] == "connected"
        assert "EdgeCore has not answered membership/get" in body["eventbus"]["problem"]

        async with asyncio.timeout(15):
            await proxy.connected.wait()  # the adapter gave the deaf session up
            await eventbus.wait_status(lambda s: s["synced"] and s["edgecore"] == "responsive")
        assert proxy.swallowed > 0
        assert proxy.connections == 2
        given_up = stack.metrics.registry.get_sample_value(
            "mka_syncs_total", {"outcome": "edgecore-silent-reconnect"}
        )
        assert given_up == 1
        status, body = await stack.api.readyz()
        assert (status, body["eventbus"]["problem"]) == (200, None)
        # The new session carries EdgeCore's messages again.
        await report(stack, PUMP, "speed", "321")
