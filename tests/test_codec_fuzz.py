"""Property-based tests: every boundary decoder fails only with its documented error.

The EventBus codec has its own in ``tests/kubeedge/test_codec.py``. Here: the CR codecs
(``InvalidCR``), the MP1 reply decoders (``Mp1DecodeError``; ``decode_error_body`` never
raises), the subscription request and the twin PATCH body (pydantic ``ValidationError``) and
the settings loaded from an environment mapping (``SettingsError``). Each is fed arbitrary
bytes or JSON, and well-formed documents with one part replaced by arbitrary JSON or removed,
which reaches far deeper into a decoder than random bytes do.

Runs are deterministic (``derandomize``, no example database) and bounded.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mep_kubeedge_adapter.api.devices import TwinPatch
from mep_kubeedge_adapter.kubeedge.crds import (
    InvalidCR,
    decode_device,
    decode_device_model,
    decode_device_status,
)
from mep_kubeedge_adapter.mep.models import (
    Mp1DecodeError,
    decode_error_body,
    decode_liveness,
    decode_service_info,
    decode_service_list,
    decode_token_response,
    node_service_info,
)
from mep_kubeedge_adapter.notify.models import SubscriptionRequest
from mep_kubeedge_adapter.settings import Settings, SettingsError, load_settings
from tests.kube.test_kubesource import device, device_status, model

SAMPLES = Path(__file__).parent / "kube" / "data" / "samples"

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ------------------------------------------------------------------ strategies

_KEYS = [
    "apiVersion", "kind", "metadata", "name", "namespace", "labels", "resourceVersion", "spec",
    "status", "properties", "deviceModelRef", "nodeName", "nodeSelector", "protocol", "desired",
    "reported", "value", "metadata", "timestamp", "twins", "propertyName", "type", "accessMode",
    "state", "lastOnlineTime", "serName", "serCategory", "transportInfo", "endpoint", "uris",
    "_links", "self", "liveness", "access_token", "token_type", "expires_in", "timeStamp",
    "seconds", "interval", "subscriptionType", "callbackReference", "filteringCriteria",
    "devices", "expiryDeadline", "nanoSeconds", "title", "detail", "message",
]  # fmt: skip

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)

json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=16,
)
"""Arbitrary JSON-ish data (NaN and infinities included, as a lenient parser may produce)."""


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member of a dict or list, depth first."""
    found: list[tuple[Any, ...]] = []
    children: list[tuple[Any, Any]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    for key, child in children:
        path = (*prefix, key)
        found.append(path)
        found.extend(_paths(child, path))
    return found


@st.composite
def mutated(draw: st.DrawFn, documents: list[Any]) -> Any:
    """A valid document with up to three members replaced by arbitrary JSON or removed."""
    doc = copy.deepcopy(draw(st.sampled_from(documents)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(doc)
        if not paths:
            return draw(json_values)
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(json_values)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return doc


def _load_sample(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((SAMPLES / name).read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


# ------------------------------------------------------------------ CR codecs

DEVICES = [
    device("a", labels={"room": "1"}, twins={"temperature": ("21", 1000)}, state="online"),
    _load_sample("v1beta1_temperature-instance.yaml"),
    _load_sample("v1alpha2_led-light-device-instance.yaml"),
]
MODELS = [
    model(),
    _load_sample("v1beta1_temperature-model.yaml"),
    _load_sample("v1alpha2_led-light-device-model.yaml"),
]
STATUSES = [device_status("a", {"temperature": ("21.5", 1000)}, state="online")]

CR_DECODERS: list[tuple[Callable[[Mapping[str, Any]], object], list[dict[str, Any]]]] = [
    (decode_device, DEVICES),
    (decode_device_model, MODELS),
    (decode_device_status, STATUSES),
]


@pytest.mark.parametrize(("decoder", "documents"), CR_DECODERS)
def test_cr_samples_decode(
    decoder: Callable[[Mapping[str, Any]], object], documents: list[dict[str, Any]]
) -> None:
    """The unmutated seeds are valid, so mutations start from a real CR."""
    for document in documents:
        decoder(document)


@pytest.mark.parametrize(("decoder", "documents"), CR_DECODERS)
def test_cr_codecs_raise_only_invalid_cr(
    decoder: Callable[[Mapping[str, Any]], object], documents: list[dict[str, Any]]
) -> None:
    @FUZZ
    @given(document=mutated(documents) | json_values)
    def check(document: Any) -> None:
        with contextlib.suppress(InvalidCR):
            decoder(document)

    check()


# ------------------------------------------------------------------ MP1 replies

_SERVICE = {
    **node_service_info("edge-1", "http://127.0.0.1:8080").to_request(),
    "serInstanceId": "0123456789abcdef0123456789abcdef",
    "_links": {
        "self": {"liveness": "/mep/mec_service_mgmt/v1/applications/a/services/b/liveness"},
        "appInstanceId": "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f",
    },
}
_TOKEN = {"access_token": "eyJ.x.y", "token_type": "Bearer", "expires_in": 3600}
_LIVENESS = {"state": "ACTIVE", "timeStamp": {"seconds": 1, "nanoSeconds": 0}, "interval": 60}

MP1_DECODERS: list[tuple[Callable[[Any], object], list[Any]]] = [
    (decode_service_info, [_SERVICE]),
    (decode_service_list, [[_SERVICE, _SERVICE], []]),
    (decode_token_response, [_TOKEN]),
    (decode_liveness, [_LIVENESS]),
]


@pytest.mark.parametrize(("decoder", "documents"), MP1_DECODERS)
def test_mp1_decoders_raise_only_their_decode_error(
    decoder: Callable[[Any], object], documents: list[Any]
) -> None:
    for document in documents:
        decoder(json.dumps(document).encode())

    @FUZZ
    @given(
        raw=st.binary(max_size=200)
        | st.text(max_size=200)
        | mutated(documents).map(json.dumps)
        | mutated(documents)
        | json_values
    )
    def check(raw: Any) -> None:
        with contextlib.suppress(Mp1DecodeError):
            decoder(raw)

    check()


@FUZZ
@given(
    raw=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | mutated([{"type": "x", "title": "t", "status": 400, "detail": "d"}]).map(
        lambda v: json.dumps(v).encode()
    )
)
def test_error_bodies_are_always_described(raw: bytes) -> None:
    problem, message = decode_error_body(raw)
    assert isinstance(message, str)
    assert problem is None or isinstance(problem.detail, str | None)


# ------------------------------------------------------------------ API bodies

_SUBSCRIPTIONS: list[Any] = [
    {
        "subscriptionType": "DeviceTwinChangeSubscription",
        "callbackReference": "http://app.example:9000/notify",
        "requestWebsocketUri": False,
        "filteringCriteria": {
            "devices": ["default/thermo-1"],
            "models": [],
            "properties": ["temperature"],
            "labels": {},
        },
        "expiryDeadline": {"seconds": 1795650000, "nanoSeconds": 0},
    },
    {"subscriptionType": "DeviceStateChangeSubscription", "requestWebsocketUri": True},
]
_PATCHES: list[Any] = [{"desired": {"temperature": "22", "mode": "eco"}}]


@pytest.mark.parametrize(
    ("body_model", "documents"),
    [(SubscriptionRequest, _SUBSCRIPTIONS), (TwinPatch, _PATCHES)],
)
def test_api_bodies_raise_only_validation_errors(
    body_model: type[SubscriptionRequest] | type[TwinPatch], documents: list[Any]
) -> None:
    for document in documents:
        body_model.model_validate(document)

    @FUZZ
    @given(document=mutated(documents) | json_values, raw=st.binary(max_size=120))
    def check(document: Any, raw: bytes) -> None:
        with contextlib.suppress(ValidationError):
            body_model.model_validate(document)
        with contextlib.suppress(ValidationError):
            body_model.model_validate_json(json.dumps(document))
        with contextlib.suppress(ValidationError):
            body_model.model_validate_json(raw)

    check()


# ------------------------------------------------------------------ settings

_ENV_NAMES = [
    "MKA_NODE_NAME", "MKA_MQTT__URL", "MKA_MQTT__USERNAME", "MKA_MQTT__PASSWORD",
    "MKA_MQTT__CA_FILE", "MKA_MQTT__CERT_FILE", "MKA_MQTT__KEY_FILE", "MKA_MQTT__TOPIC_LAYOUT",
    "MKA_MQTT__DEFAULT_NAMESPACE", "MKA_MQTT__REQUEST_TIMEOUT", "MKA_MQTT__PROBE_INTERVAL",
    "MKA_MQTT__MAX_PAYLOAD", "MKA_KUBE__SOURCE", "MKA_KUBE__KUBECONFIG", "MKA_KUBE__URL",
    "MKA_KUBE__NAMESPACE", "MKA_KUBE__WATCH_TIMEOUT", "MKA_MEP__URL", "MKA_MEP__APP_INSTANCE_ID",
    "MKA_MEP__AK", "MKA_MEP__SK", "MKA_MEP__SERVICE_MODE", "MKA_MEP__HEARTBEAT_INTERVAL",
    "MKA_API__HOST", "MKA_API__PORT", "MKA_API__PUBLIC_URL", "MKA_API__AUTH",
    "MKA_API__JWT_PUBLIC_KEY_FILE", "MKA_API__WRITE_PATH", "MKA_API__MAX_BODY",
    "MKA_API__CALLBACK_NETWORKS", "MKA_API__CALLBACK_DENY_NETWORKS", "MKA_STORE__PATH",
    "MKA_NOTIFY__COALESCE_AFTER", "MKA_NOTIFY__MAX_PENDING", "MKA_NOTIFY__MAX_ATTEMPTS",
    "MKA_NOTIFY__MAX_AGE", "MKA_NOTIFY__REQUEST_TIMEOUT", "MKA_LOG__LEVEL", "MKA_LOG__FORMAT", "MKA_MQTT", "MKA_API", "MKA_MQTT__URL__X", "MKA_",
    "MKA_UNKNOWN", "MKA_API__NOPE", "OTHER_VARIABLE",
]  # fmt: skip

_ENV_SAMPLES = [
    "mqtt://127.0.0.1:1", "mqtts://h:99999", "none", "jwt", "kube", "8080", "-1", "0", "1e9",
    "nan", "inf", "[]", "{}", '["10.0.0.0/8"]', '["x"]', "[1, 2]", '{"a": 1}', "true",
    "metaserver", "per-device", "http://mep:8443", "a/b",
]  # fmt: skip
_env_values = st.text(max_size=16) | st.sampled_from(_ENV_SAMPLES) | json_values.map(json.dumps)


@FUZZ
@given(environ=st.dictionaries(st.sampled_from(_ENV_NAMES), _env_values, max_size=6))
def test_settings_from_the_environment_fail_only_with_settings_error(
    environ: dict[str, str],
) -> None:
    loaded: Settings | SettingsError
    try:
        loaded = load_settings(environ=environ)
    except SettingsError as exc:
        loaded = exc
    assert isinstance(loaded, Settings) or str(loaded).startswith("invalid settings")
