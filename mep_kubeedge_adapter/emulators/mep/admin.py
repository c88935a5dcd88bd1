"""The emulator's admin API (not MP1, no token): its Python controls over HTTP.

``POST /admin/wipe`` (registry and subscriptions lost, as after a MEP data loss), ``POST
/admin/down`` (``{"mode": "close"}`` drops connections, ``{"mode": "503"}`` answers 503) and
``POST /admin/up``, ``GET|POST /admin/identities`` and ``DELETE
/admin/identities/{appInstanceId}`` (POST ``{}`` generates one), ``POST
/admin/lockouts/reset``, ``GET|DELETE /admin/calls`` (requests per route, for
calls-per-minute figures), ``GET /admin/services`` (the registry with liveness state) and
``GET /admin/jwt-public-key``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mep_kubeedge_adapter.emulators.mep.identities import AppIdentity

if TYPE_CHECKING:
    from mep_kubeedge_adapter.emulators.mep.emulator import MepEmulator

__all__ = ["AdminApi"]


class AdminApi:
    """The ``/admin`` routes over an emulator's controls."""

    def __init__(self, emulator: MepEmulator) -> None:
        self._emulator = emulator

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/admin/jwt-public-key", self._admin_key)
        router.add_post("/admin/wipe", self._admin_wipe)
        router.add_post("/admin/down", self._admin_down)
        router.add_post("/admin/up", self._admin_up)
        router.add_get("/admin/identities", self._admin_identities)
        router.add_post("/admin/identities", self._admin_provision)
        router.add_delete("/admin/identities/{appInstanceId}", self._admin_remove_identity)
        router.add_post("/admin/lockouts/reset", self._admin_reset_lockouts)
        router.add_get("/admin/calls", self._admin_calls)
        router.add_delete("/admin/calls", self._admin_reset_calls)
        router.add_get("/admin/services", self._admin_services)

    async def _admin_key(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._emulator.jwt_public_key_pem, content_type="application/x-pem-file"
        )

    async def _admin_wipe(self, request: web.Request) -> web.Response:
        self._emulator.wipe()
        return web.Response(status=204)

    async def _admin_down(self, request: web.Request) -> web.Response:
        data = await _optional_json(request)
        try:
            self._emulator.down(str(data.get("mode", "close")))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.Response(status=204)

    async def _admin_up(self, request: web.Request) -> web.Response:
        self._emulator.up()
        return web.Response(status=204)

    async def _admin_identities(self, request: web.Request) -> web.Response:
        return web.json_response([i.to_json() for i in self._emulator.identities.values()])

    async def _admin_provision(self, request: web.Request) -> web.Response:
        data = await _optional_json(request)
        try:
            generated = AppIdentity.generate(
                data.get("requiredServices", ["*"]), str(data.get("appName", ""))
            )
            ident = AppIdentity.from_json({**generated.to_json(), **data})
            self._emulator.provision(ident)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(ident.to_json(), status=201)

    async def _admin_remove_identity(self, request: web.Request) -> web.Response:
        self._emulator.remove_identity(request.match_info["appInstanceId"])
        return web.Response(status=204)

    async def _admin_reset_lockouts(self, request: web.Request) -> web.Response:
        self._emulator.reset_lockouts()
        return web.Response(status=204)

    async def _admin_calls(self, request: web.Request) -> web.Response:
        elapsed = max(time.time() - self._emulator.calls_since, 1e-9)
        mp1 = sum(n for k, n in self._emulator.calls.items() if " /mep/" in k)
        return web.json_response(
            {
                "since": self._emulator.calls_since,
                "total": self._emulator.calls_total,
                "mp1Total": mp1,
                "mp1PerMinute": mp1 * 60.0 / elapsed,
                "routes": dict(self._emulator.calls),
            }
        )

    async def _admin_reset_calls(self, request: web.Request) -> web.Response:
        self._emulator.reset_calls()
        return web.Response(status=204)

    async def _admin_services(self, request: web.Request) -> web.Response:
        return web.json_response(self._emulator.services())


async def _optional_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data
