"""The CR write path end to end: the real client patches, creates and deletes on the fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mep_kubeedge_adapter.domain import (
    AdapterError,
    DeviceAdded,
    DeviceDefinition,
    DeviceId,
    ErrorKind,
    TwinChanged,
)
from mep_kubeedge_adapter.emulators.kubeapi import PROFILE_V1_14, FakeApiServer
from mep_kubeedge_adapter.kubeedge import crds, crwrites
from mep_kubeedge_adapter.kubeedge.crwrites import KubeDesiredWriter
from mep_kubeedge_adapter.service import Adapter
from mep_kubeedge_adapter.settings import ApiSettings, KubeSettings, Settings, StoreSettings
from mep_kubeedge_adapter.usecases import UnsupportedWriter

from .conftest import GROUP, NODE, StartSource
from .test_kubesource import NS, desired_of, device, sentinel, v1alpha2_led

A = DeviceId(NS, "a")


def two_properties() -> dict[str, Any]:
    return device("a", desired={"temperature": "20", "switch": None})


async def test_desired_write_patches_the_device_and_shows_at_once(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.create(two_properties())
    running = await start_source()
    await running.synced()
    rec = running.recorded
    rec.events.clear()

    await running.source.writer.write_desired(
        A, {"temperature": ("25", "float"), "switch": ("1", "int")}
    )
    # Applied to the registry before write_desired returned: no waiting here.
    assert desired_of(running, "a") == "25"
    assert desired_of(running, "a", "switch") == "1"
    stored = fake.get("Device", NS, "a")["spec"]["properties"]
    assert stored[0]["desired"] == {"value": "25"}
    assert stored[1]["desired"] == {"value": "1"}
    patches = [r for r in fake.requests if r.startswith("PATCH ")]
    assert patches == [f"PATCH /apis/devices.kubeedge.io/v1beta1/namespaces/{NS}/devices/a"]

    # The watch's copy of the same change produces nothing more.
    await sentinel(fake, running)
    assert [type(e) for e in rec.events] == [TwinChanged, DeviceAdded]
    assert set(rec.events[0].changes) == {"temperature", "switch"}  # type: ignore[union-attr]
    assert running.metric("mka_desired_writes_total", path="kube", outcome="accepted") == 1


async def test_a_concurrent_reorder_is_caught_by_the_test_op_and_retried(
    fake_apiserver: FakeApiServer, start_source: StartSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_apiserver
    fake.create(two_properties())
    running = await start_source()
    await running.synced()
    real_patch = crds.desired_value_patch
    calls = 0

    def reorder_after_read(obj: Any, values: Any) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        ops = real_patch(obj, values)
        if calls == 1:  # someone reorders the list between our read and our patch
            fake.modify("Device", NS, "a", lambda o: o["spec"]["properties"].reverse())
        return ops

    monkeypatch.setattr(crwrites, "desired_value_patch", reorder_after_read)
    await running.source.writer.write_desired(A, {"switch": ("1", "int")})
    assert calls == 2
    props = {p["name"]: p for p in fake.get("Device", NS, "a")["spec"]["properties"]}
    assert props["switch"]["desired"] == {"value": "1"}
    assert props["temperature"]["desired"] == {"value": "20"}  # the guard kept it untouched
    assert sum(r.startswith("PATCH ") for r in fake.requests) == 2
    assert desired_of(running, "a", "switch") == "1"


async def test_retries_are_bounded(
    fake_apiserver: FakeApiServer, start_source: StartSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_apiserver
    fake.create(two_properties())
    running = await start_source()
    await running.synced()
    real_patch = crds.desired_value_patch

    def always_reorder(obj: Any, values: Any) -> list[dict[str, Any]]:
        ops = real_patch(obj, values)
        fake.modify("Device", NS, "a", lambda o: o["spec"]["properties"].reverse())
        return ops

    monkeypatch.setattr(crwrites, "desired_value_patch", always_reorder)
    with pytest.raises(AdapterError) as exc:
        await running.source.writer.write_desired(A, {"switch": ("1", "int")})
    assert exc.value.kind is ErrorKind.CONFLICT
    assert sum(r.startswith("PATCH ") for r in fake.requests) == crwrites.WRITE_ATTEMPTS
    assert running.metric("mka_desired_writes_total", path="kube", outcome="conflict") == 1


async def test_write_errors_map_to_kinds(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.create(two_properties())
    running = await start_source()
    await running.synced()
    writer = running.source.writer

    with pytest.raises(AdapterError) as exc:
        await writer.write_desired(DeviceId(NS, "ghost"), {"temperature": ("1", "float")})
    assert exc.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(AdapterError) as exc:
        await writer.write_desired(A, {"pressure": ("1", "float")})
    assert exc.value.kind is ErrorKind.INVALID
    assert "pressure" in exc.value.detail

    await fake.go_down()
    with pytest.raises(AdapterError) as exc:
        await writer.write_desired(A, {"temperature": ("1", "float")})
    assert exc.value.kind is ErrorKind.UNAVAILABLE
    await fake.come_up()
    await writer.write_desired(A, {"temperature": ("2", "float")})
    assert desired_of(running, "a") == "2"


async def test_v1alpha2_desired_write_goes_to_status_twins(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.serve(PROFILE_V1_14)
    fake.create(
        {
            "apiVersion": "devices.kubeedge.io/v1alpha2",
            "kind": "Device",
            "metadata": {"name": "a", "namespace": NS},
            "spec": {
                "deviceModelRef": {"name": "led"},
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "", "operator": "In", "values": [NODE]}]}
                    ]
                },
            },
            "status": {
                "twins": [
                    {
                        "propertyName": "power",
                        "desired": {"value": "OFF", "metadata": {"type": "string"}},
                    }
                ]
            },
        }
    )
    running = await start_source()
    await running.synced()
    await running.source.writer.write_desired(A, {"power": ("ON", "string")})
    twin = fake.get("Device", NS, "a")["status"]["twins"][0]
    assert twin["desired"] == {"value": "ON", "metadata": {"type": "string"}}
    assert desired_of(running, "a", "power") == "ON"


async def test_create_replace_delete_device(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    running = await start_source()
    await running.synced()
    source = running.source.crs

    body = device("new")
    del body["metadata"]["namespace"]
    created = await source.create_device(body)
    assert (created.namespace, created.name, created.node) == (NS, "new", NODE)
    assert created.resource_version
    assert DeviceId(NS, "new") in running.registry  # at once, not after the watch event
    with pytest.raises(AdapterError) as exc:
        await source.create_device(device("new"))
    assert exc.value.kind is ErrorKind.CONFLICT
    bad = device("bad")
    bad["spec"]["properties"] = {"not": "a list"}
    with pytest.raises(AdapterError) as exc:
        await source.create_device(bad)
    assert exc.value.kind is ErrorKind.INVALID

    changed = device("new", labels={"room": "7"})
    replaced = await source.replace_device(NS, "new", changed)
    assert replaced.labels == {"room": "7"}
    dev = running.registry.get(DeviceId(NS, "new"))
    assert dev is not None and dev.labels == {"room": "7"}
    stale = device("new")
    stale["metadata"]["resourceVersion"] = created.resource_version
    with pytest.raises(AdapterError) as exc:
        await source.replace_device(NS, "new", stale)
    assert exc.value.kind is ErrorKind.CONFLICT
    with pytest.raises(AdapterError) as exc:
        await source.replace_device(NS, "missing", device("missing"))
    assert exc.value.kind is ErrorKind.NOT_FOUND

    deleted = await source.delete_device(NS, "new")
    assert deleted.name == "new" and deleted.labels == {"room": "7"}
    assert DeviceId(NS, "new") not in running.registry
    with pytest.raises(AdapterError) as exc:
        await source.delete_device(NS, "new")
    assert exc.value.kind is ErrorKind.NOT_FOUND

    # The watch's copies of these writes change nothing more.
    rec = running.recorded
    rec.events.clear()
    await sentinel(fake, running)
    assert [type(e) for e in rec.events] == [DeviceAdded]


async def test_device_definitions_create_replace_delete(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.create(device("a", labels={"old": "1"}))
    running = await start_source()
    await running.synced()
    crs = running.source.crs

    registered = DeviceId(NS, "registered")
    await crs.create(DeviceDefinition(registered, "thermo", NODE, {"room": "7"}))
    stored = fake.get("Device", NS, "registered")
    assert stored["apiVersion"] == f"{GROUP}/v1beta1"
    assert stored["spec"] == {"deviceModelRef": {"name": "thermo"}, "nodeName": NODE}
    assert stored["metadata"]["labels"] == {"room": "7"}
    dev = running.registry.get(registered)
    assert dev is not None and (dev.model, dev.labels) == ("thermo", {"room": "7"})
    with pytest.raises(AdapterError) as exc:
        await crs.create(DeviceDefinition(registered, "thermo", NODE))
    assert exc.value.kind is ErrorKind.CONFLICT

    before = fake.get("Device", NS, "a")
    await crs.replace(DeviceDefinition(A, "thermo-v2", "edge-2", {"floor": "2"}))
    after = fake.get("Device", NS, "a")
    assert after["spec"]["deviceModelRef"] == {"name": "thermo-v2"}
    assert after["spec"]["nodeName"] == "edge-2"
    assert after["metadata"]["labels"] == {"floor": "2"}
    assert after["spec"]["properties"] == before["spec"]["properties"]
    assert after["spec"]["protocol"] == before["spec"]["protocol"]
    assert A not in running.registry  # bound to another node now, at once
    with pytest.raises(AdapterError) as exc:
        await crs.replace(DeviceDefinition(DeviceId(NS, "missing"), "thermo", NODE))
    assert exc.value.kind is ErrorKind.NOT_FOUND

    await crs.delete(registered)
    assert registered not in running.registry
    with pytest.raises(KeyError):
        fake.get("Device", NS, "registered")
    with pytest.raises(AdapterError) as exc:
        await crs.delete(registered)
    assert exc.value.kind is ErrorKind.NOT_FOUND


async def test_replacing_a_v1alpha2_device_keeps_its_node_selector(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    fake = fake_apiserver
    fake.serve(PROFILE_V1_14)
    led = v1alpha2_led()
    fake.create(led)
    running = await start_source()
    await running.synced()
    led_id = DeviceId(NS, led["metadata"]["name"])

    await running.source.crs.replace(DeviceDefinition(led_id, "led-v2", "ignored", {"a": "b"}))
    stored = fake.get("Device", NS, led_id.name)
    assert stored["apiVersion"] == f"{GROUP}/v1alpha2"
    assert "nodeName" not in stored["spec"]
    assert stored["spec"]["nodeSelector"] == led["spec"]["nodeSelector"]
    assert stored["spec"]["deviceModelRef"]["name"] == "led-v2"
    dev = running.registry.get(led_id)
    assert dev is not None and (dev.model, dev.node, dev.labels) == ("led-v2", NODE, {"a": "b"})


async def test_a_device_defined_on_a_v1alpha2_cluster_is_bound_through_its_node_selector(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    """v1alpha2 (KubeEdge <= 1.14) has no ``spec.nodeName``: a real API server prunes it, so
    the binding must be the ``nodeSelector`` cloudcore reads."""
    fake = fake_apiserver
    fake.serve(PROFILE_V1_14)
    running = await start_source()
    await running.synced()
    registered = DeviceId(NS, "registered")

    await running.source.crs.create(DeviceDefinition(registered, "led", NODE, {"room": "7"}))
    stored = fake.get("Device", NS, registered.name)
    assert stored["apiVersion"] == f"{GROUP}/v1alpha2"
    assert stored["spec"] == {
        "deviceModelRef": {"name": "led"},
        "nodeSelector": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "", "operator": "In", "values": [NODE]}]}
            ]
        },
    }
    dev = running.registry.get(registered)
    assert dev is not None and (dev.model, dev.node, dev.labels) == ("led", NODE, {"room": "7"})


async def test_writes_outside_the_served_namespace_are_forbidden(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    running = await start_source(namespace="plant-1")
    await running.synced()
    with pytest.raises(AdapterError) as exc:
        await running.source.crs.create_device(device("x", ns="plant-2"))
    assert exc.value.kind is ErrorKind.FORBIDDEN
    created = await running.source.crs.create_device(device("x", ns="plant-1"))
    assert created.namespace == "plant-1"


def test_adapter_wiring(fake_apiserver: FakeApiServer, tmp_path: Path) -> None:
    store = StoreSettings(path=tmp_path / "state.sqlite3")
    kube = KubeSettings(source="metaserver", url=fake_apiserver.url)
    to_kube = ApiSettings(write_path="kube")
    adapter = Adapter(Settings(node_name=NODE, store=store, kube=kube, api=to_kube))
    assert adapter.kube is not None
    assert isinstance(adapter.writer, KubeDesiredWriter)
    _ready, detail = adapter.readiness()
    assert detail["kube"]["source"] == "metaserver"
    assert set(detail["kube"]["resources"]) == {"devices", "devicemodels", "devicestatuses"}

    without = Adapter(Settings(node_name=NODE, store=store, api=to_kube))
    assert without.kube is None
    assert isinstance(without.writer, UnsupportedWriter)
    assert without.readiness()[1]["kube"] == {"source": "none"}
