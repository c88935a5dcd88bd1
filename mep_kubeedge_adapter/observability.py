"""Metrics and logs.

``Metrics`` holds every Prometheus metric of the service in its own
``CollectorRegistry``, so several adapters (tests, benchmarks) can live in one
process. Components receive the ``Metrics`` object; none creates metrics of its own.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """All metrics of one adapter instance."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.mqtt_messages = Counter(
            "mka_mqtt_messages",
            "EventBus messages received, by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.mqtt_published = Counter(
            "mka_mqtt_published", "EventBus messages published, by kind", ["kind"], registry=r
        )
        self.mqtt_connected = Gauge(
            "mka_mqtt_connected", "1 while connected to the EventBus broker", registry=r
        )
        self.mqtt_queued = Gauge(
            "mka_mqtt_queued",
            "EventBus messages received and waiting to be applied",
            registry=r,
        )
        self.mqtt_reconnects = Counter(
            "mka_mqtt_reconnects", "EventBus connection attempts after a loss", registry=r
        )
        self.edgecore_responsive = Gauge(
            "mka_edgecore_responsive", "1 while EdgeCore answers membership/get", registry=r
        )
        self.syncs = Counter(
            "mka_syncs",
            "full resynchronisations with EdgeCore, by outcome",
            ["outcome"],
            registry=r,
        )
        self.registry_devices = Gauge("mka_registry_devices", "devices in the registry", registry=r)
        self.registry_properties = Gauge(
            "mka_registry_properties", "twin properties in the registry", registry=r
        )
        self.desired_writes = Counter(
            "mka_desired_writes",
            "desired-value writes, by path and outcome",
            ["path", "outcome"],
            registry=r,
        )
        self.api_requests = Counter(
            "mka_api_requests",
            "API requests, by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.api_latency = Histogram(
            "mka_api_request_seconds",
            "API request latency, by route",
            ["route"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.api_header_timeouts = Counter(
            "mka_api_header_timeouts",
            "connections closed for not sending a request head within MKA_API__HEADER_TIMEOUT",
            registry=r,
        )
        self.notifications = Counter(
            "mka_notifications",
            "notifications, by channel and outcome (delivered, retried, coalesced, dropped)",
            ["channel", "outcome"],
            registry=r,
        )
        self.notifications_pending = Gauge(
            "mka_notifications_pending",
            "notifications waiting for delivery, all subscribers together",
            registry=r,
        )
        self.subscriptions = Gauge(
            "mka_subscriptions", "active subscriptions, by type", ["type"], registry=r
        )
        self.mep_state = Gauge(
            "mka_mep_state",
            "1 for the MEP registration state the adapter is in",
            ["state"],
            registry=r,
        )
        self.mep_calls = Counter(
            "mka_mep_calls",
            "MP1 calls, by operation and outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self.mep_services = Gauge(
            "mka_mep_services", "MP1 service instances registered", registry=r
        )
        self.mep_unregistered = Gauge(
            "mka_mep_unregistered",
            "services the adapter wants but could not register (instance limit)",
            registry=r,
        )
        self.kube_events = Counter(
            "mka_kube_events",
            "kube watch events, by resource, type and outcome",
            ["resource", "type", "outcome"],
            registry=r,
        )
        self.kube_relists = Counter(
            "mka_kube_relists",
            "full re-lists of a kube resource, by reason",
            ["resource", "reason"],
            registry=r,
        )
        self.kube_connected = Gauge(
            "mka_kube_connected", "1 while the kube source's watches run", registry=r
        )
        self.store_file_ok = Gauge(
            "mka_store_file_ok",
            "1 while the state file at MKA_STORE__PATH is the one the adapter has open",
            registry=r,
        )
        self.task_restarts = Counter(
            "mka_task_restarts", "supervised task restarts, by task", ["task"], registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class LogThrottle:
    """One log line per ``interval`` seconds at most for an event that can recur without end
    (a flood of bad input, a subscriber dropping notices); metrics count every occurrence.

    ``note(n)`` adds ``n`` occurrences and answers how many the line to write now stands
    for, or 0 to stay quiet. The first occurrence is logged at once.
    """

    __slots__ = ("_clock", "_interval", "_last", "_pending")

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last = -math.inf
        self._pending = 0

    def note(self, count: int = 1) -> int:
        self._pending += count
        now = self._clock()
        if now - self._last < self._interval:
            return 0
        self._last = now
        folded, self._pending = self._pending, 0
        return folded


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Structured logs on stderr: JSON lines for machines, or a console renderer for people."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.INFO), stream=sys.stderr, force=True)
