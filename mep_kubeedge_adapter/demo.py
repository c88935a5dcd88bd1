"""``mep-kubeedge-adapter demo``: the whole chain on one machine, with no setup.

Starts, in order: a private mosquitto on a free loopback port, the EdgeCore emulator
serving the demo devices, one simulated device (mapper) per demo device, the MEP
emulator, and the adapter itself. Then the second half (:mod:`.demo_mecm`, with the
``mecm`` extra): a Kubernetes API emulator with the demo's edge node and the KubeEdge
plugin for MECM, through which the sample app's app package is deployed to that node as
EdgeGallery's MECM would. It prints the URLs and ready-to-paste curl and ``mecm-call``
lines, runs a tiny edge app (the sample app, with the identity its deployment got) that
discovers the service through MP1 and reads a twin through the advertised URI, and prints
one line per twin or state change until it is stopped (Ctrl-C, SIGTERM or ``--duration``).
Everything stops in reverse order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from mep_kubeedge_adapter.domain import (
    ChangeEvent,
    DeviceAdded,
    DeviceRemoved,
    StateChanged,
    TwinChanged,
)
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.device import SimulatedDevice, load_spec
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator, load_devices
from mep_kubeedge_adapter.emulators.mep import AppIdentity, MepEmulator
from mep_kubeedge_adapter.service import Adapter
from mep_kubeedge_adapter.settings import load_settings

NODE = "demo-node"
BASE = "/kubeedge_devices/v1"


def demo_devices_file() -> Path:
    """The device file the demo serves (shipped inside the package)."""
    return Path(str(resources.files("mep_kubeedge_adapter").joinpath("demo_devices.yaml")))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.add_argument(
        "--api-port", type=int, default=8080, help="adapter API port (0 = any free port)"
    )
    parser.add_argument("--mep-port", type=int, default=0, help="MEP emulator port (0 = free)")
    parser.add_argument("--devices", type=Path, default=None, help="device file to serve")
    parser.add_argument(
        "--no-mecm",
        action="store_true",
        help="skip the second half (the MECM plugin deploying the sample app)",
    )
    parser.add_argument(
        "--mecm-port", type=int, default=0, help="MECM plugin port (0 = any free port)"
    )
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )


def _rfc3339(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def change_line(event: ChangeEvent) -> str | None:
    """One human line per registry change (the demo's live view)."""
    if isinstance(event, TwinChanged):
        parts = []
        for name, change in sorted(event.changes.items()):
            if change.deleted:
                parts.append(f"{name} deleted")
                continue
            if change.reported_changed and change.reported is not None:
                before = change.previous_reported.value if change.previous_reported else "-"
                parts.append(f"{name} reported {before} -> {change.reported.value}")
            if change.desired_changed:
                before = change.previous_desired.value if change.previous_desired else "-"
                after = change.desired.value if change.desired else "-"
                parts.append(f"{name} desired {before} -> {after}")
        if not parts:
            return None
        return f"{_rfc3339(event.timestamp)}  {event.device}  " + ", ".join(parts)
    if isinstance(event, StateChanged):
        return f"{_rfc3339(event.timestamp)}  {event.device}  state {event.previous or '-'} -> {event.state}"
    if isinstance(event, DeviceAdded):
        return f"{_rfc3339(event.timestamp)}  {event.device.id}  added"
    if isinstance(event, DeviceRemoved):
        return f"{_rfc3339(event.timestamp)}  {event.device.id}  removed"
    return None


def banner(api: str, mep: str, identity: AppIdentity) -> str:
    return f"""
mep-kubeedge-adapter demo is running.

  adapter API      {api}{BASE}
  device console   {api}/console/
  health / ready   {api}/healthz   {api}/readyz
  metrics          {api}/metrics
  OpenAPI          {api}/openapi.json
  MEP emulator     {mep}   (app instance {identity.app_instance_id})
"""


def try_lines(api: str, mep: str, websocket_uri: str | None, mecm_call: str | None = None) -> str:
    """Ready-to-paste curl (and ``mecm-call``) lines against the running demo."""
    lines = [
        "Try:",
        f"  curl -s {api}{BASE}/devices",
        f"  curl -s -i {api}{BASE}/devices/default/thermo-1/twin",
        "  curl -s -X PATCH -H 'Content-Type: application/merge-patch+json' \\",
        f'       -d \'{{"desired": {{"speed": "1500"}}}}\' {api}{BASE}/devices/default/pump-1/twin',
        "  curl -s -X POST -H 'Content-Type: application/json' \\",
        '       -d \'{"subscriptionType": "DeviceTwinChangeSubscription", "requestWebsocketUri": true}\' \\',
        f"       {api}{BASE}/subscriptions",
    ]
    if websocket_uri:
        http_uri = websocket_uri.replace("ws://", "http://", 1)
        lines += [
            "  # watch notifications on a websocket subscription the demo made for you:",
            "  curl -s -N --http1.1 -H 'Connection: Upgrade' -H 'Upgrade: websocket' \\",
            "       -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: bWthLWRlbW8td3Mta2V5IQ==' \\",
            f"       {http_uri}",
        ]
    lines += [
        f"  curl -s {api}/readyz",
        f"  curl -s {mep}/admin/services      # what the MEP has registered",
    ]
    if mecm_call:
        lines += [
            "  # the sample app's status, as MECM's UI gets it from the plugin:",
            f"  {mecm_call}",
        ]
    lines += ["", "Live changes (Ctrl-C to stop):"]
    return "\n".join(lines)


async def demo_subscription(api: str) -> str | None:
    """Create a websocket subscription through the API, as an edge app would."""
    body = {"subscriptionType": "DeviceTwinChangeSubscription", "requestWebsocketUri": True}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{api}{BASE}/subscriptions", json=body) as resp,
        ):
            if resp.status != 201:
                return None
            reply = await resp.json()
    except aiohttp.ClientError:
        return None
    uri = reply.get("websocketUri")
    return uri if isinstance(uri, str) else None


async def edge_app_check(
    mep_url: str, identity: AppIdentity, out: TextIO, *, who: str = "edge app"
) -> None:
    """What an edge app does: discover the service over MP1, then read a twin through it."""
    from mep_kubeedge_adapter.mep.discovery import discover_endpoints

    try:
        uris = await discover_endpoints(
            mep_url,
            identity.app_instance_id,
            identity.ak,
            identity.sk,
            category_id="kubeedge-device-management",
        )
    except Exception as exc:
        print(f"{who}: MP1 discovery failed: {exc}", file=out)
        return
    if not uris:
        print(f"{who}: MP1 discovery found no KubeEdge device service yet", file=out)
        return
    print(f"{who}: discovered {uris[0]} through MP1", file=out)
    async with aiohttp.ClientSession() as session:
        token = await _token(session, mep_url, identity)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with session.get(f"{uris[0]}/devices/default/thermo-1/twin", headers=headers) as resp:
            body = await resp.text()
            print(
                f"{who}: GET …/devices/default/thermo-1/twin → {resp.status} {body[:200]}",
                file=out,
            )


async def _token(session: aiohttp.ClientSession, mep_url: str, identity: AppIdentity) -> str | None:
    from mep_kubeedge_adapter.mep.client import Mp1Client

    async with Mp1Client(mep_url, identity.app_instance_id, identity.ak, identity.sk) as client:
        return await client.token()


@dataclass(slots=True)
class DemoStack:
    """The running demo chain (also what the browser and sample-app tests drive)."""

    broker: MosquittoBroker
    edgecore: EdgeCoreEmulator
    devices: dict[str, SimulatedDevice]
    """Simulated device per ``ns/name``."""
    mep: MepEmulator
    identity: AppIdentity
    """The adapter's own MEP identity."""
    adapter: Adapter

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.adapter.api_port}"

    async def mep_token(self) -> str:
        """A mepauth token for the adapter's identity, as an app gets one from the MEP."""
        from mep_kubeedge_adapter.mep.client import Mp1Client

        identity = self.identity
        async with Mp1Client(
            self.mep.url, identity.app_instance_id, identity.ak, identity.sk
        ) as client:
            return await client.token()


@asynccontextmanager
async def demo_stack(
    state_dir: Path,
    *,
    broker: MosquittoBroker | None = None,
    devices_file: Path | None = None,
    api: Mapping[str, Any] | None = None,
    identity: AppIdentity | None = None,
    other_identities: Sequence[AppIdentity] = (),
    rate: float | None = None,
    auth: str = "none",
    log_level: str = "info",
) -> AsyncIterator[DemoStack]:
    """Start broker, EdgeCore emulator, simulated devices, MEP emulator and the adapter.

    Everything stops in reverse order on exit. ``api`` overrides the adapter's API
    settings (default: 127.0.0.1 on a free port); ``rate`` overrides every simulated
    device's report rate; ``other_identities`` are further apps the MEP knows;
    ``auth="jwt"`` makes the adapter verify the tokens the MEP emulator issues.
    """
    devices_file = devices_file or demo_devices_file()
    devices = load_devices(devices_file)
    identity = identity or AppIdentity.demo()
    async with AsyncExitStack() as stack:
        if broker is None:
            broker = await stack.enter_async_context(MosquittoBroker())
        edgecore = await stack.enter_async_context(
            EdgeCoreEmulator(broker.host, broker.port, node_name=NODE, devices=devices)
        )
        simulated: dict[str, SimulatedDevice] = {}
        for device in devices:
            device_id = f"{device.namespace}/{device.name}"
            spec = load_spec(devices_file, device_id)
            if not spec.properties:
                continue
            simulated[device_id] = await stack.enter_async_context(
                SimulatedDevice(
                    broker.host,
                    broker.port,
                    device_id,
                    spec.properties,
                    rate=rate or spec.rate or 1.0,
                    apply_delay=spec.apply_delay or 0.0,
                )
            )
        mep = await stack.enter_async_context(
            MepEmulator("127.0.0.1", 0, identities=[identity, *other_identities])
        )
        api_settings: dict[str, Any] = {"host": "127.0.0.1", "port": 0, **(api or {})}
        if auth == "jwt":
            key_file = state_dir / "mepauth-public.pem"
            key_file.write_bytes(mep.jwt_public_key_pem)
            api_settings.update(auth="jwt", jwt_public_key_file=str(key_file))
        settings = load_settings(
            overrides={
                "node_name": NODE,
                "mqtt": {"url": broker.url},
                "api": api_settings,
                "store": {"path": str(state_dir / "state.sqlite3")},
                "mep": {
                    "url": mep.url,
                    "app_instance_id": identity.app_instance_id,
                    "ak": identity.ak,
                    "sk": identity.sk,
                },
                "log": {"level": log_level, "format": "console"},
            },
            environ={},
        )
        adapter = await stack.enter_async_context(Adapter(settings))
        await asyncio.wait_for(adapter.eventbus.synced.wait(), timeout=30)
        yield DemoStack(broker, edgecore, simulated, mep, identity, adapter)


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    from mep_kubeedge_adapter import demo_mecm

    out = sys.stdout
    async with AsyncExitStack() as stack:
        state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mka-demo-")))
        mecm_skipped = "skipped (--no-mecm)" if args.no_mecm else demo_mecm.available()
        sample = None if mecm_skipped else demo_mecm.sample_app_identity(NODE)
        demo = await stack.enter_async_context(
            demo_stack(
                state_dir,
                devices_file=args.devices,
                api={"port": args.api_port},
                other_identities=[sample[1]] if sample else (),
                log_level=args.log_level,
            )
        )
        adapter, mep, identity = demo.adapter, demo.mep, demo.identity
        api = demo.api_url
        print(banner(api, mep.url, identity), file=out, flush=True)
        for known in adapter.registry.devices():
            props = ", ".join(
                f"{name}={p.reported.value if p.reported else '-'}"
                for name, p in sorted(known.properties.items())
            )
            print(f"  {known.id}: {props}", file=out)
        print(file=out)
        await _wait_registered(adapter, mep, out, timeout=10)
        print(file=out)
        mecm = None
        if sample is None:
            print(f"MECM half: {mecm_skipped}", file=out)
            await edge_app_check(mep.url, identity, out)
        else:
            package, app_identity = sample
            print(
                f"MECM deploys the sample app to {NODE} through the KubeEdge plugin for MECM:",
                file=out,
                flush=True,
            )
            mecm = await stack.enter_async_context(
                demo_mecm.mecm_half(
                    state_dir / "mecm",
                    node=NODE,
                    package=package,
                    identity=app_identity,
                    mep_url=mep.url,
                    out=out,
                    plugin_port=args.mecm_port,
                )
            )
            print(file=out)
            await edge_app_check(mep.url, mecm.app_identity, out, who="sample app")
        print(file=out)
        websocket_uri = await demo_subscription(api)
        mecm_call = mecm.mecm_call() if mecm else None
        print(try_lines(api, mep.url, websocket_uri, mecm_call), file=out, flush=True)

        def live(event: ChangeEvent) -> None:
            line = change_line(event)
            if line:
                print(line, file=out, flush=True)

        stack.callback(adapter.registry.subscribe(live))
        await _wait_stop(stop, args.duration)
        print("stopping…", file=out, flush=True)


async def _wait_registered(adapter: Adapter, mep: MepEmulator, out: TextIO, timeout: float) -> None:
    """Wait for the MP1 registration and show what the MEP now lists."""
    from mep_kubeedge_adapter.mep.registrar import MepState

    if adapter.registrar is None:
        return
    try:
        await asyncio.wait_for(adapter.registrar.wait_state(MepState.REGISTERED), timeout)
    except TimeoutError:
        print(f"MEP registration not done yet: {adapter.registrar.status()}", file=out)
        return
    for service in mep.services():
        print(f"MEP lists {service.get('serName')} ({service.get('state')})", file=out)


async def _wait_stop(stop: asyncio.Event, duration: float | None) -> None:
    if duration is None:
        await stop.wait()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)


__all__ = ["DemoStack", "add_arguments", "change_line", "demo_stack", "run"]
