"""The pure CR codecs: sample CRs, hand-written CRs of each version, wrong shapes, patches."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from mep_kubeedge_adapter.domain import DeviceDefinition, DeviceId
from mep_kubeedge_adapter.emulators.kubeapi.patching import PatchFailed, apply_json_patch
from mep_kubeedge_adapter.kubeedge.crds import (
    DeviceCR,
    InvalidCR,
    TwinValue,
    UnknownProperty,
    decode_device,
    decode_device_model,
    decode_device_status,
    desired_value_patch,
    new_device,
    redefined_device,
)

from .conftest import load_yaml

G = "devices.kubeedge.io"


def v1beta1_device() -> dict[str, Any]:
    """A v1.18-v1.22 style Device: twins, state and lastOnlineTime in its status."""
    return {
        "apiVersion": f"{G}/v1beta1",
        "kind": "Device",
        "metadata": {
            "name": "thermo-01",
            "namespace": "plant",
            "resourceVersion": "42",
            "labels": {"description": "boiler sensor", "room": "b1"},
        },
        "spec": {
            "deviceModelRef": {"name": "thermo"},
            "nodeName": "edge-node-1",
            "protocol": {"protocolName": "modbus", "configData": {"port": "5502"}},
            "properties": [
                {"name": "temperature", "reportToCloud": True},
                {
                    "name": "setpoint",
                    "desired": {"value": "22", "metadata": {"type": "int", "timestamp": "17"}},
                },
            ],
        },
        "status": {
            "state": "online",
            "lastOnlineTime": "2026-08-06T07:00:00Z",
            "twins": [
                {
                    "propertyName": "temperature",
                    "reported": {
                        "value": "21.5",
                        "metadata": {"timestamp": "1754460010003", "type": "string"},
                    },
                    "observedDesired": {"value": "", "metadata": {"timestamp": "1754460010003"}},
                },
                {"propertyName": "gone", "reported": {"value": "1"}},
            ],
        },
    }


def v1alpha2_device() -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/v1alpha2",
        "kind": "Device",
        "metadata": {"name": "led", "namespace": "default", "resourceVersion": "7"},
        "spec": {
            "deviceModelRef": {"name": "led-light"},
            "protocol": {"customizedProtocol": {"protocolName": "gpio-x"}},
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "", "operator": "In", "values": ["edge-a"]}]}
                ]
            },
        },
        "status": {
            "twins": [
                {
                    "propertyName": "power-status",
                    "desired": {"value": "ON", "metadata": {"type": "string"}},
                    "reported": {
                        "value": "OFF",
                        "metadata": {"timestamp": "1600000000000", "type": "string"},
                    },
                },
                {"propertyName": "gpio-pin-number"},
            ]
        },
    }


# -------------------------------------------------------------------------------- samples


def test_sample_v1beta1_device() -> None:
    dev = decode_device(load_yaml("samples/v1beta1_temperature-instance.yaml"))
    assert (dev.api_version, dev.namespace, dev.name) == (
        "v1beta1",
        "default",
        "temperature-instance",
    )
    assert (dev.model, dev.node, dev.protocol) == ("temperature-model", "kind-worker", "modbus")
    assert [p.name for p in dev.properties] == ["temperature", "temperature-switch"]
    switch = dev.property("temperature-switch")
    assert switch is not None
    assert switch.desired == TwinValue(value="1")
    assert dev.property("temperature") is not None
    assert dev.property("temperature").desired is None  # type: ignore[union-attr]
    assert dev.state is None


def test_sample_v1alpha2_device() -> None:
    dev = decode_device(load_yaml("samples/v1alpha2_led-light-device-instance.yaml"))
    assert dev.api_version == "v1alpha2"
    assert (dev.model, dev.node, dev.protocol) == ("led-light", "edge-node1", None)
    assert dev.description == "LEDLight"
    assert dev.labels == {"description": "LEDLight", "model": "led-light"}
    assert [p.name for p in dev.properties] == ["power-status"]
    assert dev.properties[0].desired is None


def test_sample_models() -> None:
    beta = decode_device_model(load_yaml("samples/v1beta1_temperature-model.yaml"))
    assert beta.protocol == "modbus"
    temp = beta.property("temperature")
    assert temp is not None
    assert (temp.type, temp.access_mode, temp.unit, temp.minimum, temp.maximum) == (
        "FLOAT",
        "ReadWrite",
        "Celsius",
        "0",
        "100.0",
    )
    assert temp.description == "actual temperature"

    alpha = decode_device_model(load_yaml("samples/v1alpha2_led-light-device-model.yaml"))
    power, pin = alpha.properties
    assert (power.name, power.type, power.access_mode, power.default_value) == (
        "power-status",
        "STRING",
        "ReadWrite",
        "OFF",
    )
    assert (pin.type, pin.access_mode, pin.default_value) == ("INT", "ReadOnly", "18")


# -------------------------------------------------------------------------------- hand-written


def test_v1beta1_device_with_status_twins() -> None:
    dev = decode_device(v1beta1_device())
    assert dev.resource_version == "42"
    assert dev.description == "boiler sensor"
    assert (dev.state, dev.last_online_time) == ("online", "2026-08-06T07:00:00Z")
    assert [p.name for p in dev.properties] == ["temperature", "setpoint"]  # "gone" dropped
    temp = dev.properties[0]
    assert temp.reported == TwinValue(
        value="21.5",
        timestamp_ms=1754460010003,
        type="string",
        metadata={"timestamp": "1754460010003", "type": "string"},
    )
    assert temp.observed_desired is not None
    assert temp.observed_desired.value == ""
    setpoint = dev.properties[1]
    assert setpoint.desired is not None
    assert (setpoint.desired.value, setpoint.desired.type, setpoint.desired.timestamp_ms) == (
        "22",
        "int",
        17,
    )
    assert setpoint.reported is None


def test_v1alpha2_device_with_desired_and_reported() -> None:
    dev = decode_device(v1alpha2_device())
    assert (dev.node, dev.protocol) == ("edge-a", "gpio-x")
    power = dev.properties[0]
    assert power.desired == TwinValue(value="ON", type="string", metadata={"type": "string"})
    assert power.reported is not None
    assert power.reported.timestamp_ms == 1600000000000
    assert dev.properties[1].desired is None


def test_v1alpha2_protocol_key_and_missing_selector() -> None:
    obj = v1alpha2_device()
    obj["spec"]["protocol"] = {"modbus": {"slaveID": 1}, "common": {"com": {}}}
    del obj["spec"]["nodeSelector"]
    dev = decode_device(obj)
    assert (dev.protocol, dev.node) == ("modbus", None)


def test_decoded_models_are_frozen() -> None:
    dev = decode_device(v1beta1_device())
    with pytest.raises(ValueError, match="frozen"):
        dev.name = "other"  # type: ignore[misc]


def test_device_status() -> None:
    status = decode_device_status(
        {
            "apiVersion": f"{G}/v1beta1",
            "kind": "DeviceStatus",
            "metadata": {"name": "thermo-01", "namespace": "plant", "resourceVersion": "9"},
            "spec": {},
            "status": {
                "state": "offline",
                "lastOnlineTime": "2026-08-06T07:00:00Z",
                "extensions": {"anything": {"goes": 1}},
                "twins": [
                    {
                        "propertyName": "temperature",
                        "reported": {
                            "value": "21.5",
                            "metadata": {"timestamp": "1754460010003", "type": "string"},
                        },
                        "observedDesired": {"value": "22", "metadata": {"timestamp": "5"}},
                    }
                ],
            },
        }
    )
    assert (status.namespace, status.name, status.state) == ("plant", "thermo-01", "offline")
    twin = status.twins[0]
    assert twin.property_name == "temperature"
    assert twin.reported is not None
    assert twin.reported.timestamp_ms == 1754460010003
    assert twin.observed_desired is not None
    assert (twin.observed_desired.value, twin.observed_desired.timestamp_ms) == ("22", 5)


def test_device_status_without_status() -> None:
    status = decode_device_status(
        {"apiVersion": f"{G}/v1beta1", "kind": "DeviceStatus", "metadata": {"name": "x"}}
    )
    assert status.twins == ()
    assert status.state is None


# -------------------------------------------------------------------------------- wrong shapes


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or with ``...`` delete) a dotted path, list indices as numbers."""
    node: Any = obj
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return obj


BAD_DEVICES: list[tuple[str, Any, Any, str]] = [
    ("v1beta1", "apiVersion", "devices.kubeedge.io/v1", "unsupported apiVersion"),
    ("v1beta1", "apiVersion", ..., "unsupported apiVersion"),
    ("v1beta1", "kind", "DeviceModel", "kind is 'DeviceModel'"),
    ("v1beta1", "metadata", ..., "metadata is required"),
    ("v1beta1", "metadata.name", ..., "metadata.name is required"),
    ("v1beta1", "metadata.name", 5, "metadata.name must be a string"),
    ("v1beta1", "metadata.labels", {"a": 1}, "metadata.labels must map strings"),
    ("v1beta1", "spec", ..., "spec is required"),
    ("v1beta1", "spec", [], "spec must be an object"),
    ("v1beta1", "spec.deviceModelRef", ..., "spec.deviceModelRef.name is required"),
    ("v1beta1", "spec.deviceModelRef.name", "", "spec.deviceModelRef.name must not be empty"),
    ("v1beta1", "spec.nodeName", 3, "spec.nodeName must be a string"),
    ("v1beta1", "spec.protocol", "modbus", "spec.protocol must be an object"),
    ("v1beta1", "spec.properties", {}, "spec.properties must be a list"),
    ("v1beta1", "spec.properties.0", "temperature", "spec.properties[0] must be an object"),
    ("v1beta1", "spec.properties.0.name", ..., "spec.properties[0].name is required"),
    ("v1beta1", "spec.properties.1.name", "temperature", "declared twice"),
    ("v1beta1", "spec.properties.1.desired.value", 22, "desired.value must be a string"),
    ("v1beta1", "spec.properties.1.desired.metadata", "x", "desired.metadata must be an object"),
    ("v1beta1", "status", "ok", "status must be an object"),
    ("v1beta1", "status.twins", {}, "status.twins must be a list"),
    ("v1beta1", "status.twins.0.propertyName", ..., "propertyName is required"),
    (
        "v1beta1",
        "status.twins.0.reported.metadata.timestamp",
        "yesterday",
        "timestamp must be milliseconds",
    ),
    (
        "v1beta1",
        "status.twins.0.reported.metadata.timestamp",
        "100000000000000000",
        "timestamp must be milliseconds between",
    ),
    (
        "v1beta1",
        "spec.properties.1.desired.metadata.timestamp",
        "-1",
        "timestamp must be milliseconds between",
    ),
    ("v1beta1", "status.state", 1, "status.state must be a string"),
    ("v1alpha2", "spec.nodeSelector.nodeSelectorTerms", {}, "nodeSelectorTerms must be a list"),
    (
        "v1alpha2",
        "spec.nodeSelector.nodeSelectorTerms.0.matchExpressions.0.values",
        "edge",
        "values must be a list",
    ),
    (
        "v1alpha2",
        "spec.protocol",
        {"modbus": {}, "opcua": {}},
        "more than one protocol",
    ),
    ("v1alpha2", "status.twins.1.propertyName", "power-status", "listed twice"),
]


@pytest.mark.parametrize(("version", "path", "value", "message"), BAD_DEVICES)
def test_invalid_device(version: str, path: str, value: Any, message: str) -> None:
    obj = _set(v1beta1_device() if version == "v1beta1" else v1alpha2_device(), path, value)
    with pytest.raises(InvalidCR, match=re.escape(message)) as exc:
        decode_device(obj)
    assert isinstance(exc.value, ValueError)


def test_invalid_cr_names_the_object() -> None:
    with pytest.raises(InvalidCR) as exc:
        decode_device(_set(v1beta1_device(), "spec.nodeName", 3))
    assert (exc.value.kind, exc.value.namespace, exc.value.name) == ("Device", "plant", "thermo-01")
    assert "Device plant/thermo-01" in str(exc.value)


@pytest.mark.parametrize("obj", [None, [], "Device", 3])
def test_not_an_object(obj: Any) -> None:
    with pytest.raises(InvalidCR, match="expected an object"):
        decode_device(obj)


BAD_MODELS: list[tuple[dict[str, Any], str]] = [
    ({"type": "NUMBER"}, "type must be one of"),
    ({"type": "INT", "accessMode": "WriteOnly"}, "accessMode must be ReadWrite or ReadOnly"),
    ({"type": "INT", "minimum": [1]}, "minimum must be a number or string"),
    ({"type": "INT", "description": 5}, "description must be a string"),
]


@pytest.mark.parametrize(("prop", "message"), BAD_MODELS)
def test_invalid_v1beta1_model(prop: dict[str, Any], message: str) -> None:
    model = load_yaml("samples/v1beta1_temperature-model.yaml")
    model["spec"]["properties"][0] = {"name": "temperature", **prop}
    with pytest.raises(InvalidCR, match=message):
        decode_device_model(model)


@pytest.mark.parametrize(
    ("type_", "message"),
    [
        ({}, "exactly one of"),
        ({"int": {}, "float": {}}, "exactly one of"),
        ({"decimal": {}}, "exactly one of"),
        ("int", "type must be an object"),
        (None, "type is required"),
        ({"int": {"accessMode": "Sometimes"}}, "accessMode must be ReadWrite or ReadOnly"),
    ],
)
def test_invalid_v1alpha2_model(type_: Any, message: str) -> None:
    model = load_yaml("samples/v1alpha2_led-light-device-model.yaml")
    model["spec"]["properties"][0]["type"] = type_
    with pytest.raises(InvalidCR, match=message):
        decode_device_model(model)


def test_v1alpha2_model_numbers_become_text() -> None:
    model = load_yaml("samples/v1alpha2_led-light-device-model.yaml")
    model["spec"]["properties"][1]["type"] = {
        "double": {"accessMode": "ReadOnly", "minimum": 0.5, "maximum": 10, "unit": "V"}
    }
    prop = decode_device_model(model).properties[1]
    assert (prop.type, prop.minimum, prop.maximum, prop.unit) == ("DOUBLE", "0.5", "10", "V")


def test_device_model_rejects_a_device() -> None:
    with pytest.raises(InvalidCR, match="kind is 'Device'"):
        decode_device_model(v1beta1_device())


def test_device_status_rejects_bad_twins() -> None:
    with pytest.raises(InvalidCR, match=r"status.twins\[0\].reported.value must be a string"):
        decode_device_status(
            {
                "apiVersion": f"{G}/v1beta1",
                "kind": "DeviceStatus",
                "metadata": {"name": "x", "namespace": "default"},
                "status": {"twins": [{"propertyName": "t", "reported": {"value": 1}}]},
            }
        )


# -------------------------------------------------------------------------------- patches


def _desired(dev: DeviceCR, name: str) -> str | None:
    prop = dev.property(name)
    assert prop is not None
    return prop.desired.value if prop.desired else None


def test_v1beta1_patch_sets_and_creates_desired() -> None:
    obj = v1beta1_device()
    patch = desired_value_patch(obj, {"setpoint": "23", "temperature": "20"})
    assert patch == [
        {"op": "test", "path": "/spec/properties/1/name", "value": "setpoint"},
        {"op": "add", "path": "/spec/properties/1/desired/value", "value": "23"},
        {"op": "test", "path": "/spec/properties/0/name", "value": "temperature"},
        {"op": "add", "path": "/spec/properties/0/desired", "value": {"value": "20"}},
    ]
    patched = decode_device(apply_json_patch(obj, patch))
    assert _desired(patched, "setpoint") == "23"
    assert _desired(patched, "temperature") == "20"
    setpoint = patched.property("setpoint")
    assert setpoint is not None
    assert setpoint.desired is not None
    assert setpoint.desired.type == "int"  # metadata kept


def test_v1alpha2_patch_targets_status_twins() -> None:
    obj = v1alpha2_device()
    patch = desired_value_patch(obj, {"gpio-pin-number": "17", "power-status": "OFF"})
    assert patch[0] == {
        "op": "test",
        "path": "/status/twins/1/propertyName",
        "value": "gpio-pin-number",
    }
    patched = decode_device(apply_json_patch(obj, patch))
    assert _desired(patched, "gpio-pin-number") == "17"
    assert _desired(patched, "power-status") == "OFF"


def test_patch_is_refused_after_a_reorder() -> None:
    obj = v1beta1_device()
    patch = desired_value_patch(obj, {"setpoint": "23"})
    reordered = copy.deepcopy(obj)
    reordered["spec"]["properties"].reverse()
    with pytest.raises(PatchFailed, match="test failed"):
        apply_json_patch(reordered, patch)


def test_patch_unknown_property() -> None:
    with pytest.raises(UnknownProperty, match="'humidity'") as exc:
        desired_value_patch(v1beta1_device(), {"setpoint": "1", "humidity": "2"})
    assert exc.value.properties == ("humidity",)
    assert isinstance(exc.value, LookupError)
    # On v1beta1 a twin without a spec property is not writable either.
    with pytest.raises(UnknownProperty):
        desired_value_patch(v1beta1_device(), {"gone": "1"})
    # A v1alpha2 Device without twins has no writable property.
    bare = v1alpha2_device()
    del bare["status"]
    with pytest.raises(UnknownProperty):
        desired_value_patch(bare, {"power-status": "ON"})


def test_patch_of_an_invalid_device() -> None:
    with pytest.raises(InvalidCR):
        desired_value_patch({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}, {})
    assert desired_value_patch(v1beta1_device(), {}) == []


# ---------------------------------------------------------------------- device definitions


def test_new_device_from_a_definition_reads_back() -> None:
    definition = DeviceDefinition(DeviceId("plant", "t-1"), "thermo", "edge-a", {"room": "b1"})
    body = new_device(definition, "v1beta1")
    assert body == {
        "kind": "Device",
        "metadata": {"name": "t-1", "namespace": "plant", "labels": {"room": "b1"}},
        "spec": {"deviceModelRef": {"name": "thermo"}, "nodeName": "edge-a"},
    }
    dev = decode_device(
        {
            **body,
            "apiVersion": f"{G}/v1beta1",
            "metadata": {**body["metadata"], "resourceVersion": ""},
        }
    )
    assert (dev.namespace, dev.name, dev.model, dev.node) == ("plant", "t-1", "thermo", "edge-a")
    assert dev.labels == {"room": "b1"} and dev.properties == ()
    unlabelled = new_device(
        DeviceDefinition(DeviceId("plant", "t-2"), "thermo", "edge-a"), "v1beta1"
    )
    assert "labels" not in unlabelled["metadata"]


def test_new_v1alpha2_device_binds_through_the_node_selector() -> None:
    definition = DeviceDefinition(DeviceId("plant", "t-1"), "thermo", "edge-a")
    body = new_device(definition, "v1alpha2")
    assert "nodeName" not in body["spec"]
    dev = decode_device(
        {
            **body,
            "apiVersion": f"{G}/v1alpha2",
            "metadata": {**body["metadata"], "resourceVersion": ""},
        }
    )
    assert (dev.model, dev.node) == ("thermo", "edge-a")


def test_redefined_v1beta1_device_keeps_the_rest_of_the_cr() -> None:
    current = v1beta1_device()
    current["spec"]["deviceModelRef"]["extra"] = "kept"
    before = copy.deepcopy(current)
    definition = DeviceDefinition(DeviceId("plant", "thermo-01"), "thermo-v2", "edge-b", {"f": "2"})
    body = redefined_device(current, definition)
    assert current == before  # the read object is not changed
    assert "status" not in body
    assert body["metadata"]["labels"] == {"f": "2"}
    assert body["metadata"]["resourceVersion"] == "42"  # a replace of exactly what was read
    assert body["spec"]["deviceModelRef"] == {"name": "thermo-v2", "extra": "kept"}
    assert body["spec"]["nodeName"] == "edge-b"
    assert body["spec"]["properties"] == current["spec"]["properties"]
    assert body["spec"]["protocol"] == current["spec"]["protocol"]
    assert decode_device(body).model == "thermo-v2"


def test_redefined_v1alpha2_device_leaves_its_node_selector() -> None:
    current = v1alpha2_device()
    definition = DeviceDefinition(DeviceId("default", "led"), "led-v2", "edge-b", {})
    body = redefined_device(current, definition)
    assert "nodeName" not in body["spec"]
    assert body["spec"]["nodeSelector"] == current["spec"]["nodeSelector"]
    assert body["metadata"]["labels"] == {}
    dev = decode_device(body)
    assert (dev.model, dev.node) == ("led-v2", "edge-a")


def test_redefining_a_malformed_device_is_invalid() -> None:
    current = v1beta1_device()
    current["spec"] = ["not", "an", "object"]
    definition = DeviceDefinition(DeviceId("plant", "thermo-01"), "m", "n")
    with pytest.raises(InvalidCR, match="plant/thermo-01"):
        redefined_device(current, definition)
