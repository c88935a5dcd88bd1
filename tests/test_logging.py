"""Logs: the access log line (formatted directly, equal to structlog's chain), and
aiohttp's own records as JSON lines of the same stream."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog
from aiohttp import web

from mep_kubeedge_adapter.observability import (
    ACCESS_LOG,
    REQUEST_ID_VAR,
    add_request_id,
    add_timestamp,
    configure_logging,
    utc_timestamp,
)

TWIN_ROUTE = "/kubeedge_devices/v1/devices/{namespace}/{name}/twin"


class Stderr:
    """What the test wrote on stderr (pytest's capture; configure_logging binds to it)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._text = ""

    def getvalue(self) -> str:
        self._text += self._capsys.readouterr().err
        return self._text


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Stderr]:
    yield Stderr(capsys)
    structlog.reset_defaults()
    ACCESS_LOG.use_json(None, 0, sys.stderr)


def _chain_line(method: str, route: str, status: int, seconds: float, debug: bool) -> str:
    """The same call through structlog's configured chain (the straightforward way)."""
    logger = structlog.get_logger("check")
    (logger.debug if debug else logger.info)(
        "api_request", method=method, route=route, status=status, seconds=seconds
    )
    return ""


def _without_timestamp(line: str) -> tuple[str, str]:
    match = re.search(r'"timestamp": "([^"]+)"', line)
    assert match is not None, line
    return line.replace(match.group(1), "T"), match.group(1)


@pytest.mark.parametrize(
    ("method", "route", "status", "seconds", "debug", "request_id", "context"),
    [
        ("GET", TWIN_ROUTE, 200, 0.000123, False, "0123abcd", {}),
        ("PATCH", TWIN_ROUTE, 412, 1.5, False, "x/y:z@w+=.", {}),
        ("GET", "/healthz", 200, 0.0, True, "r1", {}),
        ("BREW", "unmatched", 404, 12.25, False, None, {}),
        ("GET", "unmatched", 500, 1e-06, False, "r", {"tenant": 'é\\"x'}),
        ("GET", TWIN_ROUTE, 200, 0.5, False, "ours", {"request_id": "bound"}),
    ],
)
def test_the_line_has_the_fields_and_json_of_structlogs_chain(
    stderr: Stderr,
    method: str,
    route: str,
    status: int,
    seconds: float,
    debug: bool,
    request_id: str | None,
    context: dict[str, str],
) -> None:
    configure_logging("debug", "json")
    token = REQUEST_ID_VAR.set(request_id)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**context)
    try:
        ACCESS_LOG.write(method, route, status, seconds, debug=debug)
        _chain_line(method, route, status, seconds, debug)
    finally:
        structlog.contextvars.clear_contextvars()
        REQUEST_ID_VAR.reset(token)
    fast, chain = stderr.getvalue().splitlines()
    assert _without_timestamp(fast)[0] == _without_timestamp(chain)[0]
    body = json.loads(fast)
    keys = list(body)
    assert keys[:5] == ["method", "route", "status", "seconds", "event"]
    assert set(keys[5:-2]) == set(context) | ({"request_id"} if request_id else set())
    assert keys[-2:] == ["level", "timestamp"]
    assert body["level"] == ("debug" if debug else "info")
    assert body.get("request_id") == context.get("request_id", request_id)


def test_every_line_logged_during_a_request_carries_its_id(stderr: Stderr) -> None:
    configure_logging("info", "json")
    token = REQUEST_ID_VAR.set("req-7")
    try:
        structlog.get_logger("somewhere").warning("something_happened", detail="d")
    finally:
        REQUEST_ID_VAR.reset(token)
    structlog.get_logger("somewhere").warning("after_the_request")
    during, after = (json.loads(line) for line in stderr.getvalue().splitlines())
    assert during["request_id"] == "req-7"
    assert "request_id" not in after


def test_levels_are_respected(stderr: Stderr) -> None:
    configure_logging("info", "json")
    ACCESS_LOG.write("GET", "/healthz", 200, 0.001, debug=True)
    assert stderr.getvalue() == ""
    configure_logging("warning", "json")
    ACCESS_LOG.write("GET", TWIN_ROUTE, 200, 0.001, debug=False)
    assert stderr.getvalue() == ""


def test_other_configurations_go_through_structlog(stderr: Stderr) -> None:
    configure_logging("info", "console")
    ACCESS_LOG.write("GET", TWIN_ROUTE, 200, 0.001, debug=False)
    assert "api_request" in stderr.getvalue() and not stderr.getvalue().startswith("{")
    configure_logging("info", "json")
    with structlog.testing.capture_logs() as captured:
        ACCESS_LOG.write("GET", TWIN_ROUTE, 201, 0.5, debug=False)
    assert captured == [
        {
            "event": "api_request",
            "method": "GET",
            "route": TWIN_ROUTE,
            "status": 201,
            "seconds": 0.5,
            "log_level": "info",
        }
    ]


def test_a_bound_value_json_cannot_write_as_text_goes_through_structlog(
    stderr: Stderr,
) -> None:
    configure_logging("info", "json")
    structlog.contextvars.bind_contextvars(attempt=3)
    try:
        ACCESS_LOG.write("GET", TWIN_ROUTE, 200, 0.001, debug=False)
    finally:
        structlog.contextvars.clear_contextvars()
    assert json.loads(stderr.getvalue())["attempt"] == 3


def test_timestamps_are_structlogs_iso_utc_text() -> None:
    for ns in (0, 1_795_641_101_256_000_000, 1_795_641_101_000_000_000, 1_795_641_101_000_999_999):
        expected = (
            datetime.fromtimestamp(ns // 1_000_000_000, UTC)
            .replace(microsecond=ns % 1_000_000_000 // 1000)
            .isoformat()
            .replace("+00:00", "Z")
        )
        assert utc_timestamp(ns) == expected
    stamped = add_timestamp(None, "info", {})["timestamp"]
    reference = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", stamped)
    assert stamped[:16] == reference["timestamp"][:16]


async def test_lines_noted_before_a_test_captures_logs_reach_the_capture(stderr: Stderr) -> None:
    """Lines are formatted when the loop iteration ends; if structlog was configured anew
    meanwhile, they go through structlog then, with the request id they were noted with."""
    configure_logging("info", "json")
    token = REQUEST_ID_VAR.set("noted-1")
    try:
        ACCESS_LOG.write("GET", TWIN_ROUTE, 200, 0.001, debug=False)
    finally:
        REQUEST_ID_VAR.reset(token)
    with structlog.testing.capture_logs(processors=[add_request_id]) as captured:
        await asyncio.sleep(0)
    assert stderr.getvalue() == ""
    assert captured == [
        {
            "event": "api_request",
            "method": "GET",
            "route": TWIN_ROUTE,
            "status": 200,
            "seconds": 0.001,
            "request_id": "noted-1",
            "log_level": "info",
        }
    ]


async def test_lines_of_one_loop_iteration_are_written_together_in_order(
    stderr: Stderr,
) -> None:
    configure_logging("info", "json")
    for status in (200, 201, 404):
        ACCESS_LOG.write("GET", TWIN_ROUTE, status, 0.001, debug=False)
    assert stderr.getvalue() == ""  # collected until the loop iteration ends
    await asyncio.sleep(0)
    assert [json.loads(line)["status"] for line in stderr.getvalue().splitlines()] == [
        200,
        201,
        404,
    ]


# ------------------------------------------------------------------ aiohttp's own records


async def _serve_and_send(raw: bytes) -> bytes:
    """A real aiohttp server (its own loggers) and one raw request; the answer's bytes."""

    async def fails(request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a handler")

    app = web.Application()
    app.router.add_get("/fails", fails)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return answer
    finally:
        await runner.cleanup()


async def test_a_malformed_request_is_one_json_warning_without_a_traceback(
    stderr: Stderr,
) -> None:
    configure_logging("info", "json")
    answer = await _serve_and_send(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
    assert answer.split(b"\r\n", 1)[0].endswith(b"400 Bad Request")
    lines = stderr.getvalue().splitlines()
    assert lines, "the refusal is logged"
    (record,) = [json.loads(line) for line in lines]
    assert record["level"] == "warning"
    assert record["logger"] == "aiohttp.server"
    assert record["event"].startswith("Error handling request from 127.0.0.1: 400 ")
    assert "exception" not in record and "Traceback" not in stderr.getvalue()


async def test_a_failing_handler_is_one_json_error_with_its_traceback_as_a_field(
    stderr: Stderr,
) -> None:
    configure_logging("info", "json")
    answer = await _serve_and_send(b"GET /fails HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500")
    (record,) = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert record["level"] == "error"
    assert record["logger"] == "aiohttp.server"
    assert "RuntimeError: a bug in a handler" in record["exception"]
