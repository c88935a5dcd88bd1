"""A hostile device and a hostile app: what they send is refused or bounded, and counted.

The whole adapter runs beside the EdgeCore emulator on a real mosquitto, with edge apps
subscribed through the REST API; a device (or anything that can publish on the broker)
or an app then misbehaves. SPEC §6: bad input never takes the service down, everything
else keeps working, and what is refused or dropped is counted.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from tests.helpers import reported, until
from tests.kubeedge.test_eventbus import PUMP, THERMO, publish
from tests.notify.conftest import Sink

from .conftest import (
    TWIN,
    Stack,
    StartStack,
    all_assigned_arrived,
    assert_no_loss,
    notification_count,
    report,
)

FLOOD_RATE = 8000
"""Documents per second: more than the adapter applied before it read in chunks, less than
it now reads, on a quiet machine or a loaded one."""


@pytest.fixture
async def broker() -> AsyncIterator[MosquittoBroker]:
    """mosquitto with its default queue per client (1000), as KubeEdge deploys it: what the
    adapter has not read yet is the broker's to bound."""
    async with MosquittoBroker(max_queued_messages=1000) as running:
        yield running


def _mqtt_count(metrics_text: str, kind: str, outcome: str) -> float:
    needle = f'mka_mqtt_messages_total{{kind="{kind}",outcome="{outcome}"}} '
    for line in metrics_text.splitlines():
        if line.startswith(needle):
            return float(line[len(needle) :])
    return 0.0


async def test_a_timestamp_beyond_the_calendar_is_refused_at_the_boundary(
    start_stack: StartStack,
    sinks: Callable[..., Awaitable[Sink]],
    http: aiohttp.ClientSession,
) -> None:
    """A twin document stamped in the year 3 million is malformed input: counted, applied
    nowhere, and the device's websockets and callbacks carry on with the next change."""
    stack = await start_stack()
    sink = await sinks()
    by_callback = (await stack.api.subscribe(TWIN, sink.url, devices=[str(THERMO)]))["id"]
    by_socket = await stack.api.subscribe(TWIN, websocket=True, devices=[str(THERMO)])

    async with http.ws_connect(by_socket["websocketUri"]) as ws:
        hostile = {
            "event_id": "",
            "timestamp": 1,
            "twin": {
                "temperature": {
                    "current": {
                        "actual": {"value": "99", "metadata": {"timestamp": 10**17}},
                        "metadata": {"type": "int"},
                    }
                }
            },
        }
        await publish(
            stack.broker,
            f"$hw/events/device/{THERMO}/twin/update/document",
            json.dumps(hostile),
        )
        await report(stack, THERMO, "temperature", "30")
        message = await asyncio.wait_for(ws.receive_json(), 10)
        assert message["changes"]["temperature"]["reported"]["value"] == "30"
        assert message["changes"]["temperature"]["previous"]["value"] == "21"
        assert not ws.closed

    await all_assigned_arrived(stack, sink, by_callback)
    assert_no_loss(stack, sink, by_callback)
    assert notification_count(stack.metrics, "dropped", "websocket") == 0
    assert _mqtt_count(await stack.api.metrics(), "twin/update/document", "malformed") == 1


async def test_clients_that_never_finish_their_request_head_are_cut_off(
    start_stack: StartStack,
) -> None:
    """Slow-header clients (slowloris) hold a connection only ``MKA_API__HEADER_TIMEOUT``;
    a keep-alive connection that finished its request is not cut by that deadline."""
    stack = await start_stack(api={"header_timeout": 0.5})
    port = stack.adapter.api_port
    assert port is not None

    keeper_reader, keeper = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /healthz HTTP/1.1\r\nHost: adapter\r\n\r\n"
    keeper.write(request)
    await _read_response(keeper_reader)

    silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
    slow_reader, slow = await asyncio.open_connection("127.0.0.1", port)
    slow.write(b"GET /healthz HTTP/1.1\r\nHost: adapter\r\nX-Slow: ")
    await slow.drain()
    async with asyncio.timeout(10):
        assert await slow_reader.read() == b""
        assert await silent_reader.read() == b""
    for writer in (silent, slow):
        writer.close()

    # The keeper's own deadline passed before the slow ones' did; it still serves.
    keeper.write(request)
    assert b" 200 " in await _read_response(keeper_reader)
    keeper.close()
    metrics = await stack.api.metrics()
    assert "mka_api_header_timeouts_total 2.0" in metrics
    # Nothing is remembered of connections past their first request or their deadline.
    assert stack.adapter.header_deadline is not None
    assert stack.adapter.header_deadline.waiting == 0


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head


async def test_an_app_that_subscribes_without_end_is_capped_and_bounded(
    start_stack: StartStack, sinks: Callable[..., Awaitable[Sink]], http: aiohttp.ClientSession
) -> None:
    """One app creates websocket-only subscriptions as fast as it can and never attaches:
    it is refused beyond its cap, what it parks stays within the pending budget, and an
    honest subscriber beside it loses nothing."""
    stack = await start_stack(
        notify={
            "max_subscriptions": 40,
            "max_subscriptions_per_caller": 25,
            "max_pending_total": 20,
        }
    )
    sink = await sinks()
    honest = (await stack.api.subscribe(TWIN, sink.url, devices=[str(THERMO)]))["id"]

    refused: list[dict[str, object]] = []
    url = f"{stack.api.base}/kubeedge_devices/v1/subscriptions"
    body = {"subscriptionType": TWIN, "requestWebsocketUri": True}
    for _ in range(100):
        async with http.post(url, json=body) as resp:
            if resp.status != 201:
                assert resp.status == 403
                refused.append(await resp.json())
    assert len(await stack.api.subscriptions()) == 25  # the honest one counts for the address
    assert len(refused) == 100 - 24
    assert {p["type"] for p in refused} == {"urn:mka:problem:quota-exceeded"}

    dispatcher = stack.adapter.subscriptions.dispatcher
    highest = 0

    def watch(_event: object) -> None:
        nonlocal highest
        highest = max(highest, dispatcher.pending_total)

    unsubscribe = stack.registry.subscribe(watch)
    try:
        for value in range(30, 80):
            await report(stack, THERMO, "temperature", str(value))
    finally:
        unsubscribe()
    assert highest < 2 * 20
    await all_assigned_arrived(stack, sink, honest)
    assert_no_loss(stack, sink, honest)
    parked_away = notification_count(stack.metrics, "dropped", "websocket") + notification_count(
        stack.metrics, "coalesced", "websocket"
    )
    assert parked_away > 0
    assert "mka_notifications_pending " in await stack.api.metrics()


async def test_a_flood_on_one_device_leaves_others_timely_and_memory_bounded(
    start_stack: StartStack,
) -> None:
    """A device (or anything that can publish on the broker) floods its twin documents.
    The adapter reads them as they come into a bounded, per-topic fair queue (when it
    cannot apply them all, the flood costs that device its older values, counted): another
    device's update overtakes the flood, and EdgeCore's answers to the probe do too, so
    it is never reported silent."""
    # The EdgeCore emulator shares the adapter's event loop here, so its answers take a
    # little longer under the flood than a separate EdgeCore's would.
    stack = await start_stack(
        mqtt={"max_queued": 2000, "max_queued_per_topic": 200, "request_timeout": 3.0}
    )
    eventbus = stack.adapter.eventbus
    applied = {THERMO: 0}
    highest_queue = 0
    silent: list[dict[str, object]] = []

    def watch(event: object) -> None:
        nonlocal highest_queue
        if getattr(event, "device", None) == THERMO:
            applied[THERMO] += 1
        highest_queue = max(highest_queue, eventbus.queued)
        if eventbus.status()["edgecore"] == "silent":
            silent.append(eventbus.status())

    unsubscribe = stack.registry.subscribe(watch)
    flood = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.resilience.flood",
        stack.broker.host,
        str(stack.broker.port),
        str(THERMO),
        str(FLOOD_RATE),
    )
    try:
        await until(stack.registry, lambda: applied[THERMO] >= 10_000, timeout=60)
        waited = []
        for value in range(500, 505):
            # EdgeCore publishes the other device's document on the same broker; from
            # the broker's acknowledgement on, it is on its way to the adapter.
            await publish(
                stack.broker,
                f"$hw/events/device/{PUMP}/twin/update/document",
                _document("speed", str(value)),
            )
            before = applied[THERMO]
            await until(stack.registry, _reports(stack, PUMP, "speed", str(value)))
            waited.append(applied[THERMO] - before)
        # Each waited behind what the broker still held for the adapter (its queue and
        # in-flight window, 2000 at most) and a turn of the adapter's fair queue, never
        # behind a backlog of the flood.
        assert max(waited) < 5000, waited
        probes_before = _answered_probes(stack)
        await until(stack.registry, lambda: _answered_probes(stack) >= probes_before + 3, 30)
    finally:
        unsubscribe()
        flood.terminate()
        await flood.wait()
    assert silent == []
    assert eventbus.status()["edgecore"] == "responsive"
    assert highest_queue <= 2000


def _reports(stack: Stack, device: DeviceId, name: str, value: str) -> Callable[[], bool]:
    return lambda: reported(stack.registry, device, name) == value


def _document(name: str, value: str) -> str:
    twin = {name: {"current": {"actual": {"value": value}, "metadata": {"type": "int"}}}}
    return json.dumps({"event_id": "", "timestamp": 1, "twin": twin})


def _answered_probes(stack: Stack) -> float:
    value = stack.metrics.registry.get_sample_value(
        "mka_mqtt_messages_total", {"kind": "membership/get/result", "outcome": "answered"}
    )
    return value or 0.0
