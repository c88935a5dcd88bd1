"""The devicetwin state (twins, devices, publications) and EdgeCore's value rules.

Plain data: the pure twin module, the device file and the MQTT shell all build on it.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEVICE_PREFIX",
    "KEY_RE",
    "NODE_PREFIX",
    "TOPIC_LAYOUTS",
    "TYPE_DELETED",
    "VALUE_RE",
    "EmulatedDevice",
    "Publication",
    "TopicLayout",
    "Twin",
    "TwinValue",
    "TwinVersion",
    "now_ms",
    "value_type_error",
]

TopicLayout = Literal["namespaced", "legacy"]
TOPIC_LAYOUTS: tuple[TopicLayout, ...] = ("namespaced", "legacy")

DEVICE_PREFIX = "$hw/events/device/"
NODE_PREFIX = "$hw/events/node/"
TYPE_DELETED = "deleted"

KEY_RE = re.compile(r"^[a-zA-Z0-9\-_.,:/@#]{1,128}$")
VALUE_RE = re.compile(r"^[a-zA-Z0-9\-_.,:/@#]{1,512}$")
_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_FLOAT_RE = re.compile(
    r"^[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)$", re.IGNORECASE
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def now_ms() -> int:
    """This process's clock in milliseconds: EdgeCore's timestamps."""
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
