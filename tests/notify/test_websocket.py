"""Websocket delivery through a real aiohttp server and client on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.notify.subscriptions import (
    SubscriptionRequest,
    SubscriptionService,
    TimeStamp,
)
from mep_kubeedge_adapter.notify.websocket import BATCH
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry, DeviceSpec

from .conftest import (
    FAST,
    THERMO,
    Clock,
    Monotonic,
    ServiceFactory,
    Sink,
    add_devices,
    report,
    sample,
)

TWIN = "DeviceTwinChangeSubscription"
MEMBERSHIP = "DeviceMembershipChangeSubscription"


@dataclass
class WebsocketEndpoint:
    """A tiny app that upgrades and hands the socket to ``serve_websocket``."""

    service: SubscriptionService
    session: aiohttp.ClientSession
    port: int
    attached: asyncio.Queue[None]

    def url(self, subscription_id: str) -> str:
        return f"http://127.0.0.1:{self.port}/subscriptions/{subscription_id}/websocket"

    async def connect(self, subscription_id: str, **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
        """Connect, and return once the service has attached the socket."""
        ws: aiohttp.ClientWebSocketResponse = await self.session.ws_connect(
            self.url(subscription_id), **kwargs
        )
        await asyncio.wait_for(self.attached.get(), 3)
        return ws


async def _endpoint(service: SubscriptionService) -> AsyncIterator[WebsocketEndpoint]:
    attached: asyncio.Queue[None] = asyncio.Queue()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        # Runs once serve_websocket first yields, i.e. after it attached the socket.
        asyncio.get_running_loop().call_soon(attached.put_nowait, None)
        await service.serve_websocket(request.match_info["sid"], ws)
        return ws

    app = web.Application()
    app.router.add_get("/subscriptions/{sid}/websocket", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield WebsocketEndpoint(service, session, port, attached)
        await service.close_websockets()
    await runner.cleanup()


@pytest.fixture
async def endpoint(service: SubscriptionService) -> AsyncIterator[WebsocketEndpoint]:
    async for value in _endpoint(service):
        yield value


async def receive_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), 3)
    assert message.type is WSMsgType.TEXT, message
    body = json.loads(message.data)
    assert isinstance(body, dict)
    return body


def websocket_only(kind: str = TWIN, **extra: Any) -> SubscriptionRequest:
    return SubscriptionRequest.model_validate(
        {"subscriptionType": kind, "requestWebsocketUri": True, **extra}
    )


async def test_every_attached_socket_gets_every_notification(
    endpoint: WebsocketEndpoint, service: SubscriptionService, registry: DeviceRegistry
) -> None:
    add_devices(registry)
    subscription = await service.create(websocket_only(), base_url="http://gw/kubeedge_devices/v1")
    async with (
        await endpoint.connect(subscription.id) as first,
        await endpoint.connect(subscription.id) as second,
    ):
        for i in range(3):
            report(registry, THERMO, 1 + i, temperature=str(i))
        for ws in (first, second):
            bodies = [await receive_json(ws) for _ in range(3)]
            assert [b["sequence"] for b in bodies] == [1, 2, 3]
            assert bodies[0]["notificationType"] == "DeviceTwinChangeNotification"
            assert bodies[0]["subscriptionId"] == subscription.id
            assert bodies[2]["changes"]["temperature"]["reported"]["value"] == "2"
            assert bodies[0]["_links"]["subscription"]["href"] == (
                f"http://gw/kubeedge_devices/v1/subscriptions/{subscription.id}"
            )


async def test_notifications_wait_for_the_first_socket_within_the_bound(
    service_factory: ServiceFactory, registry: DeviceRegistry, metrics: Metrics
) -> None:
    service = await service_factory(replace(FAST, coalesce_after=2, max_pending=3))
    subscription = await service.create(websocket_only(MEMBERSHIP))
    for i in range(10):
        registry.upsert_spec(DeviceSpec(id=DeviceId("flood", f"d{i}")))
        assert service.dispatcher.pending(subscription.id) <= 3
    assert sample(metrics, "websocket", "dropped") == 7
    async for endpoint in _endpoint(service):
        async with await endpoint.connect(subscription.id) as ws:
            bodies = [await receive_json(ws) for _ in range(3)]
            assert [b["sequence"] for b in bodies] == [8, 9, 10]
            assert [b["changeType"] for b in bodies] == ["ADDED"] * 3
        assert sample(metrics, "websocket", "delivered") == 3


async def test_shutdown_closes_sockets_going_away(
    endpoint: WebsocketEndpoint, service: SubscriptionService
) -> None:
    subscription = await service.create(websocket_only())
    async with await endpoint.connect(subscription.id) as ws:
        closing = asyncio.create_task(service.close_websockets())
        message = await asyncio.wait_for(ws.receive(), 3)
        assert message.type is WSMsgType.CLOSE
        assert message.data == aiohttp.WSCloseCode.GOING_AWAY
        await asyncio.wait_for(closing, 3)
        # Once shutting down, a new socket is turned away at once.
        async with endpoint.session.ws_connect(endpoint.url(subscription.id)) as late:
            message = await asyncio.wait_for(late.receive(), 3)
            assert message.type is WSMsgType.CLOSE
            assert message.data == aiohttp.WSCloseCode.GOING_AWAY


async def test_deleting_the_subscription_closes_its_sockets(
    endpoint: WebsocketEndpoint, service: SubscriptionService
) -> None:
    subscription = await service.create(websocket_only())
    async with await endpoint.connect(subscription.id) as ws:
        await service.delete(subscription.id)
        message = await asyncio.wait_for(ws.receive(), 3)
        assert message.type is WSMsgType.CLOSE
        assert message.data == aiohttp.WSCloseCode.OK


async def test_the_expiry_task_closes_sockets_of_expired_subscriptions(
    service_factory: ServiceFactory, clock: Clock
) -> None:
    service = await service_factory(expiry_interval=0.01)
    subscription = await service.create(
        websocket_only(expiryDeadline=TimeStamp(seconds=clock.now // 1000 + 5))
    )
    async for endpoint in _endpoint(service):
        async with await endpoint.connect(subscription.id) as ws:
            clock.now += 6_000
            message = await asyncio.wait_for(ws.receive(), 3)
            assert message.type is WSMsgType.CLOSE
            assert message.data == aiohttp.WSCloseCode.OK
        assert await service.list() == []


async def test_unknown_or_callback_only_subscriptions_are_refused(
    endpoint: WebsocketEndpoint, service: SubscriptionService, sink: Sink
) -> None:
    callback_only = await service.create(
        SubscriptionRequest(subscriptionType=TWIN, callbackReference=sink.url)
    )
    for sid in ("no-such-id", callback_only.id):
        async with endpoint.session.ws_connect(endpoint.url(sid)) as ws:
            message = await asyncio.wait_for(ws.receive(), 3)
            assert message.type is WSMsgType.CLOSE
            assert message.data == aiohttp.WSCloseCode.POLICY_VIOLATION


async def test_idle_sockets_are_pinged(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(replace(FAST, heartbeat=0.05))
    subscription = await service.create(websocket_only())
    async for endpoint in _endpoint(service):
        async with await endpoint.connect(subscription.id, autoping=False) as ws:
            message = await asyncio.wait_for(ws.receive(), 3)
            assert message.type is WSMsgType.PING
            await ws.pong(message.data)


async def test_callback_and_websocket_share_the_sequence(
    endpoint: WebsocketEndpoint, service: SubscriptionService, registry: DeviceRegistry, sink: Sink
) -> None:
    add_devices(registry)
    subscription = await service.create(
        SubscriptionRequest(
            subscriptionType=TWIN, callbackReference=sink.url, requestWebsocketUri=True
        )
    )
    report(registry, THERMO, 1, temperature="0")  # no socket yet: the callback only
    async with await endpoint.connect(subscription.id) as ws:
        report(registry, THERMO, 2, temperature="1")
        body = await receive_json(ws)
        assert body["sequence"] == 2
    received = await sink.wait_for(2)
    assert [b["sequence"] for b in received] == [1, 2]
    assert received[1] == body


async def test_a_notice_that_cannot_be_rendered_is_dropped_and_the_socket_stays(
    endpoint: WebsocketEndpoint,
    service: SubscriptionService,
    registry: DeviceRegistry,
    metrics: Metrics,
) -> None:
    add_devices(registry)
    subscription = await service.create(websocket_only())
    async with await endpoint.connect(subscription.id) as ws:
        report(registry, THERMO, 10**18, temperature="1")
        report(registry, THERMO, 2_000, temperature="2")
        report(registry, THERMO, 3_000, temperature="3")
        body = await receive_json(ws)
        assert body["sequence"] == 3
        assert body["changes"]["temperature"]["reported"]["value"] == "3"
        assert not ws.closed
    assert sample(metrics, "websocket", "dropped") == 2


async def test_parked_notices_expire_when_no_socket_comes(
    service_factory: ServiceFactory, registry: DeviceRegistry, metrics: Metrics
) -> None:
    monotonic = Monotonic()
    service = await service_factory(replace(FAST, max_age=60.0), monotonic=monotonic)
    subscription = await service.create(websocket_only(MEMBERSHIP))
    for i in range(3):
        registry.upsert_spec(DeviceSpec(id=DeviceId("early", f"d{i}")))
    monotonic.now += 30
    registry.upsert_spec(DeviceSpec(id=DeviceId("late", "d0")))
    await service.expire()
    assert service.dispatcher.pending(subscription.id) == 4
    monotonic.now += 31  # the first three waited 61 s, the last one 31 s
    await service.expire()
    assert service.dispatcher.pending(subscription.id) == 1
    assert sample(metrics, "websocket", "dropped") == 3
    async for endpoint in _endpoint(service):
        async with await endpoint.connect(subscription.id) as ws:
            body = await receive_json(ws)
            assert body["sequence"] == 4
            assert body["device"] == {"namespace": "late", "name": "d0"}


async def test_the_pending_budget_bounds_all_parked_notices_together(
    service_factory: ServiceFactory, registry: DeviceRegistry, metrics: Metrics
) -> None:
    """Many websocket-only subscriptions that never attach, and a flood of changes:
    together they never hold twice ``max_pending_total``, whatever each may hold alone."""
    service = await service_factory(
        replace(FAST, coalesce_after=500, max_pending=1000, max_pending_total=200)
    )
    parked = [await service.create(websocket_only(MEMBERSHIP)) for _ in range(20)]
    for i in range(300):
        registry.upsert_spec(DeviceSpec(id=DeviceId("flood", f"d{i}")))
        assert service.dispatcher.pending_total < 2 * 200
    held = [service.dispatcher.pending(s.id) for s in parked]
    assert sum(held) == service.dispatcher.pending_total <= 200
    assert max(held) - min(held) <= 1  # shared fairly
    gauge = metrics.registry.get_sample_value("mka_notifications_pending")
    assert gauge == service.dispatcher.pending_total
    assert sample(metrics, "websocket", "dropped") == 20 * 300 - sum(held)


async def test_a_subscription_takes_only_so_many_sockets(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(replace(FAST, max_sockets_per_subscription=2))
    subscription = await service.create(websocket_only())
    async for endpoint in _endpoint(service):
        async with (
            await endpoint.connect(subscription.id) as first,
            await endpoint.connect(subscription.id) as second,
        ):
            third = await endpoint.session.ws_connect(endpoint.url(subscription.id))
            message = await asyncio.wait_for(third.receive(), 3)
            assert message.type is WSMsgType.CLOSE
            assert third.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert not first.closed and not second.closed


async def test_a_burst_arrives_whole_in_order_as_the_callback_bytes(
    endpoint: WebsocketEndpoint,
    service: SubscriptionService,
    registry: DeviceRegistry,
    sink: Sink,
    metrics: Metrics,
) -> None:
    """Several notices pending at one wake-up are written as one batch: every one arrives,
    in order, numbered without gaps, each frame the compact JSON the callback received."""
    add_devices(registry)
    subscription = await service.create(
        SubscriptionRequest(
            subscriptionType=TWIN, callbackReference=sink.url, requestWebsocketUri=True
        )
    )
    count = BATCH + 44
    async with await endpoint.connect(subscription.id) as ws:
        for i in range(count):  # no await between them: all pending at the next wake-up
            report(registry, THERMO, 1 + i, temperature=str(i))
        frames = []
        for _ in range(count):
            message = await asyncio.wait_for(ws.receive(), 3)
            assert message.type is WSMsgType.TEXT
            frames.append(message.data)
    bodies = [json.loads(frame) for frame in frames]
    assert [b["sequence"] for b in bodies] == list(range(1, count + 1))
    assert [b["changes"]["temperature"]["reported"]["value"] for b in bodies] == [
        str(i) for i in range(count)
    ]
    received = await sink.wait_for(count, timeout=10)
    assert received == bodies
    assert frames == [json.dumps(body, separators=(",", ":")) for body in received]
    assert sample(metrics, "websocket", "delivered") == count
