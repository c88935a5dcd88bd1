"""An edge app follows its subscription's ``websocketUri`` through the MEP's gateway.

The demo stack (mosquitto, EdgeCore emulator, simulated devices, MEP emulator, and the adapter
checking the MEP's tokens) serves an app with an identity of its own: it finds the service over
MP1, subscribes through the gateway with ``requestWebsocketUri`` and no callback, opens the
returned URI with its bearer token, writes a desired value through the gateway and receives
that change on the websocket; deleting the subscription closes the socket with 1000.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mep_kubeedge_adapter.demo import NODE, demo_stack
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.mep import AppIdentity
from mep_kubeedge_adapter.mep.client import Mp1Client
from mep_kubeedge_adapter.mep.discovery import discover_endpoints
from mep_kubeedge_adapter.mep.models import KUBEEDGE_CATEGORY, to_ser_name
from mep_kubeedge_adapter.mep.registrar import MepState

pytestmark = pytest.mark.integration

SER_NAME = to_ser_name("kubeedge-devices", NODE)
PUMP = "default/pump-1"


def desired_of(notification: dict[str, Any], prop: str) -> str | None:
    change = notification["changes"].get(prop) or {}
    desired = change.get("desired")
    return None if desired is None else str(desired["value"])


async def test_app_receives_notifications_on_the_websocket_uri_through_the_gateway(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    provider = AppIdentity.generate(required_services=[], app_name="adapter")
    app = AppIdentity.generate(required_services=[SER_NAME], app_name="edge-app")
    async with contextlib.AsyncExitStack() as stack:
        demo = await stack.enter_async_context(
            demo_stack(
                tmp_path, broker=broker, identity=provider, other_identities=[app], auth="jwt"
            )
        )
        assert demo.adapter.registrar is not None
        async with asyncio.timeout(10):
            await demo.adapter.registrar.wait_state(MepState.REGISTERED)
        (endpoint,) = await discover_endpoints(
            demo.mep.url,
            app.app_instance_id,
            app.ak,
            app.sk,
            ser_name=SER_NAME,
            category_id=KUBEEDGE_CATEGORY.id,
        )
        mp1 = await stack.enter_async_context(
            Mp1Client(demo.mep.url, app.app_instance_id, app.ak, app.sk)
        )
        http = await stack.enter_async_context(
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {await mp1.token()}"})
        )
        async with http.post(
            f"{endpoint}/subscriptions",
            json={
                "subscriptionType": "DeviceTwinChangeSubscription",
                "requestWebsocketUri": True,
                "filteringCriteria": {"devices": [PUMP]},
            },
        ) as resp:
            assert resp.status == 201, await resp.text()
            subscription = await resp.json()
        sid = subscription["id"]
        uri = subscription["websocketUri"]
        assert uri == f"ws{endpoint.removeprefix('http')}/subscriptions/{sid}/websocket"

        async with asyncio.timeout(15):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(uri, headers={"Authorization": ""})
            assert refused.value.status == 401  # the gateway wants the app's token

            ws = await stack.enter_async_context(http.ws_connect(uri))
            async with http.patch(
                f"{endpoint}/devices/{PUMP}/twin",
                data=json.dumps({"desired": {"speed": "1500"}}),
                headers={"Content-Type": "application/merge-patch+json"},
            ) as resp:
                assert resp.status == 200, await resp.text()
            frames: list[dict[str, Any]] = []
            async for message in ws:
                assert message.type is aiohttp.WSMsgType.TEXT
                frames.append(json.loads(message.data))
                if desired_of(frames[-1], "speed") == "1500":
                    break
            assert all(f["subscriptionId"] == sid for f in frames)
            assert frames[-1]["device"] == {"namespace": "default", "name": "pump-1"}

            async with http.delete(f"{endpoint}/subscriptions/{sid}") as resp:
                assert resp.status == 204
            async for _ in ws:
                pass
            assert ws.close_code == aiohttp.WSCloseCode.OK
        assert demo.mep.schema_violations == []
