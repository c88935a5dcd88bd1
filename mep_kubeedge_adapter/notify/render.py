"""Which change events a subscription gets, and the notification JSON (SPEC §4).

Pure functions over domain events: no I/O, no clock. The dispatcher calls
``select`` inside the registry listener, so it must stay cheap; ``render`` runs
later, in the delivery task, once the notice has its sequence number.

A twin change is narrowed to the subscribed properties (and skipped when none
remain); models and labels are matched against the device as the registry holds
it right after the change (for a removal, as it was).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from mep_kubeedge_adapter.domain import (
    ChangeEvent,
    Device,
    DeviceAdded,
    DeviceId,
    DeviceRemoved,
    DeviceUpdated,
    PropertyChange,
    StateChanged,
    TwinChanged,
    TwinValue,
)

__all__ = [
    "MembershipNotice",
    "Notice",
    "Selector",
    "StateNotice",
    "TwinNotice",
    "coalesce_keys",
    "merge",
    "render",
    "rfc3339",
    "select",
]

ChangeType = Literal["ADDED", "REMOVED", "UPDATED"]

NOTIFICATION_TYPES = {
    "DeviceTwinChangeSubscription": "DeviceTwinChangeNotification",
    "DeviceStateChangeSubscription": "DeviceStateChangeNotification",
    "DeviceMembershipChangeSubscription": "DeviceMembershipChangeNotification",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Selector:
    """A subscription's type and filtering criteria, compiled for fast matching."""

    subscription_type: str
    devices: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    properties: frozenset[str] = frozenset()
    labels: tuple[tuple[str, str], ...] = ()

    def matches_device(self, device_id: DeviceId, device: Device | None) -> bool:
        if self.devices and str(device_id) not in self.devices:
            return False
        if self.models and (device is None or device.model not in self.models):
            return False
        if self.labels:
            if device is None:
                return False
            return all(device.labels.get(key) == value for key, value in self.labels)
        return True


@dataclass(frozen=True, slots=True)
class TwinNotice:
    device: DeviceId
    timestamp: int
    changes: Mapping[str, PropertyChange]


@dataclass(frozen=True, slots=True)
class StateNotice:
    device: DeviceId
    timestamp: int
    state: str | None
    previous: str | None
    last_online: str | None


@dataclass(frozen=True, slots=True)
class MembershipNotice:
    device: Device
    timestamp: int
    change_type: ChangeType


Change = TwinNotice | StateNotice | MembershipNotice


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification waiting for delivery: numbered when queued, rendered when sent."""

    sequence: int
    enqueued: float
    """Monotonic seconds when it was queued; delivery gives up after a maximum age."""
    change: Change


# ------------------------------------------------------------------- selection


def select(selector: Selector, event: ChangeEvent, device: Device | None) -> Change | None:
    """What of ``event`` goes to a subscription with ``selector``, or None.

    ``device`` is the registry's current snapshot of the event's device (used for
    model and label criteria of twin and state changes).
    """
    kind = selector.subscription_type
    if isinstance(event, TwinChanged):
        if kind != "DeviceTwinChangeSubscription":
            return None
        if not selector.matches_device(event.device, device):
            return None
        changes = event.changes
        if selector.properties:
            changes = {n: c for n, c in changes.items() if n in selector.properties}
            if not changes:
                return None
        return TwinNotice(event.device, event.timestamp, changes)
    if isinstance(event, StateChanged):
        if kind != "DeviceStateChangeSubscription":
            return None
        if not selector.matches_device(event.device, device):
            return None
        return StateNotice(
            event.device, event.timestamp, event.state, event.previous, event.last_online
        )
    if isinstance(event, DeviceAdded | DeviceRemoved | DeviceUpdated):
        if kind != "DeviceMembershipChangeSubscription":
            return None
        if not selector.matches_device(event.device.id, event.device):
            return None
        change_type: ChangeType = (
            "ADDED"
            if isinstance(event, DeviceAdded)
            else "REMOVED"
            if isinstance(event, DeviceRemoved)
            else "UPDATED"
        )
        return MembershipNotice(event.device, event.timestamp, change_type)
    return None


def event_device_id(event: ChangeEvent) -> DeviceId | None:
    """The device an event is about (None for model changes)."""
    if isinstance(event, TwinChanged | StateChanged):
        return event.device
    if isinstance(event, DeviceAdded | DeviceRemoved | DeviceUpdated):
        return event.device.id
    return None


# ------------------------------------------------------------------- coalescing


def coalesce_keys(change: Change) -> tuple[Hashable, ...]:
    """What a newer notice may replace: one key per twin property, one per device state.

    Membership changes are never coalesced: each one is an event a subscriber must see.
    """
    if isinstance(change, TwinNotice):
        return tuple((change.device, name) for name in change.changes)
    if isinstance(change, StateNotice):
        return ((change.device,),)
    return ()


def merge(older: Change, newer: Change, key: Hashable) -> tuple[Change | None, Change]:
    """Fold ``older``'s part under ``key`` into ``newer``.

    Returns what is left of ``older`` (None if nothing) and the new ``newer``, which
    keeps its own current values and takes ``older``'s *previous* values, so a
    subscriber still learns where the value came from.
    """
    if isinstance(older, TwinNotice) and isinstance(newer, TwinNotice):
        assert isinstance(key, tuple)
        name = key[1]
        old = older.changes[name]
        new = newer.changes[name]
        merged = PropertyChange(
            reported=new.reported,
            previous_reported=old.previous_reported,
            desired=new.desired,
            previous_desired=old.previous_desired,
            reported_changed=old.reported_changed or new.reported_changed,
            desired_changed=old.desired_changed or new.desired_changed,
            deleted=new.deleted,
        )
        rest = {n: c for n, c in older.changes.items() if n != name}
        left = TwinNotice(older.device, older.timestamp, rest) if rest else None
        return left, TwinNotice(newer.device, newer.timestamp, {**newer.changes, name: merged})
    if isinstance(older, StateNotice) and isinstance(newer, StateNotice):
        return None, StateNotice(
            newer.device, newer.timestamp, newer.state, older.previous, newer.last_online
        )
    raise ValueError(f"cannot merge {type(older).__name__} into {type(newer).__name__}")


# -------------------------------------------------------------------- rendering


def rfc3339(millis: int) -> str:
    """Unix ms as RFC 3339 UTC with millisecond precision: ``2026-11-25T21:11:41.256Z``."""
    seconds, rest = divmod(millis, 1000)
    return f"{_rfc3339_second(seconds)}.{rest:03d}Z"


@lru_cache(maxsize=4096)
def _rfc3339_second(seconds: int) -> str:
    # strftime dominated rendering in the fan-out profile; twin timestamps repeat per second.
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def time_stamp(millis: int) -> dict[str, int]:
    """Unix ms as an ETSI ``TimeStamp``."""
    seconds, rest = divmod(millis, 1000)
    return {"seconds": seconds, "nanoSeconds": rest * 1_000_000}


def _value(value: TwinValue | None) -> dict[str, str] | None:
    if value is None:
        return None
    body = {"value": value.value}
    if value.timestamp is not None:
        body["timestamp"] = rfc3339(value.timestamp)
    return body


def _property_change(change: PropertyChange) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reported": _value(change.reported),
        "previous": _value(change.previous_reported),
    }
    if change.desired_changed:
        body["desired"] = _value(change.desired)
        body["previousDesired"] = _value(change.previous_desired)
    if change.deleted:
        body["deleted"] = True
    return body


def render(notice: Notice, subscription_id: str, subscription_href: str) -> dict[str, Any]:
    """The notification JSON of SPEC §4, as POSTed to a callback or sent on a websocket."""
    change = notice.change
    body: dict[str, Any]
    if isinstance(change, TwinNotice):
        body = {
            "notificationType": "DeviceTwinChangeNotification",
            "subscriptionId": subscription_id,
            "sequence": notice.sequence,
            "timeStamp": time_stamp(change.timestamp),
            "device": _device_ref(change.device),
            "changes": {name: _property_change(c) for name, c in sorted(change.changes.items())},
        }
    elif isinstance(change, StateNotice):
        body = {
            "notificationType": "DeviceStateChangeNotification",
            "subscriptionId": subscription_id,
            "sequence": notice.sequence,
            "timeStamp": time_stamp(change.timestamp),
            "device": _device_ref(change.device),
            "state": change.state,
            "previousState": change.previous,
            "lastOnlineTime": change.last_online,
        }
    else:
        device = change.device
        body = {
            "notificationType": "DeviceMembershipChangeNotification",
            "subscriptionId": subscription_id,
            "sequence": notice.sequence,
            "timeStamp": time_stamp(change.timestamp),
            "device": _device_ref(device.id),
            "changeType": change.change_type,
            "model": device.model,
            "node": device.node,
            "labels": dict(device.labels),
        }
    body["_links"] = {"subscription": {"href": subscription_href}}
    return body


def _device_ref(device_id: DeviceId) -> dict[str, str]:
    return {"namespace": device_id.namespace, "name": device_id.name}
