"""The MEP emulator on its own: admin API, raw mepauth signing, OpenAPI checks, CLI entry,
the gateway's websocket proxying."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from mep_kubeedge_adapter.emulators import mep as mep_emulator
from mep_kubeedge_adapter.emulators.mep import DEMO_AK, DEMO_SK, AppIdentity, MepEmulator
from tests.helpers import virtual_time


def _sign(sk: str, host: str, date: str) -> str:
    """The published EdgeGallery algorithm, written out independently of the adapter."""
    canonical = (
        f"POST\n/mep/token/\n\ncontent-type:application/json\nhost:{host}\n"
        f"x-sdk-date:{date}\n\ncontent-type;host;x-sdk-date\n{hashlib.sha256(b'').hexdigest()}"
    )
    to_sign = f"SDK-HMAC-SHA256\n{date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def test_signer_matches_published_vector() -> None:
    assert _sign(DEMO_SK, "119.8.47.5:30443", "20210302T195133Z") == (
        "b726e5f20b4a1520efb455a60127bfe076c2917b51cecb8fddd49ba1d37019b8"
    )


async def _token(
    session: aiohttp.ClientSession, url: str, ak: str, sk: str
) -> aiohttp.ClientResponse:
    host = url.split("://", 1)[1]
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "Host": host,
        "Content-Type": "application/json",
        "X-Sdk-Date": date,
        "Authorization": f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders=content-type;host;"
        f"x-sdk-date, Signature={_sign(sk, host, date)}",
    }
    return await session.post(f"{url}/mep/token", headers=headers)


async def test_demo_identity_token_and_admin_calls() -> None:
    async with MepEmulator() as mep, aiohttp.ClientSession() as s:
        resp = await _token(s, mep.url, DEMO_AK, DEMO_SK)
        body = await resp.json()
        assert resp.status == 200
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        async with s.get(f"{mep.url}/admin/jwt-public-key") as key:
            assert (await key.read()) == mep.jwt_public_key_pem
        async with s.post(
            f"{mep.url}/admin/identities", json={"requiredServices": ["a"]}
        ) as created:
            assert created.status == 201
            ident = await created.json()
        assert len(ident["ak"]) == 20
        assert len(ident["sk"]) == 64
        resp = await _token(s, mep.url, ident["ak"], ident["sk"])
        assert resp.status == 200
        async with s.get(f"{mep.url}/admin/calls") as calls:
            data = await calls.json()
        assert data["routes"]["POST /mep/token"] == 2
        assert data["mp1Total"] == 2
        async with s.post(f"{mep.url}/admin/down", json={"mode": "503"}):
            pass
        resp = await _token(s, mep.url, DEMO_AK, DEMO_SK)
        assert resp.status == 503
        async with s.post(f"{mep.url}/admin/up"):
            pass
        resp = await _token(s, mep.url, DEMO_AK, DEMO_SK)
        assert resp.status == 200
        assert mep.schema_violations == []


async def test_lockout_window_is_configurable() -> None:
    ident = AppIdentity.generate()
    # On virtual time: the emulator and the client are parties of this loop and the lock-out
    # reads its clock, so the waits below are exact and take no time.
    with virtual_time():
        async with (
            MepEmulator(identities=[ident], lockout_seconds=0.2) as mep,
            aiohttp.ClientSession() as s,
        ):
            for _ in range(3):
                assert (await _token(s, mep.url, ident.ak, "x" * 64)).status == 401
            assert (await _token(s, mep.url, ident.ak, ident.sk)).status == 403
            await asyncio.sleep(0.15)
            assert (await _token(s, mep.url, ident.ak, ident.sk)).status == 403
            await asyncio.sleep(0.1)
            assert (await _token(s, mep.url, ident.ak, ident.sk)).status == 200


async def test_mp1_requires_bearer_and_ip_binding() -> None:
    async with MepEmulator() as mep, aiohttp.ClientSession() as s:
        url = f"{mep.url}/mep/mec_service_mgmt/v1/services"
        async with s.get(url) as resp:
            assert resp.status == 401
            assert await resp.json() == {"message": "Unauthorized"}
        other_ip = mep.issue_token(mep_emulator.DEMO_APP_INSTANCE_ID, client_ip="10.9.9.9")
        async with s.get(url, headers={"Authorization": f"Bearer {other_ip}"}) as resp:
            assert resp.status == 401
        good = mep.issue_token(mep_emulator.DEMO_APP_INSTANCE_ID)
        async with s.get(url, headers={"Authorization": f"Bearer {good}"}) as resp:
            assert resp.status == 200
        async with s.get(
            f"{mep.url}/mep/mec_service_mgmt/v1/transports",
            headers={"Authorization": f"Bearer {good}"},
        ) as resp:
            transports = await resp.json()
        assert transports[0]["type"] == "REST_HTTP"
        sub_url = (
            f"{mep.url}/mep/mec_service_mgmt/v1/applications/"
            f"{mep_emulator.DEMO_APP_INSTANCE_ID}/subscriptions"
        )
        async with s.get(sub_url, headers={"Authorization": f"Bearer {good}"}) as resp:
            assert resp.status == 404
        bad_sub = {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": "not a uri",
        }
        async with s.post(
            sub_url,
            data=json.dumps(bad_sub),
            headers={"Authorization": f"Bearer {good}", "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 400
        assert mep.schema_violations == []


def _read_or_empty(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return b""


async def test_run_serves_until_stopped(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    mep_emulator.add_arguments(parser)
    key_file = f"{tmp_path}/jwt.pem"
    args = parser.parse_args(["--port", "0", "--jwt-public-key-out", key_file])
    stop = asyncio.Event()
    task = asyncio.create_task(mep_emulator.run(args, stop))
    for _ in range(250):
        await asyncio.sleep(0.02)
        if await asyncio.to_thread(_read_or_empty, key_file):
            break
    assert (await asyncio.to_thread(_read_or_empty, key_file)).startswith(b"-----BEGIN PUBLIC")
    stop.set()
    await asyncio.wait_for(task, 5)


# --- the gateway's websocket proxying -------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class EchoUpstream:
    """A provider behind the gateway: ``/svc/echo`` echoes frames and reports what it got.

    ``"close <code>"`` makes it close with that code; ``closed`` gets the close code each socket
    ends with (the caller's, when the caller closes). Every request's path and query land in
    ``requests``.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.closed: asyncio.Queue[int | None] = asyncio.Queue()
        self.url = ""
        self._runner: web.AppRunner | None = None

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        return await handler(request)

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        ws = web.WebSocketResponse(protocols=("chat",))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT and msg.data.startswith("close "):
                await ws.close(code=int(msg.data.split()[1]), message=b"bye")
            elif msg.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        self.closed.put_nowait(ws.close_code)
        return ws

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/svc/echo", self._echo)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/svc"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def upstream() -> AsyncIterator[EchoUpstream]:
    started = EchoUpstream()
    await started.start()
    yield started
    await started.stop()


async def _gateway_for(session: aiohttp.ClientSession, mep: MepEmulator, uri: str) -> str:
    """Register ``uri`` as the demo app's service; the gateway URI apps are given for it."""
    app_id = mep_emulator.DEMO_APP_INSTANCE_ID
    body = {
        "serName": "ws-echo",
        "version": "1.0",
        "state": "ACTIVE",
        "serializer": "JSON",
        "transportInfo": {
            "id": "rest",
            "name": "REST",
            "type": "REST_HTTP",
            "protocol": "HTTP",
            "version": "1.1",
            "endpoint": {"uris": [uri]},
            "security": {},
        },
    }
    async with session.post(
        f"{mep.url}/mep/mec_service_mgmt/v1/applications/{app_id}/services",
        json=body,
        headers={"Authorization": f"Bearer {mep.issue_token(app_id)}"},
    ) as resp:
        assert resp.status == 201, await resp.text()
    (service,) = mep.services()
    gateway: str = service["transportInfo"]["endpoint"]["uris"][0]
    assert gateway.startswith(f"{mep.url}/ws-echo")
    return "ws" + gateway.removeprefix("http")


def _bearer(mep: MepEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {mep.issue_token(mep_emulator.DEMO_APP_INSTANCE_ID)}"}


async def test_gateway_proxies_websockets_both_ways(upstream: EchoUpstream) -> None:
    async with MepEmulator() as mep, aiohttp.ClientSession() as s:
        gateway = await _gateway_for(s, mep, upstream.url)
        bearer = _bearer(mep)
        async with (
            asyncio.timeout(10),
            s.ws_connect(f"{gateway}/echo?x=1", headers=bearer, protocols=("other", "chat")) as ws,
        ):
            assert ws.protocol == "chat"
            await ws.send_str("hello")
            assert await ws.receive_str() == "hello"
            await ws.send_bytes(b"\x00\xff")
            assert await ws.receive_bytes() == b"\x00\xff"
            (seen,) = upstream.headers
            assert seen["X-Forwarded-Prefix"] == "/" + gateway.rsplit("/", 1)[1]
            assert seen["X-Forwarded-Port"] == str(mep.port)
            assert seen["Authorization"] == bearer["Authorization"]
            assert seen["Sec-WebSocket-Protocol"] == "other,chat"
            await ws.send_str("close 4000")
            closing = await ws.receive()
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert (closing.data, closing.extra) == (4000, "bye")
        assert ws.close_code == 4000
        assert upstream.requests == ["/svc/echo?x=1"]


async def test_gateway_websocket_close_from_the_app_reaches_the_provider(
    upstream: EchoUpstream,
) -> None:
    async with MepEmulator() as mep, aiohttp.ClientSession() as s:
        gateway = await _gateway_for(s, mep, upstream.url)
        async with asyncio.timeout(10):
            ws = await s.ws_connect(f"{gateway}/echo", headers=_bearer(mep))
            await ws.send_str("ping")
            assert await ws.receive_str() == "ping"
            await ws.close(code=4001)
            assert await upstream.closed.get() == 4001


async def test_gateway_websocket_needs_a_token_before_the_upgrade(
    upstream: EchoUpstream,
) -> None:
    async with MepEmulator() as mep, aiohttp.ClientSession() as s:
        gateway = await _gateway_for(s, mep, upstream.url)
        for headers in ({}, {"Authorization": "Bearer not-a-jwt"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(f"{gateway}/echo", headers=headers)
            assert refused.value.status == 401
        upgrade = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        async with s.get(f"http{gateway.removeprefix('ws')}/echo", headers=upgrade) as resp:
            assert resp.status == 401
            assert await resp.json() == {"message": "Unauthorized"}
        assert upstream.requests == []


async def test_gateway_websocket_passes_the_providers_refusal_on(upstream: EchoUpstream) -> None:
    async with MepEmulator() as mep, aiohttp.ClientSession() as s:
        gateway = await _gateway_for(s, mep, upstream.url)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(f"{gateway}/missing", headers=_bearer(mep))
        assert refused.value.status == 404
        assert upstream.requests == ["/svc/missing"]
        await upstream.stop()
        with pytest.raises(aiohttp.WSServerHandshakeError) as unreachable:
            await s.ws_connect(f"{gateway}/echo", headers=_bearer(mep))
        assert unreachable.value.status == 502


async def test_emulator_stop_closes_proxied_websockets(upstream: EchoUpstream) -> None:
    async with MepEmulator() as mep, aiohttp.ClientSession() as s:
        gateway = await _gateway_for(s, mep, upstream.url)
        async with asyncio.timeout(10):
            ws = await s.ws_connect(f"{gateway}/echo", headers=_bearer(mep))
            await ws.send_str("ping")
            assert await ws.receive_str() == "ping"
            reading = asyncio.create_task(ws.receive())
            await mep.stop()
            closing = await reading
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert closing.data == aiohttp.WSCloseCode.GOING_AWAY
            assert await upstream.closed.get() == aiohttp.WSCloseCode.GOING_AWAY
