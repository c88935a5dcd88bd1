"""The MEP emulator on its own: admin API, raw mepauth signing, OpenAPI checks, CLI entry."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from mep_kubeedge_adapter.emulators import mep as mep_emulator
from mep_kubeedge_adapter.emulators.mep import DEMO_AK, DEMO_SK, AppIdentity, MepEmulator


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
    async with (
        MepEmulator(identities=[ident], lockout_seconds=0.2) as mep,
        aiohttp.ClientSession() as s,
    ):
        for _ in range(3):
            assert (await _token(s, mep.url, ident.ak, "x" * 64)).status == 401
        assert (await _token(s, mep.url, ident.ak, ident.sk)).status == 403
        await asyncio.sleep(0.3)
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
