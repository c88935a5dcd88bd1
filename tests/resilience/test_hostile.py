"""A hostile device and a hostile app: what they send is refused or bounded, and counted.

The whole adapter runs beside the EdgeCore emulator on a real mosquitto, with edge apps
subscribed through the REST API; a device (or anything that can publish on the broker)
or an app then misbehaves. SPEC §6: bad input never takes the service down, everything
else keeps working, and what is refused or dropped is counted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp

from tests.kubeedge.test_eventbus import THERMO, publish
from tests.notify.conftest import Sink

from .conftest import (
    TWIN,
    StartStack,
    all_assigned_arrived,
    assert_no_loss,
    notification_count,
    report,
)


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
