"""Device, twin and model routes: decode the request, call a use case, encode the answer.

The answers are the models of ``schemas`` (``DeviceInfo``, ``TwinInfo``, ``DeviceModelInfo``),
built here from the registry's snapshots; ``/openapi.json`` is generated from the same models.
A twin's body is encoded once per device snapshot (``TwinCache``), not per request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from mep_kubeedge_adapter.api import schemas
from mep_kubeedge_adapter.api.bodies import read_json
from mep_kubeedge_adapter.api.deps import API_BASE, DEPS
from mep_kubeedge_adapter.api.links import LinkBuilder, links
from mep_kubeedge_adapter.api.problems import validation_detail
from mep_kubeedge_adapter.api.schemas import encode
from mep_kubeedge_adapter.domain import (
    TWIN_KEY_PATTERN,
    TWIN_VALUE_PATTERN,
    AdapterError,
    Device,
    DeviceId,
    DeviceModel,
    ErrorKind,
    ModelId,
    PropertySpec,
    TwinValue,
)
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.usecases import get_device, twin_etag, write_desired

DEVICES = f"{API_BASE}/devices"
DEVICE = f"{API_BASE}/devices/{{namespace}}/{{name}}"
TWIN = f"{API_BASE}/devices/{{namespace}}/{{name}}/twin"
MODELS = f"{API_BASE}/device_models"
MODEL = f"{API_BASE}/device_models/{{namespace}}/{{name}}"

PATCH_CONTENT_TYPES = ("application/merge-patch+json", "application/json")


TwinKey = Annotated[str, StringConstraints(strict=True, pattern=TWIN_KEY_PATTERN.pattern)]
TwinText = Annotated[str, StringConstraints(strict=True, pattern=TWIN_VALUE_PATTERN.pattern)]
"""EdgeCore's character rules (``domain.check_twin_value``), stated in the schema too; the
type rules (int, float, boolean) depend on the twin and are checked by the use case."""


class TwinPatch(BaseModel):
    """The body of ``PATCH .../twin``: new desired values, strings as in KubeEdge.

    Merge-patch ``null`` (delete a desired value) is not something EdgeCore can do, so it is
    refused like any other non-string value.
    """

    model_config = ConfigDict(extra="forbid", title="TwinPatch")

    desired: dict[TwinKey, TwinText] = Field(
        min_length=1, json_schema_extra={"additionalProperties": False}
    )


# ------------------------------------------------------------------ encoding


def rfc3339(milliseconds: int | None) -> str | None:
    """Epoch milliseconds as RFC 3339 UTC text; ``None`` when absent or out of range."""
    if milliseconds is None:
        return None
    try:
        moment = datetime.fromtimestamp(milliseconds // 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    moment = moment.replace(microsecond=(milliseconds % 1000) * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _segment(text: str) -> str:
    return quote(text, safe="")


def _twin_value(value: TwinValue) -> schemas.TwinValue:
    timestamp = rfc3339(value.timestamp)
    if timestamp is None:
        return schemas.TwinValue(value=value.value)
    return schemas.TwinValue(value=value.value, timestamp=timestamp)


def twin_info(device: Device, model: DeviceModel | None) -> schemas.TwinInfo:
    """``TwinInfo``: the model's type when the model names the property, else the twin's."""
    properties: dict[str, schemas.TwinPropertyInfo] = {}
    for name in sorted(device.properties):
        prop = device.properties[name]
        spec = model.properties.get(name) if model is not None else None
        sides: dict[str, schemas.TwinValue] = {}
        if prop.reported is not None:
            sides["reported"] = _twin_value(prop.reported)
        if prop.desired is not None:
            sides["desired"] = _twin_value(prop.desired)
        properties[name] = schemas.TwinPropertyInfo(
            type=(spec.type if spec is not None else None) or prop.twin_type or "string", **sides
        )
    return schemas.TwinInfo(properties=properties)


def device_info(device: Device, model: DeviceModel | None, url: LinkBuilder) -> schemas.DeviceInfo:
    """``DeviceInfo`` with links as the caller sees them (``url`` maps a path to a link)."""
    href = url(f"{API_BASE}/devices/{_segment(device.id.namespace)}/{_segment(device.id.name)}")
    return schemas.DeviceInfo(
        namespace=device.id.namespace,
        name=device.id.name,
        model=device.model,
        node=device.node,
        labels=dict(device.labels),
        state=device.state,
        lastOnlineTime=device.last_online,
        twin=twin_info(device, model),
        links={"self": {"href": href}, "twin": {"href": f"{href}/twin"}},
    )


def _property_spec(spec: PropertySpec) -> schemas.DevicePropertySpec:
    return schemas.DevicePropertySpec(
        name=spec.name,
        type=spec.type,
        accessMode=spec.access_mode,
        unit=spec.unit,
        description=spec.description,
        minimum=spec.minimum,
        maximum=spec.maximum,
    )


def model_info(model: DeviceModel, url: LinkBuilder) -> schemas.DeviceModelInfo:
    """``DeviceModelInfo``: what an app needs to write a property (type, access mode, unit)."""
    href = url(f"{API_BASE}/device_models/{_segment(model.id.namespace)}/{_segment(model.id.name)}")
    return schemas.DeviceModelInfo(
        namespace=model.id.namespace,
        name=model.id.name,
        protocol=model.protocol,
        properties=[_property_spec(model.properties[name]) for name in sorted(model.properties)],
        links={"self": {"href": href}},
    )


# ------------------------------------------------------------------ decoding


def _device_id(request: web.Request) -> DeviceId:
    return DeviceId(request.match_info["namespace"], request.match_info["name"])


LABEL_FILTER_PATTERN = "^[^=]+="
"""What ``_label_filter`` accepts: ``key=value`` with a key (for the schema)."""


def _label_filter(values: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AdapterError(ErrorKind.INVALID, f"label filter {item!r} is not key=value")
        labels[key] = value
    return labels


def _matches(device: Device, query: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    if "namespace" in query and device.id.namespace != query["namespace"]:
        return False
    if "model" in query and device.model != query["model"]:
        return False
    if "state" in query and (device.state or "").lower() != query["state"].lower():
        return False
    return all(device.labels.get(key) == value for key, value in labels.items())


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison (RFC 9110 §8.8.3.2), as ``If-None-Match`` asks for."""
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in header.split(","))


async def _read_patch(request: web.Request) -> TwinPatch:
    if request.content_type not in PATCH_CONTENT_TYPES:
        raise web.HTTPUnsupportedMediaType(
            text=f"send the patch as {' or '.join(PATCH_CONTENT_TYPES)}"
        )
    body = await read_json(request)
    try:
        return TwinPatch.model_validate(body)
    except ValidationError as exc:
        raise AdapterError(ErrorKind.INVALID, validation_detail(exc)) from exc


class _RenderedTwin:
    """One device snapshot's twin body (as ``web.json_response`` encodes it), its ETag and
    the response headers that carry them (aiohttp copies them into each response)."""

    __slots__ = ("body", "device", "etag", "headers", "model")

    def __init__(self, device: Device, model: DeviceModel | None) -> None:
        self.device = device
        self.model = model
        self.body = json.dumps(encode(twin_info(device, model))).encode()
        self.etag = twin_etag(device)
        self.headers = {"Content-Type": TWIN_CONTENT_TYPE, "ETag": self.etag}


class TwinCache:
    """Rendered twins per device, valid while the registry holds the same snapshot.

    ``Device`` and ``DeviceModel`` objects are immutable and replaced on every change, so
    the identity of both is the cache key. The cache holds at most one entry more than the
    registry has devices: beyond that, entries whose device changed or left are dropped.
    """

    def __init__(self) -> None:
        self._entries: dict[DeviceId, _RenderedTwin] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, registry: DeviceRegistry, device: Device) -> _RenderedTwin:
        entries = self._entries
        if len(entries) > len(registry):
            entries = self._entries = {
                key: kept for key, kept in entries.items() if registry.get(key) is kept.device
            }
        model = registry.model_of(device)
        entry = entries.get(device.id)
        if entry is not None and entry.device is device and entry.model is model:
            return entry
        entry = _RenderedTwin(device, model)
        entries[device.id] = entry
        return entry


TWIN_CACHE = web.AppKey("twin_cache", TwinCache)


TWIN_CONTENT_TYPE = "application/json; charset=utf-8"


def _twin_response(rendered: _RenderedTwin) -> web.Response:
    return web.Response(body=rendered.body, headers=rendered.headers)


# ------------------------------------------------------------------ handlers


async def list_devices(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    labels = _label_filter(request.query.getall("label", []))
    base = links(request, deps.settings.api.public_url).url
    registry = deps.registry
    return web.json_response(
        [
            encode(device_info(device, registry.model_of(device), base))
            for device in registry.devices()
            if _matches(device, request.query, labels)
        ]
    )


async def read_device(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    device = get_device(deps.registry, _device_id(request))
    base = links(request, deps.settings.api.public_url).url
    return web.json_response(encode(device_info(device, deps.registry.model_of(device), base)))


async def read_twin(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    device = get_device(deps.registry, _device_id(request))
    rendered = request.app[TWIN_CACHE].get(deps.registry, device)
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and _etag_matches(if_none_match, rendered.etag):
        return web.Response(status=304, headers={"ETag": rendered.etag})
    return _twin_response(rendered)


async def patch_twin(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    patch = await _read_patch(request)
    device = await write_desired(
        deps.registry,
        deps.writer,
        _device_id(request),
        patch.desired,
        if_match=request.headers.get("If-Match"),
    )
    return _twin_response(request.app[TWIN_CACHE].get(deps.registry, device))


async def list_models(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    base = links(request, deps.settings.api.public_url).url
    namespace = request.query.get("namespace")
    return web.json_response(
        [
            encode(model_info(model, base))
            for model in deps.registry.models()
            if namespace is None or model.id.namespace == namespace
        ]
    )


async def read_model(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    model_id = ModelId(request.match_info["namespace"], request.match_info["name"])
    model = deps.registry.model(model_id)
    if model is None:
        raise AdapterError(ErrorKind.NOT_FOUND, f"no device model {model_id} on this node")
    return web.json_response(
        encode(model_info(model, links(request, deps.settings.api.public_url).url))
    )


def add_routes(app: web.Application) -> None:
    """GET routes without the implicit HEAD, so the OpenAPI document lists all there is.

    The twin comes first: aiohttp tries the routes that share a static prefix (here
    ``/devices``) in the order they were added, and reading a twin is the hottest call.
    The three paths differ in their number of segments, so the order changes no match.
    """
    app[TWIN_CACHE] = TwinCache()
    app.router.add_get(TWIN, read_twin, allow_head=False)
    app.router.add_patch(TWIN, patch_twin)
    app.router.add_get(DEVICE, read_device, allow_head=False)
    app.router.add_get(DEVICES, list_devices, allow_head=False)
    app.router.add_get(MODELS, list_models, allow_head=False)
    app.router.add_get(MODEL, read_model, allow_head=False)
