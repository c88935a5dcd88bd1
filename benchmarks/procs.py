"""Worker processes of the benchmarks: sinks, baselines, load generators, the memory probe.

``python -m benchmarks.procs VERB ARGS...``; servers print ``READY {json}`` once they
listen and run until terminated; load generators print one JSON line with their figures
and exit. Every verb is bounded (a count or a deadline).
"""

# Setup and result files are tiny and read outside the measured windows.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
from aiohttp import web

from benchmarks.common import announce

DOCUMENT_TOPIC = "$hw/events/device/+/+/twin/update/document"


async def _serve_until_terminated(cleanup: Callable[[], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), 1800)
    except TimeoutError:
        pass
    finally:
        await cleanup()


def reported_value(body: Any) -> int | None:
    """The ``temperature`` value a notification carries (the publication time in ns)."""
    try:
        return int(body["changes"]["temperature"]["reported"]["value"])
    except (KeyError, TypeError, ValueError):
        return None


# ------------------------------------------------------------------------- sink


class _Sink:
    def __init__(self) -> None:
        self.reset(False)

    def reset(self, latency: bool) -> None:
        self.latency = latency
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.samples: list[int] = []

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        self.last = now
        self.count += 1
        if self.latency:
            value = reported_value(json.loads(body))
            if value is not None:
                self.samples.append(time.time_ns() - value)
        return web.Response(status=204)

    async def stats(self, request: web.Request) -> web.Response:
        seconds = self.last - self.first
        return web.json_response(
            {"count": self.count, "seconds": seconds, "latency_ns": self.samples}
        )

    async def control_reset(self, request: web.Request) -> web.Response:
        self.reset(request.query.get("latency") == "1")
        return web.Response(status=204)


async def sink(ports: int) -> None:
    """A callback receiver on ``ports`` loopback ports (one per subscriber host)."""
    state = _Sink()
    app = web.Application()
    app.router.add_post("/notify/{n}", state.receive)
    app.router.add_get("/stats", state.stats)
    app.router.add_post("/reset", state.control_reset)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    bound = []
    for _ in range(ports):
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None
        bound.append(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    announce({"ports": bound})
    await _serve_until_terminated(runner.cleanup)


# ------------------------------------------------------------------- baselines


async def bare_relay(host: str, port: int, sink_url: str) -> None:
    """B2 baseline: bare aiomqtt subscriber → one ordered aiohttp POST worker, and websockets.

    Each document is parsed with ``json.loads`` and its value forwarded in a small JSON
    body, to the sink by POST and to every websocket client connected to ``/ws``.
    """
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    sockets: set[web.WebSocketResponse] = set()

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            sockets.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    ws_port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def poster(session: aiohttp.ClientSession) -> None:
        while True:
            body = await queue.get()
            async with session.post(sink_url, data=body) as response:
                await response.read()

    async with (
        aiohttp.ClientSession(headers={"Content-Type": "application/json"}) as session,
        aiomqtt.Client(host, port, identifier="bench-bare-relay") as client,
    ):
        await client.subscribe(DOCUMENT_TOPIC, qos=1)
        worker = asyncio.create_task(poster(session))

        async def consume() -> None:
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                twin = json.loads(payload)["twin"]
                value = twin["temperature"]["current"]["actual"]["value"]
                body = json.dumps({"changes": {"temperature": {"reported": {"value": value}}}})
                if sockets:
                    for ws in list(sockets):
                        await ws.send_str(body)
                else:
                    queue.put_nowait(body.encode())

        consumer = asyncio.create_task(consume())
        announce({"ws_url": f"ws://127.0.0.1:{ws_port}/ws"})

        async def cleanup() -> None:
            for task in (consumer, worker):
                task.cancel()
            await asyncio.gather(consumer, worker, return_exceptions=True)
            for ws in list(sockets):
                await ws.close()
            await runner.cleanup()

        await _serve_until_terminated(cleanup)


async def bare_poster(urls_file: str, total: int, body_file: str) -> None:
    """B3 baseline: one aiohttp session, one ordered worker per URL (100 concurrent POSTs)."""
    urls = json.loads(Path(urls_file).read_text())
    body = Path(body_file).read_bytes()
    share = total // len(urls)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, limit_per_host=16),
        headers={"Content-Type": "application/json"},
    ) as session:

        async def worker(url: str) -> None:
            for _ in range(share):
                async with session.post(url, data=body) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker(u) for u in urls))
        elapsed = time.perf_counter() - started
    print(json.dumps({"count": share * len(urls), "seconds": elapsed}))


async def bare_api(body_file: str, etag: str) -> None:
    """B4 baseline: a bare aiohttp handler returning the adapter's twin bytes."""
    body = Path(body_file).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json", headers={"ETag": etag})

    app = web.Application()
    app.router.add_get("/kubeedge_devices/v1/devices/{namespace}/{name}/twin", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None
    announce({"port": server.sockets[0].getsockname()[1]})  # type: ignore[attr-defined]
    await _serve_until_terminated(runner.cleanup)


async def bare_ws_fanout(sockets: int) -> None:
    """B3 websocket baseline: a bare aiohttp server sending pre-rendered frames to sockets.

    A client that connects to ``/ws`` waits for ``POST /go?frames=N`` and is then sent N
    frames of the adapter's notification size, each rendered with ``json.dumps``.
    """
    attached: list[web.WebSocketResponse] = []
    go = asyncio.Event()
    frames = {"n": 0}
    template: dict[str, Any] = {}

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        attached.append(ws)
        await go.wait()
        for sequence in range(1, frames["n"] + 1):
            await ws.send_str(json.dumps({**template, "sequence": sequence}))
        async for _ in ws:
            pass
        return ws

    async def start(request: web.Request) -> web.Response:
        frames["n"] = int(request.query["frames"])
        template.update(json.loads(await request.read()))
        go.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_post("/go", start)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    announce({"port": server.sockets[0].getsockname()[1]})  # type: ignore[attr-defined]
    await _serve_until_terminated(runner.cleanup)


# ------------------------------------------------------------------ load generators


async def ws_reader(urls_file: str, expected: int, idle: float) -> None:
    """Connect to every websocket URL, count text frames until ``expected`` or ``idle`` s."""
    urls = json.loads(Path(urls_file).read_text())
    count = 0
    first = 0.0
    last = 0.0
    done = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(u, max_msg_size=0, autoping=True) for u in urls]

        async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal count, first, last
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                now = time.perf_counter()
                if count == 0:
                    first = now
                last = now
                count += 1
                if count >= expected:
                    done.set()

        readers = [asyncio.create_task(read(ws)) for ws in sockets]
        announce({"sockets": len(sockets)})
        while not done.is_set():
            before = count
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), idle)
            if count == before and count > 0:
                break
            if count == 0 and time.perf_counter() > 600:
                break
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for ws in sockets:
            await ws.close()
    print(json.dumps({"count": count, "seconds": last - first}))


# ----------------------------------------------------------------------- memory


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def memory(broker_url: str, devices: int, properties: int, subscriptions: int) -> None:
    """B5: RSS of a real ``Adapter`` holding a full registry and many subscriptions.

    Devices become members through the registry; their twins arrive as EdgeCore twin
    documents (JSON payloads) through the EventBus client's ``handle``, which decodes
    and applies them exactly as received messages. Subscriptions are created through
    ``SubscriptionService.create`` (SQLite store, dispatcher feeds) by ten apps (token
    subjects), as many as the default limits let them: websocket-only, on every device,
    never attached, so they park what they get. Then changes arrive until the pending
    budget is spent and more: the RSS with every cap reached.
    """
    import tempfile

    from mep_kubeedge_adapter.domain import AdapterError, DeviceId
    from mep_kubeedge_adapter.notify.models import Caller, SubscriptionRequest
    from mep_kubeedge_adapter.observability import configure_logging
    from mep_kubeedge_adapter.service import Adapter
    from mep_kubeedge_adapter.settings import Settings

    configure_logging("warning", "json")
    workdir = Path(tempfile.mkdtemp(prefix="mka-bench-mem-"))
    settings = Settings.model_validate(
        {
            "node_name": "bench-node",
            "mqtt": {"url": broker_url, "topic_layout": "namespaced", "probe_interval": 3600},
            "api": {"host": "127.0.0.1", "port": 0},
            "store": {"path": str(workdir / "state.sqlite3")},
        }
    )
    gc.collect()
    imported = _rss_kib()
    async with Adapter(settings) as adapter:
        await asyncio.sleep(0.5)
        gc.collect()
        empty = _rss_kib()
        now = int(time.time() * 1000)
        names = [f"property-{i}" for i in range(properties)]
        for index in range(devices):
            device_id = DeviceId("default", f"device-{index:05d}")
            adapter.registry.add_member(device_id)
            twin = {
                name: {
                    "current": {
                        "actual": {"value": str(index * 10 + p), "metadata": {"timestamp": now}},
                        "optional": True,
                        "metadata": {"type": "int"},
                    }
                }
                for p, name in enumerate(names)
            }
            payload = json.dumps({"event_id": "", "timestamp": now, "twin": twin}).encode()
            adapter.eventbus.handle(
                f"$hw/events/device/default/device-{index:05d}/twin/update/document", payload
            )
        properties_held = adapter.registry.property_count()
        gc.collect()
        filled = _rss_kib()
        request = SubscriptionRequest.model_validate(
            {"subscriptionType": "DeviceTwinChangeSubscription", "requestWebsocketUri": True}
        )
        apps = max(1, subscriptions // settings.notify.max_subscriptions_per_caller)
        for index in range(subscriptions):
            await adapter.subscriptions.create(
                request,
                base_url="http://127.0.0.1:8080",
                caller=Caller(subject=f"app-{index % apps}"),
            )
        refused = 0
        try:
            await adapter.subscriptions.create(request, caller=Caller(subject="one-more"))
        except AdapterError:
            refused = 1
        await adapter.store.flush_sequences()
        gc.collect()
        total = _rss_kib()
        held = len(adapter.registry)

        # Every subscription matches every change; each change parks one notice in each.
        dispatcher = adapter.subscriptions.dispatcher
        budget = settings.notify.max_pending_total
        changes = 0
        highest = 0
        while changes < 2 * budget // max(1, subscriptions) + 1:
            index = changes % devices
            name = names[changes % properties]
            twin = {
                name: {
                    "current": {
                        "actual": {"value": str(-changes), "metadata": {"timestamp": now + 1}},
                        "optional": True,
                        "metadata": {"type": "int"},
                    }
                }
            }
            payload = json.dumps({"event_id": "", "timestamp": now, "twin": twin}).encode()
            adapter.eventbus.handle(
                f"$hw/events/device/default/device-{index:05d}/twin/update/document", payload
            )
            changes += 1
            highest = max(highest, dispatcher.pending_total)
        await adapter.store.flush_sequences()
        gc.collect()
        capped = _rss_kib()
        pending = dispatcher.pending_total
    print(
        json.dumps(
            {
                "imported_kib": imported,
                "empty_kib": empty,
                "filled_kib": filled,
                "total_kib": total,
                "capped_kib": capped,
                "devices": held,
                "properties": properties_held,
                "subscriptions": subscriptions,
                "apps": apps,
                "refused": refused,
                "changes": changes,
                "pending": pending,
                "highest_pending": highest,
                "pending_budget": budget,
            }
        )
    )


async def scaling() -> None:
    """B7: see ``benchmarks.scaling``; prints the figures as one JSON line."""
    from benchmarks.scaling import measure

    print(json.dumps(await measure()))


# ------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    verb, args = argv[0], argv[1:]
    runners: dict[str, Callable[[], Awaitable[None]]] = {
        "sink": lambda: sink(int(args[0])),
        "bare-relay": lambda: bare_relay(args[0], int(args[1]), args[2]),
        "bare-poster": lambda: bare_poster(args[0], int(args[1]), args[2]),
        "bare-api": lambda: bare_api(args[0], args[1]),
        "bare-ws-fanout": lambda: bare_ws_fanout(int(args[0])),
        "ws-reader": lambda: ws_reader(args[0], int(args[1]), float(args[2])),
        "memory": lambda: memory(args[0], int(args[1]), int(args[2]), int(args[3])),
        "scaling": scaling,
    }
    asyncio.run(runners[verb]())  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
