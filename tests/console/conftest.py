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
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, async_playwright

from mep_kubeedge_adapter.demo import DemoStack
from mep_kubeedge_adapter.demo import demo_stack as start_demo
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker

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


StackFactory = Callable[..., Awaitable[DemoStack]]


@pytest.fixture
async def demo_stack(broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[StackFactory]:
    """Start the demo chain; ``await demo_stack(auth="jwt")`` for bearer tokens."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(*, auth: str = "none") -> DemoStack:
            return await stack.enter_async_context(start_demo(tmp_path, broker=broker, auth=auth))

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
        self.port = int(self._runner.addresses[0][1])
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
