"""KubeEdge EdgeCore v1.23.1 devicetwin behaviour on the MQTT EventBus, for labs and tests.

Written from the KubeEdge reference and a capture of a real EdgeCore v1.23.1 only; it shares no
code with the adapter's KubeEdge codecs on purpose.

What it does, per received message (one debug log line each):

- `$hw/events/device/{id}/twin/update` → validation; on success `…/twin/update/result` (event_id
  echoed), `…/twin/update/document` (changed keys, `last`/`current`), and `…/twin/update/delta`
  (fresh uuid; all twins with a non-empty expected value, `delta` = those whose expected string
  differs from the actual string) if anything differs. Any error rejects the whole request:
  unparsable JSON, a missing `twin`, a bad key or a bad value is answered with a 400 on
  `$hw/events/device//twin/update/result` with an empty event_id (the device cannot be named);
  an unknown device gets a 404 on its own result topic; a type mismatch a 400 there.
- `…/twin/get` → `…/twin/get/result`: all non-deleted twins (`{}` if none) or a 404.
- `…/state/update` → `…/state/update/result` for `online|offline|ok|unknown|unhealthy`
  (case-insensitive); other states, unknown devices and bad JSON are dropped silently.
- `$hw/events/node/{any}/membership/get` → `$hw/events/node/{node_name}/membership/get/result`.
- Cloud-side changes, which a real EdgeCore receives from cloudcore, are injected over MQTT the
  way the capture shows EdgeCore reacting to them:
  - `$hw/events/node/{node}/membership/updated` with `added_devices` / `removed_devices`: a new
    device is added (its twin entries are processed as a cloud sync, see below) and
    `membership/updated` is published on the same node topic with a fresh uuid, one message per
    device. Because the emulator hears its own publication, an added device's twin entries are
    processed a second time, exactly as the capture shows.
  - `…/twin/cloud_updated`: a cloud sync (document + delta, never a result). Like cloudcore, it
    must carry `expected_version` / `actual_version` (`{"cloud": N, "edge": 0}`): entries
    without versions are refused (for a new key that yields `{"last": null, "current": null}`
    in the document and no twin), entries whose `cloud` is older than the stored one or whose
    `edge` is older than the stored edge version are refused silently. `cloud_update()` builds
    a valid sync for you.

Topic layouts: `namespaced` (v1.17+, id `<namespace>/<name>`, two topic levels; single-level
device topics are ignored) or `legacy` (≤ v1.15, id `<name>`). Publications are QoS 1, retain
false, and never contain versions. Timestamps are this process's clock in milliseconds.

Device file (YAML or JSON), a list under `devices:`:

    devices:
      - namespace: default
        name: thermo-1
        description: living-room thermometer
        twins:
          temperature: {type: int, expected: "22", actual: "21"}
          status: {type: string}             # a twin without values
          humidity:
            type: float
            actual: {value: "40.5", timestamp: 1700000000000}

Unknown keys (for instance a `simulate:` block used by the device simulator) are ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import aiomqtt
import yaml

from mep_kubeedge_adapter.supervisor import being_cancelled, cancel_and_wait

__all__ = [
    "DeviceTwinModule",
    "EdgeCoreEmulator",
    "EmulatedDevice",
    "Publication",
    "TopicLayout",
    "Twin",
    "TwinValue",
    "add_arguments",
    "load_devices",
    "run",
]

logger = logging.getLogger(__name__)

TopicLayout = Literal["namespaced", "legacy"]
TOPIC_LAYOUTS: tuple[TopicLayout, ...] = ("namespaced", "legacy")

DEVICE_PREFIX = "$hw/events/device/"
NODE_PREFIX = "$hw/events/node/"
TYPE_DELETED = "deleted"
ACCEPTED_STATES = frozenset({"online", "offline", "ok", "unknown", "unhealthy"})
ONLINE_STATES = frozenset({"online", "ok"})

_KEY_RE = re.compile(r"^[a-zA-Z0-9\-_.,:/@#]{1,128}$")
_VALUE_RE = re.compile(r"^[a-zA-Z0-9\-_.,:/@#]{1,512}$")
_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_FLOAT_RE = re.compile(
    r"^[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)$", re.IGNORECASE
)

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

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Unparsable(ValueError):
    """The payload does not decode into the message shape EdgeCore expects."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def value_type_error(value_type: str, value: str) -> str | None:
    """EdgeCore's check of a twin value against a twin type; the error text, or None if valid."""
    if value_type in ("", "string", TYPE_DELETED):
        return None
    if value_type in ("int", "integer"):
        if _INT_RE.match(value) and _INT64_MIN <= int(value) <= _INT64_MAX:
            return None
        return "the value is not int or integer"
    if value_type == "float":
        if _FLOAT_RE.match(value):
            special = value.lower().lstrip("+-") in ("inf", "infinity", "nan")
            if special or math.isfinite(float(value)):
                return None
        return "the value is not float"
    if value_type == "boolean":
        return None if value in ("true", "false") else "the bool value must be true or false"
    return "the value type is not allowed"


# --------------------------------------------------------------------------------------------
# State


@dataclass
class TwinValue:
    """One side (expected or actual) of a twin: the string value and EdgeCore's ms timestamp."""

    value: str
    timestamp: int

    def wire(self) -> dict[str, Any]:
        return {"value": self.value, "metadata": {"timestamp": self.timestamp}}


@dataclass
class TwinVersion:
    """Internal `{cloud, edge}` counters; never published on MQTT."""

    cloud: int = 0
    edge: int = 0


@dataclass
class Twin:
    """A device twin as EdgeCore keeps it. `type == "deleted"` marks a deleted twin."""

    type: str = "string"
    optional: bool = True
    expected: TwinValue | None = None
    actual: TwinValue | None = None
    expected_version: TwinVersion | None = None
    actual_version: TwinVersion | None = None

    @property
    def deleted(self) -> bool:
        return self.type == TYPE_DELETED

    def wire(self) -> dict[str, Any]:
        """The MQTT form: expected/actual with timestamps, optional, metadata; no versions."""
        out: dict[str, Any] = {}
        if self.expected is not None:
            out["expected"] = self.expected.wire()
        if self.actual is not None:
            out["actual"] = self.actual.wire()
        out["optional"] = self.optional
        out["metadata"] = {"type": self.type} if self.type else {}
        return out


@dataclass
class EmulatedDevice:
    """A device bound to the emulated node, with its twins."""

    namespace: str
    name: str
    description: str = ""
    twins: dict[str, Twin] = field(default_factory=dict)
    state: str = ""
    last_online: str = ""

    def device_id(self, layout: TopicLayout) -> str:
        return f"{self.namespace}/{self.name}" if layout == "namespaced" else self.name

    def membership_entry(self, layout: TopicLayout) -> dict[str, Any]:
        """The `membership/get/result` device object: no twins (v1.15+)."""
        entry: dict[str, Any] = {"id": self.device_id(layout), "name": self.name}
        if self.description:
            entry["description"] = self.description
        if self.state:
            entry["state"] = self.state
        if self.last_online:
            entry["last_online"] = self.last_online
        return entry


@dataclass(frozen=True)
class Publication:
    """One message the emulator publishes (QoS 1, retain false)."""

    topic: str
    payload: dict[str, Any]

    def encode(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# Device file


def _seed_value(raw: object, where: str) -> TwinValue | None:
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        value = raw.get("value")
        timestamp = raw.get("timestamp", _now_ms())
        if not isinstance(timestamp, int):
            raise ValueError(f"{where}: timestamp must be an integer (ms)")
        return TwinValue(_scalar_text(value, where), timestamp)
    return TwinValue(_scalar_text(raw, where), _now_ms())


def _scalar_text(raw: object, where: str) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str | int | float):
        return str(raw)
    raise ValueError(f"{where}: a twin value must be a string, number or boolean")


def parse_devices(document: object) -> list[EmulatedDevice]:
    """Build devices from an already-loaded device document (see the module docstring)."""
    entries = document.get("devices") if isinstance(document, Mapping) else document
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValueError("the device file must hold a list of devices under 'devices:'")
    devices: list[EmulatedDevice] = []
    for index, entry in enumerate(entries):
        where = f"devices[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: must be a mapping")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: 'name' is required")
        namespace = entry.get("namespace", "default")
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"{where}: 'namespace' must be a non-empty string")
        description = entry.get("description", "")
        device = EmulatedDevice(namespace, name, str(description or ""))
        twins = entry.get("twins") or {}
        if not isinstance(twins, Mapping):
            raise ValueError(f"{where}.twins: must be a mapping of twin name to twin")
        for key, spec in twins.items():
            twin_where = f"{where}.twins.{key}"
            spec = spec or {}
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise ValueError(f"{twin_where}: not a valid twin key")
            if not isinstance(spec, Mapping):
                raise ValueError(f"{twin_where}: must be a mapping")
            twin = Twin(
                type=str(spec.get("type", "string")),
                optional=bool(spec.get("optional", True)),
                expected=_seed_value(spec.get("expected"), f"{twin_where}.expected"),
                actual=_seed_value(spec.get("actual"), f"{twin_where}.actual"),
            )
            for side in (twin.expected, twin.actual):
                if side is not None and (error := value_type_error(twin.type, side.value)):
                    raise ValueError(f"{twin_where}: {error}")
            if twin.expected is not None:
                twin.expected_version = TwinVersion()
            if twin.actual is not None:
                twin.actual_version = TwinVersion()
            device.twins[key] = twin
        devices.append(device)
    return devices


def load_devices(path: str | Path) -> list[EmulatedDevice]:
    """Read a device file (YAML or JSON) into devices for `EdgeCoreEmulator`."""
    with Path(path).open(encoding="utf-8") as stream:
        document = yaml.safe_load(stream)
    try:
        return parse_devices(document)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Request decoding (Go json.Unmarshal semantics: wrong JSON types are unparsable)


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
        if not _KEY_RE.match(key):
            return ERROR_KEY
        if entry is None:
            continue
        for value in (entry.expected, entry.actual):
            if value and not _VALUE_RE.match(value):
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
# The devicetwin module: pure message-in / messages-out logic


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
        clock_ms: Callable[[], int] = _now_ms,
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


# --------------------------------------------------------------------------------------------
# MQTT wrapper


class EdgeCoreEmulator:
    """EdgeCore's devicetwin on an MQTT broker, as an async context manager.

    Entering connects, subscribes and waits (up to `ready_timeout`) until it is serving;
    leaving disconnects. If the broker goes away it reconnects every `reconnect_interval`
    seconds (a real EdgeCore waits 5 s) and `ready` is false meanwhile. A broker that dies
    while a publication waits for its acknowledgement is noticed after `operation_timeout`.

    `silent = True` keeps the connection and keeps applying requests but publishes nothing:
    this reproduces an EdgeCore that stays connected yet never publishes again.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        node_name: str = "edge-node",
        devices: Iterable[EmulatedDevice] = (),
        topic_layout: TopicLayout = "namespaced",
        username: str | None = None,
        password: str | None = None,
        reconnect_interval: float = 1.0,
        ready_timeout: float = 10.0,
        operation_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.module = DeviceTwinModule(node_name, devices, topic_layout=topic_layout)
        self._username = username
        self._password = password
        self._reconnect_interval = reconnect_interval
        self._ready_timeout = ready_timeout
        self._operation_timeout = operation_timeout
        self._ready = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._publish_lock = asyncio.Lock()
        self.silent = False
        self.handled_messages = 0

    @property
    def node_name(self) -> str:
        return self.module.node_name

    @property
    def topic_layout(self) -> TopicLayout:
        return self.module.topic_layout

    @property
    def ready(self) -> bool:
        """Connected and subscribed."""
        return self._ready.is_set()

    async def __aenter__(self) -> Self:
        await self.start()
        try:
            await self.wait_ready(self._ready_timeout)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the connection task without waiting for the broker."""
        if self._task is None:
            self._task = asyncio.create_task(self._serve(), name="edgecore-emulator")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._ready.clear()

    async def wait_ready(self, timeout: float | None = 10.0) -> None:
        """Wait until connected and subscribed; raises `TimeoutError` after `timeout` s."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    # -- programmatic injection: same code path as the MQTT injection topics ---------------

    async def cloud_update(
        self, device_id: str, expected: Mapping[str, str], types: Mapping[str, str] | None = None
    ) -> None:
        """Apply desired values as a cloud sync would (document + delta on MQTT)."""
        payload = self.module.cloud_update_payload(device_id, expected, types)
        topic = f"{DEVICE_PREFIX}{device_id}/twin/cloud_updated"
        await self._publish_all(self.module.handle(topic, payload))

    async def add_device(self, device: EmulatedDevice) -> None:
        """Bind a device to this node at runtime (publishes `membership/updated`)."""
        entry = {"id": device.device_id(self.topic_layout), "name": device.name}
        if device.description:
            entry["description"] = device.description
        body = {"event_id": str(uuid.uuid4()), "timestamp": _now_ms(), "added_devices": [entry]}
        topic = f"{NODE_PREFIX}{self.node_name}/membership/updated"
        await self._publish_all(self.module.handle(topic, json.dumps(body).encode()))
        stored = self.module.devices.get(entry["id"])
        if stored is not None and not stored.twins:
            stored.twins = copy.deepcopy(device.twins)

    async def remove_device(self, device_id: str) -> None:
        """Unbind a device from this node at runtime (publishes `membership/updated`)."""
        body = {
            "event_id": str(uuid.uuid4()),
            "timestamp": _now_ms(),
            "removed_devices": [{"id": device_id, "name": device_id.rpartition("/")[2]}],
        }
        topic = f"{NODE_PREFIX}{self.node_name}/membership/updated"
        await self._publish_all(self.module.handle(topic, json.dumps(body).encode()))

    # -- internals -----------------------------------------------------------------------

    async def _publish_all(self, publications: Sequence[Publication]) -> None:
        client = self._client
        if self.silent or not publications:
            return
        if client is None:
            raise aiomqtt.MqttError("the emulator is not connected")
        async with self._publish_lock:
            for publication in publications:
                await client.publish(publication.topic, publication.encode(), qos=1, retain=False)

    async def _serve(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=f"edgecore-emulator-{self.node_name}-{uuid.uuid4().hex[:8]}",
                    username=self._username,
                    password=self._password,
                    timeout=self._operation_timeout,
                ) as client:
                    await client.subscribe([(topic, 1) for topic in self.module.subscriptions])
                    self._client = client
                    self._ready.set()
                    logger.info(
                        "edgecore emulator serving node %s on %s:%s (%s topics)",
                        self.node_name,
                        self.host,
                        self.port,
                        self.topic_layout,
                    )
                    async for message in client.messages:
                        await self._on_message(message)
            except aiomqtt.MqttError as exc:
                if being_cancelled():
                    raise asyncio.CancelledError from exc
                logger.warning("edgecore emulator lost the broker: %s", exc)
            finally:
                self._ready.clear()
                self._client = None
            await asyncio.sleep(self._reconnect_interval)

    async def _on_message(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else b""
        try:
            publications = self.module.handle(topic, payload)
        except Exception:
            logger.exception("edgecore emulator failed on a message on %s", topic)
            return
        self.handled_messages += 1
        logger.debug(
            "handled %s (%d bytes) -> %s",
            topic,
            len(payload),
            ", ".join(p.topic for p in publications) or "nothing",
        )
        await self._publish_all(publications)


# --------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `edgecore-emulator` command."""
    parser.add_argument(
        "--mqtt-url",
        default="mqtt://127.0.0.1:1883",
        help="broker to serve on, mqtt://[user:password@]host:port (default: %(default)s)",
    )
    parser.add_argument(
        "--node-name",
        default="edge-node",
        help="EdgeCore node name, used for membership/get/result (default: %(default)s)",
    )
    parser.add_argument(
        "--devices",
        metavar="FILE",
        type=Path,
        help="YAML/JSON device file: devices with namespace, name, description and twins",
    )
    parser.add_argument(
        "--topic-layout",
        choices=TOPIC_LAYOUTS,
        default="namespaced",
        help="namespaced: <ns>/<name> ids (KubeEdge v1.17+); legacy: <name> ids (<= v1.15)",
    )


def _broker_address(url: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"unsupported MQTT URL {url!r}: use mqtt://host:port")
    return parts.hostname or "127.0.0.1", parts.port or 1883, parts.username, parts.password


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve until `stop` is set (the CLI sets it on SIGINT/SIGTERM)."""
    host, port, username, password = _broker_address(args.mqtt_url)
    devices = load_devices(args.devices) if args.devices else []
    async with EdgeCoreEmulator(
        host,
        port,
        node_name=args.node_name,
        devices=devices,
        topic_layout=args.topic_layout,
        username=username,
        password=password,
    ) as emulator:
        logger.info(
            "edgecore emulator ready: node %s, %d device(s)",
            emulator.node_name,
            len(emulator.module.devices),
        )
        await stop.wait()
