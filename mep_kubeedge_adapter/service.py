"""The composition root: builds every component, starts them in order, stops them in reverse.

Start order: registry and metrics (in memory) → state store → subscriptions and
notification delivery → EventBus connection task → HTTP API listener. Stop order is
the reverse, each step with a deadline, so a SIGTERM leaves nothing half-open;
notification websockets are closed (1001) first, so the listener does not wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from aiohttp import web

from mep_kubeedge_adapter.api.app import ApiDeps, create_app
from mep_kubeedge_adapter.api.deps import API_BASE
from mep_kubeedge_adapter.api.listener import GuardedSite, HeaderDeadline
from mep_kubeedge_adapter.kubeedge.eventbus import EventBusClient
from mep_kubeedge_adapter.kubeedge.kubesource import KubeSource
from mep_kubeedge_adapter.mep.registrar import MepState, Registrar
from mep_kubeedge_adapter.notify.subscriptions import (
    SubscriptionService,
    delivery_settings,
    subscription_limits,
)
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import Settings, public_url
from mep_kubeedge_adapter.store import StoreError, SubscriptionStore
from mep_kubeedge_adapter.supervisor import Supervisor
from mep_kubeedge_adapter.usecases import DesiredWriter, UnsupportedWriter

log = structlog.get_logger(__name__)

STEP_TIMEOUT = 10.0


class Adapter:
    """One running adapter. Use as ``async with Adapter(settings) as adapter: ...``."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.registry = DeviceRegistry()
        self.supervisor = Supervisor(
            on_restart=lambda task: self.metrics.task_restarts.labels(task).inc()
        )
        self.eventbus = EventBusClient(
            settings.mqtt, settings.node_name, self.registry, self.metrics
        )
        self.kube: KubeSource | None = (
            KubeSource(settings.kube, settings.node_name, self.registry, self.metrics)
            if settings.kube.source != "none"
            else None
        )
        self.writer: DesiredWriter
        if settings.api.write_path == "eventbus":
            self.writer = self.eventbus
        elif self.kube is not None:
            self.writer = self.kube.writer
        else:
            self.writer = UnsupportedWriter(
                "the kube write path needs a kube source (MKA_KUBE__SOURCE)"
            )
        self._stack = AsyncExitStack()
        self._runner: web.AppRunner | None = None
        self.api_port: int | None = None
        self.header_deadline: HeaderDeadline | None = None
        self.store = SubscriptionStore(settings.store.path, metrics=self.metrics)
        self.subscriptions = SubscriptionService(
            self.store,
            self.registry,
            self.metrics,
            settings.api,
            fallback_base_url=lambda: public_url(settings, self.api_port) + API_BASE,
            delivery=delivery_settings(settings.notify),
            limits=subscription_limits(settings.notify),
        )
        self.registrar: Registrar | None = None
        if settings.mep.url:
            self.registrar = Registrar(
                settings.mep,
                settings.node_name,
                self.registry,
                self.metrics,
                lambda: public_url(settings, self.api_port),
            )
        else:
            self.metrics.mep_state.labels(MepState.DISABLED.value).set(1)

    # --------------------------------------------------------------- readiness

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the EventBus is connected and the first sync is done (SPEC §4), and the
        state file is still the one the adapter writes (else nothing accepted now survives
        a restart)."""
        eventbus = self.eventbus.status()
        store = self.store.status()
        ready = self.eventbus.ready and store["state"] == "ok"
        detail: dict[str, Any] = {
            "eventbus": eventbus,
            "store": store,
            "devices": len(self.registry),
            "kube": self.kube.status()
            if self.kube is not None
            else {"source": self.settings.kube.source},
            "mep": self.registrar.status()
            if self.registrar is not None
            else {"state": MepState.DISABLED.value},
        }
        return ready, detail

    # --------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Adapter:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        await self.store.open()
        self._stack.push_async_callback(self._step, "store", self.store.close)
        self.subscriptions.set_own_addresses(self._own_addresses)
        await self.subscriptions.start()
        self._stack.push_async_callback(self._step, "notifications", self.subscriptions.stop)
        self._stack.push_async_callback(self._step, "supervisor", self.supervisor.stop)
        self.supervisor.start("store-flush", self.store.run_flusher)
        self.supervisor.start("notify-expiry", self.subscriptions.run_expiry)
        self.supervisor.start("eventbus", self.eventbus.run)
        if self.kube is not None:
            self.supervisor.start("kube", self.kube.run)
        await self._start_api()
        self._stack.push_async_callback(
            self._step, "websockets", self.subscriptions.close_websockets
        )
        if self.registrar is not None:
            # After the listener (the advertised URIs must answer); stopped first, so the
            # MP1 deregistration happens while the API still serves.
            registrar = self.registrar
            self.supervisor.start(
                "mep-registrar", registrar.run, may_end=lambda: registrar.stopping
            )
            self._stack.push_async_callback(self._stop_registrar)

    async def _stop_registrar(self) -> None:
        """Deregister every MP1 instance within ``MKA_MEP__DEREGISTER_TIMEOUT``."""
        if self.registrar is None:
            return
        try:
            await self.registrar.shutdown()
        except Exception as exc:
            log.error("shutdown_step_failed", step="mep", exc_info=exc)
        else:
            log.info("stopped", step="mep", left=len(self.registrar.registered()))

    def _own_addresses(self) -> list[tuple[str, int]]:
        """The API listener, which no callback may point at."""
        return [(self.settings.api.host, self.api_port or self.settings.api.port)]

    async def _start_api(self) -> None:
        deps = ApiDeps(
            settings=self.settings,
            registry=self.registry,
            metrics=self.metrics,
            readiness=self.readiness,
            writer=self.writer,
            subscriptions=self.subscriptions,
            device_crs=self.kube.crs if self.kube is not None else None,
        )
        api = self.settings.api
        deadline = HeaderDeadline(api.header_timeout, self.metrics)
        self.header_deadline = deadline
        runner = web.AppRunner(
            create_app(deps, header_deadline=deadline),
            access_log=None,
            shutdown_timeout=5.0,
            keepalive_timeout=api.keepalive_timeout,
        )
        await runner.setup()
        self._stack.push_async_callback(self._step, "api", runner.cleanup)
        site = GuardedSite(runner, api.host, api.port, deadline)
        await site.start()
        self._runner = runner
        self.api_port = site.port
        log.info("api_listening", host=self.settings.api.host, port=self.api_port)

    @staticmethod
    async def _step(name: str, stop: Callable[[], Awaitable[None]]) -> None:
        try:
            await asyncio.wait_for(stop(), STEP_TIMEOUT)
        except TimeoutError:
            log.error("shutdown_step_timed_out", step=name, timeout=STEP_TIMEOUT)
        except Exception as exc:
            log.error("shutdown_step_failed", step=name, exc_info=exc)
        else:
            log.info("stopped", step=name)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Adapter]:
    async with Adapter(settings) as adapter:
        yield adapter


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``); return the process exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        try:
            adapter = await stack.enter_async_context(Adapter(settings))
        except StoreError as exc:
            log.error("store_unusable", path=str(settings.store.path), problem=exc.detail)
            return 1
        # What start built (modules, settings, clients, the first registry) lives as long
        # as the process: moved out of the collector's sight, a full collection no longer
        # walks it and stalls the loop (about 30 ms each, B2's tail latency, before).
        gc.collect()
        gc.freeze()
        stack.callback(gc.unfreeze)  # collectable again once the adapter is stopped
        failed = asyncio.create_task(adapter.supervisor.failed.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        failed.cancel()
        stopped.cancel()
        code = 1 if adapter.supervisor.failed.is_set() else 0
        log.info("shutting_down", reason="task failure" if code else "signal")
    return code
