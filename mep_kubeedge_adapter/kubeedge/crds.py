"""Pure codecs for KubeEdge ``devices.kubeedge.io`` custom resources.

Raw CR dicts (list items, watch event objects, GET bodies) are decoded here into small frozen
models so that nothing else in the adapter touches CR JSON. The two served API versions put the
same facts in different places, and this module is the one place that knows where:

- node binding: v1beta1 ``spec.nodeName``; v1alpha2
  ``spec.nodeSelector.nodeSelectorTerms[0].matchExpressions[0].values[0]``.
- protocol: v1beta1 ``spec.protocol.protocolName``; v1alpha2 the key set in ``spec.protocol``.
- desired value: v1beta1 ``spec.properties[].desired``; v1alpha2 ``status.twins[].desired``.
- reported value: ``Device.status.twins[].reported`` (<= 1.22), or the separate ``DeviceStatus``
  CR (1.23+).
- model property type: v1beta1 an enum string (``INT``, ``FLOAT``...); v1alpha2 the single key
  of ``type`` (``int``, ``float``...), mapped here onto the v1beta1 names.

Errors: every decoder raises :class:`InvalidCR` (a ``ValueError``) for a CR that does not have
the documented shape, so a list/watch loop can log and count the bad object and carry on.
:func:`desired_value_patch` raises :class:`UnknownProperty` (a ``LookupError``) when asked to
write a property the Device does not declare, which the write path reports as a client error.

No I/O and no ``kubernetes`` import: the codecs are tested with plain dicts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from mep_kubeedge_adapter.domain import MAX_TIMESTAMP_MS, DeviceDefinition

__all__ = [
    "API_GROUP",
    "SUPPORTED_VERSIONS",
    "DeviceCR",
    "DeviceModelCR",
    "DeviceProperty",
    "DeviceStatusCR",
    "InvalidCR",
    "ModelProperty",
    "TwinValue",
    "UnknownProperty",
    "decode_device",
    "decode_device_model",
    "decode_device_status",
    "desired_value_patch",
    "new_device",
    "redefined_device",
]

API_GROUP: Final = "devices.kubeedge.io"
SUPPORTED_VERSIONS: Final = ("v1beta1", "v1alpha2")
"""Versions this module decodes, newest first (the order a client should probe them in)."""

ApiVersion = Literal["v1beta1", "v1alpha2"]
AccessMode = Literal["ReadWrite", "ReadOnly"]

MODEL_TYPES: Final = frozenset({"INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"})
"""v1beta1 ``DeviceModel`` property types; v1alpha2 type keys are mapped onto these."""

_V1ALPHA2_TYPE_KEYS: Final = ("int", "string", "double", "float", "boolean", "bytes")
_V1ALPHA2_PROTOCOL_KEYS: Final = ("opcua", "modbus", "bluetooth", "customizedProtocol")


class InvalidCR(ValueError):
    """A custom resource that does not have the shape its CRD documents.

    ``kind``, ``namespace`` and ``name`` are filled in as far as they could be read, so the
    caller can log which object was skipped.
    """

    def __init__(
        self, message: str, *, kind: str = "", namespace: str = "", name: str = ""
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        where = f"{kind} {namespace}/{name}".strip() if (kind or name) else "custom resource"
        super().__init__(f"invalid {where}: {message}")


class UnknownProperty(LookupError):
    """A desired-value write names a property the Device does not declare."""

    def __init__(self, namespace: str, name: str, properties: Sequence[str]) -> None:
        self.namespace = namespace
        self.name = name
        self.properties = tuple(properties)
        super().__init__(
            f"device {namespace}/{name} has no property {', '.join(map(repr, self.properties))}"
        )


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TwinValue(_Frozen):
    """One value of a twin as the cloud stores it (``desired``, ``reported``, ``observedDesired``).

    ``timestamp_ms`` and ``type`` are lifted out of ``metadata`` (cloudcore writes the
    timestamp as milliseconds rendered as a string); ``metadata`` keeps every key as given.
    """

    value: str
    timestamp_ms: int | None = None
    type: str | None = None
    metadata: dict[str, str] = {}


class DeviceProperty(_Frozen):
    """A property of a Device with what the cloud knows about its twin."""

    name: str
    desired: TwinValue | None = None
    reported: TwinValue | None = None
    observed_desired: TwinValue | None = None


class DeviceCR(_Frozen):
    """A decoded ``Device``; ``properties`` keep the CR's order.

    On v1beta1 ``spec.properties`` is the list of properties and ``status.twins`` only adds
    reported values to them (cloudcore drops twins without a matching property); on v1alpha2
    ``status.twins`` is the list.
    """

    api_version: ApiVersion
    namespace: str
    name: str
    resource_version: str
    labels: dict[str, str] = {}
    model: str
    node: str | None = None
    protocol: str | None = None
    description: str | None = None
    properties: tuple[DeviceProperty, ...] = ()
    state: str | None = None
    last_online_time: str | None = None

    def property(self, name: str) -> DeviceProperty | None:
        """The property called ``name``, if the Device declares it."""
        return next((p for p in self.properties if p.name == name), None)


class ModelProperty(_Frozen):
    """A property of a DeviceModel; ``type`` is always in the v1beta1 vocabulary (``FLOAT``...)."""

    name: str
    description: str | None = None
    type: str | None = None
    access_mode: AccessMode | None = None
    unit: str | None = None
    minimum: str | None = None
    maximum: str | None = None
    default_value: str | None = None


class DeviceModelCR(_Frozen):
    """A decoded ``DeviceModel``."""

    api_version: ApiVersion
    namespace: str
    name: str
    resource_version: str
    protocol: str | None = None
    properties: tuple[ModelProperty, ...] = ()

    def property(self, name: str) -> ModelProperty | None:
        """The property called ``name``, if the model declares it."""
        return next((p for p in self.properties if p.name == name), None)


class TwinStatus(_Frozen):
    """One ``status.twins[]`` entry of a DeviceStatus."""

    property_name: str
    reported: TwinValue | None = None
    observed_desired: TwinValue | None = None


class DeviceStatusCR(_Frozen):
    """A decoded ``DeviceStatus`` (KubeEdge 1.23+), named like the Device it belongs to."""

    api_version: ApiVersion
    namespace: str
    name: str
    resource_version: str
    twins: tuple[TwinStatus, ...] = ()
    state: str | None = None
    last_online_time: str | None = None


# --------------------------------------------------------------------------------------------
# reading helpers: each knows the path it reads so error messages can name it


class _Reader:
    """Typed access to a raw CR that turns every shape error into an :class:`InvalidCR`."""

    def __init__(self, obj: Any, kind: str) -> None:
        if not isinstance(obj, Mapping):
            raise InvalidCR(f"expected an object, got {type(obj).__name__}", kind=kind)
        self.obj = obj
        self.kind = kind
        meta = obj.get("metadata")
        self.namespace = ""
        self.name = ""
        if isinstance(meta, Mapping):
            ns, nm = meta.get("namespace"), meta.get("name")
            self.namespace = ns if isinstance(ns, str) else ""
            self.name = nm if isinstance(nm, str) else ""

    def fail(self, message: str) -> InvalidCR:
        return InvalidCR(message, kind=self.kind, namespace=self.namespace, name=self.name)

    def get(self, container: Any, key: str, path: str) -> Any:
        if container is None:
            return None
        if not isinstance(container, Mapping):
            raise self.fail(f"{path} must be an object")
        return container.get(key)

    def mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(f"{path} must be an object, got {type(value).__name__}")
        return value

    def items(self, value: Any, path: str) -> list[Mapping[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(f"{path} must be a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise self.fail(f"{path}[{i}] must be an object")
        return value

    def string(self, value: Any, path: str, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                raise self.fail(f"{path} is required")
            return None
        if not isinstance(value, str):
            raise self.fail(f"{path} must be a string, got {type(value).__name__}")
        if required and not value:
            raise self.fail(f"{path} must not be empty")
        return value

    def required_string(self, value: Any, path: str) -> str:
        result = self.string(value, path, required=True)
        assert result is not None
        return result

    def scalar_text(self, value: Any, path: str) -> str | None:
        """A number or string rendered as text (v1alpha2 models use numbers, v1beta1 strings)."""
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        raise self.fail(f"{path} must be a number or string, got {type(value).__name__}")

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        m = self.mapping(value, path)
        if m is None:
            return {}
        out: dict[str, str] = {}
        for k, v in m.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise self.fail(f"{path} must map strings to strings")
            out[k] = v
        return out

    def api_version(self) -> ApiVersion:
        av = self.obj.get("apiVersion")
        for version in SUPPORTED_VERSIONS:
            if av == f"{API_GROUP}/{version}":
                return version
        raise self.fail(f"unsupported apiVersion {av!r}")

    def header(self) -> tuple[ApiVersion, str, str, str, dict[str, str]]:
        """apiVersion, namespace, name, resourceVersion and labels, checked."""
        version = self.api_version()
        kind = self.obj.get("kind")
        if kind is not None and kind != self.kind:
            raise self.fail(f"kind is {kind!r}, expected {self.kind!r}")
        meta = self.mapping(self.obj.get("metadata"), "metadata")
        if meta is None:
            raise self.fail("metadata is required")
        name = self.required_string(meta.get("name"), "metadata.name")
        # A manifest without a namespace lands in "default" (what kubectl does); objects served
        # by an API server always carry one.
        namespace = self.string(meta.get("namespace"), "metadata.namespace") or "default"
        rv = self.string(meta.get("resourceVersion"), "metadata.resourceVersion") or ""
        labels = self.string_map(meta.get("labels"), "metadata.labels")
        return version, namespace, name, rv, labels

    def twin_value(self, value: Any, path: str) -> TwinValue | None:
        m = self.mapping(value, path)
        if m is None:
            return None
        text = self.string(m.get("value"), f"{path}.value")
        # The CRD requires `value`, but cloudcore writes `{"value": ""}`-less stubs on some
        # versions; an absent value means "not known yet".
        if text is None:
            return None
        metadata = self.string_map_lenient(m.get("metadata"), f"{path}.metadata")
        ts_raw = metadata.get("timestamp")
        timestamp: int | None = None
        if ts_raw:
            try:
                timestamp = int(ts_raw)
            except ValueError:
                raise self.fail(
                    f"{path}.metadata.timestamp must be milliseconds, got {ts_raw!r}"
                ) from None
            if not 0 <= timestamp <= MAX_TIMESTAMP_MS:
                raise self.fail(
                    f"{path}.metadata.timestamp must be milliseconds between 0 and "
                    f"{MAX_TIMESTAMP_MS} (the year 9999), got {ts_raw!r}"
                )
        return TwinValue(
            value=text, timestamp_ms=timestamp, type=metadata.get("type") or None, metadata=metadata
        )

    def string_map_lenient(self, value: Any, path: str) -> dict[str, str]:
        """Like :meth:`string_map` but accepts integer values (a timestamp written as a number)."""
        m = self.mapping(value, path)
        if m is None:
            return {}
        out: dict[str, str] = {}
        for k, v in m.items():
            if not isinstance(k, str):
                raise self.fail(f"{path} keys must be strings")
            if isinstance(v, str):
                out[k] = v
            elif isinstance(v, int) and not isinstance(v, bool):
                out[k] = str(v)
            else:
                raise self.fail(f"{path}.{k} must be a string")
        return out

    def twins(self, status: Any) -> list[tuple[str, Mapping[str, Any]]]:
        raw = self.items(self.get(status, "twins", "status"), "status.twins")
        out: list[tuple[str, Mapping[str, Any]]] = []
        for i, twin in enumerate(raw):
            name = self.required_string(twin.get("propertyName"), f"status.twins[{i}].propertyName")
            out.append((name, twin))
        return out


# --------------------------------------------------------------------------------------------
# Device


def decode_device(obj: Mapping[str, Any]) -> DeviceCR:
    """Decode a ``Device`` of either served version; raises :class:`InvalidCR`."""
    r = _Reader(obj, "Device")
    version, namespace, name, rv, labels = r.header()
    spec = r.mapping(obj.get("spec"), "spec")
    if spec is None:
        raise r.fail("spec is required")
    status = r.mapping(obj.get("status"), "status")
    model_ref = r.mapping(spec.get("deviceModelRef"), "spec.deviceModelRef")
    model = r.required_string(
        r.get(model_ref, "name", "spec.deviceModelRef"), "spec.deviceModelRef.name"
    )

    if version == "v1beta1":
        node = r.string(spec.get("nodeName"), "spec.nodeName") or None
        protocol_obj = r.mapping(spec.get("protocol"), "spec.protocol")
        protocol = (
            r.string(
                r.get(protocol_obj, "protocolName", "spec.protocol"), "spec.protocol.protocolName"
            )
            or None
        )
        properties = _v1beta1_properties(r, spec, status)
    else:
        node = _v1alpha2_node(r, spec)
        protocol = _v1alpha2_protocol(r, spec)
        properties = _v1alpha2_properties(r, status)

    return DeviceCR(
        api_version=version,
        namespace=namespace,
        name=name,
        resource_version=rv,
        labels=labels,
        model=model,
        node=node,
        protocol=protocol,
        description=labels.get("description"),
        properties=properties,
        state=r.string(r.get(status, "state", "status"), "status.state") or None,
        last_online_time=r.string(
            r.get(status, "lastOnlineTime", "status"), "status.lastOnlineTime"
        )
        or None,
    )


def _v1beta1_properties(
    r: _Reader, spec: Mapping[str, Any], status: Mapping[str, Any] | None
) -> tuple[DeviceProperty, ...]:
    twins = dict(r.twins(status))
    out: list[DeviceProperty] = []
    seen: set[str] = set()
    for i, prop in enumerate(r.items(spec.get("properties"), "spec.properties")):
        path = f"spec.properties[{i}]"
        pname = r.required_string(prop.get("name"), f"{path}.name")
        if pname in seen:
            raise r.fail(f"{path}.name {pname!r} is declared twice")
        seen.add(pname)
        twin = twins.get(pname)
        out.append(
            DeviceProperty(
                name=pname,
                desired=r.twin_value(prop.get("desired"), f"{path}.desired"),
                reported=r.twin_value(twin.get("reported"), f"status.twins[{pname}].reported")
                if twin
                else None,
                observed_desired=r.twin_value(
                    twin.get("observedDesired"), f"status.twins[{pname}].observedDesired"
                )
                if twin
                else None,
            )
        )
    return tuple(out)


def _v1alpha2_properties(
    r: _Reader, status: Mapping[str, Any] | None
) -> tuple[DeviceProperty, ...]:
    out: list[DeviceProperty] = []
    seen: set[str] = set()
    for i, (pname, twin) in enumerate(r.twins(status)):
        if pname in seen:
            raise r.fail(f"status.twins[{i}].propertyName {pname!r} is listed twice")
        seen.add(pname)
        out.append(
            DeviceProperty(
                name=pname,
                desired=r.twin_value(twin.get("desired"), f"status.twins[{i}].desired"),
                reported=r.twin_value(twin.get("reported"), f"status.twins[{i}].reported"),
            )
        )
    return tuple(out)


def _v1alpha2_node(r: _Reader, spec: Mapping[str, Any]) -> str | None:
    """``nodeSelectorTerms[0].matchExpressions[0].values[0]``: the only part cloudcore reads."""
    selector = r.mapping(spec.get("nodeSelector"), "spec.nodeSelector")
    terms = r.items(
        r.get(selector, "nodeSelectorTerms", "spec.nodeSelector"),
        "spec.nodeSelector.nodeSelectorTerms",
    )
    if not terms:
        return None
    exprs = r.items(
        terms[0].get("matchExpressions"), "spec.nodeSelector.nodeSelectorTerms[0].matchExpressions"
    )
    if not exprs:
        return None
    path = "spec.nodeSelector.nodeSelectorTerms[0].matchExpressions[0].values"
    values = exprs[0].get("values")
    if values is None:
        return None
    if not isinstance(values, list):
        raise r.fail(f"{path} must be a list")
    if not values:
        return None
    return r.string(values[0], f"{path}[0]") or None


def _v1alpha2_protocol(r: _Reader, spec: Mapping[str, Any]) -> str | None:
    """The protocol key that is set; a customized protocol is named by its ``protocolName``."""
    protocol = r.mapping(spec.get("protocol"), "spec.protocol")
    if protocol is None:
        return None
    present = [k for k in _V1ALPHA2_PROTOCOL_KEYS if protocol.get(k) is not None]
    if len(present) > 1:
        raise r.fail(f"spec.protocol sets more than one protocol: {', '.join(present)}")
    if not present:
        return None
    key = present[0]
    if key == "customizedProtocol":
        custom = r.mapping(protocol[key], "spec.protocol.customizedProtocol")
        pname = r.string(
            r.get(custom, "protocolName", "spec.protocol.customizedProtocol"),
            "spec.protocol.customizedProtocol.protocolName",
        )
        return pname or key
    return key


# --------------------------------------------------------------------------------------------
# DeviceModel


def decode_device_model(obj: Mapping[str, Any]) -> DeviceModelCR:
    """Decode a ``DeviceModel`` of either served version; raises :class:`InvalidCR`."""
    r = _Reader(obj, "DeviceModel")
    version, namespace, name, rv, _labels = r.header()
    spec = r.mapping(obj.get("spec"), "spec") or {}
    props: list[ModelProperty] = []
    seen: set[str] = set()
    for i, prop in enumerate(r.items(spec.get("properties"), "spec.properties")):
        path = f"spec.properties[{i}]"
        pname = r.required_string(prop.get("name"), f"{path}.name")
        if pname in seen:
            raise r.fail(f"{path}.name {pname!r} is declared twice")
        seen.add(pname)
        description = r.string(prop.get("description"), f"{path}.description") or None
        if version == "v1beta1":
            props.append(_v1beta1_model_property(r, prop, path, pname, description))
        else:
            props.append(_v1alpha2_model_property(r, prop, path, pname, description))
    return DeviceModelCR(
        api_version=version,
        namespace=namespace,
        name=name,
        resource_version=rv,
        protocol=r.string(spec.get("protocol"), "spec.protocol") or None,
        properties=tuple(props),
    )


def _access_mode(r: _Reader, value: Any, path: str) -> AccessMode | None:
    mode = r.string(value, path)
    if mode is None or mode == "":
        return None
    if mode == "ReadWrite":
        return "ReadWrite"
    if mode == "ReadOnly":
        return "ReadOnly"
    raise r.fail(f"{path} must be ReadWrite or ReadOnly, got {mode!r}")


def _v1beta1_model_property(
    r: _Reader, prop: Mapping[str, Any], path: str, name: str, description: str | None
) -> ModelProperty:
    ptype = r.string(prop.get("type"), f"{path}.type") or None
    if ptype is not None and ptype not in MODEL_TYPES:
        raise r.fail(f"{path}.type must be one of {', '.join(sorted(MODEL_TYPES))}, got {ptype!r}")
    return ModelProperty(
        name=name,
        description=description,
        type=ptype,
        access_mode=_access_mode(r, prop.get("accessMode"), f"{path}.accessMode"),
        unit=r.string(prop.get("unit"), f"{path}.unit") or None,
        minimum=r.scalar_text(prop.get("minimum"), f"{path}.minimum") or None,
        maximum=r.scalar_text(prop.get("maximum"), f"{path}.maximum") or None,
    )


def _v1alpha2_model_property(
    r: _Reader, prop: Mapping[str, Any], path: str, name: str, description: str | None
) -> ModelProperty:
    type_obj = r.mapping(prop.get("type"), f"{path}.type")
    if type_obj is None:
        raise r.fail(f"{path}.type is required")
    keys = [k for k in _V1ALPHA2_TYPE_KEYS if type_obj.get(k) is not None]
    unknown = sorted(set(type_obj) - set(_V1ALPHA2_TYPE_KEYS))
    if unknown or len(keys) != 1:
        raise r.fail(
            f"{path}.type must hold exactly one of {', '.join(_V1ALPHA2_TYPE_KEYS)}, "
            f"got {', '.join(sorted(type_obj)) or 'none'}"
        )
    key = keys[0]
    tpath = f"{path}.type.{key}"
    details = r.mapping(type_obj[key], tpath) or {}
    return ModelProperty(
        name=name,
        description=description,
        type=key.upper(),
        access_mode=_access_mode(r, details.get("accessMode"), f"{tpath}.accessMode"),
        unit=r.string(details.get("unit"), f"{tpath}.unit") or None,
        minimum=r.scalar_text(details.get("minimum"), f"{tpath}.minimum"),
        maximum=r.scalar_text(details.get("maximum"), f"{tpath}.maximum"),
        default_value=r.scalar_text(details.get("defaultValue"), f"{tpath}.defaultValue"),
    )


# --------------------------------------------------------------------------------------------
# DeviceStatus


def decode_device_status(obj: Mapping[str, Any]) -> DeviceStatusCR:
    """Decode a ``DeviceStatus`` (KubeEdge 1.23+); raises :class:`InvalidCR`."""
    r = _Reader(obj, "DeviceStatus")
    version, namespace, name, rv, _labels = r.header()
    status = r.mapping(obj.get("status"), "status")
    twins: list[TwinStatus] = []
    for i, (pname, twin) in enumerate(r.twins(status)):
        twins.append(
            TwinStatus(
                property_name=pname,
                reported=r.twin_value(twin.get("reported"), f"status.twins[{i}].reported"),
                observed_desired=r.twin_value(
                    twin.get("observedDesired"), f"status.twins[{i}].observedDesired"
                ),
            )
        )
    return DeviceStatusCR(
        api_version=version,
        namespace=namespace,
        name=name,
        resource_version=rv,
        twins=tuple(twins),
        state=r.string(r.get(status, "state", "status"), "status.state") or None,
        last_online_time=r.string(
            r.get(status, "lastOnlineTime", "status"), "status.lastOnlineTime"
        )
        or None,
    )


# --------------------------------------------------------------------------------------------
# write path


def new_device(definition: DeviceDefinition, version: str) -> dict[str, Any]:
    """The body of a new Device CR of the served ``version`` for ``definition``: model
    reference, node and labels, no properties. ``apiVersion`` is left to the writer.

    The node binding is ``spec.nodeName`` on v1beta1; v1alpha2 has no such field (an API
    server prunes it) and binds through the ``nodeSelector`` cloudcore reads.
    """
    metadata: dict[str, Any] = {
        "name": definition.id.name,
        "namespace": definition.id.namespace,
    }
    if definition.labels:
        metadata["labels"] = dict(definition.labels)
    spec: dict[str, Any] = {"deviceModelRef": {"name": definition.model}}
    if version == "v1beta1":
        spec["nodeName"] = definition.node
    else:
        spec["nodeSelector"] = _v1alpha2_node_selector(definition.node)
    return {"kind": "Device", "metadata": metadata, "spec": spec}


def _v1alpha2_node_selector(node: str) -> dict[str, Any]:
    """The selector of KubeEdge's own v1alpha2 samples: one term, one expression, the node
    name its only value (the one part cloudcore reads)."""
    return {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "", "operator": "In", "values": [node]}]}
        ]
    }


def redefined_device(current: Mapping[str, Any], definition: DeviceDefinition) -> dict[str, Any]:
    """A copy of ``current`` (a Device as read, with its resourceVersion) that carries the
    model, node and labels of ``definition``, for a replace; everything else in ``spec`` stays.

    ``status`` is dropped (a replace does not write it). The node goes into ``spec.nodeName``
    on v1beta1, or where that field already exists; a v1alpha2 Device binds through
    ``nodeSelector``, which is left as it is. Raises :class:`InvalidCR` when ``metadata`` or
    ``spec`` is not an object.
    """
    obj = copy.deepcopy(dict(current))
    metadata = obj.setdefault("metadata", {})
    spec = obj.setdefault("spec", {})
    if not isinstance(metadata, dict) or not isinstance(spec, dict):
        raise InvalidCR(
            "metadata and spec must be objects",
            kind="Device",
            namespace=definition.id.namespace,
            name=definition.id.name,
        )
    metadata["labels"] = dict(definition.labels)
    spec["deviceModelRef"] = {**(spec.get("deviceModelRef") or {}), "name": definition.model}
    if "nodeName" in spec or str(obj.get("apiVersion", "")).endswith("/v1beta1"):
        spec["nodeName"] = definition.node
    obj.pop("status", None)
    return obj


def desired_value_patch(obj: Mapping[str, Any], values: Mapping[str, str]) -> list[dict[str, Any]]:
    """A JSON patch (RFC 6902) that sets the desired value of each named property.

    A merge patch would replace the whole ``properties`` / ``twins`` list, losing concurrent
    changes, so each item is addressed by index instead, and a ``test`` op on the item's name
    guards the index: if the list was reordered since ``obj`` was read, the API server refuses
    the patch (422) and the caller re-reads and retries. ``desired.metadata`` is left alone
    (on v1alpha2 it carries the twin type).

    Raises :class:`InvalidCR` if ``obj`` is not a Device, :class:`UnknownProperty` listing every
    property in ``values`` the Device does not declare.
    """
    r = _Reader(obj, "Device")
    version, namespace, name, _rv, _labels = r.header()
    if version == "v1beta1":
        spec = r.mapping(obj.get("spec"), "spec") or {}
        items = r.items(spec.get("properties"), "spec.properties")
        base, key = "/spec/properties", "name"
    else:
        status = r.mapping(obj.get("status"), "status")
        items = r.items(r.get(status, "twins", "status"), "status.twins")
        base, key = "/status/twins", "propertyName"
    index: dict[str, int] = {}
    for i, item in enumerate(items):
        item_name = item.get(key)
        if isinstance(item_name, str):
            index.setdefault(item_name, i)
    missing = [p for p in values if p not in index]
    if missing:
        raise UnknownProperty(namespace, name, missing)
    ops: list[dict[str, Any]] = []
    for prop, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"desired value of {prop!r} must be a string")
        i = index[prop]
        ops.append({"op": "test", "path": f"{base}/{i}/{key}", "value": prop})
        if isinstance(items[i].get("desired"), Mapping):
            ops.append({"op": "add", "path": f"{base}/{i}/desired/value", "value": value})
        else:
            ops.append({"op": "add", "path": f"{base}/{i}/desired", "value": {"value": value}})
    return ops
