"""`mep-kubeedge-adapter run` as a process: ready after the first sync, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator, parse_devices


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def next_event(stream: asyncio.StreamReader, event: str) -> dict[str, object]:
    """Read JSON log lines until one with this event name."""
    while True:
        line = await stream.readline()
        if not line:
            raise AssertionError(f"log ended before {event!r}")
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            return dict(record)


async def test_run_serves_and_stops_cleanly_on_sigterm(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    devices = parse_devices(
        {"devices": [{"name": "thermo-1", "twins": {"t": {"type": "int", "actual": "5"}}}]}
    )
    port = free_port()
    env = {
        **os.environ,
        "MKA_NODE_NAME": "edge-node",
        "MKA_MQTT__URL": broker.url,
        "MKA_STORE__PATH": str(tmp_path / "state.sqlite3"),
    }
    async with EdgeCoreEmulator(broker.host, broker.port, node_name="edge-node", devices=devices):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mep_kubeedge_adapter",
            "run",
            "--api-host",
            "127.0.0.1",
            "--api-port",
            str(port),
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        try:
            async with asyncio.timeout(20):
                await next_event(process.stderr, "eventbus_synced")
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    assert resp.status == 200
                    body = await resp.json()
                assert body["devices"] == 1
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert "mka_mqtt_connected 1.0" in await resp.text()
            process.send_signal(signal.SIGTERM)
            stopped = []
            async with asyncio.timeout(20):
                while True:
                    line = await process.stderr.readline()
                    if not line:
                        break
                    with_event = json.loads(line) if line.startswith(b"{") else {}
                    if with_event.get("event") == "stopped":
                        stopped.append(with_event["step"])
                code = await process.wait()
            assert code == 0
            # Reverse start order: the listener goes before the tasks it serves.
            assert stopped.index("api") < stopped.index("supervisor")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
