"""What every benchmark shares: child processes, the adapter under test, figures, the machine.

Every load generator, sink and baseline runs in its own process, so one Python
interpreter never measures itself; processes talk over loopback and print one
``READY {json}`` line on stdout once they serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.edgecore import (
    EdgeCoreEmulator,
    EmulatedDevice,
    Twin,
    TwinValue,
)

NODE = "bench-node"
READY_PREFIX = "READY "
API_BASE = "/kubeedge_devices/v1"


# ----------------------------------------------------------------------------- figures


@dataclass
class Figure:
    """One measured figure, with the baseline measured in the same run (if there is one)."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline:
            return None
        return self.value / self.baseline


@dataclass
class Result:
    """A benchmark's figures and the extra table lines it wants to show.

    ``files`` are extra files the benchmark writes next to the report (a plot), by name.
    """

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)


def percentiles(samples: Sequence[float], points: Sequence[float] = (50, 90, 99)) -> list[float]:
    """Nearest-rank percentiles of ``samples`` (empty → zeros)."""
    if not samples:
        return [0.0 for _ in points]
    ordered = sorted(samples)
    out = []
    for p in points:
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        out.append(ordered[rank - 1])
    return out


# ----------------------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) // 1024} MiB"
    versions = []
    for name in ("aiohttp", "aiomqtt", "paho-mqtt", "orjson", "uvloop"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} absent")
    mosquitto = ""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = subprocess.run(
            [binary, "-h"], capture_output=True, text=True, timeout=5, check=False
        )
        mosquitto = (probe.stdout or probe.stderr).splitlines()[0].strip()
    wrk = shutil.which("wrk")
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "libraries": ", ".join(versions),
        "broker": mosquitto,
        "load generator": _wrk_version(wrk) if wrk else "wrk not installed",
    }


def _wrk_version(binary: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=5, check=False
        )
        first = (probe.stdout or probe.stderr).strip().splitlines()
        if first:
            return first[0].split(" Copyright")[0].strip()
    return "wrk"


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Child:
    """A ``python -m benchmarks.procs VERB ...`` child that announces itself with READY."""

    def __init__(self, process: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.process = process
        self.info = info

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()

    async def result(self, timeout: float = 300) -> dict[str, Any]:
        """The child's last stdout line as JSON, once it exits by itself."""
        assert self.process.stdout is not None
        out = await asyncio.wait_for(self.process.stdout.read(), timeout)
        await self.process.wait()
        lines = [line for line in out.decode().splitlines() if line.strip()]
        if self.process.returncode != 0 or not lines:
            raise RuntimeError(f"benchmark child failed ({self.process.returncode})")
        parsed: dict[str, Any] = json.loads(lines[-1])
        return parsed


async def spawn(
    verb: str,
    *args: str,
    wait_ready: bool = True,
    env: dict[str, str] | None = None,
    module: str = "benchmarks.procs",
) -> Child:
    """Start a worker process (``python -m module verb args``); wait for its READY line
    unless ``wait_ready`` is false."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        verb,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=None,
        env={**os.environ, **(env or {})},
    )
    child = Child(process, {})
    if wait_ready:
        child.info = await _ready(process)
    return child


async def _ready(process: asyncio.subprocess.Process, timeout: float = 60) -> dict[str, Any]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(process.stdout.readline(), deadline - time.monotonic())
        if not line:
            raise RuntimeError(f"child exited before it was ready ({await process.wait()})")
        text = line.decode().strip()
        if text.startswith(READY_PREFIX):
            info: dict[str, Any] = json.loads(text[len(READY_PREFIX) :])
            return info
    raise TimeoutError("child did not become ready")


def announce(info: dict[str, Any]) -> None:
    """A worker's READY line."""
    print(READY_PREFIX + json.dumps(info), flush=True)


# ----------------------------------------------------------------------------- the adapter


def bench_devices(count: int, properties: int = 1) -> list[EmulatedDevice]:
    now = int(time.time() * 1000)
    names = ["temperature", *(f"p{i}" for i in range(1, properties))]
    return [
        EmulatedDevice(
            "default",
            f"dev-{index}",
            "benchmark device",
            {name: Twin(type="int", actual=TwinValue("0", now)) for name in names},
        )
        for index in range(count)
    ]


@asynccontextmanager
async def adapter_process(
    broker: MosquittoBroker, extra_env: dict[str, str] | None = None
) -> AsyncIterator[tuple[Child, str]]:
    """The real service (``python -m mep_kubeedge_adapter run``) in its own process.

    Default settings (log level ``info``, JSON logs on stderr, sent to /dev/null here, or
    appended to the file ``BENCH_ADAPTER_LOG`` names, for a diagnosis), the API on a free
    loopback port. Yields the process and the API base URL once ``/readyz``
    answers 200 (EventBus connected and synced with the EdgeCore emulator).
    """
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="mka-bench-"))
    env = {
        **os.environ,
        "MKA_NODE_NAME": NODE,
        "MKA_MQTT__URL": broker.url,
        "MKA_MQTT__TOPIC_LAYOUT": "namespaced",
        "MKA_API__HOST": "127.0.0.1",
        "MKA_API__PORT": str(port),
        "MKA_STORE__PATH": str(workdir / "state.sqlite3"),
        **(extra_env or {}),
    }
    log_path = os.environ.get("BENCH_ADAPTER_LOG")
    log_file = open(log_path, "ab") if log_path else None  # noqa: SIM115, ASYNC230 (closed below)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mep_kubeedge_adapter",
        "run",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log_file or asyncio.subprocess.DEVNULL,
        env=env,
    )
    child = Child(process, {"api_port": port})
    base = f"http://127.0.0.1:{port}"
    profiler: asyncio.subprocess.Process | None = None
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                if process.returncode is not None:
                    raise RuntimeError("the adapter exited while starting")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(base + "/readyz") as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise TimeoutError("the adapter did not become ready")
                await asyncio.sleep(0.1)
        profile_dir = os.environ.get("BENCH_PROFILE_DIR")
        pyspy = shutil.which(
            "py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        )
        if profile_dir and pyspy:
            out = Path(profile_dir) / f"adapter-{process.pid}.txt"
            profiler = await asyncio.create_subprocess_exec(
                pyspy,
                "record",
                "--format",
                "raw",
                "--rate",
                "200",
                "-o",
                str(out),
                "-p",
                str(process.pid),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        yield child, base
    finally:
        if profiler is not None and profiler.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(profiler.wait(), 20)
        await child.stop()
        if log_file is not None:
            log_file.close()
        shutil.rmtree(workdir, ignore_errors=True)


@asynccontextmanager
async def edgecore(
    broker: MosquittoBroker, devices: int, properties: int = 1
) -> AsyncIterator[EdgeCoreEmulator]:
    """The EdgeCore emulator with ``devices`` bench devices, so the adapter's sync finds them."""
    async with EdgeCoreEmulator(
        broker.host, broker.port, node_name=NODE, devices=bench_devices(devices, properties)
    ) as emulator:
        yield emulator


async def subscribe(
    session: aiohttp.ClientSession, base: str, body: dict[str, Any]
) -> dict[str, Any]:
    async with session.post(f"{base}{API_BASE}/subscriptions", json=body) as response:
        if response.status != 201:
            raise RuntimeError(f"subscription refused: {response.status} {await response.text()}")
        created: dict[str, Any] = await response.json()
        return created


def publisher_args(
    broker: MosquittoBroker, count: int, devices: int, rate: float = 0.0
) -> list[str]:
    return [broker.host, str(broker.port), str(count), str(devices), str(rate)]


async def publish(broker: MosquittoBroker, count: int, devices: int, rate: float = 0.0) -> None:
    """Publish ``count`` twin documents from a separate process (``rate`` 0 = as fast as it can)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.publisher",
        *publisher_args(broker, count, devices, rate),
    )
    if await process.wait() != 0:
        raise RuntimeError("publisher failed")
