"""Device CR writes: create, replace and delete Devices, and patch their desired values.

:class:`DeviceCrWrites` is the MEC 033 write side (the API's ``DeviceCrs`` port: ``create``,
``replace`` and ``delete`` from a :class:`~mep_kubeedge_adapter.domain.DeviceDefinition`,
the CR JSON built in :mod:`~mep_kubeedge_adapter.kubeedge.crds`, over the raw-body
``*_device`` methods); :class:`KubeDesiredWriter` is the
``DesiredWriter`` of ``MKA_API__WRITE_PATH=kube``. Both reach the API server through the kube
source's :class:`~mep_kubeedge_adapter.kubeedge.kubeclient.KubeAccess`, use the Device version
the source discovered, and hand every object the server returns to the source
(:class:`WrittenDevices`) before returning, so a caller reads its own write at once and the
watch's later copy of it changes nothing.

Every write raises :class:`~mep_kubeedge_adapter.domain.AdapterError`: ``NOT_FOUND`` (404),
``INVALID`` (unknown property, a body the API server refuses), ``CONFLICT`` (retries
exhausted, an existing name, a stale resourceVersion), ``FORBIDDEN`` (the adapter's identity
may not write, or another namespace), ``UNAVAILABLE`` (API server unreachable),
``UPSTREAM_TIMEOUT`` and ``UPSTREAM_REJECTED`` (anything else the server answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Mapping
from typing import Any, Final, Protocol

import structlog
from kubernetes import client

from mep_kubeedge_adapter.backoff import Backoff
from mep_kubeedge_adapter.domain import AdapterError, DeviceDefinition, DeviceId, ErrorKind
from mep_kubeedge_adapter.kubeedge.crds import (
    API_GROUP,
    DeviceCR,
    InvalidCR,
    UnknownProperty,
    decode_device,
    desired_value_patch,
    new_device,
    redefined_device,
)
from mep_kubeedge_adapter.kubeedge.kubeclient import (
    API_ERRORS,
    TRANSIENT,
    KubeAccess,
    adapter_error,
)
from mep_kubeedge_adapter.observability import Metrics

__all__ = ["DEVICES", "WRITE_ATTEMPTS", "DeviceCrWrites", "KubeDesiredWriter", "WrittenDevices"]

log = structlog.get_logger(__name__)

DEVICES: Final = "devices"
WRITE_ATTEMPTS: Final = 5
"""Re-read-and-patch attempts of a desired write before it fails with CONFLICT."""
_JSON_PATCH: Final = "application/json-patch+json"


class WrittenDevices(Protocol):
    """What the writes need from the kube source: the served version, and where written
    objects go (the registry, by the same rules as watch events)."""

    async def served_version(self) -> str:
        """The Device version the API server serves; discovers it if not yet known."""
        ...

    def apply_device_object(self, raw: Mapping[str, Any], kind: str = "WRITE") -> None: ...

    def apply_device_deleted(self, device_id: DeviceId) -> None: ...


class DeviceCrWrites:
    """Create, replace, delete and read Device CRs (raw bodies, version and namespace checked).

    ``namespace`` is ``MKA_KUBE__NAMESPACE``: when set, objects elsewhere are FORBIDDEN.
    """

    def __init__(self, access: KubeAccess, namespace: str | None, devices: WrittenDevices) -> None:
        self._access = access
        self._namespace = namespace
        self._devices = devices

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One CustomObjectsApi call in a worker thread, errors mapped by the caller."""
        return await self._access.request(client.CustomObjectsApi, method, *args, **kwargs)

    async def version(self) -> str:
        """The served Device version; a failure to learn it is an AdapterError."""
        try:
            return await self._devices.served_version()
        except TRANSIENT as exc:
            raise adapter_error(exc, "the kube API") from exc

    async def create(self, definition: DeviceDefinition) -> None:
        """A new Device CR from ``definition``."""
        version = await self.version()
        await self.create_device(new_device(definition, version))

    async def replace(self, definition: DeviceDefinition) -> None:
        """The current Device CR with the model, node and labels of ``definition``; a change
        between the read and the replace fails with CONFLICT."""
        device_id = definition.id
        current = await self.get_device(device_id.namespace, device_id.name)
        try:
            body = redefined_device(current, definition)
        except InvalidCR as exc:
            raise AdapterError(ErrorKind.UPSTREAM_REJECTED, str(exc)) from exc
        await self.replace_device(device_id.namespace, device_id.name, body)

    async def delete(self, device_id: DeviceId) -> None:
        await self.delete_device(device_id.namespace, device_id.name)

    def _namespace_for(self, namespace: str | None) -> str:
        ns = namespace or self._namespace or "default"
        if self._namespace and ns != self._namespace:
            raise AdapterError(
                ErrorKind.FORBIDDEN,
                f"this adapter serves namespace {self._namespace!r} only",
            )
        return ns

    async def get_device(self, namespace: str, name: str) -> dict[str, Any]:
        """The Device CR as the API server has it (raw), for the write paths."""
        version = await self.version()
        try:
            obj = await self.call(
                "get_namespaced_custom_object", API_GROUP, version, namespace, DEVICES, name
            )
        except API_ERRORS as exc:
            raise adapter_error(exc, f"device {namespace}/{name}") from exc
        if not isinstance(obj, dict):
            raise AdapterError(ErrorKind.UPSTREAM_REJECTED, "the API server sent no Device")
        return obj

    async def create_device(self, body: Mapping[str, Any]) -> DeviceCR:
        """Create a Device CR; ``metadata.namespace`` defaults to the configured namespace."""
        version = await self.version()
        obj = _prepare_body(body, version)
        meta = obj["metadata"]
        namespace = self._namespace_for(meta.get("namespace"))
        meta["namespace"] = namespace
        meta.pop("resourceVersion", None)
        _check_body(obj)
        try:
            created = await self.call(
                "create_namespaced_custom_object", API_GROUP, version, namespace, DEVICES, obj
            )
        except API_ERRORS as exc:
            raise adapter_error(exc, f"device {namespace}/{meta.get('name', '')}") from exc
        return self._written(created)

    async def replace_device(self, namespace: str, name: str, body: Mapping[str, Any]) -> DeviceCR:
        """Replace a Device CR. Without ``metadata.resourceVersion`` the current one is used
        (an unconditional replace); with it, a stale version fails with CONFLICT."""
        version = await self.version()
        namespace = self._namespace_for(namespace)
        obj = _prepare_body(body, version)
        meta = obj["metadata"]
        if meta.setdefault("name", name) != name:
            raise AdapterError(ErrorKind.INVALID, "metadata.name does not match the device")
        if meta.setdefault("namespace", namespace) != namespace:
            raise AdapterError(ErrorKind.INVALID, "metadata.namespace does not match the device")
        if not meta.get("resourceVersion"):
            current = await self.get_device(namespace, name)
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        _check_body(obj)
        try:
            replaced = await self.call(
                "replace_namespaced_custom_object",
                API_GROUP,
                version,
                namespace,
                DEVICES,
                name,
                obj,
            )
        except API_ERRORS as exc:
            raise adapter_error(exc, f"device {namespace}/{name}") from exc
        return self._written(replaced)

    async def delete_device(self, namespace: str, name: str) -> DeviceCR:
        """Delete a Device CR; returns it as it was."""
        version = await self.version()
        namespace = self._namespace_for(namespace)
        current = await self.get_device(namespace, name)
        try:
            decoded = decode_device(current)
        except InvalidCR as exc:
            raise AdapterError(ErrorKind.UPSTREAM_REJECTED, str(exc)) from exc
        uid = current["metadata"].get("uid")
        try:
            deleted = await self.call(
                "delete_namespaced_custom_object",
                API_GROUP,
                version,
                namespace,
                DEVICES,
                name,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
                if uid
                else None,
            )
        except API_ERRORS as exc:
            raise adapter_error(exc, f"device {namespace}/{name}") from exc
        if isinstance(deleted, dict) and deleted.get("kind") == "Device":
            with contextlib.suppress(InvalidCR):
                decoded = decode_device(deleted)
        self._devices.apply_device_deleted(DeviceId(namespace, name))
        return decoded

    def _written(self, raw: Any) -> DeviceCR:
        try:
            decoded = decode_device(raw)
        except InvalidCR as exc:
            raise AdapterError(ErrorKind.UPSTREAM_REJECTED, str(exc)) from exc
        self._devices.apply_device_object(raw)
        return decoded

    def apply_patched(self, raw: Mapping[str, Any]) -> None:
        """Hand a patched Device back to the source (the desired writer's result)."""
        self._devices.apply_device_object(raw)


def _prepare_body(body: Mapping[str, Any], version: str) -> dict[str, Any]:
    obj = copy.deepcopy(dict(body))
    expected = f"{API_GROUP}/{version}"
    api_version = obj.setdefault("apiVersion", expected)
    if api_version != expected:
        raise AdapterError(
            ErrorKind.INVALID, f"this cluster serves Devices as {expected}, not {api_version}"
        )
    obj.setdefault("kind", "Device")
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise AdapterError(ErrorKind.INVALID, "metadata must be an object")
    return obj


def _check_body(obj: Mapping[str, Any]) -> None:
    """Refuse a Device body the adapter could not read back."""
    probe = copy.deepcopy(dict(obj))
    probe.setdefault("metadata", {}).setdefault("resourceVersion", "")
    try:
        decode_device(probe)
    except InvalidCR as exc:
        raise AdapterError(ErrorKind.INVALID, str(exc)) from exc


# --------------------------------------------------------------------------------------------
# the desired-value write path


class KubeDesiredWriter:
    """``DesiredWriter`` for ``MKA_API__WRITE_PATH=kube``: patches the Device's desired values.

    Each attempt reads the Device and sends a JSON patch whose ``test`` ops pin every touched
    list item by name (:func:`~mep_kubeedge_adapter.kubeedge.crds.desired_value_patch`). A 422
    (a ``test`` failed: the list changed) or 409 re-reads and retries, up to
    :data:`WRITE_ATTEMPTS` times, then fails with CONFLICT. On success the patched object is
    applied to the registry before returning, so the caller reads the new desired value.
    """

    def __init__(self, crs: DeviceCrWrites, metrics: Metrics) -> None:
        self._crs = crs
        self._metrics = metrics

    async def write_desired(
        self, device_id: DeviceId, values: Mapping[str, tuple[str, str]]
    ) -> None:
        wanted = {name: value for name, (value, _twin_type) in values.items()}
        if not wanted:
            return
        try:
            await self._write(device_id, wanted)
        except AdapterError as exc:
            self._metrics.desired_writes.labels("kube", exc.kind.value).inc()
            raise
        self._metrics.desired_writes.labels("kube", "accepted").inc()

    async def _write(self, device_id: DeviceId, wanted: Mapping[str, str]) -> None:
        crs = self._crs
        version = await crs.version()
        backoff = Backoff(base=0.05, cap=1.0)
        what = f"device {device_id}"
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            current = await crs.get_device(device_id.namespace, device_id.name)
            try:
                patch = desired_value_patch(current, wanted)
            except UnknownProperty as exc:
                raise AdapterError(ErrorKind.INVALID, str(exc)) from exc
            except InvalidCR as exc:
                raise AdapterError(ErrorKind.UPSTREAM_REJECTED, str(exc)) from exc
            try:
                patched = await crs.call(
                    "patch_namespaced_custom_object",
                    API_GROUP,
                    version,
                    device_id.namespace,
                    DEVICES,
                    device_id.name,
                    patch,
                    _content_type=_JSON_PATCH,
                )
            except client.ApiException as exc:
                if exc.status in (409, 422) and attempt < WRITE_ATTEMPTS:
                    log.info("kube_desired_write_retry", device=str(device_id), status=exc.status)
                    await asyncio.sleep(backoff.next_delay())
                    continue
                if exc.status in (409, 422):
                    break
                raise adapter_error(exc, what) from exc
            except API_ERRORS as exc:
                raise adapter_error(exc, what) from exc
            if isinstance(patched, Mapping):
                crs.apply_patched(patched)
            return
        raise AdapterError(
            ErrorKind.CONFLICT,
            f"{what} kept changing; the desired values were not written after "
            f"{WRITE_ATTEMPTS} attempts",
        )
