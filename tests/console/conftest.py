"""Fixtures for the device console's browser tests.

* ``demo_stack``: the demo's chain in-process (mosquitto, EdgeCore emulator, one simulated
  device per demo device, MEP emulator, the adapter) with the console served by the adapter;
* ``GatewayProxy``: a reverse proxy that serves the adapter's root under a path prefix
  (strips it, adds ``X-Forwarded-*``), carries websockets and can drop them;
* ``browser``: Debian's Chromium driven by Playwright over its own driver; no browser is
  downloaded. The tests skip only when no Chromium is installed.

Everything listens on 127.0.0.1; Chromium runs with its background networking off.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, async_playwright

from mep_kubeedge_adapter import service
from mep_kubeedge_adapter.api.app import ApiDeps
from mep_kubeedge_adapter.api.app import create_app as api_create_app
from mep_kubeedge_adapter.console import INDEX_PATH, add_console_routes, is_console_path
from mep_kubeedge_adapter.demo import NODE, demo_devices_file
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.device import SimulatedDevice, load_spec
from mep_kubeedge_adapter.emulators.edgecore import EdgeCoreEmulator, load_devices
from mep_kubeedge_adapter.emulators.mep import AppIdentity, MepEmulator
from mep_kubeedge_adapter.mep.client import Mp1Client
from mep_kubeedge_adapter.service import Adapter
from mep_kubeedge_adapter.settings import load_settings

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium_path() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


# ------------------------------------------------------------------ browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium); CI installs it")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


# ------------------------------------------------------------- the demo stack


def _serves_console(app: web.Application) -> bool:
    return any(
        route.resource is not None and route.resource.canonical == INDEX_PATH
        for route in app.router.routes()
    )


@web.middleware
async def _console_outside_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """Stand-in for the API's own exemption while ``create_app`` does not wire the console."""
    if is_console_path(request.path):
        response: web.StreamResponse = await request.match_info.handler(request)
        return response
    response = await handler(request)
    return response


@pytest.fixture
def console_wired(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter's app serves the console: as ``create_app`` wires it, or added here."""

    def create_app(deps: ApiDeps) -> web.Application:
        app = api_create_app(deps)
        if not _serves_console(app):
            add_console_routes(app)
            app.middlewares.insert(0, _console_outside_auth)
        return app

    monkeypatch.setattr(service, "create_app", create_app)


@dataclass
class DemoStack:
    adapter: Adapter
    devices: dict[str, SimulatedDevice]
    mep: MepEmulator
    identity: AppIdentity

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.adapter.api_port}"

    async def mep_token(self) -> str:
        """A mepauth token, as an app gets it from the MEP."""
        async with Mp1Client(
            self.mep.url, self.identity.app_instance_id, self.identity.ak, self.identity.sk
        ) as client:
            return await client.token()


StackFactory = Callable[..., Awaitable[DemoStack]]


@pytest.fixture
async def demo_stack(
    console_wired: None, broker: MosquittoBroker, tmp_path: Path
) -> AsyncIterator[StackFactory]:
    """Start the demo chain; ``await demo_stack(auth="jwt")`` for bearer tokens."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(*, auth: str = "none") -> DemoStack:
            devices_file = demo_devices_file()
            devices = load_devices(devices_file)
            await stack.enter_async_context(
                EdgeCoreEmulator(broker.host, broker.port, node_name=NODE, devices=devices)
            )
            simulated: dict[str, SimulatedDevice] = {}
            for device in devices:
                device_id = f"{device.namespace}/{device.name}"
                spec = load_spec(devices_file, device_id)
                if spec.properties:
                    simulated[device_id] = await stack.enter_async_context(
                        SimulatedDevice(
                            broker.host,
                            broker.port,
                            device_id,
                            spec.properties,
                            rate=spec.rate or 1.0,
                            apply_delay=spec.apply_delay or 0.0,
                        )
                    )
            identity = AppIdentity.demo()
            mep = await stack.enter_async_context(
                MepEmulator("127.0.0.1", 0, identities=[identity])
            )
            api: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "auth": auth}
            if auth == "jwt":
                key_file = tmp_path / "mepauth.pem"
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"{mep.url}/admin/jwt-public-key") as reply,
                ):
                    reply.raise_for_status()
                    key_file.write_bytes(await reply.read())
                api["jwt_public_key_file"] = str(key_file)
            settings = load_settings(
                overrides={
                    "node_name": NODE,
                    "mqtt": {"url": broker.url},
                    "api": api,
                    "store": {"path": str(tmp_path / "state.sqlite3")},
                    "mep": {
                        "url": mep.url,
                        "app_instance_id": identity.app_instance_id,
                        "ak": identity.ak,
                        "sk": identity.sk,
                    },
                },
                environ={},
            )
            adapter = await stack.enter_async_context(Adapter(settings))
            async with asyncio.timeout(30):
                await adapter.eventbus.synced.wait()
            return DemoStack(adapter, simulated, mep, identity)

        yield start


# ------------------------------------------------------------- gateway proxy

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_WEBSOCKET_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)


class GatewayProxy:
    """``http://127.0.0.1:<port>/<prefix>/...`` → ``<upstream>/...`` (an ingress or gateway).

    ``paths`` records every path the browser asked for; ``drop_websockets()`` cuts every
    proxied websocket as a network failure would (no close frame reaches the page first).
    """

    def __init__(self, upstream: str, prefix: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.prefix = "/" + prefix.strip("/")
        self.paths: list[str] = []
        self._sockets: dict[web.WebSocketResponse, asyncio.Transport | None] = {}
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    async def __aenter__(self) -> GatewayProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def drop_websockets(self) -> int:
        transports = list(self._sockets.values())
        for transport in transports:
            if transport is not None:
                transport.abort()
        return len(transports)

    def _forwarded(self, request: web.Request) -> dict[str, str]:
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _HOP_BY_HOP and name.lower() not in _WEBSOCKET_HEADERS
        }
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Prefix"] = self.prefix
        return headers

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        if request.path != self.prefix and not request.path.startswith(self.prefix + "/"):
            return web.Response(status=404, text="no route with those values (gateway)")
        target = self.upstream + request.raw_path[len(self.prefix) :]
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, target)
        assert self._session is not None
        async with self._session.request(
            request.method,
            target,
            headers=self._forwarded(request),
            data=await request.read() if request.body_exists else None,
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            headers = {
                name: value
                for name, value in upstream.headers.items()
                if name.lower() not in _HOP_BY_HOP
            }
            return web.Response(status=upstream.status, body=body, headers=headers)

    async def _websocket(self, request: web.Request, target: str) -> web.StreamResponse:
        assert self._session is not None
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p
        ]
        try:
            upstream = await self._session.ws_connect(
                target.replace("http://", "ws://", 1),
                protocols=offered,
                headers=self._forwarded(request),
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text="upstream refused the websocket")
        chosen = (upstream.protocol,) if upstream.protocol else ()
        ws = web.WebSocketResponse(protocols=chosen, autoping=True)
        await ws.prepare(request)
        self._sockets[ws] = request.transport

        async def down() -> None:
            async for message in upstream:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str(message.data)
            await ws.close(code=upstream.close_code or 1000)

        async def up() -> None:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await upstream.send_str(message.data)
            await upstream.close()

        tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            self._sockets.pop(ws, None)
            await upstream.close()
            with contextlib.suppress(ConnectionError):
                await ws.close()
        return ws
