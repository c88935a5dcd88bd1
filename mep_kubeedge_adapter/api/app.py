"""The aiohttp application factory for the northbound API.

Middlewares, outermost first, and why in this order:

1. ``request_context``: takes ``X-Request-Id`` or makes one, binds it into the structlog
   context for every log line of the request; ``on_response_prepare`` echoes it, so even a
   websocket upgrade and a problem response carry it;
2. ``observe``: counts ``mka_api_requests{route,method,status}`` and the latency by route
   template, after errors became responses, so the status is the one the caller saw;
3. ``problem_middleware``: every failure below becomes problem+json (``problems.py``);
4. the bearer check when ``MKA_API__AUTH=jwt`` (``auth.py``), whose 401 is such a failure.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from mep_kubeedge_adapter.api import devices, iots, openapi, subscriptions
from mep_kubeedge_adapter.api.auth import EXEMPT_PATHS, BearerVerifier, auth_middleware
from mep_kubeedge_adapter.api.deps import API_BASE, DEPS, ApiDeps, Readiness
from mep_kubeedge_adapter.api.problems import REQUEST_ID, problem_middleware
from mep_kubeedge_adapter.console import add_console_routes

__all__ = ["API_BASE", "DEPS", "ApiDeps", "Readiness", "create_app"]

log = structlog.get_logger(__name__)

_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
UNMATCHED_ROUTE = "unmatched"


def _route_template(request: web.Request) -> str:
    """The route's template (``/…/devices/{namespace}/{name}``): bounded metric labels."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def request_context(request: web.Request, handler: Any) -> web.StreamResponse:
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID_PATTERN.match(offered) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        response: web.StreamResponse = await handler(request)
        return response


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers["X-Request-Id"] = request_id


@web.middleware
async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
    deps = request.app[DEPS]
    route = _route_template(request)
    started = time.perf_counter()
    status = 500
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        deps.metrics.api_requests.labels(route, request.method, str(status)).inc()
        if status != 101:
            deps.metrics.api_latency.labels(route).observe(elapsed)
        level = log.debug if request.path in EXEMPT_PATHS else log.info
        level(
            "api_request",
            method=request.method,
            route=route,
            status=status,
            seconds=round(elapsed, 6),
        )


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


def create_app(deps: ApiDeps) -> web.Application:
    """The API application; with ``auth=jwt`` the key is read here, so a bad key fails start."""
    api = deps.settings.api
    middlewares: list[Any] = [request_context, observe, problem_middleware]
    if api.auth == "jwt":
        if api.jwt_public_key_file is None:
            raise ValueError("auth=jwt needs jwt_public_key_file")
        verifier = BearerVerifier.from_file(api.jwt_public_key_file, api.jwt_issuer)
        middlewares.append(auth_middleware(verifier, frozenset({subscriptions.WEBSOCKET})))
    app = web.Application(client_max_size=api.max_body, middlewares=middlewares)
    app[DEPS] = deps
    app.on_response_prepare.append(_echo_request_id)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get(openapi.PATH, openapi.serve, allow_head=False)
    devices.add_routes(app)
    subscriptions.add_routes(app)
    iots.add_iots_routes(app, device_crs=deps.device_crs)
    add_console_routes(app)
    return app
