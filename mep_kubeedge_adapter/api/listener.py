"""The API's TCP listener, with a deadline for each connection's first request head.

aiohttp reads request headers without a time limit of its own: a client that opens a
connection and sends nothing, or sends its headers a byte at a time, holds the
connection (and its memory) for as long as it likes. ``HeaderDeadline`` closes every
connection that has not delivered a complete request head within ``timeout`` seconds of
being accepted, and counts it in ``mka_api_header_timeouts_total``. A connection whose
request arrived is left alone: once a request has been served, aiohttp's keep-alive
timeout bounds the idle time and the head of the next request.

``GuardedSite`` is the ``TCPSite`` of the service with that deadline applied.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from mep_kubeedge_adapter.observability import Metrics

__all__ = ["GuardedSite", "HeaderDeadline"]

log = structlog.get_logger(__name__)


class HeaderDeadline:
    """Connections must deliver a request head within ``timeout`` seconds of opening."""

    def __init__(self, timeout: float, metrics: Metrics) -> None:
        self._timeout = timeout
        self._metrics = metrics
        self._waiting: set[web.RequestHandler] = set()
        """Connections whose deadline is armed and that sent no request head yet (bounded:
        each leaves with its first request or at its deadline)."""

    @property
    def waiting(self) -> int:
        """Connections that have not sent a request head yet."""
        return len(self._waiting)

    def wrap(self, make_handler: Callable[[], web.RequestHandler]) -> Callable[[], Any]:
        """A protocol factory: ``make_handler``'s handlers, each with its deadline armed."""

        def factory() -> web.RequestHandler:
            handler = make_handler()
            self._waiting.add(handler)
            asyncio.get_running_loop().call_later(self._timeout, self._expire, handler)
            return handler

        return factory

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Marks the connection as having delivered a request head."""
        self._waiting.discard(request.protocol)
        response: web.StreamResponse = await handler(request)
        return response

    def _expire(self, handler: web.RequestHandler) -> None:
        if handler not in self._waiting:
            return
        self._waiting.discard(handler)
        if handler.transport is None or handler.transport.is_closing():
            return
        peer = handler.transport.get_extra_info("peername")
        handler.force_close()
        self._metrics.api_header_timeouts.inc()
        log.info("api_connection_cut", reason="no request head in time", peer=str(peer))


class GuardedSite(web.BaseSite):
    """A TCP listener whose connections get a ``HeaderDeadline``."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, deadline: HeaderDeadline
    ) -> None:
        super().__init__(runner)
        self._listen_host = host
        self._listen_port = port
        self._deadline = deadline
        self._listener: asyncio.Server | None = None

    @property
    def name(self) -> str:
        return f"http://{self._listen_host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the one asked for, or the one the system chose for 0)."""
        if self._listener is not None:
            for sock in self._listener.sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    return int(sock.getsockname()[1])
        return self._listen_port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._listener = await asyncio.get_running_loop().create_server(
            self._deadline.wrap(server),
            self._listen_host,
            self._listen_port,
            backlog=self._backlog,
            reuse_address=True,
        )
        self._server = self._listener
