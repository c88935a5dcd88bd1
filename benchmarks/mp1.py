"""B6 MP1: cold start to 50 registered services, and MP1 calls per minute in steady state.

Method: broker, the EdgeCore emulator with 48 devices and the MEP emulator (request
validation off, so the emulator's own schema checks do not slow the MEP side) run in
this process; the adapter is started as a fresh process (``run``, per-device service
mode → 48 device services + the node service + the iots service = 50). Cold start is
the time from spawning the process to the MEP emulator holding 50 services, polled
every 10 ms. Steady state: with a 1 s heartbeat the emulator's call counter is read
over ``WINDOW`` seconds once everything is registered, and compared with
``steady_calls_per_minute``; the figure at the default 30 s heartbeat is the formula
with the measured rate's agreement.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import NODE, Figure, Result, bench_devices, free_port
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator
from mep_kubeedge_adapter.emulators.mep import AppIdentity, MepEmulator
from mep_kubeedge_adapter.mep.registrar import steady_calls_per_minute

DEVICES = 48
SERVICES = DEVICES + 2
HEARTBEAT = 1.0
WINDOW = 10.0


async def run() -> Result:
    result = Result("B6", "MP1 registration")
    identity = AppIdentity.generate()
    workdir = Path(tempfile.mkdtemp(prefix="mka-bench-mp1-"))
    try:
        async with (
            MosquittoBroker() as broker,
            EdgeCoreEmulator(
                broker.host, broker.port, node_name=NODE, devices=bench_devices(DEVICES)
            ),
            MepEmulator(identities=[identity], validate=False) as mep,
        ):
            port = free_port()
            env = {
                **os.environ,
                "MKA_NODE_NAME": NODE,
                "MKA_MQTT__URL": broker.url,
                "MKA_API__HOST": "127.0.0.1",
                "MKA_API__PORT": str(port),
                "MKA_STORE__PATH": str(workdir / "state.sqlite3"),
                "MKA_MEP__URL": mep.url,
                "MKA_MEP__APP_INSTANCE_ID": identity.app_instance_id,
                "MKA_MEP__AK": identity.ak,
                "MKA_MEP__SK": identity.sk,
                "MKA_MEP__SERVICE_MODE": "per-device",
                "MKA_MEP__HEARTBEAT_INTERVAL": str(HEARTBEAT),
            }
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mep_kubeedge_adapter",
                "run",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
            )
            try:
                cold = None
                deadline = started + 60
                while time.perf_counter() < deadline:
                    if len(mep.services()) >= SERVICES:
                        cold = time.perf_counter() - started
                        break
                    await asyncio.sleep(0.01)
                first_calls = mep.calls_total
                await asyncio.sleep(2 * HEARTBEAT)
                mep.reset_calls()
                await asyncio.sleep(WINDOW)
                calls = mep.calls_total
                by_route = dict(mep.calls)
            finally:
                process.terminate()
                await process.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    measured = calls * 60.0 / WINDOW
    expected = steady_calls_per_minute(SERVICES, HEARTBEAT)
    at_default = steady_calls_per_minute(SERVICES, 30.0)
    scaled = measured * HEARTBEAT / 30.0 + (at_default - SERVICES * 60.0 / 30.0)
    result.figures.append(
        Figure(
            f"cold start → {SERVICES} services registered",
            cold if cold is not None else float("inf"),
            "s",
            target="≤ 3 s",
            met=cold is not None and cold <= 3.0,
            note=f"{first_calls} MP1 calls until then (token, list, registrations)",
        )
    )
    result.figures.append(
        Figure(
            "steady-state MP1 calls at the default 30 s heartbeat",
            scaled,
            "calls/min",
            target="reported",
            note=(
                f"measured {measured:,.0f} calls/min at a {HEARTBEAT:g} s heartbeat over "
                f"{WINDOW:g} s (formula {expected:,.0f}); formula at 30 s: {at_default:,.1f}"
            ),
        )
    )
    result.details.append(
        "calls in the window by route: "
        + ", ".join(f"{route} x{n}" for route, n in sorted(by_route.items()))
    )
    return result


if __name__ == "__main__":
    print(asyncio.run(run()))
