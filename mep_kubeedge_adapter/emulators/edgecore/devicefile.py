"""The emulator's device file (YAML or JSON): devices with their twins, a list under
``devices:``; see the package docstring for its shape."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from mep_kubeedge_adapter.emulators.edgecore.twins import (
    KEY_RE,
    EmulatedDevice,
    Twin,
    TwinValue,
    TwinVersion,
    now_ms,
    value_type_error,
)

__all__ = ["load_devices", "parse_devices"]


def _seed_value(raw: object, where: str) -> TwinValue | None:
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        value = raw.get("value")
        timestamp = raw.get("timestamp", now_ms())
        if not isinstance(timestamp, int):
            raise ValueError(f"{where}: timestamp must be an integer (ms)")
        return TwinValue(_scalar_text(value, where), timestamp)
    return TwinValue(_scalar_text(raw, where), now_ms())


def _scalar_text(raw: object, where: str) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str | int | float):
        return str(raw)
    raise ValueError(f"{where}: a twin value must be a string, number or boolean")


def parse_devices(document: object) -> list[EmulatedDevice]:
    """Build devices from an already-loaded device document (see the package docstring)."""
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
            if not isinstance(key, str) or not KEY_RE.match(key):
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
