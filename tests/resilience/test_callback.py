"""A callback endpoint that flaps, stalls and goes down: retried, coalesced, dropped — and counted.

Delivery bounds are made small with the ``MKA_NOTIFY__`` settings, so a subscriber can lose
notifications within seconds. SPEC §6: what is finally not delivered is counted in
``mka_notifications_total`` and shows as a ``sequence`` gap of exactly that size.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest

from tests.kubeedge.test_eventbus import PUMP
from tests.notify.conftest import Sink

from .conftest import (
    TWIN,
    StartStack,
    all_assigned_arrived,
    gap,
    lost,
    notification_count,
    of_subscription,
    report,
    sequences,
)

pytestmark = pytest.mark.integration

NOTIFY = {
    "coalesce_after": 2,
    "max_pending": 4,
    "max_attempts": 2,
    "request_timeout": 2,
    "retry_base": 0.05,
    "retry_cap": 0.2,
}


def speeds(sink: Sink, subscription_id: str) -> list[str]:
    return [
        n["changes"]["speed"]["reported"]["value"] for n in of_subscription(sink, subscription_id)
    ]


def exposed(text: str, outcome: str) -> float:
    """``mka_notifications_total{channel="callback",outcome=...}`` as /metrics shows it."""
    pattern = rf'mka_notifications_total\{{channel="callback",outcome="{outcome}"\}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


async def test_flapping_stalled_and_down_callbacks(
    start_stack: StartStack, sinks: Callable[..., Awaitable[Sink]]
) -> None:
    stack = await start_stack(notify=NOTIFY)
    delivery = stack.adapter.subscriptions.dispatcher.settings
    assert (delivery.backoff_base, delivery.backoff_cap) == (0.05, 0.2)
    sink = await sinks()
    sid = (await stack.api.subscribe(TWIN, sink.url, devices=[str(PUMP)]))["id"]
    value = iter(range(100, 200))

    # Healthy.
    for _ in range(2):
        await report(stack, PUMP, "speed", str(next(value)))
    assert await all_assigned_arrived(stack, sink, sid) == [1, 2]

    # Flapping: every other request fails; each notice gets through on its retry at worst.
    sink.statuses = lambda n: 503 if n % 2 else 204
    for _ in range(3):
        await report(stack, PUMP, "speed", str(next(value)))
        await all_assigned_arrived(stack, sink, sid)
    assert sequences(sink, sid) == [1, 2, 3, 4, 5]
    assert lost(stack.metrics) == 0
    assert notification_count(stack.metrics, "retried") >= 1

    # Stalled: the endpoint holds the request; what piles up is coalesced to the latest value.
    sink.statuses = lambda _n: 204
    sink.gate = asyncio.Event()
    sink.entered.clear()
    await report(stack, PUMP, "speed", str(next(value)))
    await asyncio.wait_for(sink.entered.wait(), 5)
    for _ in range(5):
        await report(stack, PUMP, "speed", str(next(value)))
    latest = str(next(value))
    await report(stack, PUMP, "speed", latest)
    sink.gate.set()
    sink.gate = None
    await all_assigned_arrived(stack, sink, sid)
    assert speeds(sink, sid)[-1] == latest
    assert notification_count(stack.metrics, "coalesced") >= 1

    # Down: every request fails; a notice is dropped after its attempts.
    sink.statuses = lambda _n: 503
    down_from = sink.attempts
    for _ in range(6):
        await report(stack, PUMP, "speed", str(next(value)))
    # The third failed request is a later notice's: the first one was dropped before it.
    await sink.wait_until(lambda: sink.attempts >= down_from + 3, timeout=10)

    # Back up: delivery goes on with the next notice, in order.
    sink.statuses = lambda _n: 204
    latest = str(next(value))
    await report(stack, PUMP, "speed", latest)
    received = await all_assigned_arrived(stack, sink, sid)
    assert speeds(sink, sid)[-1] == latest
    assert notification_count(stack.metrics, "dropped") >= 1

    # Every notice numbered was delivered or counted; the counts are the gap, exactly.
    last = stack.adapter.subscriptions.dispatcher.sequence(sid)
    assert last is not None
    assert gap(received, last) == lost(stack.metrics)
    delivered = notification_count(stack.metrics, "delivered")
    assert delivered == len(received)
    text = await stack.api.metrics()
    assert exposed(text, "dropped") + exposed(text, "coalesced") == gap(received, last)
    assert list(await stack.api.subscriptions()) == [sid]
