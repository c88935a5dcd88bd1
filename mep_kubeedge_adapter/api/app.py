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
from mep_kubeedge_adapter.api.problems import REQUEST_ID, problem_middleware
from mep_kubeedge_adapter.console import add_console_routes
from mep_kubeedge_adapter.observability import Metrics

__all__ = ["API_BASE", "DEPS", "ApiDeps", "Readiness", "create_app"]

log = structlog.get_logger(__name__)

_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
UNMATCHED_ROUTE = "unmatched"

_REQUEST_ID_PREFIX = os.urandom(8).hex()
_request_numbers = itertools.count(1)
_METRIC_CHILDREN_LIMIT = 1024
"""Distinct (route, method, status) whose metric children are kept; more are looked up."""


def _new_request_id() -> str:
    """32 hex digits: a random per-process prefix and a counter, unique without ``uuid4``."""
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers) & 0xFFFFFFFFFFFFFFFF:016x}"


def _route_template(request: web.Request) -> str:
    """The route's template (``/…/devices/{namespace}/{name}``): bounded metric labels."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def request_context(request: web.Request, handler: Any) -> web.StreamResponse:
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if offered and _REQUEST_ID_PATTERN.match(offered) else _new_request_id()
    request[REQUEST_ID] = request_id
    tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response: web.StreamResponse = await handler(request)
        return response
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers["X-Request-Id"] = request_id


class _AccessLog:
    """The ``api_request`` logger, bound once per structlog configuration.

    ``log.info`` on the module's lazy proxy binds a new logger on every call; this binds
    one and keeps it while the configuration (processors, wrapper, factory) is the same.
    """

    def __init__(self) -> None:
        self._config: tuple[Any, ...] = ()
        self._logger: Any = None

    def get(self) -> Any:
        config = structlog.get_config()
        current = (
            config["processors"],
            config["wrapper_class"],
            config["logger_factory"],
            config["context_class"],
        )
        if len(current) != len(self._config) or any(
            a is not b for a, b in zip(current, self._config, strict=True)
        ):
            self._logger = log.bind()
            self._config = current
        return self._logger


_ACCESS_LOG = _AccessLog()


class _MetricChildren:
    """The ``mka_api_requests`` children per (route, method, status), ``mka_api_latency``
    children per route: ``labels()`` builds and checks the label tuple under a lock on
    every call, and a child never changes once made, so each is looked up once."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[str, Any] = {}

    def requests(self, route: str, method: str, status: int) -> Any:
        key = (route, method, status)
        child = self._requests.get(key)
        if child is None:
            child = self._metrics.api_requests.labels(route, method, str(status))
            if len(self._requests) < _METRIC_CHILDREN_LIMIT:
                self._requests[key] = child
        return child

    def latency(self, route: str) -> Any:
        child = self._latency.get(route)
        if child is None:
            child = self._metrics.api_latency.labels(route)
            if len(self._latency) < _METRIC_CHILDREN_LIMIT:
                self._latency[route] = child
        return child


_METRIC_CHILDREN = web.AppKey("metric_children", _MetricChildren)


@web.middleware
async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
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
        children = request.app[_METRIC_CHILDREN]
        children.requests(route, request.method, status).inc()
        if status != 101:
            children.latency(route).observe(elapsed)
        access = _ACCESS_LOG.get()
        level = access.debug if request.path in EXEMPT_PATHS else access.info
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


def create_app(deps: ApiDeps, *, header_deadline: HeaderDeadline | None = None) -> web.Application:
    """The API application; with ``auth=jwt`` the key is read here, so a bad key fails start.

    ``header_deadline`` is the listener's (``GuardedSite``): its middleware tells it which
    connections delivered a request.
    """
    api = deps.settings.api
    middlewares: list[Any] = [request_context, observe, problem_middleware]
    if header_deadline is not None:
        middlewares.insert(0, header_deadline.middleware)
    if api.auth == "jwt":
        if api.jwt_public_key_file is None:
            raise ValueError("auth=jwt needs jwt_public_key_file")
        verifier = BearerVerifier.from_file(api.jwt_public_key_file, api.jwt_issuer)
        middlewares.append(auth_middleware(verifier, frozenset({subscriptions.WEBSOCKET})))
    app = web.Application(client_max_size=api.max_body, middlewares=middlewares)
    app[DEPS] = deps
    app[_METRIC_CHILDREN] = _MetricChildren(deps.metrics)
    app.on_response_prepare.append(_echo_request_id)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get(openapi.PATH, openapi.serve, allow_head=False)
    devices.add_routes(app)
    subscriptions.add_routes(app)
    iots.add_iots_routes(app)
    add_console_routes(app)
    return app
