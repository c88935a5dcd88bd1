"""The MEP emulator: mepauth, mepserver, the gateway and the admin API on one aiohttp server.

:class:`MepEmulator` owns the listener, the outgoing HTTP session (notifications and gateway
traffic), the two background tasks and the controls a test or a lab needs; each part's
behaviour lives in its own module.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

from mep_kubeedge_adapter.emulators.mep.admin import AdminApi
from mep_kubeedge_adapter.emulators.mep.gateway import Gateway
from mep_kubeedge_adapter.emulators.mep.identities import AppIdentity
from mep_kubeedge_adapter.emulators.mep.mepauth import Mepauth
from mep_kubeedge_adapter.emulators.mep.mepserver import MepServer
from mep_kubeedge_adapter.emulators.mep.spec import spec_validator
from mep_kubeedge_adapter.supervisor import cancel_and_wait

__all__ = ["MepEmulator"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class MepEmulator:
    """EdgeGallery's MEP on one aiohttp server (see the package docstring for the behaviour).

    Timing knobs let tests run in seconds: ``liveness_seconds`` is the platform's heartbeat
    interval (EdgeGallery: 60, whatever the provider proposes), ``liveness_grace`` the slack
    before SUSPENDED (default EdgeGallery's ``min(ceil(5 % of interval), 5)``), and the
    lock-out is ``lockout_threshold`` bad signatures within ``lockout_window`` seconds locking
    the AK for ``lockout_seconds``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        identities: Iterable[AppIdentity] | None = None,
        token_ttl: int = 3600,
        liveness_seconds: float = 60.0,
        liveness_grace: float | None = None,
        lockout_threshold: int = 3,
        lockout_window: float = 300.0,
        lockout_seconds: float = 900.0,
        max_services_per_app: int = 50,
        validate: bool = True,
        state_changed_events: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self.mepauth = Mepauth(
            identities if identities is not None else [AppIdentity.demo()],
            token_ttl=token_ttl,
            lockout_threshold=lockout_threshold,
            lockout_window=lockout_window,
            lockout_seconds=lockout_seconds,
        )
        self.mepserver = MepServer(
            self.mepauth,
            host=host,
            liveness_seconds=liveness_seconds,
            liveness_grace=liveness_grace,
            max_services_per_app=max_services_per_app,
            validate=validate,
            state_changed_events=state_changed_events,
        )
        self.gateway = Gateway(self.mepauth, self.mepserver.gateway_target)
        self.validate = validate

        self.calls: Counter[str] = Counter()
        self.calls_since = time.time()
        self.down_mode: str | None = None

        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.validate:
            spec_validator()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        self.port = self._runner.addresses[0][1]
        scheme = "https" if self._ssl else "http"
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{scheme}://{shown}:{self.port}"
        self.mepserver.url = self.url
        self.gateway.session = self._session
        self.gateway.port = self.port
        self._tasks = [
            asyncio.create_task(self.mepserver.liveness_monitor(), name="mep-emulator-liveness"),
            asyncio.create_task(
                self.mepserver.deliver_notifications(self._session), name="mep-emulator-notify"
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
            self.gateway.session = None

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                self._count_middleware,
                self._down_middleware,
                self.mepserver.mp1_middleware,
            ],
            client_max_size=1024 * 1024,
        )
        app.on_shutdown.append(self.gateway.stop_websockets)
        self.mepauth.add_routes(app.router)
        self.mepserver.add_routes(app.router)
        AdminApi(self).add_routes(app.router)
        self.gateway.add_routes(app.router)  # catches every other path: last
        return app

    # --- controls usable from tests ------------------------------------------------------

    @property
    def identities(self) -> dict[str, AppIdentity]:
        """appInstanceId -> identity; changes take effect at once."""
        return self.mepauth.identities

    @property
    def jwt_public_key_pem(self) -> bytes:
        """The public key (PEM) that verifies the emulator's mepauth tokens."""
        return self.mepauth.jwt_public_key_pem

    @property
    def schema_violations(self) -> list[str]:
        """Replies of the emulator's own that broke the MEC 011 schema (a bug here)."""
        return self.mepserver.schema_violations

    @property
    def notifications_sent(self) -> list[tuple[str, dict[str, Any]]]:
        """(callback URL, body) of every service-availability notification sent."""
        return self.mepserver.notifications_sent

    @property
    def liveness_interval(self) -> int:
        """What ``livenessInterval`` reads in replies (60 on EdgeGallery)."""
        return self.mepserver.liveness_interval

    def provision(self, identity: AppIdentity) -> AppIdentity:
        """Add or replace an app identity (what MECM's confs PUT does)."""
        return self.mepauth.provision(identity)

    def remove_identity(self, app_instance_id: str) -> None:
        self.mepauth.remove_identity(app_instance_id)

    def set_required_services(self, app_instance_id: str, names: Iterable[str]) -> None:
        self.mepauth.set_required_services(app_instance_id, names)

    def reset_lockouts(self) -> None:
        self.mepauth.reset_lockouts()

    def issue_token(self, app_instance_id: str, client_ip: str = "127.0.0.1") -> str:
        """A mepauth JWT for ``app_instance_id`` without the signing dance."""
        return self.mepauth.issue_token(app_instance_id, client_ip)

    def wipe(self) -> None:
        """Forget every service and subscription, as a MEP that lost its registry."""
        self.mepserver.wipe()

    def services(self) -> list[dict[str, Any]]:
        """The registry as GET would show it, plus ``appInstanceId``."""
        return self.mepserver.services()

    def service_state(self, ser_instance_id: str) -> str | None:
        return self.mepserver.service_state(ser_instance_id)

    def down(self, mode: str = "close") -> None:
        """``close``: drop every connection without a reply; ``503``: answer 503."""
        if mode not in ("close", "503"):
            raise ValueError("mode must be 'close' or '503'")
        self.down_mode = mode

    def up(self) -> None:
        self.down_mode = None

    def reset_calls(self) -> None:
        self.calls.clear()
        self.calls_since = time.time()

    @property
    def calls_total(self) -> int:
        return sum(self.calls.values())

    # --- middlewares -------------------------------------------------------------------------

    @web.middleware
    async def _count_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else request.path
        if route.startswith("/{gwName}"):
            route = "/{gwName}"
        self.calls[f"{request.method} {route}"] += 1
        return await handler(request)

    @web.middleware
    async def _down_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.down_mode is None or request.path.startswith("/admin/"):
            return await handler(request)
        if self.down_mode == "503":
            return web.Response(status=503, text="service unavailable")
        if request.transport is not None:
            request.transport.abort()
        raise web.HTTPServiceUnavailable()
