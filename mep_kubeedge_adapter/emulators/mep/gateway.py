"""Kong, EdgeGallery's API gateway: one route per registered provider endpoint.

A gateway URI ``<emulator url>/<gwName>`` leads to the provider URI mepserver rewrote it from.
Like Kong, a valid bearer token is required, the prefix is stripped and ``X-Forwarded-*``
headers are added. Websocket upgrades are proxied too, after the same token check: the
upstream handshake comes first (its refusal status, or 502, is the caller's answer), then
frames go both ways until one side closes, and its close code is passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiohttp
from aiohttp import web

from mep_kubeedge_adapter.emulators.mep.mepauth import Mepauth
from mep_kubeedge_adapter.emulators.mep.replies import kong_bad_gateway, kong_unauthorized

__all__ = ["Gateway"]

_WS_CLOSE_TIMEOUT = 2.0
"""Seconds a proxied websocket waits for the peer's close frame."""

_Websocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class Gateway:
    """Kong's per-service routes (see the module docstring).

    ``target`` maps a route name to its provider URI (mepserver's registry); ``session`` and
    ``port`` (what ``X-Forwarded-Port`` says) are set when the emulator starts. Its routes
    catch every path, so :meth:`add_routes` comes last; :meth:`stop_websockets` belongs in
    the app's ``on_shutdown``.
    """

    def __init__(self, mepauth: Mepauth, target: Callable[[str], str | None]) -> None:
        self._mepauth = mepauth
        self._target = target
        self.session: aiohttp.ClientSession | None = None
        self.port = 0
        self._pumps: set[asyncio.Task[None]] = set()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/{gwName}", self._gateway)
        router.add_route("*", "/{gwName}/{tail:.*}", self._gateway)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        gw_name = request.match_info["gwName"]
        target = self._target(gw_name)
        if target is None:
            return web.json_response({"message": "no Route matched with those values"}, status=404)
        if self._mepauth.bearer_claims(request) is None:
            return kong_unauthorized()
        tail = request.match_info.get("tail", "")
        url = target.rstrip("/") + ("/" + tail if tail else "")
        if request.query_string:
            url += "?" + request.query_string
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding", "connection")
        }
        headers.update(
            {
                "X-Forwarded-Proto": request.scheme,
                "X-Forwarded-Host": request.host.split(":")[0],
                "X-Forwarded-Port": str(self.port),
                "X-Forwarded-Prefix": f"/{gw_name}",
                "X-Real-IP": request.remote or "",
            }
        )
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._gateway_websocket(request, url, headers)
        assert self.session is not None
        try:
            async with self.session.request(
                request.method,
                url,
                headers=headers,
                data=await request.read(),
                ssl=False,
                allow_redirects=False,
            ) as upstream:
                data = await upstream.read()
                out = web.Response(status=upstream.status, body=data)
                for key, value in upstream.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                        "server",
                        "date",
                    ):
                        out.headers.add(key, value)
                return out
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return kong_bad_gateway(exc)

    async def _gateway_websocket(
        self, request: web.Request, url: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Kong's websocket proxying: the upstream handshake first, then the caller's.

        The upstream's refusal (its status, not its body) or 502 reaches the caller as a plain
        HTTP reply; after both upgrades, frames are relayed until one side closes.
        """
        offered = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        forwarded = {
            k: v
            for k, v in headers.items()
            if k.lower() != "upgrade" and not k.lower().startswith("sec-websocket-")
        }
        assert self.session is not None
        try:
            upstream = await self.session.ws_connect(
                "ws" + url.removeprefix("http"),
                headers=forwarded,
                protocols=offered,
                ssl=False,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_WS_CLOSE_TIMEOUT),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 101:  # upgraded, but not correctly
                return kong_bad_gateway(exc)
            return web.Response(status=exc.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return kong_bad_gateway(exc)
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else [], timeout=_WS_CLOSE_TIMEOUT
        )
        try:
            await client.prepare(request)
        except BaseException:
            await upstream.close(code=aiohttp.WSCloseCode.GOING_AWAY)
            raise
        pump = asyncio.create_task(self._pump_websocket(client, upstream), name="mep-emulator-ws")
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)
        await asyncio.wait([pump])  # the emulator's shutdown may cancel it
        if not pump.cancelled():
            pump.result()
        return client

    @staticmethod
    async def _pump_websocket(
        client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
    ) -> None:
        """Relay frames both ways until one side closes, then close the other with its code.

        Cancelled (emulator shutdown), it closes both sides with 1001. aiohttp's server socket
        skips the close handshake when closed under a pending ``receive()``, so the relay
        reading the app's side is stopped before that side is closed.
        """
        from_app = asyncio.create_task(_relay(client, upstream))
        from_provider = asyncio.create_task(_relay(upstream, client))
        try:
            done, _ = await asyncio.wait(
                (from_app, from_provider), return_when=asyncio.FIRST_COMPLETED
            )
            if from_app in done:  # closing the provider's side also ends from_provider
                code, reason = from_app.result()
                await upstream.close(code=_relayable_close_code(code), message=reason)
            else:
                code, reason = from_provider.result()
                from_app.cancel()
                await asyncio.wait([from_app])
                await client.close(code=_relayable_close_code(code), message=reason)
        finally:
            from_app.cancel()
            await asyncio.wait([from_app])
            going_away = aiohttp.WSCloseCode.GOING_AWAY
            await asyncio.gather(client.close(code=going_away), upstream.close(code=going_away))
            from_provider.cancel()
            await asyncio.wait([from_provider])

    async def stop_websockets(self, app: web.Application) -> None:
        """On shutdown, end every proxied websocket rather than wait for it."""
        for pump in list(self._pumps):
            pump.cancel()


async def _relay(source: _Websocket, sink: _Websocket) -> tuple[int | None, bytes]:
    """Copy data frames until ``source`` closes; its close code and reason."""
    while True:
        msg = await source.receive()
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return msg.data, (msg.extra or "").encode()
        if msg.type in (
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            return source.close_code, b""
        with contextlib.suppress(ConnectionResetError):  # the sink is closing: its relay ends
            if msg.type is aiohttp.WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await sink.send_bytes(msg.data)


def _relayable_close_code(code: int | None) -> int:
    """``code`` if it may be sent; 1000 for a close without one, 1001 for a lost connection."""
    if code is not None and (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        return code
    return aiohttp.WSCloseCode.OK if not code else aiohttp.WSCloseCode.GOING_AWAY
