"""Device, twin and model reads, and desired writes, over HTTP."""

from __future__ import annotations

import pytest

from mep_kubeedge_adapter.api.devices import TWIN_CACHE
from mep_kubeedge_adapter.domain import ErrorKind
from mep_kubeedge_adapter.usecases import UnsupportedWriter
from tests.api.conftest import SWITCH, THERMO, ApiHarness, HarnessFactory, RecordingWriter

BASE = "/kubeedge_devices/v1"
THERMO_PATH = f"{BASE}/devices/default/thermo-1"
TWIN_PATH = f"{THERMO_PATH}/twin"


def _names(body: list[dict[str, object]]) -> list[str]:
    return [f"{d['namespace']}/{d['name']}" for d in body]


# ------------------------------------------------------------------ reads


async def test_list_devices_returns_every_device_with_its_twin(harness: ApiHarness) -> None:
    reply = await harness.call("GET", f"{BASE}/devices")
    assert reply.status == 200
    body = reply.json()
    assert _names(body) == ["default/legacy-2", "default/thermo-1", "plant/switch-1"]
    thermo = body[1]
    assert thermo["model"] == "thermometer"
    assert thermo["node"] == "edge-1"
    assert thermo["labels"] == {"room": "lab", "floor": "1"}
    assert thermo["state"] == "online"
    assert thermo["lastOnlineTime"] == "2026-11-24T10:11:41Z"
    assert thermo["_links"]["self"]["href"] == f"{harness.base}{THERMO_PATH}"
    assert thermo["twin"]["properties"]["temperature"] == {
        "type": "INT",
        "reported": {"value": "23", "timestamp": "2026-11-25T21:11:40.256Z"},
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([("namespace", "plant")], ["plant/switch-1"]),
        ([("namespace", "nowhere")], []),
        ([("model", "thermometer")], ["default/thermo-1"]),
        ([("state", "offline")], ["plant/switch-1"]),
        ([("state", "ONLINE")], ["default/thermo-1"]),
        ([("label", "room=lab")], ["default/thermo-1"]),
        ([("label", "room=lab"), ("label", "floor=1")], ["default/thermo-1"]),
        ([("label", "room=lab"), ("label", "floor=2")], []),
        (
            [("label", "room=hall"), ("namespace", "plant"), ("state", "offline")],
            ["plant/switch-1"],
        ),
        ([("label", "room=")], []),
    ],
)
async def test_list_devices_filters(
    harness: ApiHarness, params: list[tuple[str, str]], expected: list[str]
) -> None:
    reply = await harness.call("GET", f"{BASE}/devices", params=params)
    assert reply.status == 200
    assert _names(reply.json()) == expected


async def test_a_label_filter_without_equals_sign_is_a_bad_request(harness: ApiHarness) -> None:
    reply = await harness.call("GET", f"{BASE}/devices", params=[("label", "room")])
    assert reply.status == 400
    assert "key=value" in reply.json()["detail"]


async def test_read_device(harness: ApiHarness) -> None:
    reply = await harness.call("GET", THERMO_PATH)
    assert reply.status == 200
    body = reply.json()
    assert body["name"] == "thermo-1"
    assert body["twin"]["properties"]["setpoint"]["desired"]["value"] == "21"
    assert body["_links"]["twin"]["href"] == f"{harness.base}{TWIN_PATH}"


async def test_unknown_device_is_a_404_problem(harness: ApiHarness) -> None:
    reply = await harness.call("GET", f"{BASE}/devices/default/ghost")
    assert reply.status == 404
    problem = reply.json()
    assert problem["type"] == "urn:mka:problem:not-found"
    assert problem["instance"] == f"{BASE}/devices/default/ghost"
    assert "default/ghost" in problem["detail"]


async def test_twin_uses_the_model_type_and_falls_back_to_the_twin_type(
    harness: ApiHarness,
) -> None:
    thermo = (await harness.call("GET", TWIN_PATH)).json()
    assert thermo["properties"]["setpoint"]["type"] == "INT"
    legacy = (await harness.call("GET", f"{BASE}/devices/default/legacy-2/twin")).json()
    assert legacy == {"properties": {"level": {"type": "int", "reported": {"value": "7"}}}}
    switch = (await harness.call("GET", f"{BASE}/devices/plant/switch-1/twin")).json()
    assert switch["properties"]["power"] == {
        "type": "BOOLEAN",
        "desired": {"value": "false", "timestamp": "2026-11-25T21:11:41.256Z"},
    }


async def test_twin_etag_and_if_none_match(harness: ApiHarness, writer: RecordingWriter) -> None:
    first = await harness.call("GET", TWIN_PATH)
    etag = first.headers["ETag"]
    assert etag.startswith('"')
    same = await harness.call("GET", TWIN_PATH, headers={"If-None-Match": etag})
    assert same.status == 304
    assert same.body == b""
    assert same.headers["ETag"] == etag
    weak = await harness.call("GET", TWIN_PATH, headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status == 304
    other = await harness.call("GET", TWIN_PATH, headers={"If-None-Match": '"stale"'})
    assert other.status == 200
    await harness.call("PATCH", TWIN_PATH, json_body={"desired": {"setpoint": "22"}})
    changed = await harness.call("GET", TWIN_PATH, headers={"If-None-Match": etag})
    assert changed.status == 200
    assert changed.headers["ETag"] != etag


async def test_device_models(harness: ApiHarness) -> None:
    models = (await harness.call("GET", f"{BASE}/device_models")).json()
    assert [(m["namespace"], m["name"]) for m in models] == [
        ("default", "thermometer"),
        ("plant", "switch"),
    ]
    only = await harness.call("GET", f"{BASE}/device_models", params=[("namespace", "plant")])
    assert [m["name"] for m in only.json()] == ["switch"]
    thermometer = (await harness.call("GET", f"{BASE}/device_models/default/thermometer")).json()
    assert thermometer["protocol"] == "modbus"
    assert thermometer["_links"]["self"]["href"].endswith("/device_models/default/thermometer")
    setpoint = next(p for p in thermometer["properties"] if p["name"] == "setpoint")
    assert setpoint == {
        "name": "setpoint",
        "type": "INT",
        "accessMode": "ReadWrite",
        "unit": "Celsius",
        "description": "target",
        "minimum": "5",
        "maximum": "30",
    }
    missing = await harness.call("GET", f"{BASE}/device_models/default/nothing")
    assert missing.status == 404


# ------------------------------------------------------------------ writes


async def test_patch_writes_desired_values_and_answers_the_new_twin(
    harness: ApiHarness, writer: RecordingWriter
) -> None:
    etag = (await harness.call("GET", TWIN_PATH)).headers["ETag"]
    reply = await harness.call(
        "PATCH",
        TWIN_PATH,
        json_body={"desired": {"setpoint": "24"}},
        content_type="application/merge-patch+json",
        headers={"If-Match": etag},
    )
    assert reply.status == 200, reply.body
    assert reply.json()["properties"]["setpoint"]["desired"]["value"] == "24"
    assert reply.headers["ETag"] != etag
    assert writer.writes == [(THERMO, {"setpoint": ("24", "string")})]
    again = await harness.call("GET", TWIN_PATH)
    assert again.headers["ETag"] == reply.headers["ETag"]


async def test_patch_with_plain_json_and_no_if_match(
    harness: ApiHarness, writer: RecordingWriter
) -> None:
    reply = await harness.call(
        "PATCH", f"{BASE}/devices/plant/switch-1/twin", json_body={"desired": {"power": "true"}}
    )
    assert reply.status == 200
    assert writer.writes == [(SWITCH, {"power": ("true", "boolean")})]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"desired": {"nosuch": "1"}}, "unknown property"),
        ({"desired": {"temperature": "30"}}, "read-only"),
        ({"desired": {"setpoint": "warm"}}, "not int"),
        ({"desired": {"setpoint": "2 1"}}, "desired.setpoint: String should match pattern"),
        ({"desired": {"set point": "21"}}, "desired.set point.[key]"),
        ({"desired": {"setpoint": "1" * 513}}, "desired.setpoint"),
        ({"desired": {"setpoint": 21}}, "desired.setpoint"),
        ({"desired": {"setpoint": None}}, "desired.setpoint"),
        ({"desired": {}}, "desired"),
        ({"desired": "21"}, "desired"),
        ({"wanted": {"setpoint": "21"}}, "wanted"),
        (["desired"], "body"),
    ],
)
async def test_patch_refuses_bad_bodies_before_publishing(
    harness: ApiHarness, writer: RecordingWriter, body: object, detail: str
) -> None:
    reply = await harness.call("PATCH", TWIN_PATH, json_body=body)
    assert reply.status == 400, reply.body
    assert detail in reply.json()["detail"]
    assert writer.writes == []


async def test_patch_refuses_invalid_json(harness: ApiHarness, writer: RecordingWriter) -> None:
    reply = await harness.call(
        "PATCH", TWIN_PATH, data=b'{"desired": {', content_type="application/json"
    )
    assert reply.status == 400
    assert "not JSON" in reply.json()["detail"]
    assert writer.writes == []


async def test_patch_of_unknown_device_is_404(harness: ApiHarness) -> None:
    reply = await harness.call(
        "PATCH", f"{BASE}/devices/default/ghost/twin", json_body={"desired": {"x": "1"}}
    )
    assert reply.status == 404


async def test_patch_with_a_stale_etag_is_412(harness: ApiHarness, writer: RecordingWriter) -> None:
    reply = await harness.call(
        "PATCH",
        TWIN_PATH,
        json_body={"desired": {"setpoint": "22"}},
        headers={"If-Match": '"0123"'},
    )
    assert reply.status == 412
    assert reply.json()["type"] == "urn:mka:problem:precondition-failed"
    assert writer.writes == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_patch_with_another_media_type_is_415(
    harness: ApiHarness, writer: RecordingWriter, content_type: str
) -> None:
    reply = await harness.call(
        "PATCH", TWIN_PATH, data=b'{"desired": {"setpoint": "22"}}', content_type=content_type
    )
    assert reply.status == 415
    assert writer.writes == []


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (ErrorKind.UPSTREAM_REJECTED, 502),
        (ErrorKind.UPSTREAM_TIMEOUT, 504),
        (ErrorKind.UNAVAILABLE, 503),
    ],
)
async def test_patch_reports_eventbus_failures(
    harness: ApiHarness, writer: RecordingWriter, kind: ErrorKind, status: int
) -> None:
    writer.fail_with(kind, f"EdgeCore said {kind.value}")
    reply = await harness.call("PATCH", TWIN_PATH, json_body={"desired": {"setpoint": "22"}})
    assert reply.status == status
    assert reply.json()["detail"] == f"EdgeCore said {kind.value}"
    assert reply.json()["type"] == f"urn:mka:problem:{kind.value}"


async def test_patch_on_the_kube_path_without_a_kube_source_is_501(
    make_harness: HarnessFactory,
) -> None:
    harness = await make_harness(
        api={"write_path": "kube"},
        desired_writer=UnsupportedWriter("the kube write path needs a kube source"),
    )
    reply = await harness.call("PATCH", TWIN_PATH, json_body={"desired": {"setpoint": "22"}})
    assert reply.status == 501
    assert reply.json()["type"] == "urn:mka:problem:not-implemented"


async def test_oversized_body_is_413(make_harness: HarnessFactory, writer: RecordingWriter) -> None:
    harness = await make_harness(api={"max_body": 1024})
    big = {"desired": {"setpoint": "2" * 2000}}
    reply = await harness.call("PATCH", TWIN_PATH, json_body=big)
    assert reply.status == 413
    assert reply.json()["type"] == "urn:mka:problem:too-large"
    assert writer.writes == []


async def test_rendered_twins_are_cached_per_snapshot_and_bounded(harness: ApiHarness) -> None:
    registry = harness.deps.registry
    cache = harness.client.app[TWIN_CACHE]
    first = await harness.call("GET", TWIN_PATH)
    again = await harness.call("GET", TWIN_PATH)
    assert again.body == first.body
    assert again.headers["ETag"] == first.headers["ETag"]
    for device in registry.devices():
        path = f"{BASE}/devices/{device.id.namespace}/{device.id.name}/twin"
        assert (await harness.call("GET", path)).status == 200
    assert len(cache) == len(registry)
    registry.remove_spec(THERMO)
    registry.remove_member(THERMO)
    registry.remove_spec(SWITCH)
    registry.remove_member(SWITCH)
    assert len(registry) < len(cache)
    for device in registry.devices():
        path = f"{BASE}/devices/{device.id.namespace}/{device.id.name}/twin"
        assert (await harness.call("GET", path)).status == 200
    assert len(cache) <= len(registry) + 1
