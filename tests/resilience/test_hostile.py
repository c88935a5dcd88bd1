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
