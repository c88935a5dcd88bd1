"""A failing disk: the state file unusable at start, or deleted while the adapter runs.

``mep-kubeedge-adapter run`` as a real process. An unusable file ends the start with one
log line that names the path and the problem and a non-zero exit code, no traceback; a
file deleted underneath a running adapter shows in ``/readyz``, in a log line and in
``mka_store_file_ok``, since everything accepted would be gone at the next restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator

from .conftest import NODE, TWIN, AdapterProcess, Api, edgecore_devices

pytestmark = pytest.mark.integration


def _corrupt(directory: Path) -> Path:
    path = directory / "state.sqlite3"
    path.write_bytes(b"not a database, but a disk sector gone bad\n" * 100)
    return path


def _directory(directory: Path) -> Path:
    path = directory / "state.sqlite3"
    path.mkdir()
    return path


def _read_only_directory(directory: Path) -> Path:
    return Path("/sys/mka-state.sqlite3")  # sysfs refuses new files to every user


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_corrupt, "is not an SQLite database"),
        (_directory, "is a directory"),
        (_read_only_directory, "cannot create the file: Permission denied"),
    ],
    ids=["corrupt", "directory", "read-only-directory"],
)
async def test_an_unusable_store_ends_the_start_with_one_clear_line(
    tmp_path: Path, make: Callable[[Path], Path], problem: str
) -> None:
    path = make(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mep_kubeedge_adapter",
        "run",
        env={
            **os.environ,
            "MKA_NODE_NAME": NODE,
            "MKA_MQTT__URL": "mqtt://127.0.0.1:9",
            "MKA_STORE__PATH": str(path),
            "MKA_API__HOST": "127.0.0.1",
            "MKA_API__PORT": "0",
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert process.returncode not in (0, None)
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["event"] == "store_unusable"
    assert record["level"] == "error"
    assert record["path"] == str(path)
    assert problem in record["problem"]


async def test_a_store_deleted_while_running_shows_in_readiness_logs_and_metrics(
    broker: MosquittoBroker,
    adapter_process: AdapterProcess,
    http: aiohttp.ClientSession,
) -> None:
    store = Path(adapter_process.env["MKA_STORE__PATH"])
    async with EdgeCoreEmulator(
        broker.host, broker.port, node_name=NODE, devices=edgecore_devices()
    ):
        await adapter_process.start()
        api = Api(http, f"http://127.0.0.1:{adapter_process.env['MKA_API__PORT']}")
        await api.subscribe(TWIN, websocket=True)
        status, body = await api.readyz()
        assert status == 200
        assert body["store"] == {"path": str(store), "state": "ok"}

        os.unlink(store)
        lost = await adapter_process.wait_for("store_file_lost")
        assert lost["level"] == "error"
        assert lost["path"] == str(store)
        assert "lost at the next restart" in lost["problem"]
        status, body = await api.readyz()
        assert status == 503
        assert body["status"] == "not-ready"
        assert body["store"]["state"] == "deleted"
        assert "lost at the next restart" in body["store"]["problem"]
        assert "mka_store_file_ok 0.0" in await api.metrics()
