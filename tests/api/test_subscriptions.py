"""Subscription routes over HTTP, with the real subscription engine and store."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mep_kubeedge_adapter.api.schemas import encode
from mep_kubeedge_adapter.api.subscriptions import subscription_info
from mep_kubeedge_adapter.notify import SubscriptionService
from mep_kubeedge_adapter.notify.models import (
    Caller,
    FilteringCriteria,
    Subscription,
    SubscriptionRequest,
    TimeStamp,
)
from tests.api.conftest import ApiHarness, HarnessFactory, InMemorySubscriptions, KeyPair

BASE = "/kubeedge_devices/v1"
SUBSCRIPTIONS = f"{BASE}/subscriptions"
TWIN = "DeviceTwinChangeSubscription"
TWIN_PATH = f"{BASE}/devices/default/thermo-1/twin"

WEBSOCKET_ONLY = {
    "subscriptionType": "DeviceTwinChangeSubscription",
    "requestWebsocketUri": True,
    "filteringCriteria": {"devices": ["default/thermo-1"], "properties": ["setpoint"]},
}


@pytest.fixture
async def subscribed(make_harness: HarnessFactory, engine: SubscriptionService) -> ApiHarness:
    return await make_harness(subscriptions=engine)


async def _create(harness: ApiHarness, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    reply = await harness.call("POST", SUBSCRIPTIONS, json_body=body, **kwargs)
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.json()
    assert reply.headers["Location"] == created["_links"]["self"]["href"]
    return created


async def test_create_read_list_delete(subscribed: ApiHarness) -> None:
    created = await _create(subscribed, WEBSOCKET_ONLY)
    href = f"{subscribed.base}{SUBSCRIPTIONS}/{created['id']}"
    assert created["_links"]["self"]["href"] == href
    assert created["websocketUri"] == "ws" + href.removeprefix("http") + "/websocket"
    path = f"{SUBSCRIPTIONS}/{created['id']}"

    read = await subscribed.call("GET", path)
    assert read.status == 200
    assert read.json() == created
    listed = await subscribed.call("GET", SUBSCRIPTIONS)
    assert [s["id"] for s in listed.json()] == [created["id"]]

    deleted = await subscribed.call("DELETE", path)
    assert deleted.status == 204
    assert (await subscribed.call("GET", path)).status == 404
    assert (await subscribed.call("DELETE", path)).status == 404
    assert (await subscribed.call("GET", SUBSCRIPTIONS)).json() == []


async def test_callback_subscription_without_websocket(subscribed: ApiHarness) -> None:
    created = await _create(
        subscribed,
        {
            "subscriptionType": "DeviceStateChangeSubscription",
            "callbackReference": "http://127.0.0.1:9/notify",
            "expiryDeadline": {"seconds": 4_102_444_800, "nanoSeconds": 0},
        },
    )
    assert "websocketUri" not in created
    assert created["callbackReference"] == "http://127.0.0.1:9/notify"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"subscriptionType": "DeviceTwinChangeSubscription"}, "callbackReference"),
        ({**WEBSOCKET_ONLY, "colour": "red"}, "colour"),
        ({**WEBSOCKET_ONLY, "subscriptionType": "Everything"}, "subscriptionType"),
        ({**WEBSOCKET_ONLY, "expiryDeadline": {"seconds": 1}}, "past"),
        (
            {**WEBSOCKET_ONLY, "callbackReference": "http://169.254.169.254/latest"},
            "169.254.169.254",
        ),
        ([], "body"),
    ],
)
async def test_create_refuses_bad_requests(
    subscribed: ApiHarness, body: object, detail: str
) -> None:
    reply = await subscribed.call("POST", SUBSCRIPTIONS, json_body=body)
    assert reply.status == 400, reply.body
    assert detail in reply.json()["detail"]
    assert (await subscribed.call("GET", SUBSCRIPTIONS)).json() == []


async def test_create_refuses_other_media_types_and_broken_json(subscribed: ApiHarness) -> None:
    text = await subscribed.call(
        "POST", SUBSCRIPTIONS, data=b"{}", content_type="text/plain; charset=utf-8"
    )
    assert text.status == 415
    broken = await subscribed.call(
        "POST", SUBSCRIPTIONS, data=b'{"subscriptionType": ', content_type="application/json"
    )
    assert broken.status == 400


async def test_links_follow_the_gateway_the_caller_used(subscribed: ApiHarness) -> None:
    gateway = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "mep-api-gw.mep",
        "X-Forwarded-Port": "8443",
        "X-Forwarded-Prefix": "/kubeedge-devices-edge-18d025f7b745b211eba564",
    }
    created = await _create(subscribed, WEBSOCKET_ONLY, headers=gateway)
    root = "mep-api-gw.mep:8443/kubeedge-devices-edge-18d025f7b745b211eba564"
    # The gateway name stands for the registered /kubeedge_devices/v1 (Kong strips it).
    assert created["_links"]["self"]["href"] == f"https://{root}/subscriptions/{created['id']}"
    assert created["websocketUri"] == f"wss://{root}/subscriptions/{created['id']}/websocket"


async def test_websocket_delivers_twin_changes(subscribed: ApiHarness) -> None:
    created = await _create(subscribed, WEBSOCKET_ONLY)
    ws_path = f"{SUBSCRIPTIONS}/{created['id']}/websocket"
    async with subscribed.client.ws_connect(ws_path) as ws:
        assert ws._response.headers.get("X-Request-Id")
        await asyncio.sleep(0)
        written = await subscribed.call(
            "PATCH", TWIN_PATH, json_body={"desired": {"setpoint": "25"}}
        )
        assert written.status == 200
        message = await asyncio.wait_for(ws.receive_json(), 5)
    assert message["notificationType"] == "DeviceTwinChangeNotification"
    assert message["subscriptionId"] == created["id"]
    assert message["device"] == {"namespace": "default", "name": "thermo-1"}
    assert message["changes"]["setpoint"]["desired"]["value"] == "25"
    assert message["_links"]["subscription"]["href"] == created["_links"]["self"]["href"]


async def test_websocket_route_answers_problems_before_upgrading(subscribed: ApiHarness) -> None:
    unknown = await subscribed.call("GET", f"{SUBSCRIPTIONS}/nope/websocket")
    assert unknown.status == 404
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await subscribed.client.ws_connect(f"{SUBSCRIPTIONS}/nope/websocket")
    assert refused.value.status == 404

    callback_only = await _create(
        subscribed,
        {
            "subscriptionType": "DeviceTwinChangeSubscription",
            "callbackReference": "http://127.0.0.1:9/notify",
        },
    )
    no_feed = await subscribed.call("GET", f"{SUBSCRIPTIONS}/{callback_only['id']}/websocket")
    assert no_feed.status == 404
    assert "requestWebsocketUri" in no_feed.json()["detail"]

    created = await _create(subscribed, WEBSOCKET_ONLY)
    plain = await subscribed.call("GET", f"{SUBSCRIPTIONS}/{created['id']}/websocket")
    assert plain.status == 426
    assert plain.headers["Upgrade"] == "websocket"


async def test_websocket_takes_the_token_from_subprotocol_or_query(
    make_harness: HarnessFactory, engine: SubscriptionService, key_pair: KeyPair
) -> None:
    harness = await make_harness(api={"auth": "jwt"}, subscriptions=engine)
    created = await _create(harness, WEBSOCKET_ONLY)
    ws_path = f"{SUBSCRIPTIONS}/{created['id']}/websocket"
    token = key_pair.token()

    async with harness.client.ws_connect(ws_path, protocols=("bearer", token)) as ws:
        assert ws.protocol == "bearer"
    async with harness.client.ws_connect(ws_path, params={"access_token": token}) as ws:
        assert not ws.closed
    async with harness.client.ws_connect(
        ws_path, headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        assert not ws.closed
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await harness.client.ws_connect(ws_path)
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as forged:
        await harness.client.ws_connect(ws_path, protocols=("bearer", token + "x"))
    assert forged.value.status == 401


async def test_query_tokens_are_only_for_the_websocket(
    make_harness: HarnessFactory, engine: SubscriptionService, key_pair: KeyPair
) -> None:
    harness = await make_harness(api={"auth": "jwt"}, subscriptions=engine)
    reply = await harness.call(
        "GET", SUBSCRIPTIONS, params=[("access_token", key_pair.token())], authorize=False
    )
    assert reply.status == 401


async def test_routes_answer_503_without_a_subscription_engine(harness: ApiHarness) -> None:
    for method, path in [
        ("GET", SUBSCRIPTIONS),
        ("GET", f"{SUBSCRIPTIONS}/x"),
        ("DELETE", f"{SUBSCRIPTIONS}/x"),
        ("GET", f"{SUBSCRIPTIONS}/x/websocket"),
    ]:
        reply = await harness.call(method, path)
        assert reply.status == 503, (method, path)
        assert reply.json()["type"] == "urn:mka:problem:unavailable"
    posted = await harness.call("POST", SUBSCRIPTIONS, json_body=WEBSOCKET_ONLY)
    assert posted.status == 503


class CrashingDelivery(InMemorySubscriptions):
    async def serve_websocket(
        self, subscription_id: str, ws: web.WebSocketResponse, *, caller: Caller
    ) -> None:
        raise RuntimeError("delivery broke")


async def test_a_delivery_failure_after_the_upgrade_closes_the_socket_with_1011(
    make_harness: HarnessFactory,
) -> None:
    harness = await make_harness(subscriptions=CrashingDelivery())
    created = await _create(harness, WEBSOCKET_ONLY)
    async with harness.client.ws_connect(f"{SUBSCRIPTIONS}/{created['id']}/websocket") as ws:
        message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == aiohttp.WSCloseCode.INTERNAL_ERROR
    assert (await harness.call("GET", SUBSCRIPTIONS)).status == 200


def test_subscription_info_links_and_websocket_uri() -> None:
    request = SubscriptionRequest(
        subscriptionType=TWIN,
        callbackReference="http://127.0.0.1:9/n",
        requestWebsocketUri=True,
        filteringCriteria=FilteringCriteria(devices=["default/thermo-1"], properties=["t"]),
        expiryDeadline=TimeStamp(seconds=1_900_000_000),
    )
    subscription = Subscription.from_request("s-1", request, created=0, base_url="http://h")
    body = encode(
        subscription_info(subscription, "https://mep-api-gw:8443/app/kubeedge_devices/v1")
    )
    assert body == {
        "id": "s-1",
        "subscriptionType": TWIN,
        "callbackReference": "http://127.0.0.1:9/n",
        "requestWebsocketUri": True,
        "filteringCriteria": {
            "devices": ["default/thermo-1"],
            "models": [],
            "properties": ["t"],
            "labels": {},
        },
        "expiryDeadline": {"seconds": 1_900_000_000, "nanoSeconds": 0},
        "_links": {
            "self": {"href": "https://mep-api-gw:8443/app/kubeedge_devices/v1/subscriptions/s-1"}
        },
        "websocketUri": "wss://mep-api-gw:8443/app/kubeedge_devices/v1/subscriptions/s-1/websocket",
    }
    plain = encode(subscription_info(subscription, "http://10.0.0.1:8080/kubeedge_devices/v1/"))
    assert (
        plain["websocketUri"]
        == "ws://10.0.0.1:8080/kubeedge_devices/v1/subscriptions/s-1/websocket"
    )
    other = Subscription.from_request(
        "s-2",
        SubscriptionRequest(subscriptionType=TWIN, callbackReference="http://127.0.0.1:9/n"),
        created=0,
        base_url="http://h",
    )
    assert "websocketUri" not in encode(subscription_info(other, "http://h"))
    assert SubscriptionRequest.model_validate(
        {k: v for k, v in body.items() if k not in ("id", "_links", "websocketUri")}
    ) == (request)
