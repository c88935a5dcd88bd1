"""Metrics and logs.

``Metrics`` holds every Prometheus metric of the service in its own
``CollectorRegistry``, so several adapters (tests, benchmarks) can live in one
process. Components receive the ``Metrics`` object; none creates metrics of its own.

Logs are structlog lines on stderr (``configure_logging``). ``ACCESS_LOG`` writes the
one line per API request; with the JSON configuration it formats that line itself
(the same keys, order and JSON as structlog's chain, which a test compares), because the
chain cost a quarter of a request's time. The id of the API request being served is in
``REQUEST_ID_VAR`` and on every line logged while it is (``add_request_id``).
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
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


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
        self.api = ApiRequestMetrics()
        """``mka_api_requests`` and ``mka_api_request_seconds``."""
        r.register(self.api)
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


API_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
"""Upper bounds (seconds) of ``mka_api_request_seconds``; +Inf follows."""

API_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted under their own name; any other a client sends counts as ``other``, so
clients cannot grow the table of counters with made-up methods."""


class _Latency:
    __slots__ = ("buckets", "count", "created", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(API_LATENCY_BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0
        self.created = time.time()


class ApiRequestMetrics(Collector):
    """``mka_api_requests_total{route,method,status}`` and the histogram
    ``mka_api_request_seconds{route}``, counted in plain integers and floats.

    prometheus-client's ``Counter`` and ``Histogram`` take a lock for every increment
    (four per request here) and a ``labels()`` lookup; about 3 µs of a request's 45. These
    counts are only touched on the event loop (``observe``) and read when scraped
    (``collect``), so they need no lock, and the exposition is the one prometheus-client
    writes for those two metrics (``_total``, ``_bucket``, ``_count``, ``_sum``,
    ``_created``). ``route`` is a route template (bounded by the router), ``status`` an
    HTTP status and ``method`` one of ``API_METHODS`` or ``other``.
    """

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], list[float]] = {}
        """(route, method, status) → [count, created]."""
        self._latency: dict[str, _Latency] = {}

    def observe(self, route: str, method: str, status: int, seconds: float | None) -> None:
        """One request answered; ``seconds`` None for one whose time says nothing (an
        upgraded websocket, which lasts as long as the subscriber stays)."""
        key = (route, method, status)
        counted = self._requests.get(key)
        if counted is None:
            if method not in API_METHODS:
                key = (route, "other", status)
                counted = self._requests.get(key)
            if counted is None:
                counted = self._requests[key] = [0, time.time()]
        counted[0] += 1
        if seconds is None:
            return
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = _Latency()
        latency.buckets[bisect_left(API_LATENCY_BUCKETS, seconds)] += 1
        latency.count += 1
        latency.sum += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "mka_api_requests",
            "API requests, by route, method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), (count, created) in list(self._requests.items()):
            requests.add_metric([route, method, str(status)], count, created=created)
        yield requests
        latency = HistogramMetricFamily(
            "mka_api_request_seconds", "API request latency, by route", labels=["route"]
        )
        bounds = [*(_bound_text(b) for b in API_LATENCY_BUCKETS), "+Inf"]
        for route, observed in list(self._latency.items()):
            cumulative = 0
            buckets = []
            for bound, count in zip(bounds, observed.buckets, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            latency.add_metric([route], buckets, observed.sum)
            latency.add_sample(
                "mka_api_request_seconds_created", {"route": route}, observed.created
            )
        yield latency


def _bound_text(bound: float) -> str:
    """A bucket's ``le`` as prometheus-client writes it (``1.0``, ``0.0005``)."""
    return repr(float(bound))


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


REQUEST_ID_VAR: ContextVar[str | None] = ContextVar("mka_request_id", default=None)
"""The id of the API request being served (set by the API's front middleware for the
request's duration). One variable of our own rather than structlog's bound context
variables: binding and resetting those, and collecting them for every line, cost about
3 µs per request."""


def add_request_id(logger: Any, method: str, event_dict: Any) -> Any:
    """The processor that puts ``request_id`` on every line logged while a request is
    served (after structlog's own context variables, which win if one is named so)."""
    request_id = REQUEST_ID_VAR.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


_Record = tuple[str, str, int, float, bool, str | None, int]
"""An access log line to write: method, route, status, seconds, debug, request id, and the
time it was logged (nanoseconds)."""


class AccessLog:
    """The ``api_request`` line, written once per API request: one cheap call.

    Under the JSON configuration of ``configure_logging`` (the service's default) the line
    is formatted here: the keys structlog's chain would write, in its order (the call's
    fields, ``event``, ``request_id``, ``level``, ``timestamp``) and with the same JSON,
    written to the same stream. A call on the event loop only notes the line's fields and
    its time; the lines of one loop iteration are formatted and written together when the
    iteration ends (and at exit), so a burst of requests costs one write, and the
    formatting runs in one tight loop rather than between the steps of each request. Other
    log lines of the same iteration may come before them, each with its own timestamp. If
    structlog's configuration changed meanwhile (a test capturing logs), the noted lines go
    through structlog then. Under any other configuration (the console format), and while
    structlog context variables are bound, the line goes through structlog at once.
    """

    def __init__(self) -> None:
        self._fast: tuple[list[Any], int, TextIO] | None = None
        self._pending: list[_Record] = []
        self._lock = threading.Lock()
        self._bound: tuple[tuple[Any, ...], Any] = ((), None)
        atexit.register(self.flush)

    def use_json(self, processors: list[Any] | None, level: int, stream: TextIO) -> None:
        """Format lines here while structlog runs exactly ``processors`` (None: never)."""
        self.flush()
        self._fast = None if processors is None else (list(processors), level, stream)

    def write(self, method: str, route: str, status: int, seconds: float, *, debug: bool) -> None:
        fast = self._fast
        if fast is None or _structlog_context():
            self._through_structlog(method, route, status, seconds, debug)
            return
        if (logging.DEBUG if debug else logging.INFO) < fast[1]:
            return
        record = (method, route, status, seconds, debug, REQUEST_ID_VAR.get(), time.time_ns())
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            pending = self._pending
            pending.append(record)
            first = len(pending) == 1
        if loop is None:
            self.flush()
        elif first:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is noted."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        fast = self._fast
        if fast is None or not _unchanged(structlog.get_config()["processors"], fast[0]):
            for method, route, status, seconds, debug, request_id, _ in pending:
                token = REQUEST_ID_VAR.set(request_id)
                try:
                    self._through_structlog(method, route, status, seconds, debug)
                finally:
                    REQUEST_ID_VAR.reset(token)
            return
        text = "".join([_access_json(*record) for record in pending])
        with contextlib.suppress(ValueError, OSError):  # a closed stream at exit
            fast[2].write(text)
            fast[2].flush()

    def _through_structlog(
        self, method: str, route: str, status: int, seconds: float, debug: bool
    ) -> None:
        logger = self._logger()
        (logger.debug if debug else logger.info)(
            "api_request", method=method, route=route, status=status, seconds=seconds
        )

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


def _access_json(
    method: str,
    route: str,
    status: int,
    seconds: float,
    debug: bool,
    request_id: str | None,
    nanoseconds: int,
) -> str:
    """The JSON line of a record (with its newline)."""
    head = _HEADS.get((method, route, status))
    if head is None:
        head = (
            f'{{"method": {encode_basestring_ascii(method)}, '
            f'"route": {encode_basestring_ascii(route)}, "status": {status!r}, "seconds": '
        )
        if len(_HEADS) < _HEADS_LIMIT:
            _HEADS[(method, route, status)] = head
    request = "" if request_id is None else f', "request_id": {encode_basestring_ascii(request_id)}'
    return (
        f'{head}{float(seconds)!r}, "event": "api_request"{request}, '
        f'"level": "{"debug" if debug else "info"}", '
        f'"timestamp": "{utc_timestamp(nanoseconds)}"}}\n'
    )


_HEADS: dict[tuple[str, str, int], str] = {}
_HEADS_LIMIT = 1024
"""Line beginnings kept per (method, route, status); a client choosing odd methods only
makes its lines formatted in full, never this table grow further."""


_STRUCTLOG_VARS = getattr(structlog.contextvars, "_CONTEXT_VARS", None)
"""structlog's table of the context variables ever bound in this process (not public: if a
later structlog has none, every line asks ``get_contextvars``, which is only slower)."""


def _structlog_context() -> dict[str, Any]:
    """structlog's bound context variables; none without looking when none was ever bound
    (``get_contextvars`` walks every context variable of the task: about 1 µs)."""
    if isinstance(_STRUCTLOG_VARS, dict) and not _STRUCTLOG_VARS:
        return {}
    return structlog.contextvars.get_contextvars()


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
        add_request_id,
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
