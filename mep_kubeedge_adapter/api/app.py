"""The aiohttp application factory for the northbound API.

Middlewares, outermost first, and why in this order:

1. ``front`` (one middleware, since every layer costs on each request): tells the
   listener's ``HeaderDeadline`` that the connection delivered a request; takes
   ``X-Request-Id`` or makes one, sets it for every log line of the request
   (``REQUEST_ID_VAR``) and puts it on the response the handler returns (problems
   included; the websocket handler puts it on its upgrade itself, before preparing it);
   counts ``mka_api_requests{route,method,status}`` and the latency by route template,
   after errors became responses, so the status is the one the caller saw; and writes the
   access log line (``ACCESS_LOG``);
2. ``problem_middleware``: every failure below becomes problem+json (``problems.py``);
3. the bearer check when ``MKA_API__AUTH=jwt`` (``auth.py``), whose 401 is such a failure.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from mep_kubeedge_adapter.api import devices, iots, openapi, subscriptions
from mep_kubeedge_adapter.api.auth import EXEMPT_PATHS, BearerVerifier, auth_middleware
from mep_kubeedge_adapter.api.deps import API_BASE, DEPS, ApiDeps, Readiness
from mep_kubeedge_adapter.api.listener import HeaderDeadline
from mep_kubeedge_adapter.api.problems import REQUEST_ID, REQUEST_ID_HEADER, problem_middleware
from mep_kubeedge_adapter.console import add_console_routes
from mep_kubeedge_adapter.observability import (
    ACCESS_LOG,
    REQUEST_ID_VAR,
    ApiRequestMetrics,
)

__all__ = ["API_BASE", "DEPS", "ApiDeps", "Readiness", "create_app"]

log = structlog.get_logger(__name__)

_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
UNMATCHED_ROUTE = "unmatched"

_REQUEST_ID_PREFIX = os.urandom(8).hex()
_request_numbers = itertools.count(1)


def _new_request_id() -> str:
    """32 hex digits: a random per-process prefix and a counter, unique without ``uuid4``."""
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers) & 0xFFFFFFFFFFFFFFFF:016x}"


def _route_template(request: web.Request) -> str:
    """The route's template (``/…/devices/{namespace}/{name}``): bounded metric labels."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def _front(header_deadline: HeaderDeadline | None, metrics: ApiRequestMetrics) -> Any:
    @web.middleware
    async def front(request: web.Request, handler: Any) -> web.StreamResponse:
        if header_deadline is not None:
            header_deadline.delivered(request)
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = (
            offered if offered and _REQUEST_ID_PATTERN.match(offered) else _new_request_id()
        )
        request[REQUEST_ID] = request_id
        token = REQUEST_ID_VAR.set(request_id)
        route = _route_template(request)
        started = time.perf_counter()
        status = 500
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = request_id
            return response
        except web.HTTPException as exc:
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = request_id
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.observe(route, request.method, status, None if status == 101 else elapsed)
            ACCESS_LOG.write(
                request.method,
                route,
                status,
                round(elapsed, 6),
                debug=request.path in EXEMPT_PATHS,
            )
            REQUEST_ID_VAR.reset(token)

    return front


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    ready, detail = request.app[DEPS].readiness()
    return web.json_response(
        {"status": "ready" if ready else "not-ready", **detail}, status=200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    deps.metrics.registry_devices.set(len(deps.registry))
    deps.metrics.registry_properties.set(deps.registry.property_count())
    return web.Response(
        body=deps.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def create_app(deps: ApiDeps, *, header_deadline: HeaderDeadline | None = None) -> web.Application:
    """The API application; with ``auth=jwt`` the key is read here, so a bad key fails start.

    ``header_deadline`` is the listener's (``GuardedSite``): its middleware tells it which
    connections delivered a request.
    """
    api = deps.settings.api
    middlewares: list[Any] = [_front(header_deadline, deps.metrics.api), problem_middleware]
    if api.auth == "jwt":
        if api.jwt_public_key_file is None:
            raise ValueError("auth=jwt needs jwt_public_key_file")
        verifier = BearerVerifier.from_file(api.jwt_public_key_file, api.jwt_issuer)
        middlewares.append(auth_middleware(verifier, frozenset({subscriptions.WEBSOCKET})))
    app = web.Application(client_max_size=api.max_body, middlewares=middlewares)
    app[DEPS] = deps
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get(openapi.PATH, openapi.serve, allow_head=False)
    devices.add_routes(app)
    subscriptions.add_routes(app)
    iots.add_iots_routes(app)
    add_console_routes(app)
    return app
