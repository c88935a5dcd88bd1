"""EdgeCore emulator against the real EdgeCore v1.23.1 capture, plus the documented rules."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from mep_kubeedge_adapter.emulators import edgecore as edgecore_module
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.edgecore import (
    DeviceTwinModule,
    EdgeCoreEmulator,
    EmulatedDevice,
    Twin,
    TwinValue,
    TwinVersion,
    load_devices,
    parse_devices,
)

from .conftest import MqttProbe

DATA = Path(__file__).parent / "data"
CAPTURE = DATA / "edgecore-v1.23.1-capture.txt"
DEMO_DEVICES = Path(__file__).parents[2] / "mep_kubeedge_adapter" / "demo_devices.yaml"
REQUEST_SUFFIXES = (
    "/twin/update",
    "/twin/get",
    "/twin/cloud_updated",
    "/state/update",
    "/membership/get",
)
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
T = "$hw/events/device/default/thermo-1"
EMPTY_ID_RESULT = "$hw/events/device//twin/update/result"

Line = tuple[str, Any]
EmulatorFactory = Callable[..., AbstractAsyncContextManager[EdgeCoreEmulator]]


def _is_uuid(text: object) -> bool:
    try:
        uuid.UUID(str(text))
    except ValueError:
        return False
    return True


def _is_request(topic: str, payload: dict[str, Any]) -> bool:
    """Requests are what the test client published; EdgeCore's own events carry a uuid."""
    if topic.endswith(REQUEST_SUFFIXES):
        return True
    return topic.endswith("/membership/updated") and not _is_uuid(payload.get("event_id"))


def read_capture() -> list[list[Line]]:
    sessions: list[list[Line]] = []
    for raw in CAPTURE.read_text(encoding="utf-8").splitlines():
        if raw.startswith("# session"):
            sessions.append([])
        elif raw and not raw.startswith("#"):
            topic, _, payload = raw.partition(" ")
            sessions[-1].append((topic, json.loads(payload)))
    return sessions


def assert_like_capture(expected: Any, actual: Any, where: str = "$") -> None:
    """Equal up to EdgeCore's clock and generated ids: those only need the right shape."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not an object"
        assert sorted(actual) == sorted(expected), f"{where}: keys {sorted(actual)}"
        for key, value in expected.items():
            child = f"{where}.{key}"
            if key == "timestamp" and isinstance(value, int) and value > 10**12:
                assert isinstance(actual[key], int), f"{child}: not an int"
                assert actual[key] > 10**12, f"{child}: not a ms timestamp"
            elif key == "event_id" and _is_uuid(value):
                assert _is_uuid(actual[key]), f"{child}: {actual[key]!r} is not a uuid"
            elif key == "lastOnlineTime":
                assert RFC3339_UTC.match(actual[key]), f"{child}: {actual[key]!r}"
            else:
                assert_like_capture(value, actual[key], child)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{where}: {actual!r}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert_like_capture(want, got, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


@pytest.fixture
def edgecore(broker: MosquittoBroker) -> EmulatorFactory:
    def make(**options: Any) -> AbstractAsyncContextManager[EdgeCoreEmulator]:
        options.setdefault("node_name", "test-node")
        return EdgeCoreEmulator(broker.host, broker.port, reconnect_interval=0.05, **options)

    return make


def thermo(**twins: Twin) -> EmulatedDevice:
    return EmulatedDevice("default", "thermo-1", "local test device", dict(twins))


# --------------------------------------------------------------------------------------------
# The capture, replayed


@pytest.mark.parametrize("session", [1, 2])
async def test_replays_the_edgecore_capture(
    session: int, edgecore: EmulatorFactory, probe: MqttProbe
) -> None:
    lines = read_capture()[session - 1]
    devices = load_devices(DATA / f"capture-session-{session}-devices.yaml")
    async with edgecore(devices=devices):
        index = 0
        while index < len(lines):
            topic, request = lines[index]
            assert _is_request(topic, request), f"line {index} is not a request: {topic}"
            index += 1
            expected: list[Line] = []
            while index < len(lines) and not _is_request(*lines[index]):
                expected.append(lines[index])
                index += 1
            received = await probe.request(topic, request, len(expected))
            for (want_topic, want), (got_topic, got) in zip(expected, received, strict=True):
                assert got_topic == want_topic, f"after {request}: {got_topic} != {want_topic}"
                assert_like_capture(want, got, f"{got_topic}")
        await probe.assert_quiet()


# --------------------------------------------------------------------------------------------
# twin/update rules


@pytest.fixture
async def served(edgecore: EmulatorFactory) -> AsyncIterator[EdgeCoreEmulator]:
    temperature = Twin(
        type="int",
        expected=TwinValue("25", 1),
        actual=TwinValue("25", 1),
        expected_version=TwinVersion(),
        actual_version=TwinVersion(),
    )
    async with edgecore(devices=[thermo(temperature=temperature)]) as emulator:
        yield emulator


def update(**twins: Any) -> dict[str, Any]:
    return {"event_id": "u", "timestamp": 1, "twin": twins}


def actual(value: str, twin_type: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"actual": {"value": value}}
    if twin_type is not None:
        entry["metadata"] = {"type": twin_type}
    return entry


@pytest.mark.parametrize(
    ("request_body", "reason"),
    [
        (b"{not json", "Unmarshal update request body failed, please check the request"),
        (b'{"event_id":"x","twin":{"a":{"actual":{"value":21}}}}', "Unmarshal update request"),
        (b'{"event_id":"x","timestamp":1}', "Update twin error, key:twin does not exist"),
        (json.dumps(update(**{"bad key": actual("1")})).encode(), "The key of twin must only"),
        (json.dumps(update(t=actual("1e+05"))).encode(), "The value of twin must only"),
        (json.dumps(update(t=actual("a b"))).encode(), "The value of twin must only"),
        (json.dumps(update(t=actual("x" * 513))).encode(), "The value of twin must only"),
        (json.dumps(update(**{"k" * 129: actual("1")})).encode(), "The key of twin must only"),
    ],
)
async def test_undecodable_updates_are_answered_on_the_empty_id_topic(
    served: EdgeCoreEmulator, probe: MqttProbe, request_body: bytes, reason: str
) -> None:
    [(topic, body)] = await probe.request(f"{T}/twin/update", request_body, 1)
    assert topic == EMPTY_ID_RESULT
    assert body["event_id"] == ""
    assert body["code"] == 400
    assert body["reason"].startswith(reason)
    await probe.assert_quiet()


@pytest.mark.parametrize(
    ("twins", "reason"),
    [
        ({"temperature": actual("21.5")}, "the value is not int or integer"),
        ({"new": actual("1", "double")}, "the value type is not allowed"),
        ({"new": actual("abc", "float")}, "the value is not float"),
        ({"new": actual("yes", "boolean")}, "the bool value must be true or false"),
        ({"new": actual("1", "integer"), "temperature": actual("x")}, "not int or integer"),
    ],
)
async def test_type_errors_reject_the_whole_request(
    served: EdgeCoreEmulator, probe: MqttProbe, twins: dict[str, Any], reason: str
) -> None:
    [(topic, body)] = await probe.request(f"{T}/twin/update", update(**twins), 1)
    assert topic == f"{T}/twin/update/result"
    assert body["event_id"] == "u"
    assert body["code"] == 400
    assert reason in body["reason"]
    [(_, got)] = await probe.request(f"{T}/twin/get", {"event_id": "g"}, 1)
    assert list(got["twin"]) == ["temperature"]
    assert got["twin"]["temperature"]["actual"]["value"] == "25"


async def test_valid_types_are_accepted(served: EdgeCoreEmulator, probe: MqttProbe) -> None:
    twins = {
        "i": actual("-42", "integer"),
        "f": actual("22.50", "float"),
        "b": actual("false", "boolean"),
        "s": actual("a-b_c.d,e:f/g@h#i", "string"),
        "u": actual("anything"),
        "e": actual("", ""),
    }
    [(topic, body), (doc_topic, doc)] = await probe.request(f"{T}/twin/update", update(**twins), 2)
    assert topic == f"{T}/twin/update/result"
    assert sorted(body["twin"]) == sorted(twins)
    assert body["twin"]["u"]["metadata"] == {"type": "string"}
    assert doc_topic == f"{T}/twin/update/document"
    assert all(entry["last"] is None for entry in doc["twin"].values())
    await probe.assert_quiet()


async def test_unknown_device_gets_404s(served: EdgeCoreEmulator, probe: MqttProbe) -> None:
    nope = "$hw/events/device/default/nope"
    [(topic, body)] = await probe.request(f"{nope}/twin/update", update(t=actual("1")), 1)
    assert topic == f"{nope}/twin/update/result"
    assert body == {
        "event_id": "u",
        "timestamp": body["timestamp"],
        "code": 404,
        "reason": "Update rejected due to the device is not existed",
    }
    [(topic, body)] = await probe.request(f"{nope}/twin/get", {"event_id": "g"}, 1)
    assert topic == f"{nope}/twin/get/result"
    assert body["code"] == 404
    assert body["reason"] == "Device default/nope not found while getting twin"


async def test_delta_compares_strings_exactly(edgecore: EmulatorFactory, probe: MqttProbe) -> None:
    setpoint = Twin(type="float", expected=TwinValue("22", 1), expected_version=TwinVersion())
    other = Twin(type="int", expected=TwinValue("1", 1), actual=TwinValue("1", 1))
    async with edgecore(devices=[thermo(setpoint=setpoint, other=other)]):
        sent = update(setpoint=actual("22.0", "Updated"))
        _, _, (topic, delta) = await probe.request(f"{T}/twin/update", sent, 3)
        assert topic == f"{T}/twin/update/delta"
        assert delta["delta"] == {"setpoint": "22"}
        assert sorted(delta["twin"]) == ["other", "setpoint"]
        assert _is_uuid(delta["event_id"])
        assert "expected_version" not in delta["twin"]["setpoint"]
        await probe.request(f"{T}/twin/update", update(setpoint=actual("22")), 2)
        await probe.assert_quiet()


async def test_every_report_is_a_change_and_type_is_kept(
    served: EdgeCoreEmulator, probe: MqttProbe
) -> None:
    for _ in range(2):
        result, document, _delta = await probe.request(
            f"{T}/twin/update", update(temperature=actual("24", "string")), 3
        )
        assert result[1]["twin"]["temperature"]["metadata"] == {"type": "int"}
        assert document[1]["twin"]["temperature"]["current"]["actual"]["value"] == "24"


async def test_delete_optional_twin(served: EdgeCoreEmulator, probe: MqttProbe) -> None:
    await probe.request(f"{T}/twin/update", update(extra=actual("1", "int")), 2)
    (_, result), (_, document) = await probe.request(f"{T}/twin/update", update(extra=None), 2)
    assert result["twin"] == {"extra": None}
    assert document["twin"]["extra"]["current"] is None
    assert document["twin"]["extra"]["last"]["actual"]["value"] == "1"
    [(_, got)] = await probe.request(f"{T}/twin/get", {"event_id": "g"}, 1)
    assert list(got["twin"]) == ["temperature"]
    # A deleted twin takes the type of its next write.
    (_, result), (_, document) = await probe.request(
        f"{T}/twin/update", update(extra=actual("on", "string")), 2
    )
    assert result["twin"]["extra"]["metadata"] == {"type": "string"}
    assert document["twin"]["extra"]["last"] is None


async def test_edge_app_expected_write_produces_delta(
    served: EdgeCoreEmulator, probe: MqttProbe
) -> None:
    sent = update(temperature={"expected": {"value": "30"}, "actual": {"value": "25"}})
    (_, result), _, (_, delta) = await probe.request(f"{T}/twin/update", sent, 3)
    assert set(result["twin"]["temperature"]) == {"expected", "actual", "optional", "metadata"}
    assert delta["delta"] == {"temperature": "30"}


async def test_twin_get_without_twins_is_empty(edgecore: EmulatorFactory, probe: MqttProbe) -> None:
    async with edgecore(devices=[thermo()]):
        [(topic, body)] = await probe.request(f"{T}/twin/get", "{}", 1)
        assert topic == f"{T}/twin/get/result"
        assert body["twin"] == {}
        assert body["event_id"] == ""


# --------------------------------------------------------------------------------------------
# Topic layouts


async def test_legacy_layout(edgecore: EmulatorFactory, probe: MqttProbe) -> None:
    async with edgecore(devices=[thermo()], topic_layout="legacy"):
        legacy = "$hw/events/device/thermo-1"
        await probe.publish(f"{T}/twin/update", update(t=actual("1")))
        (topic, _), _ = await probe.request(f"{legacy}/twin/update", update(t=actual("1")), 2)
        assert topic == f"{legacy}/twin/update/result"
        [(_, members)] = await probe.request(
            "$hw/events/node/test-node/membership/get", {"event_id": "m"}, 1
        )
        assert members["devices"][0]["id"] == "thermo-1"
        await probe.assert_quiet("quiet-check")


async def test_namespaced_layout_ignores_single_level_ids(
    served: EdgeCoreEmulator, probe: MqttProbe
) -> None:
    await probe.publish("$hw/events/device/thermo-1/twin/update", update(t=actual("1")))
    await probe.publish("$hw/events/device/thermo-1/twin/get", {"event_id": "g"})
    await probe.publish("$hw/events/device/default/thermo-1/twin/edge_updated", update())
    await probe.assert_quiet()


# --------------------------------------------------------------------------------------------
# State and membership


async def test_state_updates(served: EdgeCoreEmulator, probe: MqttProbe) -> None:
    [(topic, body)] = await probe.request(f"{T}/state/update", {"state": "OFFLINE"}, 1)
    assert topic == f"{T}/state/update/result"
    assert body["device"] == {"name": "thermo-1", "state": "OFFLINE"}
    assert _is_uuid(body["event_id"])
    await probe.publish(f"{T}/state/update", {"state": "disconnected"})
    await probe.publish("$hw/events/device/default/nope/state/update", {"state": "online"})
    await probe.assert_quiet()
    [(_, body)] = await probe.request(f"{T}/state/update", {"state": "ok"}, 1)
    assert RFC3339_UTC.match(body["device"]["lastOnlineTime"])
    [(_, members)] = await probe.request(
        "$hw/events/node/other/membership/get", {"event_id": "m"}, 1
    )
    assert members["devices"][0]["state"] == "ok"
    assert RFC3339_UTC.match(members["devices"][0]["last_online"])


async def test_membership_get_answers_on_its_own_node(
    served: EdgeCoreEmulator, probe: MqttProbe
) -> None:
    [(topic, body)] = await probe.request(
        "$hw/events/node/someone-else/membership/get", {"event_id": "m1"}, 1
    )
    assert topic == "$hw/events/node/test-node/membership/get/result"
    assert body["event_id"] == "m1"
    assert body["devices"] == [
        {"id": "default/thermo-1", "name": "thermo-1", "description": "local test device"}
    ]


async def test_membership_updated_adds_and_removes(
    served: EdgeCoreEmulator, probe: MqttProbe
) -> None:
    node = "$hw/events/node/test-node/membership/updated"
    pump = {"id": "default/pump-1", "name": "pump-1"}
    [(topic, body)] = await probe.request(node, {"event_id": "a", "added_devices": [pump]}, 1)
    assert topic == node
    assert body["added_devices"] == [pump]
    assert body["removed_devices"] is None
    assert _is_uuid(body["event_id"])
    [(_, got)] = await probe.request(
        "$hw/events/device/default/pump-1/twin/get", {"event_id": "g"}, 1
    )
    assert got["twin"] == {}
    [(_, body)] = await probe.request(node, {"event_id": "r", "removed_devices": [pump]}, 1)
    assert body["added_devices"] is None
    assert body["removed_devices"] == [pump]
    [(_, got)] = await probe.request(
        "$hw/events/device/default/pump-1/twin/get", {"event_id": "g"}, 1
    )
    assert got["code"] == 404
    await probe.assert_quiet()


async def test_cloud_update_helper_and_versions(served: EdgeCoreEmulator, probe: MqttProbe) -> None:
    await served.cloud_update("default/thermo-1", {"temperature": "27"})
    (topic, document), (_, delta) = await probe.take(2)
    assert topic == f"{T}/twin/update/document"
    assert document["twin"]["temperature"]["current"]["expected"]["value"] == "27"
    assert delta["delta"] == {"temperature": "27"}
    # A cloud sync without versions, or with a stale cloud version, is refused silently.
    entry: dict[str, Any] = {"expected": {"value": "1"}, "metadata": {"type": "int"}}
    await probe.publish(f"{T}/twin/cloud_updated", {"twin": {"temperature": entry}})
    entry["expected_version"] = {"cloud": 0, "edge": 0}
    await probe.publish(f"{T}/twin/cloud_updated", {"twin": {"temperature": entry}})
    # No document for a refusal, but EdgeCore still sends the device's delta each time.
    for topic, delta in await probe.take(2):
        assert topic == f"{T}/twin/update/delta"
        assert delta["delta"] == {"temperature": "27"}
    await probe.assert_quiet()


async def test_silent_emulator_publishes_nothing(
    served: EdgeCoreEmulator, probe: MqttProbe
) -> None:
    served.silent = True
    await probe.publish(f"{T}/twin/get", {"event_id": "lost"})
    served.silent = False
    await probe.assert_quiet()


async def test_reconnects_after_broker_restart(
    broker: MosquittoBroker, served: EdgeCoreEmulator
) -> None:
    await broker.stop()
    await broker.start()
    await served.wait_ready(timeout=5)
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(f"{T}/twin/get/result", qos=1)
        await client.publish(f"{T}/twin/get", b'{"event_id":"after"}', qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            assert json.loads(message.payload)["event_id"] == "after"
            break


# --------------------------------------------------------------------------------------------
# Pure pieces


def test_device_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_text(
        json.dumps(
            {
                "devices": [
                    {
                        "name": "valve-1",
                        "twins": {"open": {"type": "boolean", "actual": False, "simulate": {}}},
                    }
                ]
            }
        )
    )
    [device] = load_devices(path)
    assert device.namespace == "default"
    assert device.twins["open"].actual is not None
    assert device.twins["open"].actual.value == "false"
    with pytest.raises(ValueError, match="not int or integer"):
        parse_devices([{"name": "x", "twins": {"t": {"type": "int", "actual": "1.5"}}}])
    with pytest.raises(ValueError, match="'name' is required"):
        parse_devices({"devices": [{"namespace": "default"}]})


def test_module_never_publishes_versions() -> None:
    module = DeviceTwinModule("n", [thermo()], clock_ms=lambda: 1_800_000_000_000)
    topic = f"{T}/twin/cloud_updated"
    payload = module.cloud_update_payload("default/thermo-1", {"mode": "eco"})
    outputs = module.handle(topic, payload)
    assert [p.topic for p in outputs] == [f"{T}/twin/update/document", f"{T}/twin/update/delta"]
    assert all(b"version" not in p.encode() for p in outputs)


async def test_cli_run_serves_the_device_file(broker: MosquittoBroker, probe: MqttProbe) -> None:
    parser = argparse.ArgumentParser()
    edgecore_module.add_arguments(parser)
    args = parser.parse_args(
        ["--mqtt-url", broker.url, "--node-name", "lab", "--devices", str(DEMO_DEVICES)]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(edgecore_module.run(args, stop))
    try:
        while True:
            await probe.publish("$hw/events/node/lab/membership/get", {"event_id": "cli"})
            try:
                _, body = await probe.next(timeout=0.5)
                break
            except TimeoutError:
                continue  # not subscribed yet
        assert [d["id"] for d in body["devices"]] == [
            "default/pump-1",
            "default/thermo-1",
            "default/valve-1",
        ]
    finally:
        stop.set()
        await task
