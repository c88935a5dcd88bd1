"""EdgeCore's devicetwin module without any I/O: one received message in, the publications
EdgeCore makes in answer out (:class:`DeviceTwinModule`). The behaviour is described in the
package docstring; request decoding follows Go's ``json.Unmarshal``: wrong JSON types make a
request unparsable.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from mep_kubeedge_adapter.emulators.edgecore.twins import (
    DEVICE_PREFIX,
    KEY_RE,
    NODE_PREFIX,
    TOPIC_LAYOUTS,
    TYPE_DELETED,
    VALUE_RE,
    EmulatedDevice,
    Publication,
    TopicLayout,
    Twin,
    TwinValue,
    TwinVersion,
    now_ms,
    value_type_error,
)

__all__ = ["DeviceTwinModule"]

ACCEPTED_STATES = frozenset({"online", "offline", "ok", "unknown", "unhealthy"})
ONLINE_STATES = frozenset({"online", "ok"})

ERROR_UNMARSHAL = "Unmarshal update request body failed, please check the request"
ERROR_NO_TWIN = "Update twin error, key:twin does not exist"
ERROR_KEY = (
    "The key of twin must only include upper or lowercase letters, number, english, and special"
    " letter - _ . , : / @ # and the length of key should be less than 128 bytes"
)
ERROR_VALUE = (
    "The value of twin must only include upper or lowercase letters, number, english, and"
    " special letter - _ . , : / @ # and the length of value should be less than 512 bytes"
)
ERROR_DEVICE_UNKNOWN = "Update rejected due to the device is not existed"
ERROR_REQUEST_BODY = "The request body is wrong"

BAD_REQUEST = 400
NOT_FOUND = 404


class _Unparsable(ValueError):
    """The payload does not decode into the message shape EdgeCore expects."""


# --------------------------------------------------------------------------------------------
# Request decoding


def _decode_object(payload: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Unparsable(str(exc)) from exc
    if not isinstance(decoded, dict):
        raise _Unparsable("not a JSON object")
    return decoded


def _decode_header(message: Mapping[str, Any]) -> str:
    event_id = message.get("event_id")
    if event_id is not None and not isinstance(event_id, str):
        raise _Unparsable("event_id must be a string")
    timestamp = message.get("timestamp")
    if timestamp is not None and (not isinstance(timestamp, int) or isinstance(timestamp, bool)):
        raise _Unparsable("timestamp must be an integer")
    return event_id or ""


@dataclass
class _RequestTwin:
    expected: str | None = None
    actual: str | None = None
    optional: bool | None = None
    type: str | None = None  # None: no metadata object in the request
    expected_version: TwinVersion | None = None
    actual_version: TwinVersion | None = None


def _decode_version(raw: object) -> TwinVersion | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _Unparsable("a version must be an object")
    cloud, edge = raw.get("cloud", 0), raw.get("edge", 0)
    if not isinstance(cloud, int) or not isinstance(edge, int):
        raise _Unparsable("version counters must be integers")
    return TwinVersion(cloud, edge)


def _decode_side(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _Unparsable("expected/actual must be an object")
    value = raw.get("value")
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Unparsable("a twin value must be a JSON string")
    return value


def _decode_twins(message: Mapping[str, Any]) -> dict[str, _RequestTwin | None]:
    """Decode and validate `twin` the way EdgeCore does before looking at the device."""
    raw = message.get("twin")
    if raw is None:
        raise _Unparsable(ERROR_NO_TWIN)
    if not isinstance(raw, dict):
        raise _Unparsable(ERROR_UNMARSHAL)
    twins: dict[str, _RequestTwin | None] = {}
    for key, entry in raw.items():
        if entry is None:
            twins[key] = None
            continue
        if not isinstance(entry, Mapping):
            raise _Unparsable(ERROR_UNMARSHAL)
        optional = entry.get("optional")
        if optional is not None and not isinstance(optional, bool):
            raise _Unparsable(ERROR_UNMARSHAL)
        metadata = entry.get("metadata")
        twin_type: str | None = None
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise _Unparsable(ERROR_UNMARSHAL)
            raw_type = metadata.get("type", "")
            if not isinstance(raw_type, str):
                raise _Unparsable(ERROR_UNMARSHAL)
            twin_type = raw_type
        twins[key] = _RequestTwin(
            expected=_decode_side(entry.get("expected")),
            actual=_decode_side(entry.get("actual")),
            optional=optional,
            type=twin_type,
            expected_version=_decode_version(entry.get("expected_version")),
            actual_version=_decode_version(entry.get("actual_version")),
        )
    return twins


def _check_keys_and_values(twins: Mapping[str, _RequestTwin | None]) -> str | None:
    for key, entry in twins.items():
        if not KEY_RE.match(key):
            return ERROR_KEY
        if entry is None:
            continue
        for value in (entry.expected, entry.actual):
            if value and not VALUE_RE.match(value):
                return ERROR_VALUE
    return None


def _strip_versions(device: Mapping[str, Any]) -> dict[str, Any]:
    """A membership device object as EdgeCore echoes it: known fields, twins without versions."""
    out: dict[str, Any] = {}
    for name in ("id", "name", "description", "state", "last_online", "attributes"):
        if device.get(name):
            out[name] = device[name]
    twins = device.get("twin")
    if isinstance(twins, Mapping) and twins:
        out["twin"] = {
            key: (
                {k: v for k, v in entry.items() if k not in ("expected_version", "actual_version")}
                if isinstance(entry, Mapping)
                else entry
            )
            for key, entry in twins.items()
        }
    return out


# --------------------------------------------------------------------------------------------
# The devicetwin module


_Deal = Literal["edge", "cloud"]


@dataclass
class _Outcome:
    result: dict[str, Any] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class DeviceTwinModule:
    """EdgeCore's devicetwin state machine without any I/O.

    `handle(topic, payload)` returns the publications EdgeCore would make, in order. The MQTT
    wrapper (`EdgeCoreEmulator`) and unit tests share it; it is not thread-safe.
    """

    def __init__(
        self,
        node_name: str,
        devices: Iterable[EmulatedDevice] = (),
        *,
        topic_layout: TopicLayout = "namespaced",
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        if topic_layout not in TOPIC_LAYOUTS:
            raise ValueError(f"topic_layout must be one of {TOPIC_LAYOUTS}, not {topic_layout!r}")
        self.node_name = node_name
        self.topic_layout: TopicLayout = topic_layout
        self._clock = clock_ms
        self.devices: dict[str, EmulatedDevice] = {}
        for device in devices:
            self.devices[device.device_id(topic_layout)] = copy.deepcopy(device)

    # -- subscriptions -------------------------------------------------------------------

    @property
    def subscriptions(self) -> list[str]:
        """What the emulator subscribes to: EdgeCore's SubTopics plus the injection topics."""
        device = "+/+" if self.topic_layout == "namespaced" else "+"
        return [
            f"{DEVICE_PREFIX}{device}/state/update",
            f"{DEVICE_PREFIX}{device}/twin/+",
            f"{NODE_PREFIX}+/membership/get",
            f"{NODE_PREFIX}+/membership/updated",
        ]

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> list[Publication]:
        """Process one received message; return what EdgeCore publishes in response."""
        if topic.startswith(NODE_PREFIX):
            parts = topic[len(NODE_PREFIX) :].split("/")
            if len(parts) == 3 and parts[1] == "membership":
                if parts[2] == "get":
                    return self._membership_get(payload)
                if parts[2] == "updated":
                    return self._membership_updated(parts[0], payload)
            return []
        if not topic.startswith(DEVICE_PREFIX):
            return []
        parts = topic[len(DEVICE_PREFIX) :].split("/")
        id_levels = 2 if self.topic_layout == "namespaced" else 1
        if len(parts) != id_levels + 2 or not all(parts[:id_levels]):
            return []
        device_id = "/".join(parts[:id_levels])
        kind, action = parts[id_levels], parts[id_levels + 1]
        if kind == "state" and action == "update":
            return self._state_update(device_id, payload)
        if kind == "twin":
            if action == "update":
                return self._twin_update(device_id, payload)
            if action == "get":
                return self._twin_get(device_id, payload)
            if action == "cloud_updated":
                return self._cloud_updated(device_id, payload)
        return []

    # -- helpers -------------------------------------------------------------------------

    def _device_topic(self, device_id: str, suffix: str) -> str:
        return f"{DEVICE_PREFIX}{device_id}/{suffix}"

    def _error(self, topic: str, event_id: str, code: int, reason: str) -> Publication:
        return Publication(
            topic,
            {"event_id": event_id, "timestamp": self._clock(), "code": code, "reason": reason},
        )

    def _delta(self, device_id: str, device: EmulatedDevice) -> list[Publication]:
        twins: dict[str, Any] = {}
        delta: dict[str, str] = {}
        for key in sorted(device.twins):
            twin = device.twins[key]
            if twin.deleted or twin.expected is None or twin.expected.value == "":
                continue
            twins[key] = twin.wire()
            if twin.actual is None or twin.actual.value != twin.expected.value:
                delta[key] = twin.expected.value
        if not delta:
            return []
        payload = {
            "event_id": str(uuid.uuid4()),
            "timestamp": self._clock(),
            "twin": twins,
            "delta": delta,
        }
        return [Publication(self._device_topic(device_id, "twin/update/delta"), payload)]

    # -- twin/update, twin/cloud_updated -------------------------------------------------

    def _twin_update(self, device_id: str, payload: bytes) -> list[Publication]:
        try:
            message = _decode_object(payload)
            event_id = _decode_header(message)
            requested = _decode_twins(message)
        except _Unparsable as exc:
            reason = str(exc) if str(exc) in (ERROR_NO_TWIN, ERROR_UNMARSHAL) else ERROR_UNMARSHAL
            return [self._error(self._device_topic("", "twin/update/result"), "", 400, reason)]
        if (problem := _check_keys_and_values(requested)) is not None:
            return [self._error(self._device_topic("", "twin/update/result"), "", 400, problem)]
        return self._deal_device_twin(device_id, event_id, requested, "edge")

    def _cloud_updated(self, device_id: str, payload: bytes) -> list[Publication]:
        try:
            message = _decode_object(payload)
            event_id = _decode_header(message)
            requested = _decode_twins(message)
        except _Unparsable:
            reason = "Unmarshal update request body failed, Please check the request"
            return [self._error(self._device_topic("", "twin/update/result"), "", 400, reason)]
        if _check_keys_and_values(requested) is not None:
            reason = "Unmarshal update request body failed, Please check the request"
            return [self._error(self._device_topic("", "twin/update/result"), "", 400, reason)]
        return self._deal_device_twin(device_id, event_id, requested, "cloud")

    def _deal_device_twin(
        self,
        device_id: str,
        event_id: str,
        requested: Mapping[str, _RequestTwin | None],
        deal: _Deal,
    ) -> list[Publication]:
        result_topic = self._device_topic(device_id, "twin/update/result")
        device = self.devices.get(device_id)
        if device is None:
            return [self._error(result_topic, event_id, NOT_FOUND, ERROR_DEVICE_UNKNOWN)]
        now = self._clock()
        working = copy.deepcopy(device.twins)
        outcome = _Outcome()
        for key, entry in requested.items():
            self._deal_twin(working, key, entry, deal, now, outcome)
            if outcome.error is not None:
                break
        if outcome.error is not None and deal == "edge":
            return [self._error(result_topic, event_id, BAD_REQUEST, outcome.error)]
        device.twins = working
        out: list[Publication] = []
        if deal == "edge":
            result = {"event_id": event_id, "timestamp": now, "twin": outcome.result}
            out.append(Publication(result_topic, result))
        if outcome.document:
            document = {"event_id": event_id, "timestamp": now, "twin": outcome.document}
            out.append(Publication(self._device_topic(device_id, "twin/update/document"), document))
        out.extend(self._delta(device_id, device))
        return out

    def _deal_twin(
        self,
        twins: dict[str, Twin],
        key: str,
        entry: _RequestTwin | None,
        deal: _Deal,
        now: int,
        outcome: _Outcome,
    ) -> None:
        existing = twins.get(key)
        if existing is None:
            self._add_twin(twins, key, entry, deal, now, outcome)
        elif (entry is None and deal == "edge") or (
            deal == "cloud" and entry is not None and entry.type == TYPE_DELETED
        ):
            self._delete_twin(existing, key, entry, deal, outcome)
        elif entry is not None:
            self._compare_twin(existing, key, entry, deal, now, outcome)

    @staticmethod
    def _version_allows(
        stored: TwinVersion, requested: TwinVersion | None, deal: _Deal
    ) -> TwinVersion | None:
        """The version after the write, or None if a cloud sync must be refused."""
        if deal == "edge":
            return TwinVersion(stored.cloud, stored.edge + 1)
        if requested is None or stored.cloud > requested.cloud or stored.edge > requested.edge:
            return None
        return TwinVersion(requested.cloud, requested.edge)

    def _add_twin(
        self,
        twins: dict[str, Twin],
        key: str,
        entry: _RequestTwin | None,
        deal: _Deal,
        now: int,
        outcome: _Outcome,
    ) -> None:
        if entry is None:
            # Deleting a key that never existed: EdgeCore leaves an empty document entry.
            outcome.document[key] = {"last": None, "current": None}
            return
        twin_type = "string" if entry.type is None else entry.type
        twin = Twin(type=twin_type, optional=True if entry.optional is None else entry.optional)
        for side in ("expected", "actual"):
            value: str | None = getattr(entry, side)
            if value is None:
                continue
            requested_version: TwinVersion | None = getattr(entry, f"{side}_version")
            version = self._version_allows(TwinVersion(), requested_version, deal)
            if version is None:
                # A refused cloud add keeps its (empty) document entry and stores nothing.
                outcome.document[key] = {"last": None, "current": None}
                return
            if (error := value_type_error(twin_type, value)) is not None:
                outcome.document.pop(key, None)
                if deal == "edge":
                    outcome.error = error
                return
            setattr(twin, side, TwinValue(value, now))
            setattr(twin, f"{side}_version", version)
        twins[key] = twin
        outcome.document[key] = {"last": None, "current": None if twin.deleted else twin.wire()}
        if deal == "edge":
            outcome.result[key] = twin.wire()

    def _delete_twin(
        self,
        twin: Twin,
        key: str,
        entry: _RequestTwin | None,
        deal: _Deal,
        outcome: _Outcome,
    ) -> None:
        if deal == "edge" and not twin.optional:
            return
        if twin.deleted:
            return
        last = twin.wire()
        changed = False
        for side in ("expected", "actual"):
            stored: TwinVersion | None = getattr(twin, f"{side}_version")
            if stored is None:
                continue
            if deal == "edge":
                version: TwinVersion | None = TwinVersion(stored.cloud, stored.edge + 1)
            else:
                requested = getattr(entry, f"{side}_version") if entry is not None else None
                version = (
                    stored if requested is None else self._version_allows(stored, requested, deal)
                )
                if version is None:
                    return
            setattr(twin, side, None)
            setattr(twin, f"{side}_version", version)
            twin.type = TYPE_DELETED
            changed = True
        if changed:
            outcome.document[key] = {"last": last, "current": None}
            if deal == "edge":
                outcome.result[key] = None

    def _compare_twin(
        self,
        twin: Twin,
        key: str,
        entry: _RequestTwin,
        deal: _Deal,
        now: int,
        outcome: _Outcome,
    ) -> None:
        last = None if twin.deleted else twin.wire()
        if twin.deleted:
            value_type = entry.type if entry.type is not None else "string"
        else:
            value_type = twin.type
        written: dict[str, Any] = {}
        changed = False
        sync_allowed = True
        for side in ("expected", "actual"):
            value: str | None = getattr(entry, side)
            if value is None or not sync_allowed:
                continue
            if (error := value_type_error(value_type, value)) is not None:
                if deal == "edge":
                    outcome.error = error
                    return
                continue
            stored: TwinVersion = getattr(twin, f"{side}_version") or TwinVersion()
            version = self._version_allows(stored, getattr(entry, f"{side}_version"), deal)
            if version is None:
                sync_allowed = False
                continue
            side_value = TwinValue(value, now)
            setattr(twin, side, side_value)
            setattr(twin, f"{side}_version", version)
            written[side] = side_value.wire()
            changed = True
        if sync_allowed:
            if entry.optional is not None and entry.optional != twin.optional and twin.optional:
                twin.optional = entry.optional
                changed = True
            if entry.type is not None:
                if entry.type != twin.type:
                    if twin.deleted:
                        twin.type = entry.type
                    changed = True
            elif twin.deleted:
                twin.type = "string"
                changed = True
        if not changed:
            return
        outcome.document[key] = {"last": last, "current": twin.wire()}
        if deal == "edge":
            result = dict(written)
            if written:
                result["optional"] = twin.optional
                result["metadata"] = {"type": twin.type} if twin.type else {}
            outcome.result[key] = result

    # -- twin/get ------------------------------------------------------------------------

    def _twin_get(self, device_id: str, payload: bytes) -> list[Publication]:
        topic = self._device_topic(device_id, "twin/get/result")
        try:
            event_id = _decode_header(_decode_object(payload))
        except _Unparsable as exc:
            reason = f"Unmarshal twin info {payload.decode(errors='replace')} failed , err: {exc}"
            return [self._error(topic, "", BAD_REQUEST, reason)]
        device = self.devices.get(device_id)
        if device is None:
            reason = f"Device {device_id} not found while getting twin"
            return [self._error(topic, event_id, NOT_FOUND, reason)]
        twins = {
            key: device.twins[key].wire()
            for key in sorted(device.twins)
            if not device.twins[key].deleted
        }
        return [
            Publication(topic, {"event_id": event_id, "timestamp": self._clock(), "twin": twins})
        ]

    # -- state/update --------------------------------------------------------------------

    def _state_update(self, device_id: str, payload: bytes) -> list[Publication]:
        try:
            message = _decode_object(payload)
            _decode_header(message)
        except _Unparsable:
            return []
        state = message.get("state")
        device = self.devices.get(device_id)
        if not isinstance(state, str) or state.lower() not in ACCEPTED_STATES or device is None:
            return []
        now = self._clock()
        device.state = state
        reported: dict[str, Any] = {"name": device.name, "state": state}
        if state.lower() in ONLINE_STATES:
            device.last_online = datetime.fromtimestamp(now / 1000, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            reported["lastOnlineTime"] = device.last_online
        body = {"event_id": str(uuid.uuid4()), "timestamp": now, "device": reported}
        return [Publication(self._device_topic(device_id, "state/update/result"), body)]

    # -- membership ----------------------------------------------------------------------

    def _membership_get(self, payload: bytes) -> list[Publication]:
        topic = f"{NODE_PREFIX}{self.node_name}/membership/get/result"
        try:
            event_id = _decode_header(_decode_object(payload))
        except _Unparsable as exc:
            reason = f"Unmarshal membership get request failed, err: {exc}"
            return [self._error(topic, "", BAD_REQUEST, reason)]
        devices = [
            self.devices[device_id].membership_entry(self.topic_layout)
            for device_id in sorted(self.devices)
        ]
        body = {"event_id": event_id, "timestamp": self._clock(), "devices": devices}
        return [Publication(topic, body)]

    def _device_from_id(self, device_id: str, name: object) -> EmulatedDevice | None:
        if self.topic_layout == "namespaced":
            namespace, _, device_name = device_id.partition("/")
            if not namespace or not device_name or "/" in device_name:
                return None
        else:
            if "/" in device_id:
                return None
            namespace, device_name = "default", device_id
        if isinstance(name, str) and name and name != device_name:
            return None
        return EmulatedDevice(namespace, device_name)

    def _membership_updated(self, node: str, payload: bytes) -> list[Publication]:
        try:
            message = _decode_object(payload)
            _decode_header(message)
        except _Unparsable:
            return []
        topic = f"{NODE_PREFIX}{node}/membership/updated"
        out: list[Publication] = []
        added = message.get("added_devices") or []
        removed = message.get("removed_devices") or []
        if not isinstance(added, list) or not isinstance(removed, list):
            return []
        for raw in added:
            if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
                continue
            device_id: str = raw["id"]
            known = device_id in self.devices
            if not known:
                device = self._device_from_id(device_id, raw.get("name"))
                if device is None:
                    continue
                description = raw.get("description")
                device.description = description if isinstance(description, str) else ""
                self.devices[device_id] = device
            twins = raw.get("twin")
            if isinstance(twins, Mapping) and twins:
                out.extend(self._sync_membership_twins(device_id, dict(twins)))
            if not known:
                body = {
                    "event_id": str(uuid.uuid4()),
                    "timestamp": self._clock(),
                    "added_devices": [_strip_versions(raw)],
                    "removed_devices": None,
                }
                out.append(Publication(topic, body))
        for raw in removed:
            if not isinstance(raw, Mapping) or raw.get("id") not in self.devices:
                continue
            del self.devices[raw["id"]]
            body = {
                "event_id": str(uuid.uuid4()),
                "timestamp": self._clock(),
                "added_devices": None,
                "removed_devices": [_strip_versions(raw)],
            }
            out.append(Publication(topic, body))
        return out

    def _sync_membership_twins(self, device_id: str, twins: dict[str, Any]) -> list[Publication]:
        try:
            requested = _decode_twins({"twin": twins})
        except _Unparsable:
            return []
        if _check_keys_and_values(requested) is not None:
            return []
        return self._deal_device_twin(device_id, "", requested, "cloud")

    # -- programmatic cloud-side changes (used by EdgeCoreEmulator helpers) --------------

    def cloud_update_payload(
        self, device_id: str, expected: Mapping[str, str], types: Mapping[str, str] | None = None
    ) -> bytes:
        """A `twin/cloud_updated` body that EdgeCore accepts for `expected` values.

        Versions are taken one `cloud` step past what is stored, as cloudcore would send them.
        """
        device = self.devices.get(device_id)
        twins: dict[str, Any] = {}
        for key, value in expected.items():
            stored = device.twins.get(key) if device is not None else None
            version = (stored.expected_version if stored else None) or TwinVersion()
            twin_type = (types or {}).get(key) or (stored.type if stored else "string")
            twins[key] = {
                "expected": {"value": value},
                "metadata": {"type": twin_type},
                "expected_version": {"cloud": version.cloud + 1, "edge": version.edge},
            }
        body = {"event_id": str(uuid.uuid4()), "timestamp": self._clock(), "twin": twins}
        return json.dumps(body).encode()
