"""Matching and rendering: pure functions, no loop."""

from __future__ import annotations

import json
from dataclasses import replace

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
    Change,
    Envelope,
    MembershipNotice,
    Notice,
    Selector,
    StateNotice,
    TwinNotice,
    content_of,
    encode,
    encoded_content,
    merge,
    narrow,
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


DESIRED_WRITE = PropertyChange(
    reported=TwinValue("5", None),
    previous_reported=TwinValue("5", None),
    desired=TwinValue("7", 2000),
    previous_desired=TwinValue("6", 1000),
    reported_changed=False,
    desired_changed=True,
)
"""A desired value written (the reported side unchanged)."""


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
    return TwinChanged(THERMO, changes, 1_795_641_101_256, DEVICE)


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
    desired = DESIRED_WRITE
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
    event = StateChanged(THERMO, "online", "offline", "2026-11-25T21:11:41Z", 1_000, DEVICE)
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
    state = StateChanged(THERMO, "online", None, None, 1, DEVICE)
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
    assert select(selector, StateChanged(THERMO, "online", None, None, 1, DEVICE), DEVICE)
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


# ------------------------------------------------------------------ shared encoding

IDS_AND_HREFS = [
    ("s-1", HREF),
    (
        "0b7c6e1e-9a55-4d62-8f0a-3e1c9e2b7d10",
        "https://gw/app-1/kubeedge_devices/v1/subscriptions/x",
    ),
    ('odd"id\\é', 'http://gw/a b/"quoted"/ü'),
]


def _straightforward(notice: Notice, subscription_id: str, href: str) -> bytes:
    return json.dumps(render(notice, subscription_id, href), separators=(",", ":")).encode()


def _notices() -> list[Notice]:
    desired = DESIRED_WRITE
    deleted = PropertyChange(None, TwinValue("1", 1000), None, None, True, False, deleted=True)
    labelled = Device(
        id=DeviceId("plänt", 'pump"7'),
        model="pump",
        node=None,
        labels={"room": "hall", "ünïcode": 'va"lue\\'},
    )
    changes: list[Change] = [
        TwinNotice(THERMO, 1_795_641_101_256, {"t": reported("24", 1_000, "23", 999)}),
        TwinNotice(THERMO, 0, {"speed": desired, "mode": deleted, "a": reported("1", 5)}),
        StateNotice(THERMO, 1_000, "online", None, "2026-11-25T21:11:41Z"),
        StateNotice(labelled.id, 1_000, None, "offline", None),
        MembershipNotice(labelled, 42, "ADDED"),
        MembershipNotice(DEVICE, 42, "REMOVED"),
    ]
    return [Notice(sequence, 0.0, c) for sequence, c in enumerate(changes, start=1)]


def test_encoding_equals_the_straightforward_json_byte_for_byte() -> None:
    for notice in _notices():
        kind = {
            TwinNotice: TWIN,
            StateNotice: STATE,
            MembershipNotice: MEMBERSHIP,
        }[type(notice.change)]
        for subscription_id, href in IDS_AND_HREFS:
            envelope = Envelope.for_subscription(kind, subscription_id, href)
            for sequence in (notice.sequence, 10**12):
                numbered = replace(notice, sequence=sequence)
                assert encode(numbered, envelope) == _straightforward(
                    numbered, subscription_id, href
                )


def test_subscriptions_share_one_encoding_of_a_change_and_splice_their_own_fields() -> None:
    change = select(Selector(TWIN), twin_event(temperature=reported("1", 1)), DEVICE)
    assert change is not None
    first = encode(Notice(1, 0.0, change), Envelope.for_subscription(TWIN, "s-1", HREF))
    shared = encoded_content(change)
    assert encoded_content(change) is shared, "encoded once per change object"
    second = encode(Notice(9, 0.0, change), Envelope.for_subscription(TWIN, "s-2", "http://h/2"))
    assert shared in first and shared in second
    one, two = json.loads(first), json.loads(second)
    assert (one["subscriptionId"], one["sequence"]) == ("s-1", 1)
    assert (two["subscriptionId"], two["sequence"]) == ("s-2", 9)
    assert two["_links"] == {"subscription": {"href": "http://h/2"}}
    assert {k: v for k, v in one.items() if k not in ("subscriptionId", "sequence", "_links")} == {
        k: v for k, v in two.items() if k not in ("subscriptionId", "sequence", "_links")
    }


def test_a_merged_change_is_encoded_anew() -> None:
    older = TwinNotice(THERMO, 1, {"t": reported("2", 2, "1", 1), "h": reported("9", 2)})
    newer = TwinNotice(THERMO, 3, {"t": reported("3", 3, "2", 2)})
    encoded_content(older), encoded_content(newer)
    left, merged = merge(older, newer, (THERMO, "t"))
    envelope = Envelope.for_subscription(TWIN, "s-1", HREF)
    for change in (left, merged):
        assert change is not None
        notice = Notice(5, 0.0, change)
        assert encode(notice, envelope) == _straightforward(notice, "s-1", HREF)


def test_narrowing_shares_the_change_when_every_property_is_wanted() -> None:
    event = twin_event(temperature=reported("1", 1), humidity=reported("40", 1))
    whole = content_of(event)
    assert whole is not None
    assert narrow(whole, frozenset()) is whole
    assert narrow(whole, frozenset({"temperature", "humidity", "speed"})) is whole
    cut = narrow(whole, frozenset({"humidity"}))
    assert isinstance(cut, TwinNotice) and set(cut.changes) == {"humidity"}
    assert narrow(whole, frozenset({"speed"})) is None
