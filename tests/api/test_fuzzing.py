"""Schemathesis against the served ``/openapi.json`` on loopback: no input may cause a 5xx,
and every response must match the document.

Bounded and deterministic (fixed seed, few examples per operation, no example database),
so it runs in the normal test suite. The subscription engine is the in-memory stand-in:
the real one resolves callback host names, and generated names must not become DNS
queries.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.api.conftest import HarnessFactory, InMemorySubscriptions

pytest.importorskip("schemathesis")

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def _schemathesis() -> str:
    beside = Path(sys.executable).parent / "schemathesis"
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    if found is None:
        pytest.skip("the schemathesis command is not installed")
    return found


@pytest.mark.timeout(300)
async def test_no_generated_request_causes_a_server_error(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    harness = await make_harness(subscriptions=InMemorySubscriptions())
    command = [
        _schemathesis(),
        "run",
        f"{harness.base}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        "15",
        "--seed",
        "20261125",
        "--generation-deterministic",
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--exclude-path",
        "/kubeedge_devices/v1/subscriptions/{subscription_id}/websocket",
        "--no-color",
    ]
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-8000:]
