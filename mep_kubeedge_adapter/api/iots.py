"""The ETSI MEC 033 IoT API (``/iots/v1``): KubeEdge devices and KubeEdge as an IoT platform.

Mapping (MEC 033 V3.1.1 names; KubeEdge has no 3GPP identifiers, so none are sent):

* ``DeviceInfo`` per registry device: ``deviceId`` ``<namespace>/<name>``;
  ``deviceMetadata`` key/value pairs ``model``, ``node`` and one ``label:<key>`` per label;
  ``requestedIotPlatformId`` this node's platform, so every device has a valid traffic rule
  and ``enabled`` is ``true``; ``deviceAuthenticationInfo`` (mandatory, implementation
  defined) is the string ``"not-applicable"``: KubeEdge devices talk to their mapper, not to a
  3GPP data network.
* ``IotPlatformInfo`` ``kubeedge-<node>``: ``userTransportInfo`` is EdgeCore's MQTT broker
  (``MB_TOPIC_BASED``, ``MQTT``, ``endpoint.addresses``) with the device-twin topics in
  ``implSpecificInfo`` (``uplinkTopics``: twin documents and results, ``downlinkTopics``:
  twin update and get, ``eventTopics``: device state results and node membership);
  ``customServicesTransportInfo`` is the device REST API (``REST_HTTP``, ``endpoint.uris``).
  ``enabled`` follows the adapter's readiness (EventBus connected and synchronised).

Device ids in paths: ``/registered_devices/{registeredDeviceId}`` takes the id with its
``/`` percent-encoded (``default%2Fthermo-1``), and ``/registered_devices/{ns}/{name}`` takes
it as two segments; ``Location`` headers use the encoded form.

Queries: ``filter`` accepts ``(eq,<attr>,<value>)`` terms joined by ``;`` for ``enabled``,
``deviceId`` and ``requestedIotPlatformId``; ``fields`` (comma separated) limits the answer
to those attributes plus the mandatory ones. Anything else in them is a 400.

Writes (``POST``, ``PUT``, ``DELETE /registered_devices``) decode the body into a
:class:`~mep_kubeedge_adapter.domain.DeviceDefinition` and create, replace or delete the
Device CR through the ``DeviceCrs`` port (``ApiDeps.device_crs``, the kube source's writes):
metadata ``model`` is required, ``node`` defaults to this node, ``label:<key>`` entries
become the CR's labels; other DeviceInfo attributes are accepted and ignored. Without a kube
source that can write, they answer 403. Platforms are not writable (403): KubeEdge is the only one this API describes.
Errors are ``application/problem+json`` from the app's problem middleware.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError

from mep_kubeedge_adapter.api.bodies import read_json
from mep_kubeedge_adapter.api.deps import API_BASE, DEPS, DeviceCrs
from mep_kubeedge_adapter.api.links import links
from mep_kubeedge_adapter.api.openapi_parts import json_body, query_parameter, ref, responses
from mep_kubeedge_adapter.api.problems import validation_detail
from mep_kubeedge_adapter.api.schemas import (
    Address,
    EndPointInfo,
    Json,
    KeyValuePair,
    MbTransportInfo,
    Mec033DeviceInfo,
    Mec033IotPlatformInfo,
    OAuth2Info,
    SecurityInfo,
    TopicLists,
    TransportInfo,
    encode,
)
from mep_kubeedge_adapter.domain import AdapterError, Device, DeviceDefinition, DeviceId, ErrorKind
from mep_kubeedge_adapter.settings import Settings

__all__ = [
    "IOTS_BASE",
    "add_iots_routes",
    "device_info_json",
    "platform_id",
    "platform_info_json",
]

IOTS_BASE = "/iots/v1"
DEVICES = f"{IOTS_BASE}/registered_devices"
DEVICE = f"{DEVICES}/{{registeredDeviceId}}"
DEVICE_2 = f"{DEVICES}/{{namespace}}/{{name}}"
PLATFORMS = f"{IOTS_BASE}/registered_iot_platforms"
PLATFORM = f"{PLATFORMS}/{{registeredIotPlatformId}}"

AUTH_INFO = "not-applicable"
LABEL_PREFIX = "label:"
EVENTBUS_TRANSPORT = "kubeedge-eventbus"
REST_TRANSPORT = "kubeedge-devices-rest"

_DEVICE_REQUIRED = ("deviceId", "deviceAuthenticationInfo", "enabled")
_DEVICE_FIELDS = frozenset(
    {
        "deviceMetadata",
        "gpsi",
        "msisdn",
        "deviceId",
        "requestedMecTrafficRule",
        "requestedIotPlatformId",
        "requestedUserTransportId",
        "deviceAuthenticationInfo",
        "enabled",
    }
)
_PLATFORM_REQUIRED = ("iotPlatformId", "userTransportInfo", "enabled")
_PLATFORM_FIELDS = frozenset(
    {"iotPlatformId", "enabled", "userTransportInfo", "customServicesTransportInfo"}
)
_FILTER_ATTRS = frozenset({"enabled", "deviceId", "requestedIotPlatformId"})
_FILTER_TERM = rf"\s*\(eq,(?:{'|'.join(sorted(_FILTER_ATTRS))}),[^;]+\)\s*"
_FILTER_PATTERN = rf"^{_FILTER_TERM}(?:;{_FILTER_TERM})*$"
"""What ``_parse_filter`` accepts, for the schema of the ``filter`` parameter."""


def _list_pattern(names: frozenset[str]) -> str:
    """What ``_select`` accepts as ``fields``: known names, comma separated, blanks skipped."""
    item = rf"\s*(?:{'|'.join(sorted(names))})?\s*"
    return rf"^{item}(?:,{item})*$"


# ------------------------------------------------------------------ encoding


def platform_id(node: str) -> str:
    """The ``iotPlatformId`` of this node's KubeEdge."""
    return f"kubeedge-{node}"


def _metadata(model: str | None, node: str | None, labels: Mapping[str, str]) -> list[KeyValuePair]:
    items: list[KeyValuePair] = []
    if model:
        items.append(KeyValuePair(key="model", value=model))
    if node:
        items.append(KeyValuePair(key="node", value=node))
    items.extend(
        KeyValuePair(key=f"{LABEL_PREFIX}{key}", value=value)
        for key, value in sorted(labels.items())
    )
    return items


def device_info(
    device_id: DeviceId,
    model: str | None,
    node: str | None,
    labels: Mapping[str, str],
    platform: str,
) -> Mec033DeviceInfo:
    """A device as MEC 033 ``DeviceInfo``."""
    return Mec033DeviceInfo(
        deviceId=str(device_id),
        deviceAuthenticationInfo=AUTH_INFO,
        deviceMetadata=_metadata(model, node, labels),
        requestedIotPlatformId=platform,
        enabled=True,
    )


def device_info_json(device: Device, platform: str) -> Json:
    """A registry device as MEC 033 ``DeviceInfo`` JSON."""
    return encode(device_info(device.id, device.model, device.node, device.labels, platform))


def _topics(settings: Settings) -> dict[str, list[str]]:
    layout = settings.mqtt.topic_layout
    ids = []
    if layout in ("namespaced", "auto"):
        ids.append("+/+")
    if layout in ("legacy", "auto"):
        ids.append("+")
    device = "$hw/events/device/"
    return {
        "eventTopics": [f"{device}{i}/state/update/result" for i in ids]
        + [f"$hw/events/node/{settings.node_name}/membership/updated"],
        "uplinkTopics": [
            f"{device}{i}/twin/update/{kind}" for i in ids for kind in ("document", "result")
        ],
        "downlinkTopics": [f"{device}{i}/twin/{kind}" for i in ids for kind in ("update", "get")],
    }


def _broker_address(url: str) -> Address:
    parts = urlsplit(url)
    secure = parts.scheme in ("mqtts", "ssl")
    return Address(
        host=parts.hostname or "127.0.0.1", port=parts.port or (8883 if secure else 1883)
    )


def _security(settings: Settings) -> SecurityInfo:
    if settings.api.auth == "jwt" and settings.mep.url:
        return SecurityInfo(
            oAuth2Info=OAuth2Info(
                grantTypes=["OAUTH2_CLIENT_CREDENTIALS"],
                tokenEndpoint=f"{settings.mep.url.rstrip('/')}/mep/token",
            )
        )
    return SecurityInfo()


def platform_info_json(settings: Settings, device_api_url: str, enabled: bool) -> Json:
    """This node's KubeEdge as MEC 033 ``IotPlatformInfo`` JSON."""
    platform = Mec033IotPlatformInfo(
        iotPlatformId=platform_id(settings.node_name),
        userTransportInfo=[
            MbTransportInfo(
                id=EVENTBUS_TRANSPORT,
                name="KubeEdge-EventBus",
                description="EdgeCore's MQTT broker carrying the device twin topics",
                type="MB_TOPIC_BASED",
                protocol="MQTT",
                version="3.1.1",
                endpoint=EndPointInfo(addresses=[_broker_address(settings.mqtt.url)]),
                security=SecurityInfo(),
                implSpecificInfo=TopicLists(**_topics(settings)),
            )
        ],
        customServicesTransportInfo=[
            TransportInfo(
                id=REST_TRANSPORT,
                name="KubeEdge-Devices-REST",
                description="devices, models, twins and subscriptions of this node",
                type="REST_HTTP",
                protocol="HTTP",
                version="1.1",
                endpoint=EndPointInfo(uris=[device_api_url]),
                security=_security(settings),
            )
        ],
        enabled=enabled,
    )
    return encode(platform)


# ------------------------------------------------------------------ queries


def _select(
    items: list[dict[str, Any]],
    request: web.Request,
    required: tuple[str, ...],
    allowed: frozenset[str],
) -> list[dict[str, Any]]:
    terms = _parse_filter(request.query.get("filter"))
    if terms:
        items = [item for item in items if all(_matches(item, a, v) for a, v in terms)]
    fields = request.query.get("fields")
    if fields is not None:
        wanted = {f.strip() for f in fields.split(",") if f.strip()}
        unknown = wanted - allowed
        if unknown:
            raise AdapterError(ErrorKind.INVALID, f"unknown fields: {', '.join(sorted(unknown))}")
        keep = wanted | set(required)
        items = [{k: v for k, v in item.items() if k in keep} for item in items]
    return items


def _parse_filter(text: str | None) -> list[tuple[str, str]]:
    if text is None:
        return []
    terms: list[tuple[str, str]] = []
    for raw in text.split(";"):
        raw = raw.strip()
        if not (raw.startswith("(") and raw.endswith(")")):
            raise AdapterError(ErrorKind.INVALID, f"filter term {raw!r} is not (eq,attr,value)")
        op, _, rest = raw[1:-1].partition(",")
        attr, _, value = rest.partition(",")
        if op != "eq" or attr not in _FILTER_ATTRS or not value:
            raise AdapterError(
                ErrorKind.INVALID,
                f"unsupported filter term {raw!r}; supported: (eq,<attr>,<value>) with attr "
                f"in {', '.join(sorted(_FILTER_ATTRS))}",
            )
        terms.append((attr, value))
    return terms


def _matches(item: Mapping[str, Any], attr: str, value: str) -> bool:
    actual = item.get(attr)
    if isinstance(actual, bool):
        return value.upper() == ("TRUE" if actual else "FALSE")
    return actual == value


# ------------------------------------------------------------------ handlers


def _settings(request: web.Request) -> Settings:
    return request.app[DEPS].settings


def _device_id(request: web.Request) -> DeviceId:
    info = request.match_info
    text = info.get("registeredDeviceId")
    if text is None:
        text = f"{info['namespace']}/{info['name']}"
    try:
        device_id = DeviceId.parse(text, _settings(request).mqtt.default_namespace)
    except ValueError as exc:
        raise AdapterError(ErrorKind.INVALID, str(exc)) from exc
    return device_id


def _device_location(request: web.Request, device_id: DeviceId) -> str:
    url = links(request, _settings(request).api.public_url).url
    return url(f"{DEVICES}/{quote(str(device_id), safe='')}")


async def list_devices(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    pid = platform_id(deps.settings.node_name)
    items = [device_info_json(d, pid) for d in deps.registry.devices()]
    return web.json_response(_select(items, request, _DEVICE_REQUIRED, _DEVICE_FIELDS))


async def get_device(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    device_id = _device_id(request)
    device = deps.registry.get(device_id)
    if device is None:
        raise AdapterError(ErrorKind.NOT_FOUND, f"no registered device {device_id}")
    return web.json_response(device_info_json(device, platform_id(deps.settings.node_name)))


async def list_platforms(request: web.Request) -> web.Response:
    items = [_platform(request)]
    return web.json_response(_select(items, request, _PLATFORM_REQUIRED, _PLATFORM_FIELDS))


async def get_platform(request: web.Request) -> web.Response:
    wanted = request.match_info["registeredIotPlatformId"]
    platform = _platform(request)
    if wanted != platform["iotPlatformId"]:
        raise AdapterError(ErrorKind.NOT_FOUND, f"no registered IoT platform {wanted!r}")
    fields = request.query.get("fields")
    if fields is not None:
        return web.json_response(
            _select([platform], request, _PLATFORM_REQUIRED, _PLATFORM_FIELDS)[0]
        )
    return web.json_response(platform)


async def platform_write(request: web.Request) -> web.Response:
    raise AdapterError(
        ErrorKind.FORBIDDEN,
        "IoT platforms cannot be registered, changed or removed here: this API describes the "
        "node's KubeEdge only",
    )


def _platform(request: web.Request) -> dict[str, Any]:
    deps = request.app[DEPS]
    ready, _ = deps.readiness()
    api = links(request, deps.settings.api.public_url).url(API_BASE)
    return platform_info_json(deps.settings, api, ready)


class _KeyValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: StrictStr
    value: StrictStr


class _DeviceInfoIn(BaseModel):
    """The attributes of a written ``DeviceInfo`` the adapter uses; others are ignored."""

    model_config = ConfigDict(extra="ignore", title="DeviceInfo")

    deviceId: StrictStr
    deviceAuthenticationInfo: Any
    deviceMetadata: list[_KeyValue] = []
    requestedIotPlatformId: StrictStr | None = None
    requestedUserTransportId: StrictStr | None = None


def _crs(request: web.Request) -> DeviceCrs:
    crs = request.app[DEPS].device_crs
    if crs is None:
        raise AdapterError(
            ErrorKind.FORBIDDEN,
            "devices can only be registered, changed or removed through a kube source that can "
            "write Device CRs (MKA_KUBE__SOURCE); this adapter has none",
        )
    return crs


async def _read_device_info(request: web.Request) -> _DeviceInfoIn:
    raw = await read_json(request)
    try:
        body = _DeviceInfoIn.model_validate(raw)
    except ValidationError as exc:
        raise AdapterError(ErrorKind.INVALID, validation_detail(exc)) from exc
    if "deviceAuthenticationInfo" not in raw:
        raise AdapterError(ErrorKind.INVALID, "deviceAuthenticationInfo: Field required")
    settings = _settings(request)
    if body.requestedIotPlatformId not in (None, platform_id(settings.node_name)):
        raise AdapterError(
            ErrorKind.INVALID, f"unknown IoT platform {body.requestedIotPlatformId!r}"
        )
    if body.requestedUserTransportId not in (None, EVENTBUS_TRANSPORT):
        raise AdapterError(
            ErrorKind.INVALID, f"unknown user transport {body.requestedUserTransportId!r}"
        )
    return body


def _definition(device_id: DeviceId, body: _DeviceInfoIn, settings: Settings) -> DeviceDefinition:
    model: str | None = None
    node = settings.node_name
    labels: dict[str, str] = {}
    for item in body.deviceMetadata:
        if item.key == "model":
            model = item.value
        elif item.key == "node":
            node = item.value
        elif item.key.startswith(LABEL_PREFIX) and len(item.key) > len(LABEL_PREFIX):
            labels[item.key[len(LABEL_PREFIX) :]] = item.value
        else:
            raise AdapterError(
                ErrorKind.INVALID,
                f"deviceMetadata key {item.key!r} is not one of model, node, label:<key>",
            )
    if not model:
        raise AdapterError(ErrorKind.INVALID, 'deviceMetadata needs {"key": "model", ...}')
    return DeviceDefinition(device_id, model, node, labels)


def _written(definition: DeviceDefinition, settings: Settings) -> Json:
    return encode(
        device_info(
            definition.id,
            definition.model,
            definition.node,
            definition.labels,
            platform_id(settings.node_name),
        )
    )


async def create_device(request: web.Request) -> web.Response:
    crs = _crs(request)
    settings = _settings(request)
    body = await _read_device_info(request)
    try:
        device_id = DeviceId.parse(body.deviceId, settings.mqtt.default_namespace)
    except ValueError as exc:
        raise AdapterError(ErrorKind.INVALID, str(exc)) from exc
    definition = _definition(device_id, body, settings)
    if request.app[DEPS].registry.get(device_id) is not None:
        raise AdapterError(ErrorKind.CONFLICT, f"device {device_id} is already registered")
    await crs.create(definition)
    return web.json_response(
        _written(definition, settings),
        status=201,
        headers={"Location": _device_location(request, device_id)},
    )


async def replace_device(request: web.Request) -> web.Response:
    crs = _crs(request)
    settings = _settings(request)
    device_id = _device_id(request)
    body = await _read_device_info(request)
    if body.deviceId != str(device_id):
        raise AdapterError(
            ErrorKind.INVALID, f"deviceId {body.deviceId!r} does not match the path ({device_id})"
        )
    definition = _definition(device_id, body, settings)
    await crs.replace(definition)
    return web.json_response(_written(definition, settings))


async def delete_device(request: web.Request) -> web.Response:
    crs = _crs(request)
    device_id = _device_id(request)
    await crs.delete(device_id)
    return web.Response(status=204)


def add_iots_routes(app: web.Application) -> None:
    """Add the MEC 033 routes; ``ApiDeps.device_crs`` enables the write side (else 403)."""
    r = app.router
    r.add_get(DEVICES, list_devices, allow_head=False)
    r.add_post(DEVICES, create_device)
    for path in (DEVICE, DEVICE_2):
        r.add_get(path, get_device, allow_head=False)
        r.add_put(path, replace_device)
        r.add_delete(path, delete_device)
    r.add_get(PLATFORMS, list_platforms, allow_head=False)
    r.add_post(PLATFORMS, platform_write)
    r.add_get(PLATFORM, get_platform, allow_head=False)
    r.add_put(PLATFORM, platform_write)
    r.add_delete(PLATFORM, platform_write)


def openapi_paths() -> Json:
    """The ``/iots/v1`` operations for ``/openapi.json``."""
    device = ref("Mec033DeviceInfo")
    platform = ref("Mec033IotPlatformInfo")
    device_id = {
        "name": "registeredDeviceId",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "the device id <namespace>/<name>, with the '/' percent-encoded",
        "example": "default%2Fthermo-1",
    }
    two_segments = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in ("namespace", "name")
    ]
    platform_id_param = {
        "name": "registeredIotPlatformId",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }

    def query(fields: frozenset[str]) -> list[Json]:
        return [
            query_parameter(
                "filter",
                "(eq,<attribute>,<value>) on enabled, deviceId or requestedIotPlatformId; "
                "several joined by ';' must all match",
                pattern=_FILTER_PATTERN,
            ),
            query_parameter(
                "fields",
                "comma-separated attributes to return (the mandatory ones always are)",
                pattern=_list_pattern(fields),
            ),
        ]

    many_devices = json_body({"type": "array", "items": device}, "Registered devices")
    one_device = json_body(device, "A registered device")
    created = json_body(device, "The Device CR was created", "Location")
    writes = ("400", "403", "404", "409")

    def item_ops(params: list[Any], prefix: str) -> dict[str, Any]:
        return {
            "parameters": params,
            "get": {
                "operationId": f"{prefix}Get",
                "summary": "One registered device",
                "responses": responses({"200": one_device}, "401", "404"),
            },
            "put": {
                "operationId": f"{prefix}Put",
                "summary": "Change the Device CR",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": device}},
                },
                "responses": responses({"200": one_device}, "401", *writes),
            },
            "delete": {
                "operationId": f"{prefix}Delete",
                "summary": "Delete the Device CR",
                "responses": responses({"204": {"description": "Deleted"}}, "401", "403", "404"),
            },
        }

    refused = responses({}, "401", "403")
    return {
        DEVICES: {
            "get": {
                "operationId": "iotsListDevices",
                "summary": "This node's devices (MEC 033)",
                "parameters": query(_DEVICE_FIELDS),
                "responses": responses({"200": many_devices}, "400", "401"),
            },
            "post": {
                "operationId": "iotsCreateDevice",
                "summary": "Create a Device CR",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": device}},
                },
                "responses": responses({"201": created}, "401", *writes),
            },
        },
        DEVICE: item_ops([device_id], "iotsDevice"),
        DEVICE_2: item_ops(two_segments, "iotsDeviceBySegments"),
        PLATFORMS: {
            "get": {
                "operationId": "iotsListPlatforms",
                "summary": "KubeEdge on this node",
                "parameters": query(_PLATFORM_FIELDS),
                "responses": responses(
                    {"200": json_body({"type": "array", "items": platform}, "IoT platforms")},
                    "400",
                    "401",
                ),
            },
            "post": {
                "operationId": "iotsCreatePlatform",
                "summary": "Not allowed",
                "responses": refused,
            },
        },
        PLATFORM: {
            "parameters": [platform_id_param],
            "get": {
                "operationId": "iotsGetPlatform",
                "summary": "KubeEdge on this node",
                "responses": responses(
                    {"200": json_body(platform, "The IoT platform")}, "401", "404"
                ),
            },
            "put": {
                "operationId": "iotsPutPlatform",
                "summary": "Not allowed",
                "responses": refused,
            },
            "delete": {
                "operationId": "iotsDeletePlatform",
                "summary": "Not allowed",
                "responses": refused,
            },
        },
    }
