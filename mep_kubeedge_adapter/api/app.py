"""The aiohttp application factory for the northbound API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import Settings
from mep_kubeedge_adapter.usecases import DesiredWriter

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


@dataclass(slots=True)
class ApiDeps:
    """What the handlers need from the service; built by the composition root."""

    settings: Settings
    registry: DeviceRegistry
    metrics: Metrics
    readiness: Readiness
    writer: DesiredWriter


DEPS = web.AppKey("deps", ApiDeps)


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
    app = web.Application(client_max_size=deps.settings.api.max_body)
    app[DEPS] = deps
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
