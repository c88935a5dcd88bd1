"""The EventBus client over TLS (``mqtts://``), reading in chunks through the TLS layer.

mosquitto listens twice: in plain text for the EdgeCore emulator and the publisher, with
TLS for the adapter, whose certificate check uses the test CA. A burst of documents
reaches the adapter whole and in order, which TLS records split across reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.emulators.broker import find_mosquitto
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator, parse_devices
from mep_kubeedge_adapter.emulators.pki import make_pki
from mep_kubeedge_adapter.kubeedge.eventbus import EventBusClient
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import MqttSettings
from tests.helpers import reported, until
from tests.kubeedge.test_eventbus import DEVICES
from tests.test_service import free_port

THERMO = DeviceId("default", "thermo-1")


@contextlib.asynccontextmanager
async def tls_mosquitto(tmp_path: Path) -> AsyncIterator[tuple[int, int, Path]]:
    """(plain port, TLS port, CA file) of a mosquitto with both listeners."""
    pki = make_pki(tmp_path)
    ca_file, cert_file, key_file = tmp_path / "ca.pem", pki.cert_file, pki.key_file
    ca_file.write_bytes(pki.ca_pem)
    plain, secure = free_port(), free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        "\n".join(
            [
                # Started as root, mosquitto would switch to its own user, who cannot read
                # the test's private files; as another user this line does nothing.
                "user root",
                "per_listener_settings false",
                "allow_anonymous true",
                "persistence false",
                f"listener {plain} 127.0.0.1",
                f"listener {secure} 127.0.0.1",
                f"cafile {ca_file}",
                f"certfile {cert_file}",
                f"keyfile {key_file}",
                f"log_dest file {tmp_path / 'mosquitto.log'}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    process = await asyncio.create_subprocess_exec(
        find_mosquitto(),
        "-c",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(10):
            for port in (plain, secure):
                while True:
                    try:
                        _, writer = await asyncio.open_connection("127.0.0.1", port)
                    except OSError:
                        await asyncio.sleep(0.05)  # the broker is still starting
                        continue
                    writer.close()
                    break
        yield plain, secure, ca_file
    finally:
        process.terminate()
        await process.wait()


@pytest.fixture
async def broker_ports(tmp_path: Path) -> AsyncIterator[tuple[int, int, Path]]:
    async with tls_mosquitto(tmp_path) as ports:
        yield ports


async def test_a_burst_over_tls_arrives_whole_and_in_order(
    broker_ports: tuple[int, int, Path],
) -> None:
    plain, secure, ca_file = broker_ports
    registry = DeviceRegistry()
    settings = MqttSettings(url=f"mqtts://127.0.0.1:{secure}", ca_file=ca_file)
    eventbus = EventBusClient(settings, "edge-node", registry, Metrics())
    async with EdgeCoreEmulator(
        "127.0.0.1", plain, node_name="edge-node", devices=parse_devices(DEVICES)
    ):
        task = asyncio.create_task(eventbus.run())
        try:
            async with asyncio.timeout(15):
                await eventbus.synced.wait()
            seen: list[str] = []
            registry.subscribe(
                lambda event: seen.append(reported(registry, THERMO, "temperature") or "")
            )

            async with aiomqtt.Client("127.0.0.1", plain) as publisher:
                for value in range(1, 2001):
                    twin = {
                        "temperature": {
                            "current": {"actual": {"value": str(value)}},
                            "metadata": {"type": "int"},
                        }
                    }
                    await publisher.publish(
                        f"$hw/events/device/{THERMO}/twin/update/document",
                        json.dumps({"event_id": "", "timestamp": 1, "twin": twin}),
                        qos=1,
                    )
            await until(registry, lambda: reported(registry, THERMO, "temperature") == "2000")
            values = [int(v) for v in seen if v]
            assert values == sorted(values)
            assert len(set(values)) == 2000
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
