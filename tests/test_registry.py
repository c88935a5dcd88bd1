"""The registry follows EdgeCore's twin semantics and reports each change once."""

from __future__ import annotations

from mep_kubeedge_adapter.domain import (
    ChangeEvent,
    DeviceAdded,
    DeviceId,
    DeviceModel,
    DeviceRemoved,
    DeviceUpdated,
    ModelChanged,
    ModelId,
    PropertySpec,
    StateChanged,
    TwinChanged,
    TwinState,
    TwinValue,
)
from mep_kubeedge_adapter.registry import DeviceRegistry, DeviceSpec

THERMO = DeviceId("default", "thermo-1")


def make() -> tuple[DeviceRegistry, list[ChangeEvent]]:
    registry = DeviceRegistry(clock=lambda: 1000)
    events: list[ChangeEvent] = []
    registry.subscribe(events.append)
    return registry, events


def test_membership_sync_adds_and_removes() -> None:
    registry, events = make()
    registry.sync_membership({THERMO: "t", DeviceId("default", "pump-1"): None})
    assert [type(e) for e in events] == [DeviceAdded, DeviceAdded]
    events.clear()
    registry.sync_membership({THERMO: "t"})
    assert [type(e) for e in events] == [DeviceRemoved]
    assert registry.device_ids() == {THERMO}


def test_get_snapshot_then_document_then_deletion() -> None:
    registry, events = make()
    registry.add_member(THERMO)
    events.clear()
    registry.sync_twin(
        THERMO,
        {"temperature": TwinState(TwinValue("25", 1), TwinValue("21", 2), "int", True)},
    )
    (event,) = events
    assert isinstance(event, TwinChanged)
    change = event.changes["temperature"]
    assert change.reported == TwinValue("21", 2) and change.reported_changed
    assert change.desired == TwinValue("25", 1) and change.desired_changed

    events.clear()
    registry.apply_document(THERMO, {"temperature": TwinState(None, TwinValue("22", 3), "int")})
    (event,) = events
    assert isinstance(event, TwinChanged)
    change = event.changes["temperature"]
    assert change.previous_reported == TwinValue("21", 2)
    assert change.reported == TwinValue("22", 3)
    # The document's current state has no expected: EdgeCore's desired value is gone.
    assert change.desired is None and change.desired_changed

    events.clear()
    registry.apply_document(THERMO, {"temperature": None})
    (event,) = events
    assert isinstance(event, TwinChanged) and event.changes["temperature"].deleted
    device = registry.get(THERMO)
    assert device is not None and "temperature" not in device.properties


def test_result_then_identical_document_reports_once() -> None:
    registry, events = make()
    registry.add_member(THERMO)
    events.clear()
    state = TwinState(None, TwinValue("40", 9), "string", True)
    registry.apply_twin_states(THERMO, {"humidity": state})
    registry.apply_document(THERMO, {"humidity": state})
    assert len(events) == 1


def test_partial_result_keeps_the_other_side() -> None:
    registry, _ = make()
    registry.add_member(THERMO)
    registry.sync_twin(THERMO, {"t": TwinState(TwinValue("25", 1), TwinValue("21", 2), "int")})
    registry.apply_twin_states(THERMO, {"t": TwinState(TwinValue("30", 5), None, "int")})
    device = registry.get(THERMO)
    assert device is not None
    assert device.properties["t"].reported == TwinValue("21", 2)
    assert device.properties["t"].desired == TwinValue("30", 5)


def test_snapshot_drops_twins_edgecore_no_longer_has() -> None:
    registry, _ = make()
    registry.add_member(THERMO)
    registry.sync_twin(
        THERMO, {"a": TwinState(None, TwinValue("1", 1)), "b": TwinState(None, TwinValue("2", 1))}
    )
    registry.sync_twin(THERMO, {"a": TwinState(None, TwinValue("1", 1))})
    device = registry.get(THERMO)
    assert device is not None and set(device.properties) == {"a"}


def test_state_changes() -> None:
    registry, events = make()
    registry.add_member(THERMO)
    events.clear()
    registry.apply_state(THERMO, "Online", "2026-11-25T21:11:38Z")
    registry.apply_state(THERMO, "online", "2026-11-25T21:11:38Z")
    (event,) = events
    assert isinstance(event, StateChanged)
    assert (event.state, event.previous) == ("online", None)


def test_events_for_unknown_devices_are_ignored() -> None:
    registry, events = make()
    registry.apply_document(THERMO, {"x": TwinState(None, TwinValue("1", 1))})
    registry.apply_state(THERMO, "online", None)
    assert events == [] and len(registry) == 0


def test_kube_and_eventbus_merge_newer_timestamp_wins() -> None:
    registry, events = make()
    registry.upsert_spec(
        DeviceSpec(
            THERMO,
            model="thermo-model",
            node="edge-1",
            labels={"room": "a"},
            declared_properties=["temperature"],
            desired={"temperature": TwinValue("25", 100, "kube")},
            reported={"temperature": TwinValue("20", 100, "kube")},
        )
    )
    assert isinstance(events[0], DeviceAdded)
    registry.add_member(THERMO)
    # An older EventBus value loses against the newer CR value...
    registry.apply_twin_states(THERMO, {"temperature": TwinState(None, TwinValue("19", 50))})
    device = registry.get(THERMO)
    assert device is not None and device.properties["temperature"].reported == TwinValue(
        "20", 100, "kube"
    )
    # ...and a newer one wins.
    registry.apply_twin_states(THERMO, {"temperature": TwinState(None, TwinValue("21", 200))})
    device = registry.get(THERMO)
    assert device is not None and device.properties["temperature"].reported == TwinValue("21", 200)
    # EdgeCore forgetting the device keeps the CR-backed device and its declared property.
    registry.remove_member(THERMO)
    device = registry.get(THERMO)
    assert device is not None and not device.in_eventbus and "temperature" in device.properties
    events.clear()
    registry.upsert_spec(
        DeviceSpec(THERMO, model="other", node="edge-1", declared_properties=["temperature"])
    )
    assert any(isinstance(e, DeviceUpdated) for e in events)
    registry.remove_spec(THERMO)
    assert registry.get(THERMO) is None


def test_models() -> None:
    registry, events = make()
    model = DeviceModel(ModelId("default", "m"), {"t": PropertySpec("t", "INT", "ReadWrite")})
    registry.upsert_model(model)
    registry.upsert_model(model)
    registry.remove_model(model.id)
    assert [type(e) for e in events] == [ModelChanged, ModelChanged]
    assert isinstance(events[1], ModelChanged) and events[1].removed


def test_unsubscribe() -> None:
    registry = DeviceRegistry()
    seen: list[ChangeEvent] = []
    unsubscribe = registry.subscribe(seen.append)
    unsubscribe()
    registry.add_member(THERMO)
    assert seen == []


def test_replacing_properties_keeps_every_other_device_field() -> None:
    """The registry's fast copy of a device must carry over every field ``Device`` has."""
    from dataclasses import fields, replace

    from mep_kubeedge_adapter.domain import Device, TwinProperty
    from mep_kubeedge_adapter.registry import _with_properties

    device = Device(
        id=THERMO,
        properties={"a": TwinProperty("a")},
        model="m",
        node="n",
        labels={"k": "v"},
        description="d",
        protocol="p",
        state="online",
        last_online="2026-01-01T00:00:00Z",
        in_eventbus=False,
        in_kube=True,
    )
    # A new Device field must be added to ``_with_properties`` (and here).
    assert [f.name for f in fields(Device)] == [
        "id", "properties", "model", "node", "labels", "description", "protocol", "state",
        "last_online", "in_eventbus", "in_kube",
    ]  # fmt: skip
    copy = _with_properties(device, {"b": TwinProperty("b")}, True)
    assert copy == replace(device, properties={"b": TwinProperty("b")}, in_eventbus=True)
