"""Which change events a subscription gets, and the notification JSON (SPEC §4).

Pure functions over domain events: no I/O, no clock. The dispatcher matches inside the
registry listener, so matching must stay cheap; encoding runs later, in the delivery
task, once the notice has its sequence number.

A twin change is narrowed to the subscribed properties (and skipped when none
remain); models and labels are matched against the device as the registry holds
it right after the change (the event's snapshot; for a removal, as it was).

Encoding is shared. A notification is a subscription's own envelope (its type and id
before the ``sequence``, its ``_links`` after the content) around the change's content
(``timeStamp``, ``device`` and what changed). The content is encoded once per change
object and kept with it, so every subscription and socket that receives the same change
splices the same bytes between its own pre-encoded envelope parts (``Envelope``); the
result is byte for byte ``json.dumps(render(...), separators=(",", ":"))``.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
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
    "EVENT_TYPES",
    "Change",
    "Envelope",
    "MembershipNotice",
    "Notice",
    "Selector",
    "StateNotice",
    "TwinNotice",
    "coalesce_keys",
    "content_json",
    "content_of",
    "encode",
    "encoded_content",
    "merge",
    "narrow",
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
_COMPACT = (",", ":")


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


# The change classes keep their encoded content in ``_content`` once a delivery asked for
# it (set with ``object.__setattr__``, the frozen-dataclass way): it is derived from the
# other fields, which never change, and a merged change is a new object with no cache.


@dataclass(frozen=True, slots=True)
class TwinNotice:
    device: DeviceId
    timestamp: int
    changes: Mapping[str, PropertyChange]
    _content: bytes | None = field(default=None, init=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StateNotice:
    device: DeviceId
    timestamp: int
    state: str | None
    previous: str | None
    last_online: str | None
    _content: bytes | None = field(default=None, init=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MembershipNotice:
    device: Device
    timestamp: int
    change_type: ChangeType
    _content: bytes | None = field(default=None, init=False, compare=False, repr=False)


Change = TwinNotice | StateNotice | MembershipNotice


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification waiting for delivery: numbered when queued, encoded when sent."""

    sequence: int
    enqueued: float
    """Monotonic seconds when it was queued; delivery gives up after a maximum age."""
    change: Change


# ------------------------------------------------------------------- selection


def content_of(event: ChangeEvent) -> Change | None:
    """The whole of ``event`` as a notification's content (before any property filter)."""
    if isinstance(event, TwinChanged):
        return TwinNotice(event.device, event.timestamp, event.changes)
    if isinstance(event, StateChanged):
        return StateNotice(
            event.device, event.timestamp, event.state, event.previous, event.last_online
        )
    if isinstance(event, DeviceAdded | DeviceRemoved | DeviceUpdated):
        change_type: ChangeType = (
            "ADDED"
            if isinstance(event, DeviceAdded)
            else "REMOVED"
            if isinstance(event, DeviceRemoved)
            else "UPDATED"
        )
        return MembershipNotice(event.device, event.timestamp, change_type)
    return None


def narrow(change: Change, properties: frozenset[str]) -> Change | None:
    """A twin change cut to ``properties`` (None when none remain; ``change`` itself when
    all remain, so its encoding is shared). Other changes are not filtered by property."""
    if not properties or not isinstance(change, TwinNotice):
        return change
    kept = {n: c for n, c in change.changes.items() if n in properties}
    if not kept:
        return None
    if len(kept) == len(change.changes):
        return change
    return TwinNotice(change.device, change.timestamp, kept)


EVENT_TYPES: dict[str, tuple[type[ChangeEvent], ...]] = {
    "DeviceTwinChangeSubscription": (TwinChanged,),
    "DeviceStateChangeSubscription": (StateChanged,),
    "DeviceMembershipChangeSubscription": (DeviceAdded, DeviceRemoved, DeviceUpdated),
}
"""The change events each subscription type receives."""


def select(selector: Selector, event: ChangeEvent, device: Device | None) -> Change | None:
    """What of ``event`` goes to a subscription with ``selector``, or None.

    ``device`` is the event's device as the registry holds it after the change (used for
    model and label criteria of twin and state changes). The dispatcher does the same in
    steps (``content_of`` once per event, ``narrow`` per property filter).
    """
    if not isinstance(event, EVENT_TYPES.get(selector.subscription_type, ())):
        return None
    if isinstance(event, DeviceAdded | DeviceRemoved | DeviceUpdated):
        device = event.device
    device_id = event_device_id(event)
    if device_id is None or not selector.matches_device(device_id, device):
        return None
    change = content_of(event)
    return None if change is None else narrow(change, selector.properties)


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


def content_json(change: Change) -> dict[str, Any]:
    """The part of the notification that depends on the change only (between ``sequence``
    and ``_links``), in the order of SPEC §4."""
    if isinstance(change, TwinNotice):
        return {
            "timeStamp": time_stamp(change.timestamp),
            "device": _device_ref(change.device),
            "changes": {name: _property_change(c) for name, c in sorted(change.changes.items())},
        }
    if isinstance(change, StateNotice):
        return {
            "timeStamp": time_stamp(change.timestamp),
            "device": _device_ref(change.device),
            "state": change.state,
            "previousState": change.previous,
            "lastOnlineTime": change.last_online,
        }
    device = change.device
    return {
        "timeStamp": time_stamp(change.timestamp),
        "device": _device_ref(device.id),
        "changeType": change.change_type,
        "model": device.model,
        "node": device.node,
        "labels": dict(device.labels),
    }


_NOTIFICATION_TYPE_OF = {
    TwinNotice: "DeviceTwinChangeNotification",
    StateNotice: "DeviceStateChangeNotification",
    MembershipNotice: "DeviceMembershipChangeNotification",
}


def render(notice: Notice, subscription_id: str, subscription_href: str) -> dict[str, Any]:
    """The notification JSON of SPEC §4, as POSTed to a callback or sent on a websocket.

    The straightforward form; deliveries send ``encode``'s bytes, which equal its compact
    JSON encoding."""
    return {
        "notificationType": _NOTIFICATION_TYPE_OF[type(notice.change)],
        "subscriptionId": subscription_id,
        "sequence": notice.sequence,
        **content_json(notice.change),
        "_links": {"subscription": {"href": subscription_href}},
    }


@dataclass(frozen=True, slots=True)
class Envelope:
    """A subscription's own part of every notification it receives, encoded once.

    ``head`` is everything before the sequence number, ``tail`` the ``_links`` and the
    closing brace after the content.
    """

    head: bytes
    tail: bytes

    @classmethod
    def of(cls, notification_type: str, subscription_id: str, href: str) -> Envelope:
        head = (
            f'{{"notificationType":{json.dumps(notification_type)},'
            f'"subscriptionId":{json.dumps(subscription_id)},"sequence":'
        )
        tail = f',"_links":{{"subscription":{{"href":{json.dumps(href)}}}}}}}'
        return cls(head.encode(), tail.encode())

    @classmethod
    def for_subscription(cls, subscription_type: str, subscription_id: str, href: str) -> Envelope:
        return cls.of(NOTIFICATION_TYPES[subscription_type], subscription_id, href)


def encoded_content(change: Change) -> bytes:
    """``change``'s content as compact JSON members (no braces), encoded once per change.

    Raises ``ValueError`` or ``OverflowError`` when the change cannot be encoded."""
    content = change._content
    if content is None:
        text = json.dumps(content_json(change), separators=_COMPACT)
        content = text[1:-1].encode()
        object.__setattr__(change, "_content", content)
    return content


def encode(notice: Notice, envelope: Envelope) -> bytes:
    """The notification's bytes: the envelope around the sequence and the shared content."""
    return b"".join(
        (
            envelope.head,
            str(notice.sequence).encode(),
            b",",
            encoded_content(notice.change),
            envelope.tail,
        )
    )


def _device_ref(device_id: DeviceId) -> dict[str, str]:
    return {"namespace": device_id.namespace, "name": device_id.name}
