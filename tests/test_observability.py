"""The log throttle that keeps floods of bad input from flooding the log, and the API's
request metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mep_kubeedge_adapter.observability import (
    API_LATENCY_BUCKETS,
    ApiRequestMetrics,
    LogThrottle,
    Metrics,
)


def test_one_line_per_interval_standing_for_every_occurrence() -> None:
    now = [100.0]
    throttle = LogThrottle(interval=10.0, clock=lambda: now[0])
    assert throttle.note() == 1  # the first is logged at once
    assert [throttle.note(5) for _ in range(3)] == [0, 0, 0]
    now[0] += 9.9
    assert throttle.note() == 0
    now[0] += 0.1
    assert throttle.note(2) == 18  # everything since the last line
    assert throttle.note() == 0


# ------------------------------------------------------------------ API request metrics


def _samples(registry: CollectorRegistry) -> list[str]:
    """The exposition's sample lines, without the ``_created`` times (when each series was
    first seen, which two collectors cannot share)."""
    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if line and "_created" not in line
    ]


OBSERVED = [
    ("/kubeedge_devices/v1/devices/{namespace}/{name}/twin", "GET", 200, 0.0003),
    ("/kubeedge_devices/v1/devices/{namespace}/{name}/twin", "GET", 200, 0.0005),
    ("/kubeedge_devices/v1/devices/{namespace}/{name}/twin", "GET", 304, 0.001),
    ("/kubeedge_devices/v1/devices/{namespace}/{name}/twin", "PATCH", 412, 0.0049),
    ("unmatched", "GET", 404, 2.5),
    ("unmatched", "DELETE", 404, 7.0),
    ("/healthz", "GET", 200, 0.0),
    ("/kubeedge_devices/v1/subscriptions/{subscription_id}/websocket", "GET", 101, None),
]


def test_api_metrics_are_exposed_as_prometheus_clients_counter_and_histogram_would_be() -> None:
    collector = ApiRequestMetrics()
    ours = CollectorRegistry()
    ours.register(collector)
    reference = CollectorRegistry()
    requests = Counter(
        "mka_api_requests",
        "API requests, by route, method and status",
        ["route", "method", "status"],
        registry=reference,
    )
    latency = Histogram(
        "mka_api_request_seconds",
        "API request latency, by route",
        ["route"],
        registry=reference,
        buckets=API_LATENCY_BUCKETS,
    )
    for route, method, status, seconds in OBSERVED:
        collector.observe(route, method, status, seconds)
        requests.labels(route, method, str(status)).inc()
        if seconds is not None:
            latency.labels(route).observe(seconds)
    assert _samples(ours) == _samples(reference)
    created = generate_latest(ours).decode().splitlines()
    assert sum(line.startswith("mka_api_requests_created{") for line in created) == 7
    assert sum(line.startswith("mka_api_request_seconds_created{") for line in created) == 3


def test_made_up_methods_share_one_counter() -> None:
    metrics = Metrics()
    for method in ("BREW", "PROPFIND", "X" * 50, "GET"):
        metrics.api.observe("unmatched", method, 405, 0.001)
    text = metrics.exposition().decode()
    assert 'mka_api_requests_total{method="other",route="unmatched",status="405"} 3.0' in text
    assert 'mka_api_requests_total{method="GET",route="unmatched",status="405"} 1.0' in text
    assert "BREW" not in text and "PROPFIND" not in text
    assert 'mka_api_request_seconds_count{route="unmatched"} 4.0' in text
