"""Hardware-in-the-loop chain: simulated device → mosquitto → EdgeCore → adapter → MEP → edge app.

Everything runs as it would on a node: a mapper-like simulated device reports over MQTT to
the EdgeCore emulator, the adapter follows EdgeCore's EventBus and registers with the MEP
emulator, and a test edge app, with an identity of its own, finds the service through MP1,
then goes through the MEP's gateway with its bearer token (which the adapter checks too):
it subscribes, receives the device's changes on its callback, writes a desired value, sees
the device apply it and the reported value converge. A websocket subscriber watches the same
subscription's stream, connected through the gateway at the ``websocketUri`` it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.device import SimulatedDevice, parse_property
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator, parse_devices
from mep_kubeedge_adapter.emulators.mep import AppIdentity, MepEmulator
from mep_kubeedge_adapter.mep.client import Mp1Client
from mep_kubeedge_adapter.mep.discovery import discover_endpoints
from mep_kubeedge_adapter.mep.models import KUBEEDGE_CATEGORY, to_ser_name
from mep_kubeedge_adapter.mep.registrar import MepState
from mep_kubeedge_adapter.service import Adapter
from mep_kubeedge_adapter.settings import load_settings
from tests.notify.conftest import Sink

pytestmark = pytest.mark.integration

NODE = "edge-node-1"
SER_NAME = to_ser_name("kubeedge-devices", NODE)
THERMO = "default/thermo-1"
EDGECORE_DEVICES = {
    "devices": [
        {
            "namespace": "default",
            "name": "thermo-1",
            "twins": {
                "temperature": {"type": "int", "actual": "21"},
                "target": {"type": "int", "actual": "20"},
            },
        }
    ]
}


def value_of(notification: dict[str, Any], prop: str) -> str | None:
    change = notification["changes"].get(prop)
    return None if change is None or change["reported"] is None else change["reported"]["value"]


class WebsocketWatcher:
    """Reads one subscription's websocket into ``frames`` until closed."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self.closed_with: int | None = None

    async def run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(message.data))
                self._arrived.set()
        self.closed_with = ws.close_code
        self._arrived.set()

    async def wait_until(self, sequence: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(f["sequence"] >= sequence for f in self.frames):
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    started = Sink()
    await started.start()
    yield started
    await started.stop()


async def test_device_to_edge_app_and_back(
    broker: MosquittoBroker, tmp_path: Path, sink: Sink
) -> None:
    provider = AppIdentity.generate(required_services=[], app_name="adapter")
    app = AppIdentity.generate(required_services=[SER_NAME], app_name="edge-app")
    async with contextlib.AsyncExitStack() as stack:
        mep = await stack.enter_async_context(MepEmulator(identities=[provider, app]))
        key = tmp_path / "mepauth.pem"
        key.write_bytes(mep.jwt_public_key_pem)
        await stack.enter_async_context(
            EdgeCoreEmulator(
                broker.host, broker.port, node_name=NODE, devices=parse_devices(EDGECORE_DEVICES)
            )
        )
        device = await stack.enter_async_context(
            SimulatedDevice(
                broker.host,
                broker.port,
                THERMO,
                [
                    parse_property("temperature:int:randomwalk:min=-500,max=500,step=5,seed=3"),
                    parse_property("target:int:constant:value=20"),
                ],
                rate=10,
                apply_delay=0.2,
            )
        )
        settings = load_settings(
            overrides={
                "node_name": NODE,
                "mqtt": {"url": broker.url},
                "api": {
                    "host": "127.0.0.1",
                    "port": 0,
                    "auth": "jwt",
                    "jwt_public_key_file": str(key),
                },
                "store": {"path": str(tmp_path / "state.sqlite3")},
                "mep": {
                    "url": mep.url,
                    "app_instance_id": provider.app_instance_id,
                    "ak": provider.ak,
                    "sk": provider.sk,
                },
            },
            environ={},
        )
        adapter = await stack.enter_async_context(Adapter(settings))
        assert adapter.registrar is not None
        async with asyncio.timeout(10):
            await adapter.eventbus.synced.wait()
            await adapter.registrar.wait_state(MepState.REGISTERED)

        # The edge app: MP1 discovery and a token, both with its own AK/SK.
        (endpoint,) = await discover_endpoints(
            mep.url,
            app.app_instance_id,
            app.ak,
            app.sk,
            ser_name=SER_NAME,
            category_id=KUBEEDGE_CATEGORY.id,
        )
        assert endpoint.startswith(mep.url + "/")
        mp1 = await stack.enter_async_context(
            Mp1Client(mep.url, app.app_instance_id, app.ak, app.sk)
        )
        bearer = {"Authorization": f"Bearer {await mp1.token()}"}
        http = await stack.enter_async_context(aiohttp.ClientSession(headers=bearer))
        async with http.get(f"{endpoint}/devices") as resp:
            assert resp.status == 200
            assert [d["name"] for d in await resp.json()] == ["thermo-1"]
        async with http.get(f"{endpoint}/devices", headers={"Authorization": ""}) as resp:
            assert resp.status == 401  # the gateway wants the app's token

        # Subscribe through the gateway: callback to the app, plus a websocket on the side.
        async with http.post(
            f"{endpoint}/subscriptions",
            json={
                "subscriptionType": "DeviceTwinChangeSubscription",
                "callbackReference": sink.url,
                "requestWebsocketUri": True,
                "filteringCriteria": {"devices": [THERMO]},
            },
        ) as resp:
            assert resp.status == 201
            subscription = await resp.json()
        sid = subscription["id"]
        assert subscription["_links"]["self"]["href"].startswith(endpoint)
        # Built from the gateway request, and the gateway carries the upgrade (with the token).
        assert subscription["websocketUri"] == f"ws{endpoint[4:]}/subscriptions/{sid}/websocket"
        watcher = WebsocketWatcher()
        ws = await stack.enter_async_context(http.ws_connect(subscription["websocketUri"]))
        reading = asyncio.create_task(watcher.run(ws))

        # The device's changes reach the app.
        await sink.wait_until(lambda: len(sink.received) >= 3, timeout=10)
        assert all(
            n["device"] == {"namespace": "default", "name": "thermo-1"} for n in sink.received
        )

        # The app writes a desired value; the device applies it; the reported value follows.
        async with http.patch(
            f"{endpoint}/devices/default/thermo-1/twin",
            data=json.dumps({"desired": {"target": "25"}}),
            headers={"Content-Type": "application/merge-patch+json"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            twin = await resp.json()
        assert twin["properties"]["target"]["desired"]["value"] == "25"
        await device.wait_for_value("target", "25")
        assert device.applied == {"target": "25"}
        await sink.wait_until(
            lambda: any(value_of(n, "target") == "25" for n in sink.received), timeout=10
        )
        async with http.get(f"{endpoint}/devices/default/thermo-1/twin") as resp:
            twin = await resp.json()
        assert twin["properties"]["target"]["reported"]["value"] == "25"
        assert twin["properties"]["target"]["desired"]["value"] == "25"

        # The websocket saw the same stream: same numbers, same bodies, nothing skipped.
        converged = next(n for n in sink.received if value_of(n, "target") == "25")
        await watcher.wait_until(converged["sequence"])
        by_sequence = {n["sequence"]: n for n in sink.received}
        seen = [f["sequence"] for f in watcher.frames]
        assert seen == list(range(seen[0], seen[-1] + 1))
        assert converged in watcher.frames
        assert all(by_sequence.get(f["sequence"], f) == f for f in watcher.frames)
        callback = [n["sequence"] for n in sink.received]
        assert callback == list(range(1, callback[-1] + 1))

        await ws.close()
        await reading
        async with http.delete(f"{endpoint}/subscriptions/{sid}") as resp:
            assert resp.status == 204
        assert mep.schema_violations == []
