"""Request ids, logs, metrics, health routes, the OpenAPI document and error shapes."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
import structlog
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict
from openapi_spec_validator import validate as validate_spec

from mep_kubeedge_adapter import console
from mep_kubeedge_adapter.api.openapi import document
from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.observability import REQUEST_ID_VAR, add_request_id
from tests.api.conftest import ApiHarness, HarnessFactory, Reply

THERMO = "/kubeedge_devices/v1/devices/default/thermo-1"


class CrashingWriter:
    async def write_desired(
        self, device_id: DeviceId, values: Mapping[str, tuple[str, str]]
    ) -> None:
        raise RuntimeError("secret internal state")


async def test_request_id_is_taken_or_made_and_echoed(harness: ApiHarness) -> None:
    given = await harness.call("GET", THERMO, headers={"X-Request-Id": "app-42.7"})
    assert given.headers["X-Request-Id"] == "app-42.7"
    made = await harness.call("GET", THERMO)
    assert len(made.headers["X-Request-Id"]) == 32
    refused = await harness.call("GET", THERMO, headers={"X-Request-Id": "x" * 200})
    assert refused.headers["X-Request-Id"] != "x" * 200
    problem = await harness.call("GET", "/nope", headers={"X-Request-Id": "req-404"})
    assert problem.headers["X-Request-Id"] == "req-404"
    assert problem.json()["requestId"] == "req-404"


async def test_every_log_line_of_a_request_carries_its_id(harness: ApiHarness) -> None:
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars, add_request_id]
    ) as logs:
        await harness.call("GET", THERMO, headers={"X-Request-Id": "trace-me"})
    lines = [line for line in logs if line.get("event") == "api_request"]
    assert lines
    assert all(line["request_id"] == "trace-me" for line in lines)
    assert lines[-1]["route"] == "/kubeedge_devices/v1/devices/{namespace}/{name}"
    assert structlog.contextvars.get_contextvars().get("request_id") is None
    assert REQUEST_ID_VAR.get() is None


async def test_an_unexpected_exception_is_a_generic_500_logged_with_the_request_id(
    make_harness: HarnessFactory,
) -> None:
    harness = await make_harness(desired_writer=CrashingWriter())
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars, add_request_id]
    ) as logs:
        reply = await harness.call(
            "PATCH",
            f"{THERMO}/twin",
            json_body={"desired": {"setpoint": "22"}},
            headers={"X-Request-Id": "crash-1"},
        )
    assert reply.status == 500
    problem = reply.json()
    assert problem["type"] == "urn:mka:problem:internal"
    assert "secret" not in problem["detail"]
    crash = next(line for line in logs if line["event"] == "request_crashed")
    assert crash["request_id"] == "crash-1"
    assert crash["exc_info"] is True or crash["exc_info"]
    alive = await harness.call("GET", THERMO)
    assert alive.status == 200


async def test_metrics_count_by_route_template_method_and_status(harness: ApiHarness) -> None:
    await harness.call("GET", THERMO)
    await harness.call("GET", "/kubeedge_devices/v1/devices/plant/switch-1")
    await harness.call("GET", "/kubeedge_devices/v1/devices/default/ghost")
    await harness.call("GET", "/random/path/123")
    reply = await harness.call("GET", "/metrics")
    assert reply.content_type == "text/plain"
    text = reply.body.decode()
    route = "/kubeedge_devices/v1/devices/{namespace}/{name}"
    assert f'mka_api_requests_total{{method="GET",route="{route}",status="200"}} 2.0' in text
    assert f'mka_api_requests_total{{method="GET",route="{route}",status="404"}} 1.0' in text
    assert 'mka_api_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert f'mka_api_request_seconds_count{{route="{route}"}} 3.0' in text
    assert "thermo-1" not in text
    assert "mka_registry_devices 3.0" in text


async def test_health_and_readiness(make_harness: HarnessFactory) -> None:
    ready = await make_harness()
    assert (await ready.call("GET", "/healthz")).json() == {"status": "alive"}
    body = (await ready.call("GET", "/readyz")).json()
    assert body["status"] == "ready"
    not_ready = await make_harness(readiness=(False, {"eventbus": {"mqtt": "disconnected"}}))
    reply = await not_ready.call("GET", "/readyz")
    assert reply.status == 503
    assert reply.json() == {"status": "not-ready", "eventbus": {"mqtt": "disconnected"}}


async def test_unknown_routes_and_methods_are_problems(harness: ApiHarness) -> None:
    missing = await harness.call("GET", "/kubeedge_devices/v2/devices")
    assert missing.status == 404
    assert missing.json()["instance"] == "/kubeedge_devices/v2/devices"
    wrong = await harness.call("DELETE", THERMO)
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "GET"
    assert wrong.json()["type"] == "urn:mka:problem:method-not-allowed"


@pytest.mark.parametrize("auth", [False, True])
def test_the_document_is_valid_openapi_3_1(auth: bool) -> None:
    validate_spec(document("http://127.0.0.1:8080", auth=auth))


async def test_the_document_lists_exactly_the_served_routes(harness: ApiHarness) -> None:
    app = harness.client.app
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        # The console's static pages are for people, not part of the API.
        if route.resource is not None and route.resource.canonical not in console.ROUTE_PATHS
    }
    documented = {
        (path, method)
        for path, item in harness.document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == documented
    assert harness.document["openapi"] == "3.1.0"
    assert harness.document["servers"] == [{"url": harness.base}]


async def test_every_route_resolves_to_itself(harness: ApiHarness) -> None:
    """Each route's own path reaches that route, whatever order the routes were added in
    (the twin is added before the device and the device list, which share its prefix)."""
    app = harness.client.app
    routes = [route for route in app.router.routes() if route.resource is not None]
    assert len(routes) > 20
    for route in routes:
        assert route.resource is not None
        path = re.sub(r"\{[^}]+\}", "p-1", route.resource.canonical)
        match = await app.router.resolve(make_mocked_request(route.method, path, app=app))
        assert match.route is route, (route.method, path, match.route)


def test_the_response_check_catches_an_undocumented_shape(harness: ApiHarness) -> None:
    """The harness must fail a test whose response drifts from the document."""
    drifted = Reply(
        200,
        CIMultiDict({"Content-Type": "application/json", "X-Request-Id": "r", "ETag": '"e"'}),
        b'{"properties": {"x": {"type": "int", "colour": "red"}}}',
    )
    with pytest.raises(AssertionError, match="does not match"):
        harness.check("GET", f"{THERMO}/twin", [], {}, None, drifted)
    no_etag = Reply(
        200,
        CIMultiDict({"Content-Type": "application/json", "X-Request-Id": "r"}),
        b'{"properties": {}}',
    )
    with pytest.raises(AssertionError, match="does not match"):
        harness.check("GET", f"{THERMO}/twin", [], {}, None, no_etag)
