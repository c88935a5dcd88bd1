"""Emulator + simulated device + the adapter service: twins converge, writes reach the device."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp

from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.device import SimulatedDevice, parse_property
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator, parse_devices
from mep_kubeedge_adapter.service import Adapter
from mep_kubeedge_adapter.settings import load_settings
from mep_kubeedge_adapter.usecases import write_desired
from tests.helpers import reported, until

PUMP = DeviceId("default", "pump-1")


async def test_simulated_device_and_adapter_converge(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    devices = parse_devices(
        {
            "devices": [
                {"namespace": "default", "name": "pump-1", "twins": {"speed": {"type": "int"}}}
            ]
        }
    )
    settings = load_settings(
        overrides={
            "node_name": "edge-node",
            "mqtt": {"url": broker.url},
            "api": {"host": "127.0.0.1", "port": 0},
            "store": {"path": str(tmp_path / "state.sqlite3")},
        },
        environ={},
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            EdgeCoreEmulator(broker.host, broker.port, node_name="edge-node", devices=devices)
        )
        device = await stack.enter_async_context(
            SimulatedDevice(
                broker.host,
                broker.port,
                "default/pump-1",
                [parse_property("speed:int:constant:value=1000")],
                rate=20,
                apply_delay=0.2,
            )
        )
        adapter = await stack.enter_async_context(Adapter(settings))
        async with asyncio.timeout(10):
            await adapter.eventbus.synced.wait()
        await until(adapter.registry, lambda: reported(adapter.registry, PUMP, "speed") == "1000")
        pump = adapter.registry.get(PUMP)
        assert pump is not None and pump.state == "online"

        after = await write_desired(adapter.registry, adapter.writer, PUMP, {"speed": "1500"})
        assert after.properties["speed"].desired is not None
        assert after.properties["speed"].desired.value == "1500"
        # EdgeCore sends a delta; the simulated device applies it and reports it back.
        await device.wait_for_value("speed", "1500")
        await until(adapter.registry, lambda: reported(adapter.registry, PUMP, "speed") == "1500")

        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{adapter.api_port}/readyz") as resp,
        ):
            body = await resp.json()
            assert resp.status == 200
            assert body["eventbus"]["mqtt"] == "connected"
            assert body["eventbus"]["edgecore"] == "responsive"
        await stack.aclose()
    # The simulated device said goodbye before the adapter stopped.
