"""The EventBus client against the EdgeCore emulator on a real mosquitto broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest
from structlog.testing import capture_logs

from mep_kubeedge_adapter.domain import AdapterError, DeviceId, ErrorKind
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator, parse_devices
from mep_kubeedge_adapter.kubeedge.eventbus import EventBusClient
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import MqttSettings
from tests.helpers import desired, reported, until

THERMO = DeviceId("default", "thermo-1")
PUMP = DeviceId("default", "pump-1")

DEVICES = {
    "devices": [
        {
            "namespace": "default",
            "name": "thermo-1",
            "description": "test thermometer",
            "twins": {
                "temperature": {"type": "int", "expected": "25", "actual": "21"},
                "humidity": {"type": "string", "actual": "40"},
            },
        },
        {
            "namespace": "default",
            "name": "pump-1",
            "twins": {"speed": {"type": "int", "actual": "90"}},
        },
    ]
}


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


@dataclass
class Stack:
    broker: MosquittoBroker
    edgecore: EdgeCoreEmulator
    eventbus: EventBusClient
    registry: DeviceRegistry
    metrics: Metrics


@contextlib.asynccontextmanager
async def running_stack(
    broker: MosquittoBroker,
    *,
    emulator_layout: str = "namespaced",
    adapter_layout: str = "auto",
    **mqtt: object,
) -> AsyncIterator[Stack]:
    registry = DeviceRegistry()
    metrics = Metrics()
    settings = MqttSettings.model_validate(
        {"url": broker.url, "topic_layout": adapter_layout, "request_timeout": 5.0, **mqtt}
    )
    eventbus = EventBusClient(settings, "edge-node", registry, metrics)
    async with EdgeCoreEmulator(
        broker.host,
        broker.port,
        node_name="edge-node",
        devices=parse_devices(DEVICES),
        topic_layout=emulator_layout,  # type: ignore[arg-type]
        reconnect_interval=0.1,
    ) as edgecore:
        task = asyncio.create_task(eventbus.run())
        try:
            async with asyncio.timeout(10):
                await eventbus.synced.wait()
            yield Stack(broker, edgecore, eventbus, registry, metrics)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def stack(broker: MosquittoBroker) -> AsyncIterator[Stack]:
    async with running_stack(broker) as running:
        yield running


async def publish(broker: MosquittoBroker, topic: str, payload: bytes | str) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(topic, payload, qos=1)


async def test_first_sync_matches_edgecore(stack: Stack) -> None:
    assert stack.registry.device_ids() == {THERMO, PUMP}
    thermo = stack.registry.get(THERMO)
    assert thermo is not None
    assert thermo.description == "test thermometer"
    assert thermo.properties["temperature"].twin_type == "int"
    assert reported(stack.registry, THERMO, "temperature") == "21"
    assert desired(stack.registry, THERMO, "temperature") == "25"
    assert reported(stack.registry, THERMO, "humidity") == "40"
    assert stack.eventbus.status()["edgecore"] == "responsive"
    assert stack.eventbus.edgecore_node == "edge-node"


async def test_mapper_reports_reach_the_registry(stack: Stack) -> None:
    await publish(
        stack.broker,
        "$hw/events/device/default/pump-1/twin/update",
        json.dumps(
            {"event_id": "", "timestamp": 1, "twin": {"speed": {"actual": {"value": "95"}}}}
        ),
    )
    await until(stack.registry, lambda: reported(stack.registry, PUMP, "speed") == "95")


async def test_desired_write_is_accepted_and_recorded(stack: Stack) -> None:
    await stack.eventbus.write_desired(PUMP, {"speed": ("120", "int")})
    # The registry holds the new desired value as soon as EdgeCore's result arrived.
    assert desired(stack.registry, PUMP, "speed") == "120"
    assert stack.edgecore.module.devices["default/pump-1"].twins["speed"].expected is not None
    assert (
        metric(stack.metrics, "mka_desired_writes_total", path="eventbus", outcome="accepted") == 1
    )


async def test_edgecore_refusal_is_reported(stack: Stack) -> None:
    with pytest.raises(AdapterError) as info:
        await stack.eventbus.write_desired(PUMP, {"speed": ("fast", "int")})
    assert info.value.kind is ErrorKind.UPSTREAM_REJECTED
    assert "not int" in info.value.detail


async def test_unknown_device_write_is_refused_with_404(stack: Stack) -> None:
    with pytest.raises(AdapterError) as info:
        await stack.eventbus.write_desired(DeviceId("default", "ghost"), {"x": ("1", "int")})
    assert info.value.kind is ErrorKind.UPSTREAM_REJECTED
    assert "(404)" in info.value.detail


async def test_silent_edgecore_times_out_and_is_detected(broker: MosquittoBroker) -> None:
    async with running_stack(broker, probe_interval=0.2) as stack:
        stack.edgecore.silent = True
        with pytest.raises(AdapterError) as info:
            await stack.eventbus.write_desired(PUMP, {"speed": ("100", "int")})
        assert info.value.kind is ErrorKind.UPSTREAM_TIMEOUT
        async with asyncio.timeout(10):
            await stack.eventbus.wait_status(lambda s: s["edgecore"] == "silent")
        stack.edgecore.silent = False
        async with asyncio.timeout(10):
            await stack.eventbus.wait_status(lambda s: s["edgecore"] == "responsive")
        # The write that "timed out" was applied by EdgeCore; the resync shows it.
        await until(stack.registry, lambda: desired(stack.registry, PUMP, "speed") == "100")


async def test_a_new_members_twin_read_that_fails_is_logged(broker: MosquittoBroker) -> None:
    """The read a membership change starts runs in the background: a broken connection
    (here an MQTT client that has disconnected) is logged, not swallowed."""
    settings = MqttSettings.model_validate({"url": broker.url, "request_timeout": 5.0})
    eventbus = EventBusClient(settings, "edge-node", DeviceRegistry(), Metrics())
    async with aiomqtt.Client(broker.host, broker.port) as disconnected:
        pass
    with capture_logs() as logs:
        await eventbus._fetch_twin_logged(disconnected, DeviceId("lab", "valve-9"))
    assert [(e["event"], e["log_level"], e["device"]) for e in logs] == [
        ("twin_get_failed", "warning", "lab/valve-9")
    ]
    assert logs[0]["error"]


async def test_membership_changes_at_runtime(stack: Stack) -> None:
    valve = parse_devices(
        {
            "devices": [
                {
                    "namespace": "lab",
                    "name": "valve-1",
                    "twins": {"open": {"type": "boolean", "actual": "true"}},
                }
            ]
        }
    )[0]
    await stack.edgecore.add_device(valve)
    valve_id = DeviceId("lab", "valve-1")
    await until(stack.registry, lambda: valve_id in stack.registry)
    await stack.edgecore.remove_device("lab/valve-1")
    await until(stack.registry, lambda: valve_id not in stack.registry)


async def test_broker_restart_resyncs_to_edgecore_state(stack: Stack) -> None:
    await stack.broker.stop()
    async with asyncio.timeout(10):
        await stack.eventbus.wait_status(lambda s: s["mqtt"] == "disconnected")
    # While the broker is down EdgeCore's state changes (a mapper report over DMI, say).
    stack.edgecore.module.handle(
        "$hw/events/device/default/pump-1/twin/update",
        json.dumps(
            {"event_id": "", "timestamp": 1, "twin": {"speed": {"actual": {"value": "77"}}}}
        ).encode(),
    )
    await stack.broker.start()
    await until(stack.registry, lambda: reported(stack.registry, PUMP, "speed") == "77", timeout=20)
    async with asyncio.timeout(10):
        await stack.eventbus.synced.wait()
    assert metric(stack.metrics, "mka_mqtt_reconnects_total") >= 1


async def test_bad_input_is_counted_and_nothing_breaks(broker: MosquittoBroker) -> None:
    async with running_stack(broker, max_payload=2048) as stack:
        base = "$hw/events/device/default/thermo-1/twin/update"
        await publish(stack.broker, base + "/document", b"{not json")
        await publish(
            stack.broker,
            base + "/result",
            json.dumps({"twin": {"temperature": {"actual": {"value": 5}}}}),
        )
        await publish(stack.broker, base + "/something", b"{}")
        await publish(stack.broker, base + "/document", b"x" * 4096)
        await publish(
            stack.broker,
            "$hw/events/device/default/thermo-1/twin/update",
            json.dumps(
                {
                    "event_id": "",
                    "timestamp": 1,
                    "twin": {"temperature": {"actual": {"value": "30"}}},
                }
            ),
        )
        # The valid report after the garbage still arrives: nothing broke.
        await until(stack.registry, lambda: reported(stack.registry, THERMO, "temperature") == "30")
        m = stack.metrics
        assert (
            metric(m, "mka_mqtt_messages_total", kind="twin/update/document", outcome="malformed")
            == 1
        )
        assert (
            metric(m, "mka_mqtt_messages_total", kind="twin/update/result", outcome="malformed")
            == 1
        )
        assert metric(m, "mka_mqtt_messages_total", kind="unknown", outcome="unknown-topic") == 1
        assert (
            metric(m, "mka_mqtt_messages_total", kind="twin/update/document", outcome="oversized")
            == 1
        )


async def test_legacy_topics_are_understood(broker: MosquittoBroker) -> None:
    async with running_stack(broker, emulator_layout="legacy", adapter_layout="auto") as stack:
        assert stack.registry.device_ids() == {THERMO, PUMP}
        await stack.eventbus.write_desired(PUMP, {"speed": ("110", "int")})
        assert desired(stack.registry, PUMP, "speed") == "110"


async def test_periodic_resync_catches_a_quick_edgecore_restart(broker: MosquittoBroker) -> None:
    async with running_stack(broker, probe_interval=0.2, resync_interval=0.5) as stack:
        # EdgeCore restarted within one probe interval with another value: nothing on MQTT.
        twin = stack.edgecore.module.devices["default/pump-1"].twins["speed"]
        assert twin.actual is not None
        twin.actual = type(twin.actual)("64", twin.actual.timestamp + 1)
        # Only a fresh twin/get can bring this value: the change was never published.
        await until(stack.registry, lambda: reported(stack.registry, PUMP, "speed") == "64")


class _BrokenOnClose(aiomqtt.Client):
    """A real client whose disconnect breaks, as aiomqtt reports a broker lost mid-close."""

    async def __aexit__(self, *exc_info: Any) -> None:
        await super().__aexit__(*exc_info)
        raise aiomqtt.MqttError("Unexpected disconnection")


class _BreaksOnClose(EventBusClient):
    def _make_client(self) -> aiomqtt.Client:
        s = self._settings
        return _BrokenOnClose(s.host, s.port, identifier=f"mka-test-{id(self)}")


async def test_cancellation_survives_a_connection_that_breaks_on_close(
    broker: MosquittoBroker,
) -> None:
    settings = MqttSettings.model_validate({"url": broker.url})
    eventbus = _BreaksOnClose(settings, "edge-node", DeviceRegistry(), Metrics())
    task = asyncio.create_task(eventbus.run())
    async with asyncio.timeout(10):
        await eventbus.wait_status(lambda s: s["mqtt"] == "connected")
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    assert task in done, "the stop was swallowed by a reconnect"
    assert task.cancelled()
    assert not eventbus.connected
