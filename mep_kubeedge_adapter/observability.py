"""Metrics and logs.

``Metrics`` holds every Prometheus metric of the service in its own
``CollectorRegistry``, so several adapters (tests, benchmarks) can live in one
process. Components receive the ``Metrics`` object; none creates metrics of its own.

Logs are structlog lines on stderr (``configure_logging``). ``ACCESS_LOG`` writes the
one line per API request; with the JSON configuration it formats that line itself
(the same keys, order and JSON as structlog's chain, which a test compares), because the
chain cost a quarter of a request's time.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError
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


def utc_timestamp(nanoseconds: int) -> str:
    """What ``structlog.processors.TimeStamper(fmt="iso", utc=True)`` writes for that
    instant: ``2026-12-02T17:30:11.123456Z`` (no fraction when it is exactly zero)."""
    second, rest = divmod(nanoseconds, 1_000_000_000)
    prefix = _second_text(second)
    micro = rest // 1000
    return f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"


_last_second: tuple[int, str] = (-1, "")


def _second_text(second: int) -> str:
    global _last_second
    cached = _last_second
    if cached[0] == second:
        return cached[1]
    text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    _last_second = (second, text)
    return text


def add_timestamp(logger: Any, method: str, event_dict: Any) -> Any:
    """The ``timestamp`` processor: structlog's ISO UTC stamp, its date part made once a
    second rather than by ``datetime.isoformat`` for every line."""
    event_dict["timestamp"] = utc_timestamp(time.time_ns())
    return event_dict


_FIXED_KEYS = frozenset({"method", "route", "status", "seconds", "event", "level", "timestamp"})


class AccessLog:
    """The ``api_request`` line, written once per API request: one cheap call.

    Under the JSON configuration of ``configure_logging`` (the service's default) the line
    is formatted here: the keys structlog's chain would write, in its order (the call's
    fields, ``event``, the bound context variables, ``level``, ``timestamp``) and with the
    same JSON, written to the same stream. Lines written on the event loop are collected
    and written together once per loop iteration (and at exit), so a burst of requests
    costs one write, not one per request; other log lines of the same iteration may come
    before them, each with its own timestamp. Under any other configuration (the console
    format, a test capturing logs) the line goes through structlog.
    """

    def __init__(self) -> None:
        self._fast: tuple[list[Any], int, TextIO] | None = None
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._bound: tuple[tuple[Any, ...], Any] = ((), None)
        atexit.register(self.flush)

    def use_json(self, processors: list[Any] | None, level: int, stream: TextIO) -> None:
        """Format lines here while structlog runs exactly ``processors`` (None: never)."""
        self.flush()
        self._fast = None if processors is None else (list(processors), level, stream)

    def write(self, method: str, route: str, status: int, seconds: float, *, debug: bool) -> None:
        fast = self._fast
        if fast is not None and _unchanged(structlog.get_config()["processors"], fast[0]):
            if (logging.DEBUG if debug else logging.INFO) < fast[1]:
                return
            line = _access_json(method, route, status, seconds, debug)
            if line is not None:
                self._emit(line)
                return
        logger = self._logger()
        (logger.debug if debug else logger.info)(
            "api_request", method=method, route=route, status=status, seconds=seconds
        )

    def _emit(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._pending.append(line)
            first = len(self._pending) == 1
        if loop is None:
            self.flush()
        elif first:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is collected."""
        with self._lock:
            pending, self._pending = self._pending, []
        if pending and self._fast is not None:
            stream = self._fast[2]
            with contextlib.suppress(ValueError, OSError):  # a closed stream at exit
                stream.write("".join(pending))
                stream.flush()

    def _logger(self) -> Any:
        """A logger bound once per structlog configuration (binding per call is costly)."""
        config = structlog.get_config()
        current = (
            config["processors"],
            config["wrapper_class"],
            config["logger_factory"],
            config["context_class"],
        )
        key, logger = self._bound
        if len(key) != len(current) or any(a is not b for a, b in zip(current, key, strict=True)):
            logger = structlog.get_logger("mep_kubeedge_adapter.api").bind()
            self._bound = (current, logger)
        return logger


def _unchanged(current: list[Any], expected: list[Any]) -> bool:
    """Whether structlog still runs ``expected`` (``capture_logs`` edits the list in place,
    so the renderer at its end is compared as well as the list)."""
    return len(current) == len(expected) and current[-1] is expected[-1]


def _access_json(method: str, route: str, status: int, seconds: float, debug: bool) -> str | None:
    """The JSON line (with its newline), or None if a bound value needs structlog's encoder."""
    extra = _context_json(structlog.contextvars.get_contextvars().items())
    if extra is None:
        return None
    head = _HEADS.get((method, route, status))
    if head is None:
        head = (
            f'{{"method": {encode_basestring_ascii(method)}, '
            f'"route": {encode_basestring_ascii(route)}, "status": {status!r}, "seconds": '
        )
        if len(_HEADS) < _HEADS_LIMIT:
            _HEADS[(method, route, status)] = head
    return (
        f'{head}{float(seconds)!r}, "event": "api_request"{extra}, '
        f'"level": "{"debug" if debug else "info"}", '
        f'"timestamp": "{utc_timestamp(time.time_ns())}"}}\n'
    )


_HEADS: dict[tuple[str, str, int], str] = {}
_HEADS_LIMIT = 1024
"""Line beginnings kept per (method, route, status); a client choosing odd methods only
makes its lines formatted in full, never this table grow further."""


def _context_json(items: Iterable[tuple[str, Any]]) -> str | None:
    parts = []
    for key, value in items:
        if key in _FIXED_KEYS or not isinstance(value, str):
            return None
        parts.append(f", {encode_basestring_ascii(key)}: {encode_basestring_ascii(value)}")
    return "".join(parts)


ACCESS_LOG = AccessLog()


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Structured logs on stderr: JSON lines for machines, or a console renderer for people.

    Records of the standard ``logging`` module (aiohttp's, asyncio's, the kubernetes
    client's) are rendered by the same processors, so the stream stays one JSON line per
    record, a traceback as an ``exception`` field. aiohttp's server reports a malformed
    request (a client's error, answered 400) with a traceback at error: that becomes a
    warning whose event names the parser's message, without the traceback."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_timestamp,
    ]
    processors = [*shared, structlog.processors.format_exc_info, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    ACCESS_LOG.use_json(
        structlog.get_config()["processors"] if fmt == "json" else None, numeric, sys.stderr
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_client_errors_as_warnings)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    logging.basicConfig(level=max(numeric, logging.INFO), handlers=[handler], force=True)


def _client_errors_as_warnings(record: logging.LogRecord) -> bool:
    """aiohttp's "Error handling request" for a request its parser refused (4xx): a warning
    naming the error, without the traceback of aiohttp's own parser."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
        record.levelno = logging.WARNING
        record.levelname = "WARNING"
        record.exc_info = None
        record.exc_text = None
        record.msg = f"{record.getMessage()}: {exc.code} {exc.message}"
        record.args = ()
    return True
