"""`mep-kubeedge-adapter demo` starts the whole chain and stops by itself."""

from __future__ import annotations

import asyncio
import sys


async def test_demo_runs_and_shows_live_changes() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mep_kubeedge_adapter",
        "demo",
        "--duration",
        "4",
        "--api-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    output = stdout.decode()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "mep-kubeedge-adapter demo is running." in output
    assert "/kubeedge_devices/v1/devices" in output
    assert "default/thermo-1: humidity=" in output
    assert "reported" in output.split("Live changes", 1)[1]
    assert output.rstrip().endswith("stopping…")
