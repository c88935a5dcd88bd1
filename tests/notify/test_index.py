"""The subscription index: a change reaches exactly the subscriptions whose filters match."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mep_kubeedge_adapter.domain import (
    Device,
    DeviceAdded,
    DeviceId,
    PropertyChange,
    StateChanged,
    TwinChanged,
    TwinValue,
)
from mep_kubeedge_adapter.notify.index import SubscriptionIndex
from mep_kubeedge_adapter.notify.render import Selector, select

TWIN = "DeviceTwinChangeSubscription"
STATE = "DeviceStateChangeSubscription"
MEMBERSHIP = "DeviceMembershipChangeSubscription"

DEVICE_IDS = [DeviceId(ns, name) for ns in ("default", "plant") for name in ("a", "b", "c")]
MODELS = ["thermometer", "pump"]
LABELS = [("room", "lab"), ("room", "hall"), ("tier", "gold")]
PROPERTIES = ["temperature", "humidity", "speed"]

selectors = st.builds(
    lambda kind, devices, models, labels, properties: Selector(
        kind,
        devices=frozenset(str(d) for d in devices),
        models=frozenset(models),
        properties=frozenset(properties),
        labels=tuple(sorted(dict(labels).items())),
    ),
    st.sampled_from([TWIN, STATE, MEMBERSHIP]),
    st.lists(st.sampled_from(DEVICE_IDS), max_size=2),
    st.lists(st.sampled_from(MODELS), max_size=2),
    st.lists(st.sampled_from(LABELS), max_size=2),
    st.lists(st.sampled_from(PROPERTIES), max_size=2),
)

devices = st.builds(
    lambda device_id, model, labels: Device(id=device_id, model=model, labels=dict(labels)),
    st.sampled_from(DEVICE_IDS),
    st.none() | st.sampled_from(MODELS),
    st.lists(st.sampled_from(LABELS), max_size=3),
)


def _change(value: str) -> PropertyChange:
    return PropertyChange(TwinValue(value, 1), None, None, None, True, False)


def _event(kind: int, device: Device, properties: list[str]):  # type: ignore[no-untyped-def]
    if kind == 0:
        return TwinChanged(device.id, {p: _change("1") for p in properties}, 1, device)
    if kind == 1:
        return StateChanged(device.id, "online", None, None, 1, device)
    return DeviceAdded(device, 1)


def _index_of(kind: str, filed: dict[str, Selector]) -> SubscriptionIndex[str]:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    for sid, selector in filed.items():
        if selector.subscription_type == kind:
            index.add(sid, selector, sid)
    return index


@settings(max_examples=300, deadline=None)
@given(
    st.lists(selectors, max_size=12),
    devices,
    st.integers(0, 2),
    st.lists(st.sampled_from(PROPERTIES), min_size=1, max_size=3, unique=True),
)
def test_candidates_that_match_are_exactly_the_subscriptions_that_match(
    chosen: list[Selector], device: Device, kind: int, properties: list[str]
) -> None:
    filed = {f"s{i}": s for i, s in enumerate(chosen)}
    event = _event(kind, device, properties)
    event_kind = (TWIN, STATE, MEMBERSHIP)[kind]
    index = _index_of(event_kind, filed)
    candidates = list(index.candidates(device.id, device))
    assert len(candidates) == len(set(candidates)), "a subscription is visited once"
    reached = {sid for sid in candidates if select(filed[sid], event, device) is not None}
    expected = {sid for sid, s in filed.items() if select(s, event, device) is not None}
    assert reached == expected


def test_a_change_visits_only_what_its_device_model_and_labels_name() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    for i in range(1000):
        index.add(f"own-{i}", Selector(TWIN, devices=frozenset({f"default/d{i}"})), f"own-{i}")
    index.add("model", Selector(TWIN, models=frozenset({"pump"})), "model")
    index.add("label", Selector(TWIN, labels=(("room", "lab"), ("tier", "gold"))), "label")
    index.add("other-label", Selector(TWIN, labels=(("room", "hall"),)), "other-label")
    index.add("tier", Selector(TWIN, labels=(("tier", "gold"),)), "tier")
    index.add("everyone", Selector(TWIN), "everyone")
    device = Device(
        id=DeviceId("default", "d7"), model="pump", labels={"room": "lab", "tier": "gold"}
    )
    assert sorted(index.candidates(device.id, device)) == [
        "everyone",
        "label",
        "model",
        "own-7",
        "tier",
    ]
    assert list(index.candidates(DeviceId("x", "y"), None)) == ["everyone"]


def test_adding_and_removing_keeps_the_index_exact_and_forgets_empty_keys() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    device = Device(id=DeviceId("default", "d1"), model="pump", labels={"room": "lab"})
    index.add("a", Selector(TWIN, devices=frozenset({"default/d1", "default/d2"})), "a")
    index.add("b", Selector(TWIN, models=frozenset({"pump"})), "b")
    index.add("c", Selector(TWIN, labels=(("room", "lab"),)), "c")
    index.add("d", Selector(TWIN), "d")
    assert (len(index), index.keys()) == (4, 4)
    assert sorted(index.candidates(device.id, device)) == ["a", "b", "c", "d"]
    index.add("a", Selector(TWIN, devices=frozenset({"default/d2"})), "a")  # filed anew
    assert sorted(index.candidates(device.id, device)) == ["b", "c", "d"]
    for sid in ("a", "b", "c", "d"):
        index.remove(sid)
    index.remove("never-added")
    assert list(index.candidates(device.id, device)) == []
    assert (len(index), index.keys()) == (0, 0)
