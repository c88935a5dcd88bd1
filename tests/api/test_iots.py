"""The MEC 033 IoT API (``/iots/v1``) over real HTTP on loopback.

Responses are checked against JSON Schemas written here from the MEC 033 V3.1.1 attribute
tables (DeviceInfo, IotPlatformInfo, MBTransportInfo and MEC 011 TransportInfo) with
``additionalProperties: false``, so a misspelt or invented field name fails the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from openapi_schema_validator import OAS31Validator

from mep_kubeedge_adapter.api.app import ApiDeps, create_app
from mep_kubeedge_adapter.api.deps import DeviceCrs
from mep_kubeedge_adapter.api.openapi_parts import ComponentSchema
from mep_kubeedge_adapter.api.schemas import Mec033DeviceInfo, Mec033IotPlatformInfo
from mep_kubeedge_adapter.domain import AdapterError, DeviceDefinition, DeviceId, ErrorKind
from mep_kubeedge_adapter.kubeedge.kubesource import KubeSource
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry, DeviceSpec
from mep_kubeedge_adapter.settings import Settings
from mep_kubeedge_adapter.usecases import UnsupportedWriter

PLATFORM_ID = "kubeedge-edge-1.lan"
DEVICE_INFO = Mec033DeviceInfo.model_json_schema(
    mode="serialization", schema_generator=ComponentSchema
)
IOT_PLATFORM_INFO = Mec033IotPlatformInfo.model_json_schema(
    mode="serialization", schema_generator=ComponentSchema
)
"""The MEC 033 schemas as ``/openapi.json`` publishes them, standalone (``$defs`` inside)."""

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "type": {"type": "string"},
        "title": {"type": "string"},
    },
}


def check(schema: Mapping[str, Any], instance: Any) -> None:
    OAS31Validator(dict(schema)).validate(instance)


def _typecheck(source: KubeSource) -> DeviceCrs:
    """mypy proves the kube source's CR writes satisfy the protocol the routes write through."""
    return source.crs


@dataclass
class FakeDeviceCrs:
    """The kube source's Device CR writes, applied to the registry as its watch would."""

    registry: DeviceRegistry
    definitions: dict[DeviceId, DeviceDefinition] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def _apply(self, definition: DeviceDefinition) -> None:
        self.definitions[definition.id] = definition
        self.registry.upsert_spec(
            DeviceSpec(
                definition.id,
                model=definition.model,
                node=definition.node,
                labels=definition.labels,
            )
        )

    async def create(self, definition: DeviceDefinition) -> None:
        self.calls.append(("create", str(definition.id)))
        if definition.id in self.definitions:
            raise AdapterError(ErrorKind.CONFLICT, f"device {definition.id} already exists")
        self._apply(definition)

    async def replace(self, definition: DeviceDefinition) -> None:
        self.calls.append(("replace", str(definition.id)))
        if definition.id not in self.definitions:
            raise AdapterError(ErrorKind.NOT_FOUND, f"device {definition.id} not found")
        self._apply(definition)

    async def delete(self, device_id: DeviceId) -> None:
        self.calls.append(("delete", str(device_id)))
        if self.definitions.pop(device_id, None) is None:
            raise AdapterError(ErrorKind.NOT_FOUND, f"device {device_id} not found")
        self.registry.remove_spec(device_id)


@dataclass
class Iots:
    session: aiohttp.ClientSession
    url: str
    registry: DeviceRegistry
    crs: FakeDeviceCrs | None

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        async with self.session.request(method, f"{self.url}{path}", **kwargs) as resp:
            body: Any = await resp.json(content_type=None) if resp.status != 204 else None
            if resp.status >= 400:
                assert resp.content_type == "application/problem+json"
                check(PROBLEM, body)
                assert body["status"] == resp.status
            return resp.status, body, resp.headers


def _registry() -> DeviceRegistry:
    registry = DeviceRegistry()
    registry.upsert_spec(
        DeviceSpec(
            DeviceId("default", "thermo-1"),
            model="thermometer",
            node="edge-1.lan",
            labels={"room": "lab"},
        )
    )
    registry.add_member(DeviceId("plant", "switch-1"))
    return registry


async def _serve(writable: bool, **settings: Any) -> AsyncIterator[Iots]:
    registry = _registry()
    crs = FakeDeviceCrs(registry) if writable else None
    config = Settings(
        node_name="edge-1.lan",
        mqtt={"url": "mqtt://127.0.0.1:1884"},
        api={"host": "127.0.0.1", "port": 0, "public_url": "http://adapter.example:8080"},
        **settings,
    )
    deps = ApiDeps(
        settings=config,
        registry=registry,
        metrics=Metrics(),
        readiness=lambda: (True, {}),
        writer=UnsupportedWriter("not in these tests"),
        device_crs=crs,
    )
    app = create_app(deps)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        yield Iots(session, str(server.make_url("")).rstrip("/"), registry, crs)


@pytest.fixture
async def iots() -> AsyncIterator[Iots]:
    async for harness in _serve(writable=True):
        yield harness


@pytest.fixture
async def read_only() -> AsyncIterator[Iots]:
    async for harness in _serve(writable=False):
        yield harness


# ------------------------------------------------------------------ reading


async def test_registered_devices_list(iots: Iots) -> None:
    status, body, _ = await iots.call("GET", "/iots/v1/registered_devices")
    assert status == 200
    for item in body:
        check(DEVICE_INFO, item)
    assert [d["deviceId"] for d in body] == ["default/thermo-1", "plant/switch-1"]
    thermo = body[0]
    assert thermo["enabled"] is True
    assert thermo["requestedIotPlatformId"] == PLATFORM_ID
    assert thermo["deviceMetadata"] == [
        {"key": "model", "value": "thermometer"},
        {"key": "node", "value": "edge-1.lan"},
        {"key": "label:room", "value": "lab"},
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/iots/v1/registered_devices/default%2Fthermo-1",
        "/iots/v1/registered_devices/default/thermo-1",
    ],
)
async def test_registered_device_by_either_id_form(iots: Iots, path: str) -> None:
    status, body, _ = await iots.call("GET", path)
    assert status == 200
    check(DEVICE_INFO, body)
    assert body["deviceId"] == "default/thermo-1"


async def test_unknown_device_is_404(iots: Iots) -> None:
    status, body, _ = await iots.call("GET", "/iots/v1/registered_devices/default/nope")
    assert status == 404
    assert "default/nope" in body["detail"]


async def test_filter_and_fields(iots: Iots) -> None:
    status, body, _ = await iots.call(
        "GET",
        "/iots/v1/registered_devices",
        params={"filter": "(eq,deviceId,plant/switch-1)", "fields": "requestedIotPlatformId"},
    )
    assert status == 200
    assert body == [
        {
            "deviceId": "plant/switch-1",
            "deviceAuthenticationInfo": "not-applicable",
            "requestedIotPlatformId": PLATFORM_ID,
            "enabled": True,
        }
    ]
    status, body, _ = await iots.call(
        "GET", "/iots/v1/registered_devices", params={"filter": "(eq,enabled,FALSE)"}
    )
    assert (status, body) == (200, [])
    status, _, _ = await iots.call(
        "GET", "/iots/v1/registered_devices", params={"filter": "(gt,enabled,1)"}
    )
    assert status == 400
    status, _, _ = await iots.call(
        "GET", "/iots/v1/registered_devices", params={"fields": "colour"}
    )
    assert status == 400


async def test_registered_iot_platforms(iots: Iots) -> None:
    status, body, _ = await iots.call("GET", "/iots/v1/registered_iot_platforms")
    assert status == 200
    assert len(body) == 1
    platform = body[0]
    check(IOT_PLATFORM_INFO, platform)
    assert platform["iotPlatformId"] == PLATFORM_ID
    assert platform["enabled"] is True
    bus = platform["userTransportInfo"][0]
    assert bus["type"] == "MB_TOPIC_BASED"
    assert bus["protocol"] == "MQTT"
    assert bus["endpoint"] == {"addresses": [{"host": "127.0.0.1", "port": 1884}]}
    topics = bus["implSpecificInfo"]
    assert "$hw/events/device/+/+/twin/update/document" in topics["uplinkTopics"]
    assert "$hw/events/device/+/twin/update/document" in topics["uplinkTopics"]
    assert "$hw/events/device/+/+/twin/update" in topics["downlinkTopics"]
    assert "$hw/events/node/edge-1.lan/membership/updated" in topics["eventTopics"]
    rest = platform["customServicesTransportInfo"][0]
    assert rest["type"] == "REST_HTTP"
    assert rest["endpoint"] == {"uris": ["http://adapter.example:8080/kubeedge_devices/v1"]}

    status, one, _ = await iots.call(
        "GET",
        f"/iots/v1/registered_iot_platforms/{PLATFORM_ID}",
        headers={
            "X-Forwarded-Host": "gw.example:8443",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Prefix": "/kubeedge-devices-edge-1abc",
        },
    )
    assert status == 200
    check(IOT_PLATFORM_INFO, one)
    assert one["customServicesTransportInfo"][0]["endpoint"]["uris"] == [
        "https://gw.example:8443/kubeedge-devices-edge-1abc/kubeedge_devices/v1"
    ]
    status, _, _ = await iots.call("GET", "/iots/v1/registered_iot_platforms/other")
    assert status == 404
    status, _, _ = await iots.call("POST", "/iots/v1/registered_iot_platforms", json={})
    assert status == 403


# ------------------------------------------------------------------ writing


def _device_body(device_id: str, model: str = "thermometer", **labels: str) -> dict[str, Any]:
    return {
        "deviceId": device_id,
        "deviceAuthenticationInfo": "none",
        "deviceMetadata": [{"key": "model", "value": model}]
        + [{"key": f"label:{k}", "value": v} for k, v in labels.items()],
        "requestedIotPlatformId": PLATFORM_ID,
        "enabled": False,
    }


async def test_create_replace_delete_device(iots: Iots) -> None:
    assert iots.crs is not None
    status, body, headers = await iots.call(
        "POST", "/iots/v1/registered_devices", json=_device_body("default/thermo-2", room="hall")
    )
    assert status == 201
    check(DEVICE_INFO, body)
    assert body["enabled"] is True
    assert headers["Location"] == (
        "http://adapter.example:8080/iots/v1/registered_devices/default%2Fthermo-2"
    )
    created = iots.crs.definitions[DeviceId("default", "thermo-2")]
    assert (created.model, created.node) == ("thermometer", "edge-1.lan")
    assert created.labels == {"room": "hall"}
    status, got, _ = await iots.call("GET", "/iots/v1/registered_devices/default/thermo-2")
    assert status == 200
    assert got == body

    status, _, _ = await iots.call(
        "POST", "/iots/v1/registered_devices", json=_device_body("default/thermo-2")
    )
    assert status == 409

    status, body, _ = await iots.call(
        "PUT",
        "/iots/v1/registered_devices/default%2Fthermo-2",
        json=_device_body("default/thermo-2", model="thermo-v2", floor="2"),
    )
    assert status == 200
    check(DEVICE_INFO, body)
    replaced = iots.crs.definitions[DeviceId("default", "thermo-2")]
    assert (replaced.model, replaced.node) == ("thermo-v2", "edge-1.lan")
    assert replaced.labels == {"floor": "2"}
    assert iots.registry.get(DeviceId("default", "thermo-2")) is not None

    status, _, _ = await iots.call(
        "PUT", "/iots/v1/registered_devices/default/thermo-2", json=_device_body("default/x")
    )
    assert status == 400

    status, _, _ = await iots.call("DELETE", "/iots/v1/registered_devices/default/thermo-2")
    assert status == 204
    assert iots.registry.get(DeviceId("default", "thermo-2")) is None
    status, _, _ = await iots.call("DELETE", "/iots/v1/registered_devices/default/thermo-2")
    assert status == 404
    assert [c[0] for c in iots.crs.calls] == ["create", "replace", "delete", "delete"]


@pytest.mark.parametrize(
    "body",
    [
        {"deviceAuthenticationInfo": "x", "deviceMetadata": [{"key": "model", "value": "m"}]},
        {"deviceId": "default/a", "deviceMetadata": [{"key": "model", "value": "m"}]},
        {"deviceId": "default/a", "deviceAuthenticationInfo": "x"},
        {**_device_body("default/a"), "requestedIotPlatformId": "another"},
        {**_device_body("default/a"), "deviceMetadata": [{"key": "colour", "value": "red"}]},
        {**_device_body("default/a"), "deviceId": "a/b/c"},
    ],
)
async def test_invalid_device_bodies(iots: Iots, body: dict[str, Any]) -> None:
    status, _, _ = await iots.call("POST", "/iots/v1/registered_devices", json=body)
    assert status == 400
    assert iots.crs is not None and iots.crs.calls == []


async def test_writes_without_a_kube_source_are_403(read_only: Iots) -> None:
    for method, path, body in [
        ("POST", "/iots/v1/registered_devices", _device_body("default/new")),
        ("PUT", "/iots/v1/registered_devices/default/thermo-1", _device_body("default/thermo-1")),
        ("DELETE", "/iots/v1/registered_devices/default%2Fthermo-1", None),
    ]:
        status, problem, _ = await read_only.call(method, path, json=body)
        assert status == 403
        assert "kube source" in problem["detail"]
    status, _, _ = await read_only.call("GET", "/iots/v1/registered_devices/default/thermo-1")
    assert status == 200
