"""The domain model: devices, twins, models, change events and error kinds.

Plain Python only. Nothing here imports an I/O library, so the registry and the
use cases built on it can be tested without an event loop.

Conventions that every other module relies on:

* twin values are strings, as in KubeEdge; ``None`` means "no value";
* timestamps are integer milliseconds since the Unix epoch (EdgeCore's clock for
  EventBus values, the CR's metadata for kube values);
* a device is identified by ``DeviceId(namespace, name)``; its text form is
  ``"<namespace>/<name>"`` (the form used in REST paths and in namespaced topics).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

# --------------------------------------------------------------------------- ids


@dataclass(frozen=True, slots=True, order=True)
class DeviceId:
    """A KubeEdge device: namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str, default_namespace: str = "default") -> DeviceId:
        """``"ns/name"`` or a legacy single-segment ``"name"`` (put in ``default_namespace``)."""
        namespace, sep, name = text.partition("/")
        if not sep:
            return cls(default_namespace, namespace)
        if not namespace or not name or "/" in name:
            raise ValueError(f"not a device id: {text!r}")
        return cls(namespace, name)


@dataclass(frozen=True, slots=True, order=True)
class ModelId:
    """A DeviceModel: namespace and name (a Device refers to a model in its own namespace)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def now_ms() -> int:
    """The wall clock in the domain's unit: integer milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


# ------------------------------------------------------------------- twin values

MAX_TIMESTAMP_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the last millisecond RFC 3339 can write. Codecs refuse
timestamps outside ``0..MAX_TIMESTAMP_MS``, so every timestamp in the model can be rendered."""

ValueSource = Literal["eventbus", "kube"]


@dataclass(frozen=True, slots=True)
class TwinValue:
    """One side of a twin (reported or desired) with the time it was recorded."""

    value: str
    timestamp: int | None = None
    source: ValueSource = "eventbus"


@dataclass(frozen=True, slots=True)
class TwinProperty:
    """A twin property as the registry knows it.

    ``twin_type`` is the type EdgeCore stores for the twin (``metadata.type``: ``int``,
    ``float``, ``boolean``, ``string``...). Twins created over DMI are typed ``string``,
    so the DeviceModel's type, when known, is the better description for readers;
    EdgeCore validates writes against ``twin_type`` though.
    """

    name: str
    twin_type: str | None = None
    reported: TwinValue | None = None
    desired: TwinValue | None = None
    optional: bool | None = None
    declared: bool = False
    """The Device CR lists this property (kube source); it outlives twin deletion."""


@dataclass(frozen=True, slots=True)
class TwinState:
    """EdgeCore's view of one twin, decoded from a document, result, delta or get result.

    ``expected`` / ``actual`` are ``None`` when the message did not carry that side.
    """

    expected: TwinValue | None = None
    actual: TwinValue | None = None
    twin_type: str | None = None
    optional: bool | None = None


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """A DeviceModel property."""

    name: str
    type: str
    """Model type as KubeEdge spells it: INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, STREAM."""
    access_mode: str | None = None
    description: str | None = None
    unit: str | None = None
    minimum: str | None = None
    maximum: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceModel:
    id: ModelId
    properties: Mapping[str, PropertySpec] = field(default_factory=dict)
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Device:
    """An immutable snapshot of a device; the registry replaces it on every change."""

    id: DeviceId
    properties: Mapping[str, TwinProperty] = field(default_factory=dict)
    model: str | None = None
    node: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None
    protocol: str | None = None
    state: str | None = None
    last_online: str | None = None
    """RFC 3339 text as EdgeCore or the CR gave it."""
    in_eventbus: bool = False
    """EdgeCore lists this device (membership)."""
    in_kube: bool = False
    """A Device CR bound to this node exists."""


@dataclass(frozen=True, slots=True)
class DeviceDefinition:
    """A device as a client registers it (MEC 033 ``DeviceInfo``): the facts a Device CR is
    created or replaced from. Its properties come from the CR and the model, never from here."""

    id: DeviceId
    model: str
    """The DeviceModel's name, in the device's namespace."""
    node: str
    """The edge node the device is bound to."""
    labels: Mapping[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------ change events


@dataclass(frozen=True, slots=True)
class PropertyChange:
    """What changed about one property; unchanged sides are ``None`` with ``*_changed`` False."""

    reported: TwinValue | None
    previous_reported: TwinValue | None
    desired: TwinValue | None
    previous_desired: TwinValue | None
    reported_changed: bool
    desired_changed: bool
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class TwinChanged:
    device: DeviceId
    changes: Mapping[str, PropertyChange]
    timestamp: int
    snapshot: Device
    """The device as the registry holds it right after the change (model and labels
    included), so listeners need not read the registry back."""


@dataclass(frozen=True, slots=True)
class StateChanged:
    device: DeviceId
    state: str | None
    previous: str | None
    last_online: str | None
    timestamp: int
    snapshot: Device
    """The device as the registry holds it right after the change."""


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    device: Device
    timestamp: int


@dataclass(frozen=True, slots=True)
class DeviceRemoved:
    device: Device
    timestamp: int


@dataclass(frozen=True, slots=True)
class DeviceUpdated:
    """Metadata of a device changed (model, labels, node...), not its twin or state."""

    device: Device
    timestamp: int


@dataclass(frozen=True, slots=True)
class ModelChanged:
    model: ModelId
    removed: bool
    timestamp: int


ChangeEvent = (
    TwinChanged | StateChanged | DeviceAdded | DeviceRemoved | DeviceUpdated | ModelChanged
)


# -------------------------------------------------------------------- error kinds


class ErrorKind(Enum):
    """What went wrong, independent of transport; one place maps kinds to HTTP statuses."""

    INVALID = "invalid"
    NOT_FOUND = "not-found"
    CONFLICT = "conflict"
    PRECONDITION_FAILED = "precondition-failed"
    FORBIDDEN = "forbidden"
    QUOTA_EXCEEDED = "quota-exceeded"
    """A limit on what a caller may hold (subscriptions) is reached: 403."""
    UNAUTHORIZED = "unauthorized"
    TOO_LARGE = "too-large"
    UPSTREAM_REJECTED = "upstream-rejected"
    UPSTREAM_TIMEOUT = "upstream-timeout"
    UNAVAILABLE = "unavailable"
    NOT_IMPLEMENTED = "not-implemented"


class AdapterError(Exception):
    """An error with a kind. ``detail`` is safe to show to API callers."""

    def __init__(self, kind: ErrorKind, detail: str, *, title: str | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.title = title


# ------------------------------------------------------- EdgeCore's twin value rules

_TWIN_CHARACTERS = r"[a-zA-Z0-9\-_.,:/@#]"
TWIN_KEY_PATTERN = re.compile(rf"^{_TWIN_CHARACTERS}{{1,128}}$")
TWIN_VALUE_PATTERN = re.compile(rf"^{_TWIN_CHARACTERS}{{0,512}}$")
"""The characters EdgeCore accepts in a twin value; the empty value is allowed (it parses as
every type)."""
TWIN_TYPES = frozenset({"", "string", "int", "integer", "float", "boolean"})
_INT64 = (-(2**63), 2**63 - 1)
_GO_FLOAT = re.compile(
    r"^[+-]?(?:(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)$",
    re.IGNORECASE,
)
_GO_INFINITY = re.compile(r"^[+-]?inf(?:inity)?$", re.IGNORECASE)

MODEL_TO_TWIN_TYPE = {
    "INT": "int",
    "FLOAT": "float",
    "DOUBLE": "float",
    "BOOLEAN": "boolean",
    "STRING": "string",
    "BYTES": "string",
    "STREAM": "string",
}


def twin_type_for_model_type(model_type: str | None) -> str:
    """The twin ``metadata.type`` EdgeCore accepts for a DeviceModel property type."""
    if model_type is None:
        return "string"
    return MODEL_TO_TWIN_TYPE.get(model_type.upper(), "string")


def check_twin_key(key: str) -> str | None:
    """Why EdgeCore would refuse this twin key, or ``None`` if it accepts it."""
    if not TWIN_KEY_PATTERN.fullmatch(key):
        return f"property name {key!r} must match {TWIN_KEY_PATTERN.pattern}"
    return None


def check_twin_value(value: str, twin_type: str | None) -> str | None:
    """Why EdgeCore would refuse ``value`` for a twin of ``twin_type``, or ``None``.

    Follows EdgeCore v1.23.1 (reference kubeedge.md §3, §3.1, §8): only
    ``[a-zA-Z0-9-_.,:/@#]``, at most 512 characters, and the value must parse as the type.
    """
    if not TWIN_VALUE_PATTERN.fullmatch(value):
        return (
            "value must be 1 to 512 characters of letters, digits and - _ . , : / @ # "
            "(EdgeCore refuses spaces, '+', quotes, braces and '=')"
        )
    kind = (twin_type or "").lower()
    if kind not in TWIN_TYPES:
        return f"the twin type {twin_type!r} is not one EdgeCore allows"
    if not value:
        return None
    if kind in ("int", "integer"):
        try:
            number = int(value, 10)
        except ValueError:
            return "the value is not int or integer"
        if not _INT64[0] <= number <= _INT64[1] or value.strip() != value or "_" in value:
            return "the value is not int or integer"
    elif kind == "float":
        if not _GO_FLOAT.match(value) or "_" in value:
            return "the value is not float"
        if math.isinf(float(value)) and not _GO_INFINITY.match(value):
            # Go's ParseFloat answers ErrRange beyond float64, and EdgeCore refuses the write.
            return "the value is out of range for a float (float64)"
    elif kind == "boolean" and value not in ("true", "false"):
        return "the value is not boolean (true or false)"
    return None


ALLOWED_DEVICE_STATES = frozenset({"online", "offline", "ok", "unknown", "unhealthy"})
