"""The sample edge app (examples/sample_app.py) against the demo stack, as a separate process.

The stack is the one ``mep-kubeedge-adapter demo`` runs: mosquitto, the EdgeCore emulator with
the demo devices, simulated devices, the MEP emulator and the adapter. The app has its own MEP
identity whose ``requiredServices`` name the adapter's serName, as its APPD would on EdgeGallery;
it discovers the service over MP1, reads a twin through the gateway, subscribes with an HTTP
callback and must receive a notification, then removes its subscription. Those serNames are
the ones the sample app's own app package declares: lcmcontroller provisions an app's
``requiredServices`` from its APPD's appServiceRequired, -Optional and -Produced.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mep_kubeedge_adapter.demo import NODE as DEMO_NODE
from mep_kubeedge_adapter.demo import demo_stack
from mep_kubeedge_adapter.demo_mecm import provisioned_services
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.mep import AppIdentity, MepEmulator
from mep_kubeedge_adapter.mep.models import to_ser_name
from mep_kubeedge_adapter.packaging import build_csar
from mep_kubeedge_adapter.service import Adapter
from tests.deploy.conftest import ROOT

SAMPLE_APP = ROOT / "examples" / "sample_app.py"
NODE = DEMO_NODE
SER_NAME = to_ser_name("kubeedge-devices", NODE)

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    mep: MepEmulator
    adapter: Adapter
    app: AppIdentity


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def stack(broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Stack]:
    adapter_identity = AppIdentity.generate(required_services=[], app_name="adapter")
    app_identity = AppIdentity.generate(
        required_services=provisioned_services(build_csar("sample-app", [NODE]).files),
        app_name="sample-app",
    )
    async with demo_stack(
        tmp_path,
        broker=broker,
        identity=adapter_identity,
        other_identities=[app_identity],
        rate=5.0,
    ) as demo:
        yield Stack(demo.mep, demo.adapter, app_identity)


async def _run_sample_app(stack: Stack, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SAMPLE_APP),
        "--mep-url",
        stack.mep.url,
        "--app-instance-id",
        stack.app.app_instance_id,
        "--ak",
        stack.app.ak,
        "--sk",
        stack.app.sk,
        "--node",
        NODE,
        "--device",
        "default/thermo-1",
        "--property",
        "temperature",
        "--listen",
        f"127.0.0.1:{port}",
        "--discovery-timeout",
        "30",
        "--duration",
        "30",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    events = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    assert process.returncode is not None
    return process.returncode, events, stderr.decode()


async def test_sample_app_discovers_reads_and_follows_a_twin(stack: Stack) -> None:
    code, events, stderr = await _run_sample_app(stack, "--delivery", "callback", "--count", "1")
    assert code == 0, (events, stderr[-3000:])
    by_kind = {e["event"]: e for e in events}
    assert by_kind["discovered"]["serName"] == SER_NAME
    assert by_kind["discovered"]["endpoint"].startswith(stack.mep.url)
    assert by_kind["devices"]["devices"] == [
        "default/pump-1",
        "default/thermo-1",
        "default/valve-1",
    ]
    assert "temperature" in by_kind["twin"]["properties"]
    notification = by_kind["notification"]["notification"]
    assert notification["notificationType"] == "DeviceTwinChangeNotification"
    assert notification["device"] == {"namespace": "default", "name": "thermo-1"}
    assert set(notification["changes"]) == {"temperature"}
    assert by_kind["unsubscribed"]["id"] == by_kind["subscribed"]["id"]
    assert by_kind["done"]["notifications"] == 1


async def test_sample_app_without_access_to_the_service_gives_up(stack: Stack) -> None:
    outsider = AppIdentity.generate(required_services=[], app_name="outsider")
    stack.mep.identities[outsider.app_instance_id] = outsider
    stack.app = outsider
    code, events, _ = await _run_sample_app(stack, "--discovery-timeout", "2", "--count", "1")
    assert code == 1
    assert events[-1]["event"] == "error"
    assert SER_NAME in events[-1]["error"]
