"""B4 API: GET twin requests per second, the adapter against a bare aiohttp handler.

Method: the adapter runs as its own process with default settings (``info`` logging,
one JSON line per request on stderr, Prometheus metrics, request ids) and a registry
synced from the EdgeCore emulator (100 devices). ``wrk`` (its own process, one thread,
``CONNECTIONS`` keep-alive connections, ``DURATION`` s after a short warm-up) GETs one
device's twin. The baseline is a bare aiohttp application in its own process whose
handler returns the same bytes with the same content type and ETag, under the same wrk
settings. wrk is required (``make bench`` installs it, ``scripts/ensure-wrk.sh``): without
it the benchmark stops with a message rather than measure another way. A detail line adds
the CPU per request of both in process (``benchmarks.inprocess``), which moves far less with
the machine's load than the requests per second.
"""

# Setup and result files are tiny and read outside the measured windows.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import aiohttp

from benchmarks import inprocess
from benchmarks.common import (
    API_BASE,
    Figure,
    Result,
    adapter_process,
    edgecore,
    spawn,
)
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker

CONNECTIONS = 32
DURATION = 8
WARMUP = 2
TWIN_PATH = f"{API_BASE}/devices/default/dev-7/twin"


def _wrk_figures(output: str) -> tuple[float, str]:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output)
    # The latency distribution's own line ("    99%   2.71ms"), not a "+/- Stdev" column
    # that happens to end in 99%.
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    shown = f"mean {latency.group(1)}" if latency else ""
    if p99:
        shown += f", p99 {p99.group(1)}"
    return (float(rate.group(1)) if rate else 0.0), shown


def wrk_binary() -> str:
    """The wrk executable; a clear error when it is missing (never another load generator)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError(
            "wrk is not installed: B4 measures with wrk only. `make bench` installs it "
            "(scripts/ensure-wrk.sh), or install it yourself (apt-get install wrk)"
        )
    return wrk


async def _wrk(url: str, duration: int) -> tuple[float, str]:
    wrk = wrk_binary()
    process = await asyncio.create_subprocess_exec(
        wrk,
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{duration}s",
        "--latency",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    return _wrk_figures(out.decode())


async def _in_process(*args: str) -> float:
    """Median CPU µs per request of ``python -m benchmarks.inprocess ARGS`` (a child)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.inprocess",
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 300)
    if process.returncode != 0:
        raise RuntimeError(f"benchmarks.inprocess {' '.join(args)} failed")
    figures = json.loads(out)["cpu_us"]
    return float(statistics.median(figures))


async def run() -> Result:
    result = Result("B4", "API: GET twin requests per second")
    wrk_binary()
    async with MosquittoBroker() as broker:
        async with edgecore(broker, 100), adapter_process(broker) as (_, base):
            url = base + TWIN_PATH
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                assert response.status == 200
                body = await response.read()
                etag = response.headers["ETag"]
            await _wrk(url, WARMUP)
            adapter_rate, adapter_latency = await _wrk(url, DURATION)
        quiet_env = {"MKA_LOG__LEVEL": "warning"}
        async with edgecore(broker, 100), adapter_process(broker, quiet_env) as (_, base):
            await _wrk(base + TWIN_PATH, WARMUP)
            quiet_rate, _ = await _wrk(base + TWIN_PATH, DURATION)
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp, "twin.json")
        body_file.write_bytes(body)
        bare = await spawn("bare-api", str(body_file), etag)
        try:
            bare_url = f"http://127.0.0.1:{bare.info['port']}{TWIN_PATH}"
            await _wrk(bare_url, WARMUP)
            bare_rate, bare_latency = await _wrk(bare_url, DURATION)
        finally:
            await bare.stop()
    cpu_bare = await _in_process("bare")
    cpu_adapter = await _in_process("adapter", "info")
    cpu_quiet = await _in_process("adapter", "warning")
    ratio = adapter_rate / bare_rate if bare_rate else 0.0
    result.figures.append(
        Figure(
            "GET twin",
            adapter_rate,
            "requests/s",
            baseline=bare_rate,
            target="≥ 0.8 x bare aiohttp handler, access log at info",
            met=ratio >= 0.8,
            note=f"latency adapter {adapter_latency}; bare {bare_latency}",
        )
    )
    result.details.append(
        f"wrk -t1, {CONNECTIONS} connections, {DURATION} s after {WARMUP} s warm-up; "
        f"twin body {len(body)} bytes.",
    )
    result.details.append(
        f"in process (benchmarks/inprocess.py: aiohttp's protocol fed the same request on "
        f"{inprocess.CONNECTIONS} connections, no sockets), CPU per request: adapter "
        f"{cpu_adapter:.1f} µs at info, {cpu_quiet:.1f} µs at warning; bare {cpu_bare:.1f} µs "
        f"(bare / adapter {cpu_bare / cpu_adapter:.2f} at info, {cpu_bare / cpu_quiet:.2f} "
        "at warning)."
    )
    result.details.append(
        f"same run with MKA_LOG__LEVEL=warning (no per-request access log line): "
        f"{quiet_rate:,.0f} requests/s ({quiet_rate / bare_rate:.2f} x bare)."
        if bare_rate
        else "",
    )
    return result


if __name__ == "__main__":
    print(asyncio.run(run()))
