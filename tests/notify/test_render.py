"""Matching and rendering: pure functions, no loop."""

from __future__ import annotations

from mep_kubeedge_adapter.domain import (
    Device,
    DeviceAdded,
    DeviceId,
    DeviceRemoved,
    DeviceUpdated,
    ModelChanged,
    ModelId,
    PropertyChange,
    StateChanged,
    TwinChanged,
    TwinValue,
)
from mep_kubeedge_adapter.notify.render import (
    MembershipNotice,
    Notice,
    Selector,
    StateNotice,
    TwinNotice,
    merge,
    render,
    rfc3339,
    select,
)

THERMO = DeviceId("default", "thermo-1")
DEVICE = Device(id=THERMO, model="thermometer", node="edge-1", labels={"room": "lab"})
TWIN = "DeviceTwinChangeSubscription"
STATE = "DeviceStateChangeSubscription"
MEMBERSHIP = "DeviceMembershipChangeSubscription"
HREF = "http://gw/kubeedge_devices/v1/subscriptions/s-1"


def reported(value: str, ts: int, before: str | None = None, before_ts: int = 0) -> PropertyChange:
    return PropertyChange(
        reported=TwinValue(value, ts),
        previous_reported=None if before is None else TwinValue(before, before_ts),
        desired=None,
        previous_desired=None,
        reported_changed=True,
        desired_changed=False,
    )


def twin_event(**changes: PropertyChange) -> TwinChanged:
    return TwinChanged(THERMO, changes, 1_795_641_101_256)


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_795_641_101_256) == "2026-11-25T21:11:41.256Z"
    assert rfc3339(1_795_641_101_000) == "2026-11-25T21:11:41.000Z"


def test_twin_notification_has_the_spec_shape() -> None:
    event = twin_event(temperature=reported("24", 1_795_641_101_000, "23", 1_795_641_100_000))
    change = select(Selector(TWIN), event, DEVICE)
    assert change is not None
    body = render(Notice(17, 0.0, change), "s-1", HREF)
    assert body == {
        "notificationType": "DeviceTwinChangeNotification",
        "subscriptionId": "s-1",
        "sequence": 17,
        "timeStamp": {"seconds": 1_795_641_101, "nanoSeconds": 256_000_000},
        "device": {"namespace": "default", "name": "thermo-1"},
        "changes": {
            "temperature": {
                "reported": {"value": "24", "timestamp": "2026-11-25T21:11:41.000Z"},
                "previous": {"value": "23", "timestamp": "2026-11-25T21:11:40.000Z"},
            }
        },
        "_links": {"subscription": {"href": HREF}},
    }


def test_desired_side_and_deletion_are_rendered() -> None:
    desired = PropertyChange(
        reported=TwinValue("5", None),
        previous_reported=TwinValue("5", None),
        desired=TwinValue("7", 2000),
        previous_desired=TwinValue("6", 1000),
        reported_changed=False,
        desired_changed=True,
    )
    deleted = PropertyChange(
        reported=None,
        previous_reported=TwinValue("1", 1000),
        desired=None,
        previous_desired=None,
        reported_changed=True,
        desired_changed=False,
        deleted=True,
    )
    change = select(Selector(TWIN), twin_event(speed=desired, mode=deleted), DEVICE)
    assert change is not None
    changes = render(Notice(1, 0.0, change), "s-1", HREF)["changes"]
    assert changes["speed"] == {
        "reported": {"value": "5"},
        "previous": {"value": "5"},
        "desired": {"value": "7", "timestamp": "1970-01-01T00:00:02.000Z"},
        "previousDesired": {"value": "6", "timestamp": "1970-01-01T00:00:01.000Z"},
    }
    assert changes["mode"] == {
        "reported": None,
        "previous": {"value": "1", "timestamp": "1970-01-01T00:00:01.000Z"},
        "deleted": True,
    }


def test_state_notification() -> None:
    event = StateChanged(THERMO, "online", "offline", "2026-11-25T21:11:41Z", 1_000)
    change = select(Selector(STATE), event, DEVICE)
    assert change is not None
    body = render(Notice(3, 0.0, change), "s-2", HREF)
    assert body["notificationType"] == "DeviceStateChangeNotification"
    assert body["state"] == "online"
    assert body["previousState"] == "offline"
    assert body["lastOnlineTime"] == "2026-11-25T21:11:41Z"
    assert body["timeStamp"] == {"seconds": 1, "nanoSeconds": 0}


def test_membership_notifications_carry_change_type_model_and_labels() -> None:
    for event, change_type in (
        (DeviceAdded(DEVICE, 5), "ADDED"),
        (DeviceRemoved(DEVICE, 5), "REMOVED"),
        (DeviceUpdated(DEVICE, 5), "UPDATED"),
    ):
        change = select(Selector(MEMBERSHIP), event, None)
        assert change is not None
        body = render(Notice(1, 0.0, change), "s-3", HREF)
        assert body["notificationType"] == "DeviceMembershipChangeNotification"
        assert body["changeType"] == change_type
        assert body["model"] == "thermometer"
        assert body["labels"] == {"room": "lab"}
        assert body["device"] == {"namespace": "default", "name": "thermo-1"}


def test_type_must_match() -> None:
    twin = twin_event(temperature=reported("1", 1))
    state = StateChanged(THERMO, "online", None, None, 1)
    assert select(Selector(STATE), twin, DEVICE) is None
    assert select(Selector(MEMBERSHIP), twin, DEVICE) is None
    assert select(Selector(TWIN), state, DEVICE) is None
    assert select(Selector(TWIN), DeviceAdded(DEVICE, 1), DEVICE) is None
    assert select(Selector(MEMBERSHIP), ModelChanged(ModelId("a", "b"), False, 1), None) is None


def test_filters_devices_models_labels() -> None:
    event = twin_event(temperature=reported("1", 1))
    assert select(Selector(TWIN, devices=frozenset({"default/thermo-1"})), event, DEVICE)
    assert not select(Selector(TWIN, devices=frozenset({"default/other"})), event, DEVICE)
    assert select(Selector(TWIN, models=frozenset({"thermometer"})), event, DEVICE)
    assert not select(Selector(TWIN, models=frozenset({"pump"})), event, DEVICE)
    assert not select(Selector(TWIN, models=frozenset({"thermometer"})), event, None)
    assert select(Selector(TWIN, labels=(("room", "lab"),)), event, DEVICE)
    assert not select(Selector(TWIN, labels=(("room", "lab"), ("tier", "gold"))), event, DEVICE)


def test_properties_narrow_twin_changes_and_skip_when_none_remain() -> None:
    event = twin_event(temperature=reported("1", 1), humidity=reported("40", 1))
    change = select(Selector(TWIN, properties=frozenset({"humidity"})), event, DEVICE)
    assert isinstance(change, TwinNotice)
    assert set(change.changes) == {"humidity"}
    assert select(Selector(TWIN, properties=frozenset({"pressure"})), event, DEVICE) is None


def test_properties_do_not_filter_state_or_membership() -> None:
    selector = Selector(STATE, properties=frozenset({"x"}))
    assert select(selector, StateChanged(THERMO, "online", None, None, 1), DEVICE)
    selector = Selector(MEMBERSHIP, properties=frozenset({"x"}))
    assert isinstance(select(selector, DeviceAdded(DEVICE, 1), None), MembershipNotice)


def test_merge_keeps_the_newest_value_and_the_oldest_previous() -> None:
    older = TwinNotice(THERMO, 1, {"t": reported("2", 2, "1", 1), "h": reported("9", 2)})
    newer = TwinNotice(THERMO, 3, {"t": reported("3", 3, "2", 2)})
    left, merged = merge(older, newer, (THERMO, "t"))
    assert isinstance(left, TwinNotice)
    assert set(left.changes) == {"h"}
    assert isinstance(merged, TwinNotice)
    t = merged.changes["t"]
    assert t.reported == TwinValue("3", 3)
    assert t.previous_reported == TwinValue("1", 1)
    state_left, state = merge(
        StateNotice(THERMO, 1, "online", "offline", None),
        StateNotice(THERMO, 2, "unknown", "online", "x"),
        (THERMO,),
    )
    assert state_left is None
    assert state == StateNotice(THERMO, 2, "unknown", "offline", "x")
