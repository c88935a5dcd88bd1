"""Mp1Client against the MEP emulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest
from aiohttp import web

from mep_kubeedge_adapter.emulators.mep import AppIdentity, MepEmulator
from mep_kubeedge_adapter.mep import models
from mep_kubeedge_adapter.mep.client import (
    Conflict,
    CredentialsRejected,
    InvalidRequest,
    LimitReached,
    Locked,
    Mp1Client,
    NotFound,
    Unauthorized,
    Unavailable,
)
from mep_kubeedge_adapter.mep.discovery import discover_endpoints
from mep_kubeedge_adapter.mep.models import ServiceInfo, ServiceState, node_service_info

from .conftest import eventually


def _service(name: str = "edge-1", uri: str = "http://127.0.0.1:9/") -> ServiceInfo:
    return node_service_info(name, uri)


async def test_token_is_a_mepauth_jwt(
    mep: MepEmulator, client: Mp1Client, producer: AppIdentity
) -> None:
    token = await client.token()
    claims = jwt.decode(token, mep.jwt_public_key_pem, algorithms=["RS512"])
    assert claims["sub"] == producer.app_instance_id
    assert claims["iss"] == "mepauth"
    assert claims["clientip"] == "127.0.0.1"
    assert isinstance(claims["exp"], float)
    assert await client.token() == token
    assert mep.calls["POST /mep/token"] == 1


async def test_bad_signature_is_rejected_then_locked(
    mep: MepEmulator, producer: AppIdentity
) -> None:
    outcomes: list[tuple[str, str]] = []
    bad_sk = "A" * 64
    async with Mp1Client(
        mep.url,
        producer.app_instance_id,
        producer.ak,
        bad_sk,
        on_call=lambda op, out: outcomes.append((op, out)),
    ) as bad:
        for _ in range(3):
            with pytest.raises(CredentialsRejected) as err:
                await bad.token()
            assert err.value.status == 401
        with pytest.raises(Locked) as locked:
            await bad.token()
        assert locked.value.status == 403
        assert locked.value.retry_after is not None
    assert outcomes == [("token", "rejected")] * 3 + [("token", "locked")]
    async with Mp1Client(mep.url, producer.app_instance_id, producer.ak, producer.sk) as good:
        with pytest.raises(Locked):
            await good.token()
        mep.reset_lockouts()
        assert await good.token()


@pytest.mark.usefixtures("virtual_clock")
async def test_lock_expires(mep: MepEmulator, producer: AppIdentity) -> None:
    async with Mp1Client(mep.url, producer.app_instance_id, producer.ak, "B" * 64) as bad:
        for _ in range(3):
            with pytest.raises(CredentialsRejected):
                await bad.token()
    async with Mp1Client(mep.url, producer.app_instance_id, producer.ak, producer.sk) as good:
        await asyncio.sleep(0.5 * mep.mepauth.lockout_seconds)
        with pytest.raises(Locked):
            await good.token()
        await asyncio.sleep(0.6 * mep.mepauth.lockout_seconds)
        assert await good.token()


async def test_unknown_ak_is_rejected(mep: MepEmulator) -> None:
    stranger = AppIdentity.generate()
    async with Mp1Client(mep.url, stranger.app_instance_id, stranger.ak, stranger.sk) as c:
        with pytest.raises(CredentialsRejected):
            await c.list_services()


async def test_malformed_auth_header_is_400(mep: MepEmulator) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{mep.url}/mep/token", headers={"Authorization": "SDK-HMAC-SHA256 nope"}) as resp,
    ):
        assert resp.status == 400
        assert await resp.json() == "Bad auth header format"


async def test_service_lifecycle(mep: MepEmulator, client: Mp1Client) -> None:
    calls: list[tuple[str, str]] = []
    client._on_call = lambda op, out: calls.append((op, out))
    assert await client.list_services() == []
    created = await client.register(_service())
    assert created.serInstanceId is not None
    assert len(created.serInstanceId) == 32
    assert created.endpoint_uris == ["http://127.0.0.1:9/kubeedge_devices/v1"]
    assert created.liveness_path is not None
    assert created.livenessInterval == mep.liveness_interval

    stored = await client.get_service(created.serInstanceId)
    assert stored.endpoint_uris[0].startswith(f"{mep.url}/kubeedge-devices-edge-1")
    assert stored.consumedLocalOnly
    assert stored.isLocal
    listed = await client.list_services(ser_name="kubeedge-devices-edge-1")
    assert [s.serInstanceId for s in listed] == [created.serInstanceId]

    await client.heartbeat(created.serInstanceId, created.liveness_path)
    liveness = await client.get_liveness(created.serInstanceId)
    assert liveness.state is ServiceState.ACTIVE

    inactive = _service().model_copy(update={"state": ServiceState.INACTIVE})
    updated = await client.update_service(created.serInstanceId, inactive)
    assert updated.state is ServiceState.INACTIVE
    with pytest.raises(Conflict):
        await client.heartbeat(created.serInstanceId)
    await client.update_service(created.serInstanceId, _service())
    await client.heartbeat(created.serInstanceId)

    await client.delete_service(created.serInstanceId)
    with pytest.raises(NotFound):
        await client.get_service(created.serInstanceId)
    assert ("register", "ok") in calls
    assert ("heartbeat", "conflict") in calls


async def test_emulator_rejects_non_etsi_body(mep: MepEmulator, client: Mp1Client) -> None:
    body = _service().to_request()
    del body["transportInfo"]["security"]
    token = await client.token()
    url = f"{mep.url}/mep/mec_service_mgmt/v1/applications/{client.app_instance_id}/services"
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            url,
            data=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 400
        assert resp.content_type == "text/plain"
        problem = json.loads(await resp.read())
        assert "security" in problem["detail"]


async def test_edgegallery_limits(mep: MepEmulator, client: Mp1Client) -> None:
    bad_name = _service().model_copy(update={"serName": "has.dot"})
    with pytest.raises(InvalidRequest):
        await client.register(bad_name)
    token = await client.token()
    url = f"{mep.url}/mep/mec_service_mgmt/v1/applications/{client.app_instance_id}/services"
    big = _service().to_request()
    big["transportInfo"]["description"] = "x" * 4100
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, data=json.dumps(big), headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        assert resp.status == 400
        assert "request body too large" in (await resp.text())
    for _ in range(50):
        await client.register(_service())
    with pytest.raises(LimitReached):
        await client.register(_service())


async def test_body_guard_before_sending(mep: MepEmulator, client: Mp1Client) -> None:
    with pytest.raises(models.BodyTooLarge):
        await client.register(_service(uri="http://h/" + "p" * 4000))
    assert mep.calls_total == 0


@pytest.mark.usefixtures("virtual_clock")
async def test_missed_heartbeats_suspend_and_a_beat_revives(
    mep: MepEmulator, client: Mp1Client
) -> None:
    created = await client.register(_service())
    assert created.serInstanceId
    sid = created.serInstanceId
    suspended = await eventually(
        lambda: client.get_service(sid), lambda s: s.state is ServiceState.SUSPENDED
    )
    assert suspended.state is ServiceState.SUSPENDED
    await client.heartbeat(sid)
    assert (await client.get_service(sid)).state is ServiceState.ACTIVE


async def test_wipe_gives_404_on_heartbeat(mep: MepEmulator, client: Mp1Client) -> None:
    created = await client.register(_service())
    assert created.serInstanceId
    mep.wipe()
    with pytest.raises(NotFound):
        await client.heartbeat(created.serInstanceId)


@pytest.mark.parametrize("mode", ["close", "503"])
async def test_down_and_up(mep: MepEmulator, client: Mp1Client, mode: str) -> None:
    await client.list_services()
    mep.down(mode)
    with pytest.raises(Unavailable):
        await client.list_services()
    mep.up()
    assert await client.list_services() == []


async def test_token_refresh_on_401(mep: MepEmulator, client: Mp1Client) -> None:
    await client.list_services()
    client._token = "garbage"
    assert await client.list_services() == []
    assert mep.calls["POST /mep/token"] == 2


async def test_other_apps_path_is_unauthorized(
    mep: MepEmulator, producer: AppIdentity, consumer: AppIdentity
) -> None:
    async with Mp1Client(mep.url, consumer.app_instance_id, producer.ak, producer.sk) as c:
        with pytest.raises(Unauthorized):
            await c.list_services()


async def test_discovery_respects_required_services(
    mep: MepEmulator, client: Mp1Client, consumer: AppIdentity
) -> None:
    created = await client.register(_service())
    name = created.serName

    async def find() -> list[str]:
        return await discover_endpoints(
            mep.url,
            consumer.app_instance_id,
            consumer.ak,
            consumer.sk,
            ser_name=name,
            category_id="kubeedge-device-management",
        )

    assert await find() == []
    mep.set_required_services(consumer.app_instance_id, [name])
    uris = await find()
    assert len(uris) == 1
    assert uris[0].startswith(f"{mep.url}/{name}")
    assert (
        await discover_endpoints(
            mep.url, consumer.app_instance_id, consumer.ak, consumer.sk, ser_name="nonexistent"
        )
        == []
    )


async def test_gateway_proxies_with_bearer(
    mep: MepEmulator, client: Mp1Client, consumer: AppIdentity
) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response(
            {"path": request.path, "prefix": request.headers.get("X-Forwarded-Prefix")}
        )

    app = web.Application()
    app.router.add_get("/kubeedge_devices/v1/devices", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        created = await client.register(_service(uri=f"http://127.0.0.1:{port}"))
        assert created.serInstanceId
        gateway = (await client.get_service(created.serInstanceId)).endpoint_uris[0]
        token = mep.issue_token(consumer.app_instance_id)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{gateway}/devices") as resp:
                assert resp.status == 401
            async with s.get(
                f"{gateway}/devices", headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert resp.status == 200
                data = await resp.json()
        assert data["path"] == "/kubeedge_devices/v1/devices"
        assert data["prefix"] == "/" + gateway.rsplit("/", 1)[1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def callback_sink() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, object]]]]:
    received: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def notify(request: web.Request) -> web.Response:
        received.put_nowait(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notify", notify)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/notify", received
    await runner.cleanup()


async def test_subscription_notifications(
    mep: MepEmulator,
    client: Mp1Client,
    callback_sink: tuple[str, asyncio.Queue[dict[str, object]]],
) -> None:
    url, received = callback_sink
    name = "kubeedge-devices-edge-1"
    sub_id, reply = await client.subscribe(url, ser_names=[name])
    assert reply["callbackReference"] == url
    created = await client.register(_service())
    assert created.serInstanceId

    async def next_change() -> tuple[str, str]:
        note = await asyncio.wait_for(received.get(), 5)
        assert note["notificationType"] == "SerAvailabilityNotification"
        refs = note["serviceReferences"]
        assert isinstance(refs, list)
        assert len(refs) == 1
        assert refs[0]["serInstanceId"] == created.serInstanceId
        return str(refs[0]["changeType"]), str(refs[0]["state"])

    assert await next_change() == ("ADDED", "ACTIVE")
    await client.heartbeat(created.serInstanceId)
    assert await next_change() == ("ATTRIBUTES_CHANGED", "ACTIVE")
    await client.delete_service(created.serInstanceId)
    assert await next_change() == ("REMOVED", "ACTIVE")
    await client.unsubscribe(sub_id)
    with pytest.raises(NotFound):
        await client.unsubscribe(sub_id)
