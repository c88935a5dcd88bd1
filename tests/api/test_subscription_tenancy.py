"""Subscriptions belong to the app that made them: with JWT on, the token's subject.

Another subject gets 404 for a subscription it does not own, on every route (read,
delete, websocket), and lists only its own; a callback URL (and any secret in its query)
is seen only by its owner. Without auth every caller is one tenant.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from mep_kubeedge_adapter.notify import SubscriptionService
from mep_kubeedge_adapter.notify.subscriptions import SubscriptionLimits
from tests.api.conftest import ApiHarness, EngineFactory, HarnessFactory, KeyPair

SUBSCRIPTIONS = "/kubeedge_devices/v1/subscriptions"

APP_A = "9f0c4b1e-0000-4000-8000-00000000000a"
APP_B = "9f0c4b1e-0000-4000-8000-00000000000b"

SECRET_CALLBACK = {
    "subscriptionType": "DeviceTwinChangeSubscription",
    "callbackReference": "http://127.0.0.1:9/notify?token=s3cret",
    "requestWebsocketUri": True,
}


@pytest.fixture
async def tenants(make_harness: HarnessFactory, engine: SubscriptionService) -> ApiHarness:
    return await make_harness(api={"auth": "jwt"}, subscriptions=engine)


def _as(key_pair: KeyPair, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key_pair.token(sub=subject)}"}


async def _create(harness: ApiHarness, headers: dict[str, str]) -> dict[str, Any]:
    reply = await harness.call(
        "POST", SUBSCRIPTIONS, json_body=SECRET_CALLBACK, headers=headers, authorize=False
    )
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.json()
    return created


async def test_another_subject_cannot_see_read_delete_or_attach(
    tenants: ApiHarness, key_pair: KeyPair
) -> None:
    owner, other = _as(key_pair, APP_A), _as(key_pair, APP_B)
    mine = await _create(tenants, owner)
    theirs = await _create(tenants, other)
    path = f"{SUBSCRIPTIONS}/{mine['id']}"

    listed = await tenants.call("GET", SUBSCRIPTIONS, headers=other, authorize=False)
    assert [s["id"] for s in listed.json()] == [theirs["id"]]
    assert "s3cret" not in listed.body.decode().replace(theirs["callbackReference"], "")

    read = await tenants.call("GET", path, headers=other, authorize=False)
    assert read.status == 404
    assert "s3cret" not in read.body.decode()
    deleted = await tenants.call("DELETE", path, headers=other, authorize=False)
    assert deleted.status == 404
    refused = await tenants.call("GET", f"{path}/websocket", headers=other, authorize=False)
    assert refused.status == 404
    with pytest.raises(aiohttp.WSServerHandshakeError) as upgrade:
        await tenants.client.ws_connect(
            f"{path}/websocket", protocols=("bearer", key_pair.token(sub=APP_B))
        )
    assert upgrade.value.status == 404

    # The owner still has it, whole.
    read = await tenants.call("GET", path, headers=owner, authorize=False)
    assert read.status == 200
    assert read.json() == mine
    async with tenants.client.ws_connect(
        f"{path}/websocket", protocols=("bearer", key_pair.token(sub=APP_A))
    ) as ws:
        assert not ws.closed
    listed = await tenants.call("GET", SUBSCRIPTIONS, headers=owner, authorize=False)
    assert [s["id"] for s in listed.json()] == [mine["id"]]
    assert (await tenants.call("DELETE", path, headers=owner, authorize=False)).status == 204


async def test_a_token_without_a_subject_cannot_own_subscriptions(
    tenants: ApiHarness, key_pair: KeyPair
) -> None:
    anonymous = {"Authorization": f"Bearer {key_pair.token(sub=None)}"}
    for method, path, body in [
        ("POST", SUBSCRIPTIONS, SECRET_CALLBACK),
        ("GET", SUBSCRIPTIONS, None),
        ("GET", f"{SUBSCRIPTIONS}/x", None),
    ]:
        reply = await tenants.call(method, path, json_body=body, headers=anonymous, authorize=False)
        assert reply.status == 403, (method, path, reply.body)
        assert "sub" in reply.json()["detail"]


async def test_without_auth_every_caller_is_one_tenant(
    make_harness: HarnessFactory, engine: SubscriptionService
) -> None:
    harness = await make_harness(subscriptions=engine)
    created = await _create(harness, {})
    listed = await harness.call("GET", SUBSCRIPTIONS)
    assert [s["id"] for s in listed.json()] == [created["id"]]


async def test_subscriptions_are_capped_per_subject_and_in_all(
    make_harness: HarnessFactory, make_engine: EngineFactory, key_pair: KeyPair
) -> None:
    engine = await make_engine(SubscriptionLimits(total=3, per_caller=2))
    harness = await make_harness(api={"auth": "jwt"}, subscriptions=engine)
    app_a, app_b, app_c = (_as(key_pair, s) for s in (APP_A, APP_B, "app-c"))
    first = await _create(harness, app_a)
    await _create(harness, app_a)

    refused = await harness.call(
        "POST", SUBSCRIPTIONS, json_body=SECRET_CALLBACK, headers=app_a, authorize=False
    )
    assert refused.status == 403
    problem = refused.json()
    assert problem["type"] == "urn:mka:problem:quota-exceeded"
    assert "MKA_NOTIFY__MAX_SUBSCRIPTIONS_PER_CALLER" in problem["detail"]

    await _create(harness, app_b)  # another subject has its own allowance
    full = await harness.call(
        "POST", SUBSCRIPTIONS, json_body=SECRET_CALLBACK, headers=app_c, authorize=False
    )
    assert full.status == 403
    assert "MKA_NOTIFY__MAX_SUBSCRIPTIONS)" in full.json()["detail"]

    # Deleting one makes room again.
    path = f"{SUBSCRIPTIONS}/{first['id']}"
    assert (await harness.call("DELETE", path, headers=app_a, authorize=False)).status == 204
    await _create(harness, app_c)


async def test_without_auth_the_cap_counts_per_client_address(
    make_harness: HarnessFactory, make_engine: EngineFactory
) -> None:
    engine = await make_engine(SubscriptionLimits(total=10, per_caller=2))
    harness = await make_harness(subscriptions=engine)
    for _ in range(2):
        await _create(harness, {})
    refused = await harness.call("POST", SUBSCRIPTIONS, json_body=SECRET_CALLBACK)
    assert refused.status == 403
    assert refused.json()["type"] == "urn:mka:problem:quota-exceeded"
