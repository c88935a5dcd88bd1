"""`mep-kubeedge-adapter demo` starts the whole chain and stops by itself or when asked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

DEMO = (sys.executable, "-m", "mep_kubeedge_adapter", "demo", "--api-port", "0")


async def test_demo_runs_and_shows_live_changes() -> None:
    process = await asyncio.create_subprocess_exec(
        *DEMO,
        "--duration",
        "4",
        "--no-mecm",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    output = stdout.decode()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "mep-kubeedge-adapter demo is running." in output
    assert "/kubeedge_devices/v1/devices" in output
    assert "default/thermo-1: humidity=" in output
    assert "MECM half: skipped (--no-mecm)" in output
    assert "edge app: discovered http://127.0.0.1:" in output
    assert "reported" in output.split("Live changes", 1)[1]
    assert output.rstrip().endswith("stopping…")


async def _read_until(stream: asyncio.StreamReader, lines: list[str], marker: str) -> None:
    while not lines or marker not in lines[-1]:
        line = await asyncio.wait_for(stream.readline(), timeout=90)
        assert line, "the demo ended early:\n" + "".join(lines)
        lines.append(line.decode())


def _block_after(lines: list[str], heading: str) -> list[str]:
    """The lines after the one containing ``heading``, up to the next blank line."""
    start = next(i for i, line in enumerate(lines) if heading in line) + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    return lines[start:end]


async def test_demo_deploys_the_sample_app_through_the_mecm_plugin() -> None:
    """The second half: the sample app's package through the plugin, and a working mecm-call."""
    process = await asyncio.create_subprocess_exec(
        *DEMO,
        "--duration",
        "120",  # a bound; the test stops it with SIGTERM
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        await _read_until(process.stdout, lines, "Live changes")
        output = "".join(lines)
        assert "MECM deploys the sample app to demo-node" in output
        assert "edge node demo-node, InternalIP 127.0.0.1" in output
        assert "gRPC with TLS, accessTokens checked" in output
        assert "uploadConfig   the cluster's kubeconfig for host 127.0.0.1 → Success" in output
        assert "KiB in 1 KiB chunks) → Success, uploaded" in output
        (instantiate,) = [line for line in lines if "instantiate    " in line]
        instance = instantiate.split()[1]
        assert instantiate.rstrip().endswith("on 127.0.0.1 → Success")
        query = json.loads("".join(_block_after(lines, "query          (")))
        (pod,) = query["pods"]
        assert (pod["podstatus"], pod["nodeName"], pod["nodeReady"]) == (
            "Running",
            "demo-node",
            "True",
        )
        assert pod["podname"].startswith(f"{instance}-sample-edge-app-")
        # The sample app, with the identity its deployment got, finds the adapter over MP1.
        assert "sample app: discovered http://127.0.0.1:" in output
        assert "sample app: GET …/devices/default/thermo-1/twin → 200" in output

        command = "".join(_block_after(lines, "# the sample app's status"))
        assert command.lstrip().startswith("mep-kubeedge-adapter mecm-call query --target ")
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        pasted = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        answer, errors = await asyncio.wait_for(pasted.communicate(), timeout=60)
        assert pasted.returncode == 0, errors.decode()[-2000:]
        document = json.loads(answer)
        assert [p["podname"] for p in document["pods"]] == [pod["podname"]]
        assert document["pods"][0]["podstatus"] == "Running"

        await _read_until(process.stdout, lines, "reported")  # the first half goes on
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    rest, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert ("".join(lines) + rest.decode()).rstrip().endswith("stopping…")
