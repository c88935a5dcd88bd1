"""Hostile request bodies get a 400 problem, never a 500, and nothing is written.

Each body here fits under ``MKA_API__MAX_BODY``: nesting deep enough to exhaust the JSON
decoder's recursion, numbers the store cannot hold, a float EdgeCore would refuse.
"""

from __future__ import annotations

import pytest

from mep_kubeedge_adapter.domain import DeviceId, TwinState, TwinValue
from mep_kubeedge_adapter.notify import SubscriptionService
from mep_kubeedge_adapter.registry import DeviceRegistry
from tests.api.conftest import ApiHarness, HarnessFactory, RecordingWriter
from tests.api.test_iots import Iots, _serve

BASE = "/kubeedge_devices/v1"
SUBSCRIPTIONS = f"{BASE}/subscriptions"
TWIN_PATH = f"{BASE}/devices/default/thermo-1/twin"

DEEP = b"[" * 20_000 + b"]" * 20_000
"""40 KB of nesting: under the 64 KiB body limit, far beyond the decoder's recursion limit."""


def _deep_in(prefix: bytes, suffix: bytes) -> bytes:
    return prefix + DEEP + suffix


@pytest.fixture
async def subscribed(make_harness: HarnessFactory, engine: SubscriptionService) -> ApiHarness:
    return await make_harness(subscriptions=engine)


@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        _deep_in(
            b'{"subscriptionType": "DeviceTwinChangeSubscription", "filteringCriteria": ', b"}"
        ),
    ],
)
async def test_deep_nesting_in_a_subscription_is_400(subscribed: ApiHarness, body: bytes) -> None:
    reply = await subscribed.call("POST", SUBSCRIPTIONS, data=body, content_type="application/json")
    assert reply.status == 400, reply.body
    assert "nest" in reply.json()["detail"]
    assert (await subscribed.call("GET", SUBSCRIPTIONS)).json() == []


@pytest.mark.parametrize(
    "deadline",
    [
        {"seconds": 10**19},
        {"seconds": 2**63 // 1000},
        {"seconds": 253_402_300_800},
        {"seconds": 1_795_650_000, "nanoSeconds": 10**30},
    ],
)
async def test_out_of_range_expiry_deadline_is_400(
    subscribed: ApiHarness, deadline: dict[str, int]
) -> None:
    body = {
        "subscriptionType": "DeviceTwinChangeSubscription",
        "requestWebsocketUri": True,
        "expiryDeadline": deadline,
    }
    reply = await subscribed.call("POST", SUBSCRIPTIONS, json_body=body)
    assert reply.status == 400, reply.body
    assert "expiryDeadline" in reply.json()["detail"]
    assert (await subscribed.call("GET", SUBSCRIPTIONS)).json() == []


async def test_deep_nesting_in_a_twin_patch_is_400(
    harness: ApiHarness, writer: RecordingWriter
) -> None:
    reply = await harness.call(
        "PATCH", TWIN_PATH, data=_deep_in(b'{"desired": ', b"}"), content_type="application/json"
    )
    assert reply.status == 400, reply.body
    assert "nest" in reply.json()["detail"]
    assert writer.writes == []


@pytest.mark.parametrize("value", ["1e500", "-1e309", "1" + "0" * 309, "0.1e310"])
async def test_a_float_beyond_float64_is_refused_before_publishing(
    make_harness: HarnessFactory, registry: DeviceRegistry, writer: RecordingWriter, value: str
) -> None:
    gauge = DeviceId("default", "gauge-1")
    registry.add_member(gauge)
    registry.sync_twin(gauge, {"pressure": TwinState(expected=TwinValue("1.5"), twin_type="float")})
    harness = await make_harness()
    reply = await harness.call(
        "PATCH", f"{BASE}/devices/default/gauge-1/twin", json_body={"desired": {"pressure": value}}
    )
    assert reply.status == 400, reply.body
    assert "float" in reply.json()["detail"]
    assert writer.writes == []
    accepted = await harness.call(
        "PATCH",
        f"{BASE}/devices/default/gauge-1/twin",
        json_body={"desired": {"pressure": "1e300"}},
    )
    assert accepted.status == 200, accepted.body


async def test_deep_nesting_in_a_mec033_device_is_400() -> None:
    harness: Iots
    async for harness in _serve(writable=True):
        for method, path in [
            ("POST", "/iots/v1/registered_devices"),
            ("PUT", "/iots/v1/registered_devices/default/thermo-1"),
        ]:
            status, body, _ = await harness.call(
                method,
                path,
                data=_deep_in(b'{"deviceId": "default/a", "deviceMetadata": ', b"}"),
                headers={"Content-Type": "application/json"},
            )
            assert status == 400, (method, body)
            assert "nest" in body["detail"]
        assert harness.crs is not None and harness.crs.calls == []
