"""The access log line: formatted directly, it must equal what structlog's chain writes."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog

from mep_kubeedge_adapter.observability import (
    ACCESS_LOG,
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
    ("method", "route", "status", "seconds", "debug", "context"),
    [
        ("GET", TWIN_ROUTE, 200, 0.000123, False, {"request_id": "0123abcd"}),
        ("PATCH", TWIN_ROUTE, 412, 1.5, False, {"request_id": "x/y:z@w+=."}),
        ("GET", "/healthz", 200, 0.0, True, {"request_id": "r1"}),
        ("BREW", "unmatched", 404, 12.25, False, {}),
        ("GET", "unmatched", 500, 1e-06, False, {"request_id": "r", "tenant": 'é\\"x'}),
    ],
)
def test_the_line_has_the_fields_and_json_of_structlogs_chain(
    stderr: Stderr,
    method: str,
    route: str,
    status: int,
    seconds: float,
    debug: bool,
    context: dict[str, str],
) -> None:
    configure_logging("debug", "json")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**context)
    try:
        ACCESS_LOG.write(method, route, status, seconds, debug=debug)
        _chain_line(method, route, status, seconds, debug)
    finally:
        structlog.contextvars.clear_contextvars()
    fast, chain = stderr.getvalue().splitlines()
    assert _without_timestamp(fast)[0] == _without_timestamp(chain)[0]
    body = json.loads(fast)
    keys = list(body)
    assert keys[:5] == ["method", "route", "status", "seconds", "event"]
    assert set(keys[5:-2]) == set(context)
    assert keys[-2:] == ["level", "timestamp"]
    assert body["level"] == ("debug" if debug else "info")


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
