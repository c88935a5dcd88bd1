"""B4 in process: CPU per GET twin request, without sockets or a load generator.

``python -m benchmarks.inprocess {adapter|bare} [LEVEL]`` prints one JSON line:
``{"cpu_us": [...]}``, the process's CPU microseconds per request in each of ``REPEATS``
rounds. aiohttp's own HTTP protocol (``RequestHandler``, its C parser and response
writer) is fed the bytes of a request as ``wrk`` sends them on ``CONNECTIONS``
connections at once, and each response is read back from a transport that keeps what is
written; so the figure is the server's whole work per request (parsing, routing,
middlewares, the handler, writing the response, the access log written to /dev/null)
minus the system calls, which both sides would make alike. It moves far less with the
machine's load than requests per second do, and it can be profiled.

The adapter's application is ``create_app`` with default settings, a registry of 100
devices and the service's JSON logging at ``LEVEL`` (``info``); the bare one is B4's
baseline handler (the same twin bytes, content type and ETag).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from typing import Any

from aiohttp import web

from benchmarks.common import API_BASE

CONNECTIONS = 32
REQUESTS = 20_000
REPEATS = 5
TWIN_PATH = f"{API_BASE}/devices/default/dev-7/twin"
REQUEST = f"GET {TWIN_PATH} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n\r\n".encode()


class _Transport(asyncio.Transport):
    """Keeps what the server writes and wakes the measurement at each whole response."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.answered: asyncio.Future[None] | None = None
        self.last = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buffer += data
        self._answer()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.buffer += data
        self._answer()

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def _answer(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        self.last = bytes(self.buffer[: end + 4 + length])
        del self.buffer[: end + 4 + length]
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(None)


async def cpu_per_request(runner: web.BaseRunner) -> tuple[list[float], bytes]:
    """CPU microseconds per request in each round, and the last response's bytes."""
    server = runner.server
    assert server is not None
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(CONNECTIONS):
        protocol = server()
        transport = _Transport()
        protocol.connection_made(transport)
        connections.append((protocol, transport))

    async def one_round() -> None:
        waiting = []
        for protocol, transport in connections:
            transport.answered = loop.create_future()
            waiting.append(transport.answered)
            protocol.data_received(REQUEST)
        await asyncio.gather(*waiting)

    rounds = REQUESTS // CONNECTIONS
    for _ in range(rounds // 4):
        await one_round()
    figures = []
    for _ in range(REPEATS):
        started = time.process_time()
        for _ in range(rounds):
            await one_round()
        figures.append((time.process_time() - started) / (rounds * CONNECTIONS) * 1e6)
    return figures, connections[0][1].last


async def _bare_runner() -> web.AppRunner:
    body = (
        b'{"properties": {"temperature": {"type": "string", "reported": '
        b'{"value": "21", "timestamp": "2026-11-25T21:11:41.256Z"}}}}'
    )
    etag = '"97cf79e2632864c68e5d2e45187278ea"'

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json", headers={"ETag": etag})

    app = web.Application()
    app.router.add_get(f"{API_BASE}/devices/{{namespace}}/{{name}}/twin", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    return runner


async def _adapter_runner(level: str) -> web.AppRunner:
    from mep_kubeedge_adapter.api.app import ApiDeps, create_app
    from mep_kubeedge_adapter.api.listener import HeaderDeadline
    from mep_kubeedge_adapter.domain import DeviceId, TwinState, TwinValue
    from mep_kubeedge_adapter.observability import Metrics, configure_logging
    from mep_kubeedge_adapter.registry import DeviceRegistry
    from mep_kubeedge_adapter.settings import Settings

    configure_logging(level, "json")
    registry = DeviceRegistry()
    for index in range(100):
        device = DeviceId("default", f"dev-{index}")
        registry.add_member(device)
        reported = TwinValue("21", 1_795_641_101_256)
        registry.sync_twin(device, {"temperature": TwinState(actual=reported, twin_type="int")})
    settings = Settings()
    metrics = Metrics()
    deps = ApiDeps(
        settings=settings,
        registry=registry,
        metrics=metrics,
        readiness=lambda: (True, {}),
        writer=_NoWrites(),
    )
    app = create_app(deps, header_deadline=HeaderDeadline(settings.api.header_timeout, metrics))
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=settings.api.keepalive_timeout)
    await runner.setup()
    return runner


class _NoWrites:
    async def write_desired(self, device_id: Any, values: Any) -> None:
        raise NotImplementedError


async def main(which: str, level: str) -> None:
    runner = await (_bare_runner() if which == "bare" else _adapter_runner(level))
    gc.collect()
    gc.freeze()  # as the service does once started
    try:
        figures, last = await cpu_per_request(runner)
    finally:
        await runner.cleanup()
    status = last.split(b"\r\n", 1)[0].decode()
    print(json.dumps({"cpu_us": figures, "status": status}), flush=True)


if __name__ == "__main__":
    # The service's logs (and the access log) go to stderr: /dev/null here, as in B4.
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the process's stderr until it ends)
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "info"))
