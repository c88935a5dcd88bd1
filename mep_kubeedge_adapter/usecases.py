"""Use cases shared by every entry point (REST handlers, websocket messages, MEC 033).

Handlers stay thin: they decode a request, call one function here and encode the
result. Errors are ``AdapterError`` with a kind; one place in the API maps kinds
to HTTP statuses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

from mep_kubeedge_adapter.domain import (
    AdapterError,
    Device,
    DeviceId,
    ErrorKind,
    check_twin_key,
    check_twin_value,
    twin_type_for_model_type,
)
from mep_kubeedge_adapter.registry import DeviceRegistry


class DesiredWriter(Protocol):
    """Where desired values go: EdgeCore's EventBus, or the Device CR."""

    async def write_desired(
        self, device_id: DeviceId, values: Mapping[str, tuple[str, str]]
    ) -> None:
        """Write property → (value, twin type); return once the target accepted it."""


class UnsupportedWriter:
    """A write path that is configured but not available in this deployment."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    async def write_desired(
        self, device_id: DeviceId, values: Mapping[str, tuple[str, str]]
    ) -> None:
        raise AdapterError(ErrorKind.NOT_IMPLEMENTED, self._reason)


def twin_etag(device: Device) -> str:
    """A strong ETag over the twin's values and timestamps (quoted, as HTTP wants it)."""
    digest = hashlib.sha256()
    for name in sorted(device.properties):
        prop = device.properties[name]
        for side in (prop.reported, prop.desired):
            if side is None:
                digest.update(b"\x00-")
            else:
                digest.update(f"\x00{side.value}\x01{side.timestamp}".encode())
        digest.update(f"\x02{name}".encode())
    return '"' + digest.hexdigest()[:32] + '"'


def get_device(registry: DeviceRegistry, device_id: DeviceId) -> Device:
    device = registry.get(device_id)
    if device is None:
        raise AdapterError(ErrorKind.NOT_FOUND, f"no device {device_id} on this node")
    return device


def plan_desired_write(
    registry: DeviceRegistry, device_id: DeviceId, desired: Mapping[str, object]
) -> dict[str, tuple[str, str]]:
    """Check a desired write the way EdgeCore would, before anything is published.

    Returns property → (value, twin type to send). Raises AdapterError INVALID for an
    unknown or read-only property or a value EdgeCore would refuse (its refusals of
    unparsable requests arrive on an id-less topic and cannot be matched to a write).
    """
    device = get_device(registry, device_id)
    if not desired:
        raise AdapterError(ErrorKind.INVALID, "'desired' names no property")
    model = registry.model_of(device)
    plan: dict[str, tuple[str, str]] = {}
    for name, value in desired.items():
        if not isinstance(value, str):
            raise AdapterError(
                ErrorKind.INVALID, f"{name}: values are strings, as in KubeEdge (got {value!r})"
            )
        key_problem = check_twin_key(name)
        if key_problem:
            raise AdapterError(ErrorKind.INVALID, key_problem)
        prop = device.properties.get(name)
        spec = model.properties.get(name) if model is not None else None
        if prop is None and spec is None:
            raise AdapterError(ErrorKind.INVALID, f"unknown property {name!r} of {device_id}")
        if spec is not None and (spec.access_mode or "").lower() == "readonly":
            raise AdapterError(ErrorKind.INVALID, f"property {name!r} is read-only")
        model_type = twin_type_for_model_type(spec.type) if spec is not None else None
        twin_type = (prop.twin_type if prop is not None else None) or model_type or "string"
        for check_type in dict.fromkeys((twin_type, model_type or twin_type)):
            problem = check_twin_value(value, check_type)
            if problem:
                raise AdapterError(ErrorKind.INVALID, f"{name}: {problem}")
        plan[name] = (value, twin_type)
    return plan


async def write_desired(
    registry: DeviceRegistry,
    writer: DesiredWriter,
    device_id: DeviceId,
    desired: Mapping[str, object],
    if_match: str | None = None,
) -> Device:
    """Validate, check the ETag, write, and return the device as it is afterwards."""
    device = get_device(registry, device_id)
    if if_match is not None and if_match.strip() != "*":
        current = twin_etag(device)
        accepted = {tag.strip() for tag in if_match.split(",")}
        if current not in accepted and f"W/{current}" not in accepted:
            raise AdapterError(
                ErrorKind.PRECONDITION_FAILED,
                f"the twin changed since that ETag; it is now {current}",
            )
    plan = plan_desired_write(registry, device_id, desired)
    await writer.write_desired(device_id, plan)
    return get_device(registry, device_id)
