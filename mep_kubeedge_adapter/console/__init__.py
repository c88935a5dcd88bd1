"""The device console: a small live web page served by the adapter itself at ``/console/``.

The page is three static files shipped in the package (``static/``): plain HTML, CSS and
JavaScript, no build step and no external URL, because an edge node usually has no internet.
It holds no data of its own: everything it shows comes from the adapter's API, called with
*relative* URLs (``../kubeedge_devices/v1/...``, ``../readyz``, ``../metrics``), so it works
unchanged behind a reverse proxy that serves the adapter under a path prefix and strips it.
(The MEP's Kong route is not such a proxy: it maps ``/<gwName>`` to the registered
``/kubeedge_devices/v1`` and wants a bearer token on every request, page loads included.)

What the page does, in short: lists the node's devices and their twins, keeps them current
through websocket subscriptions (twin, state and membership changes; it reconnects with
backoff, resubscribes when its subscription is gone and resyncs after every reconnect or
``sequence`` gap), writes desired values with ``PATCH .../twin`` and ``If-Match``, shows the
readiness strip and notification counters, and draws a sparkline per numeric property from
the values it has seen. With ``MKA_API__AUTH=jwt`` the user pastes a token once; the page keeps
it in session storage and sends it as ``Authorization: Bearer`` (and, on websockets, as the
``bearer, <token>`` subprotocol offer).

Wiring: the API application calls ``add_console_routes(app)``; its bearer-token middleware
must let ``is_console_path(request.path)`` through, since a browser cannot attach a token
to a page navigation (the page's own API calls carry it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

__all__ = [
    "CONSOLE_PATH",
    "ROUTE_PATHS",
    "add_console_routes",
    "is_console_path",
]

CONSOLE_PATH = "/console"
INDEX_PATH = f"{CONSOLE_PATH}/"
ASSET_PATH = f"{CONSOLE_PATH}/{{asset}}"
ROUTE_PATHS = (CONSOLE_PATH, INDEX_PATH, ASSET_PATH)
"""The route templates this module adds (all ``GET``), e.g. to leave out of the OpenAPI check."""

_CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""Same-origin only: the page loads nothing from elsewhere and talks only to the adapter."""

_ASSETS = web.AppKey("console_assets", dict[str, "_Asset"])


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


def is_console_path(path: str) -> bool:
    """True for the console's own (static, data-free) paths."""
    return path == CONSOLE_PATH or path.startswith(INDEX_PATH)


def _load_assets() -> dict[str, _Asset]:
    static = resources.files(__name__).joinpath("static")
    assets: dict[str, _Asset] = {}
    for name, content_type in _CONTENT_TYPES.items():
        body = static.joinpath(name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
        assets[name] = _Asset(body, content_type, etag)
    return assets


def _serve(request: web.Request, name: str) -> web.Response:
    asset = request.app[_ASSETS].get(name)
    if asset is None:
        raise web.HTTPNotFound()
    headers = {
        "ETag": asset.etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if name == "index.html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    if asset.etag in {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


async def _redirect(request: web.Request) -> web.Response:
    """``/console`` → ``console/``: relative, so a stripped gateway prefix is kept."""
    return web.Response(status=301, headers={"Location": "console/"})


async def _index(request: web.Request) -> web.Response:
    return _serve(request, "index.html")


async def _asset(request: web.Request) -> web.Response:
    return _serve(request, request.match_info["asset"])


def add_console_routes(app: web.Application) -> None:
    """Serve the console at ``/console/`` (files are read once, here)."""
    app[_ASSETS] = _load_assets()
    app.router.add_get(CONSOLE_PATH, _redirect, allow_head=False)
    app.router.add_get(INDEX_PATH, _index, allow_head=False)
    app.router.add_get(ASSET_PATH, _asset, allow_head=False)
