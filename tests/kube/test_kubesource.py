"""The kube source with the real ``kubernetes`` client against the fake API server.

Tests await registry change events (or status changes), never a fixed sleep. To know that
nothing more is coming, a test makes one more ("sentinel") change on the same resource after
the changes it checks and awaits that: watch events are applied in the server's order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from mep_kubeedge_adapter.domain import (
    DeviceAdded,
    DeviceId,
    DeviceRemoved,
    DeviceUpdated,
    ModelChanged,
    ModelId,
    StateChanged,
    TwinChanged,
    TwinState,
    TwinValue,
)
from mep_kubeedge_adapter.emulators.kubeapi import PROFILE_V1_14, PROFILE_V1_22, FakeApiServer
from mep_kubeedge_adapter.kubeedge.kubesource import KubeSource
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import KubeSettings
from mep_kubeedge_adapter.supervisor import Supervisor

from .conftest import GROUP, NODE, RunningSource, StartSource, fast_backoff, load_yaml

NS = "default"
B1 = f"{GROUP}/v1beta1"


def device(
    name: str,
    *,
    ns: str = NS,
    node: str = NODE,
    desired: dict[str, str | None] | None = None,
    labels: dict[str, str] | None = None,
    twins: dict[str, tuple[str, int]] | None = None,
    state: str | None = None,
) -> dict[str, Any]:
    """A v1beta1 Device; ``twins`` are ``status.twins`` reported values (KubeEdge <= 1.22)."""
    props = desired if desired is not None else {"temperature": "20"}
    obj: dict[str, Any] = {
        "apiVersion": B1,
        "kind": "Device",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {
            "deviceModelRef": {"name": "thermo"},
            "nodeName": node,
            "protocol": {"protocolName": "modbus"},
            "properties": [
                {"name": p, **({"desired": {"value": v}} if v is not None else {})}
                for p, v in props.items()
            ],
        },
    }
    status: dict[str, Any] = {}
    if twins:
        status["twins"] = [
            {"propertyName": p, "reported": {"value": v, "metadata": {"timestamp": str(ts)}}}
            for p, (v, ts) in twins.items()
        ]
    if state:
        status["state"] = state
    if status:
        obj["status"] = status
    return obj


def device_status(
    name: str, twins: dict[str, tuple[str, int]], *, ns: str = NS, state: str | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "twins": [
            {
                "propertyName": p,
                "reported": {"value": v, "metadata": {"timestamp": str(ts), "type": "string"}},
            }
            for p, (v, ts) in twins.items()
        ]
    }
    if state:
        status["state"] = state
        status["lastOnlineTime"] = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": B1,
        "kind": "DeviceStatus",
        "metadata": {"name": name, "namespace": ns},
        "spec": {},
        "status": status,
    }


def model(name: str = "thermo", ns: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": B1,
        "kind": "DeviceModel",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "protocol": "modbus",
            "properties": [
                {
                    "name": "temperature",
                    "description": "room temperature",
                    "type": "FLOAT",
                    "accessMode": "ReadWrite",
                    "unit": "Celsius",
                },
                {"name": "humidity", "type": "INT", "accessMode": "ReadOnly"},
            ],
        },
    }


def did(name: str, ns: str = NS) -> DeviceId:
    return DeviceId(ns, name)


def desired_of(running: RunningSource, name: str, prop: str = "temperature") -> str | None:
    dev = running.registry.get(did(name))
    if dev is None or prop not in dev.properties:
        return None
    value = dev.properties[prop].desired
    return value.value if value else None


def reported_of(running: RunningSource, name: str, prop: str = "temperature") -> str | None:
    dev = running.registry.get(did(name))
    if dev is None or prop not in dev.properties:
        return None
    value = dev.properties[prop].reported
    return value.value if value else None


async def sentinel(fake: FakeApiServer, running: RunningSource, name: str = "sentinel") -> None:
    """Create (or touch) a bound Device and wait until it shows: all earlier events are in."""
    try:
        fake.get("Device", NS, name)
    except KeyError:
        fake.create(device(name))
        await running.recorded.until(lambda: did(name) in running.registry)
        return
    before = len(running.recorded.events)
    n = str(len(running.recorded.events))
    fake.modify("Device", NS, name, {"metadata": {"labels": {"n": n}}})
    await running.recorded.until(lambda: len(running.recorded.events) > before)


# --------------------------------------------------------------------------------------------


async def test_initial_list_then_watch_add_modify_delete(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.create(model())
    fake.create(device("a", labels={"room": "1", "description": "hall sensor"}))
    fake.create(device_status("a", {"temperature": ("21.5", 1000)}, state="online"))
    fake.create(device("elsewhere", node="edge-2"))
    running = await start_source()
    await running.synced()

    dev = running.registry.get(did("a"))
    assert dev is not None and dev.in_kube
    assert (dev.model, dev.node, dev.protocol) == ("thermo", NODE, "modbus")
    assert dev.labels == {"room": "1", "description": "hall sensor"}
    assert dev.description == "hall sensor"
    assert desired_of(running, "a") == "20"
    await running.recorded.until(lambda: reported_of(running, "a") == "21.5")
    dev = running.registry.get(did("a"))
    assert dev is not None and dev.state == "online"
    assert dev.properties["temperature"].reported == TwinValue("21.5", 1000, "kube")
    assert did("elsewhere") not in running.registry
    thermo = running.registry.model(ModelId(NS, "thermo"))
    assert thermo is not None and thermo.protocol == "modbus"
    assert thermo.properties["temperature"].type == "FLOAT"
    assert thermo.properties["temperature"].description == "room temperature"
    assert thermo.properties["humidity"].access_mode == "ReadOnly"
    status = running.source.status()
    assert status["apiVersion"] == "v1beta1"
    assert all(r["listed"] and r["watching"] for r in status["resources"].values())
    assert running.metric("mka_kube_connected") == 1

    rec = running.recorded
    rec.events.clear()
    fake.create(device("b"))
    await rec.until(lambda: did("b") in running.registry)
    assert [type(e) for e in rec.events] == [DeviceAdded]

    rec.events.clear()
    fake.modify(
        "Device", NS, "a", lambda o: o["spec"]["properties"][0].update(desired={"value": "23"})
    )
    await rec.until(lambda: desired_of(running, "a") == "23")
    (change,) = rec.of(TwinChanged)
    assert change.changes["temperature"].desired_changed
    assert change.changes["temperature"].previous_desired.value == "20"

    rec.events.clear()
    fake.modify("Device", NS, "a", {"metadata": {"labels": {"room": "2"}}})
    await rec.until(lambda: bool(rec.of(DeviceUpdated)))

    rec.events.clear()
    fake.modify("DeviceStatus", NS, "a", lambda o: o["status"].update(state="offline"))
    await rec.until(lambda: bool(rec.of(StateChanged)))

    rec.events.clear()
    fake.create(model("other"))
    fake.delete("DeviceModel", NS, "other")
    await rec.until(lambda: len(rec.of(ModelChanged)) == 2)
    assert [e.removed for e in rec.of(ModelChanged)] == [False, True]

    rec.events.clear()
    fake.delete("Device", NS, "b")
    await rec.until(lambda: did("b") not in running.registry)
    assert [type(e) for e in rec.events] == [DeviceRemoved]
    assert running.metric("mka_kube_relists_total", resource="devices", reason="initial") == 1


async def test_relist_after_410_loses_and_duplicates_nothing(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    for name in ("changed", "deleted", "same"):
        fake.create(device(name))
    running = await start_source()
    await running.synced()
    rec = running.recorded
    rec.events.clear()

    await fake.go_down()
    fake.modify(
        "Device",
        NS,
        "changed",
        lambda o: o["spec"]["properties"][0].update(desired={"value": "30"}),
    )
    fake.delete("Device", NS, "deleted")
    fake.create(device("created"))
    fake.compact()  # the source's resourceVersion is now too old: its next watch gets 410
    await fake.come_up()

    await rec.until(
        lambda: (
            desired_of(running, "changed") == "30"
            and did("deleted") not in running.registry
            and did("created") in running.registry
        )
    )
    await running.synced()
    await sentinel(fake, running)

    assert running.metric("mka_kube_relists_total", resource="devices", reason="expired") == 1
    # List order (by name) first, then the deletions the diff found, then the sentinel.
    assert [type(e) for e in rec.events] == [TwinChanged, DeviceAdded, DeviceRemoved, DeviceAdded]
    removed = rec.of(DeviceRemoved)
    added = rec.of(DeviceAdded)
    assert [e.device.id for e in removed] == [did("deleted")]
    assert [e.device.id for e in added] == [did("created"), did("sentinel")]
    assert set(rec.of(TwinChanged)[0].changes) == {"temperature"}
    assert (
        running.metric(
            "mka_kube_events_total", resource="devices", type="LIST", outcome="unchanged"
        )
        >= 1
    )


async def test_api_server_down_and_back(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.create(device("a"))
    await fake.go_down()
    running = await start_source()
    await running.until_status(lambda s: s["lastError"] is not None)
    assert not running.source.connected
    assert running.metric("mka_kube_connected") == 0

    await fake.come_up()
    await running.synced()
    assert did("a") in running.registry
    rec = running.recorded
    rec.events.clear()

    # An outage while watching: the watch resumes from its resourceVersion, replaying the
    # changes made meanwhile once each, without a re-list.
    await fake.go_down()
    await running.until_status(lambda s: not s["connected"])
    fake.create(device("b"))
    fake.modify(
        "Device", NS, "a", lambda o: o["spec"]["properties"][0].update(desired={"value": "5"})
    )
    await fake.come_up()
    await rec.until(lambda: did("b") in running.registry and desired_of(running, "a") == "5")
    await running.synced()
    await sentinel(fake, running)
    assert [type(e) for e in rec.events] == [DeviceAdded, TwinChanged, DeviceAdded]
    assert running.metric("mka_kube_relists_total", resource="devices", reason="expired") == 0
    assert running.metric("mka_kube_connected") == 1


async def test_dropped_watches_resume_without_relist(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.create(device("a"))
    running = await start_source()
    await running.synced()
    await fake.wait_for_watches(3)
    rec = running.recorded
    rec.events.clear()
    for abrupt in (True, False):
        fake.drop_watches(abrupt=abrupt)
        fake.modify("Device", NS, "a", {"metadata": {"labels": {"dropped": str(abrupt)}}})
        expected = 1 if abrupt else 2
        await rec.until(lambda n=expected: len(rec.of(DeviceUpdated)) == n)  # type: ignore[misc]
        await fake.wait_for_watches(3)
    await sentinel(fake, running)
    assert [type(e) for e in rec.events] == [DeviceUpdated, DeviceUpdated, DeviceAdded]
    for resource in ("devices", "devicemodels", "devicestatuses"):
        assert running.metric("mka_kube_relists_total", resource=resource, reason="initial") == 1
        assert running.metric("mka_kube_relists_total", resource=resource, reason="expired") == 0


def v1alpha2_led() -> dict[str, Any]:
    """KubeEdge's v1alpha2 sample Device, in namespace NS and bound to NODE by nodeSelector."""
    led = load_yaml("samples/v1alpha2_led-light-device-instance.yaml")
    led["metadata"]["namespace"] = NS
    led["spec"]["nodeSelector"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] = [NODE]
    return led


async def test_v1alpha2_cluster_end_to_end(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.serve(PROFILE_V1_14)
    led_model = load_yaml("samples/v1alpha2_led-light-device-model.yaml")
    led = v1alpha2_led()
    led["status"]["twins"][0].update(
        desired={"value": "ON", "metadata": {"type": "string"}},
        reported={"value": "OFF", "metadata": {"timestamp": "1700000000000", "type": "string"}},
    )
    fake.create(led_model)
    fake.create(led)
    running = await start_source()
    await running.synced()

    status = running.source.status()
    assert status["apiVersion"] == "v1alpha2"
    assert not status["resources"]["devicestatuses"]["served"]
    dev = running.registry.get(did("led-light-instance-01"))
    assert dev is not None
    assert (dev.model, dev.node, dev.description) == ("led-light", NODE, "LEDLight")
    prop = dev.properties["power-status"]
    assert prop.desired is not None and prop.desired.value == "ON"
    assert prop.reported == TwinValue("OFF", 1700000000000, "kube")
    led_spec = running.registry.model(ModelId(NS, "led-light"))
    assert led_spec is not None
    assert led_spec.properties["power-status"].type == "STRING"
    assert led_spec.properties["gpio-pin-number"].type == "INT"
    assert led_spec.properties["gpio-pin-number"].access_mode == "ReadOnly"
    assert not any("devicestatuses?" in r for r in fake.requests)


async def test_v1_22_cluster_reads_reported_values_from_device_twins(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.serve(PROFILE_V1_22)
    fake.create(device("a", twins={"temperature": ("18", 500)}, state="online"))
    running = await start_source()
    await running.synced()
    assert reported_of(running, "a") == "18"
    dev = running.registry.get(did("a"))
    assert dev is not None and dev.state == "online"
    assert running.source.status()["resources"]["devicestatuses"]["served"] is False
    assert not any("devicestatuses?" in r for r in fake.requests)

    rec = running.recorded
    rec.events.clear()
    fake.modify(
        "Device",
        NS,
        "a",
        lambda o: o["status"]["twins"][0]["reported"].update(
            value="19", metadata={"timestamp": "600"}
        ),
    )
    await rec.until(lambda: reported_of(running, "a") == "19")
    (change,) = rec.of(TwinChanged)
    assert change.changes["temperature"].reported_changed


async def test_v1_23_cluster_ignores_stale_device_twins(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    # DeviceStatus listed before (or without) its Device is kept and applied when it appears.
    fake.create(device_status("a", {"temperature": ("25", 2000)}))
    running = await start_source()
    await running.synced()
    fake.create(device("a", twins={"temperature": ("old", 100)}))
    await running.recorded.until(lambda: reported_of(running, "a") == "25")
    fake.modify(
        "DeviceStatus",
        NS,
        "a",
        lambda o: o["status"]["twins"][0]["reported"].update(
            value="26", metadata={"timestamp": "3000"}
        ),
    )
    await running.recorded.until(lambda: reported_of(running, "a") == "26")


async def test_node_filtering(fake_apiserver: FakeApiServer, start_source: StartSource) -> None:
    fake = fake_apiserver
    fake.create(device("mine"))
    fake.create(device("theirs", node="edge-2"))
    fake.create(device("unbound", node=""))
    running = await start_source()
    await running.synced()
    assert running.registry.device_ids() == {did("mine")}

    rec = running.recorded
    fake.modify("Device", NS, "theirs", {"spec": {"nodeName": NODE}})
    await rec.until(lambda: did("theirs") in running.registry)
    fake.modify("Device", NS, "mine", {"spec": {"nodeName": "edge-2"}})
    await rec.until(lambda: did("mine") not in running.registry)
    assert (
        running.metric(
            "mka_kube_events_total", resource="devices", type="MODIFIED", outcome="unbound"
        )
        == 1
    )

    everything = await start_source(all_nodes=True)
    await everything.synced()
    assert everything.registry.device_ids() == {did("mine"), did("theirs"), did("unbound")}


async def test_namespace_filtering(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.create(device("a", ns="plant-1"))
    fake.create(device("b", ns="plant-2"))
    fake.create(model("thermo", ns="plant-2"))
    running = await start_source(namespace="plant-1")
    await running.synced()
    assert running.registry.device_ids() == {DeviceId("plant-1", "a")}
    assert running.registry.models() == []
    fake.create(device("c", ns="plant-2"))
    fake.create(device("d", ns="plant-1"))
    await running.recorded.until(lambda: DeviceId("plant-1", "d") in running.registry)
    assert DeviceId("plant-2", "c") not in running.registry
    lists = [r for r in fake.requests if "/devices?" in r]
    assert lists and all("/namespaces/plant-1/" in r for r in lists)


async def test_merge_precedence_between_crs_and_eventbus(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.create(device("a", desired={"temperature": "20", "humidity": None}))
    fake.create(device_status("a", {"temperature": ("21", 1000)}))
    running = await start_source()
    await running.synced()
    registry = running.registry
    await running.recorded.until(lambda: reported_of(running, "a") == "21")
    # EdgeCore knows the device too (EventBus side, fed to the registry directly).
    registry.add_member(did("a"))
    # An older EventBus reading loses against the CR's; a newer one wins.
    registry.apply_twin_states(did("a"), {"temperature": TwinState(None, TwinValue("19", 500))})
    assert reported_of(running, "a") == "21"
    registry.apply_twin_states(did("a"), {"temperature": TwinState(None, TwinValue("22", 5000))})
    assert reported_of(running, "a") == "22"
    # The EventBus has a humidity value; the CR has none yet: it stays.
    registry.apply_twin_states(did("a"), {"humidity": TwinState(None, TwinValue("40", 5000))})

    rec = running.recorded
    rec.events.clear()
    # A later cloud value (DeviceStatus) wins again; one for humidity that is older does not.
    fake.modify(
        "DeviceStatus",
        NS,
        "a",
        lambda o: o["status"].update(
            twins=[
                {
                    "propertyName": "temperature",
                    "reported": {"value": "23", "metadata": {"timestamp": "9000"}},
                },
                {
                    "propertyName": "humidity",
                    "reported": {"value": "35", "metadata": {"timestamp": "100"}},
                },
            ]
        ),
    )
    await rec.until(lambda: reported_of(running, "a") == "23")
    assert reported_of(running, "a", "humidity") == "40"
    (change,) = rec.of(TwinChanged)
    assert set(change.changes) == {"temperature"}
    assert registry.get(did("a")).properties["temperature"].reported == TwinValue(  # type: ignore[union-attr]
        "23", 9000, "kube"
    )


async def test_desired_values_keep_their_stamp_and_can_be_cleared(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.create(device("a"))
    running = await start_source()
    await running.synced()
    dev = running.registry.get(did("a"))
    assert dev is not None
    first = dev.properties["temperature"].desired
    assert first is not None and first.source == "kube" and first.timestamp is not None

    rec = running.recorded
    rec.events.clear()
    # A change elsewhere in the CR keeps the desired value, and its stamp: no twin event.
    fake.modify("Device", NS, "a", {"metadata": {"labels": {"x": "1"}}})
    await rec.until(lambda: bool(rec.of(DeviceUpdated)))
    dev = running.registry.get(did("a"))
    assert dev is not None and dev.properties["temperature"].desired == first
    assert rec.of(TwinChanged) == []

    fake.modify("Device", NS, "a", lambda o: o["spec"]["properties"][0].pop("desired"))
    await rec.until(lambda: desired_of(running, "a") is None)
    (change,) = rec.of(TwinChanged)
    assert change.changes["temperature"].desired_changed


async def test_invalid_crs_are_counted_and_skipped(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    broken = device("broken")
    broken["spec"]["properties"] = "not a list"
    fake.create(broken)
    fake.create(device("good"))
    bad_model = model("bad")
    bad_model["spec"]["properties"][0]["type"] = "COMPLEX"
    fake.create(bad_model)
    running = await start_source()
    await running.synced()
    assert running.registry.device_ids() == {did("good")}
    assert running.registry.models() == []
    assert (
        running.metric("mka_kube_events_total", resource="devices", type="LIST", outcome="invalid")
        == 1
    )
    assert (
        running.metric(
            "mka_kube_events_total", resource="devicemodels", type="LIST", outcome="invalid"
        )
        == 1
    )

    # A valid device turned invalid keeps its last valid state; the source keeps going.
    fake.modify("Device", NS, "good", {"spec": {"deviceModelRef": "nope"}})
    await sentinel(fake, running)
    assert did("good") in running.registry
    assert (
        running.metric(
            "mka_kube_events_total", resource="devices", type="MODIFIED", outcome="invalid"
        )
        == 1
    )


async def test_served_resources_change_triggers_rediscovery(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.create(device("a"))
    running = await start_source()
    await running.synced()
    assert running.source.status()["resources"]["devicestatuses"]["served"]
    fake.serve(PROFILE_V1_22)  # e.g. a downgrade; the DeviceStatus watch ends, then 404s
    await running.until_status(lambda s: not s["resources"]["devicestatuses"]["served"])
    await running.synced()
    rec = running.recorded
    rec.events.clear()
    await sentinel(fake, running)
    assert [type(e) for e in rec.events] == [DeviceAdded]


async def test_stop_is_prompt(fake_apiserver: FakeApiServer, start_source: StartSource) -> None:
    running = await start_source()
    await running.synced()
    await fake_apiserver.wait_for_watches(3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await running.stop()
    assert loop.time() - started < 2.0
    assert running.metric("mka_kube_connected") == 0


async def test_unusable_client_configuration_is_retried_not_fatal(
    tmp_path: Path, start_source: StartSource
) -> None:
    running = await start_source(source="kubeconfig", kubeconfig=tmp_path / "missing", url=None)
    await running.until_status(lambda s: s["lastError"] is not None)
    assert running.source.status()["lastError"].startswith("KubeClientError: cannot")
    assert not running.task.done()


async def test_a_bug_while_listing_surfaces_to_the_supervisor(
    fake_apiserver: FakeApiServer,
) -> None:
    """A programming error is not an outage: it is not retried in place, the supervisor
    logs it with its traceback and restarts the source."""
    fake = fake_apiserver
    fake.create(device("a", node=NODE))
    registry = DeviceRegistry()

    def buggy_listener(event: object) -> None:
        raise TypeError("a bug in a registry listener")

    registry.subscribe(buggy_listener)
    source = KubeSource(
        KubeSettings(source="metaserver", url=fake.url),
        NODE,
        registry,
        Metrics(),
        backoff=fast_backoff,
    )
    restarted = asyncio.Event()
    supervisor = Supervisor(on_restart=lambda task: restarted.set())
    with capture_logs() as logs:
        supervisor.start("kube", source.run)
        async with asyncio.timeout(10):
            await restarted.wait()
    await supervisor.stop()
    crash = next(e for e in logs if e["event"] == "task_crashed_restarting")
    assert crash["task"] == "kube"
    failure = crash["exc_info"]
    assert isinstance(failure, BaseExceptionGroup)
    assert failure.subgroup(TypeError) is not None
    assert not any(e["event"] == "kube_list_watch_error" for e in logs)
