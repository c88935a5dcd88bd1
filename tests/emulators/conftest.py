"""An MQTT probe for emulator tests: publishes requests and awaits what comes back."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest

from mep_kubeedge_adapter.emulators.broker import MosquittoBroker

QUIET_DEVICE = "probe/quiet-check"


class MqttProbe:
    """A test client subscribed to `$hw/#` that hides the echo of its own publications."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self._sent: list[tuple[str, bytes]] = []
        self._messages: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if (topic, payload) in self._sent:
                self._sent.remove((topic, payload))
                continue
            try:
                decoded: Any = json.loads(payload)
            except ValueError:
                decoded = payload
            self._messages.put_nowait((topic, decoded))

    async def publish(self, topic: str, payload: bytes | str | dict[str, Any]) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        if isinstance(payload, str):
            payload = payload.encode()
        self._sent.append((topic, payload))
        await self.client.publish(topic, payload, qos=1)

    async def next(self, timeout: float = 5.0) -> tuple[str, Any]:
        async with asyncio.timeout(timeout):
            return await self._messages.get()

    async def take(self, count: int, timeout: float = 5.0) -> list[tuple[str, Any]]:
        return [await self.next(timeout) for _ in range(count)]

    async def request(
        self, topic: str, payload: bytes | str | dict[str, Any], count: int
    ) -> list[tuple[str, Any]]:
        await self.publish(topic, payload)
        return await self.take(count)

    async def wait_for(self, topic: str, timeout: float = 5.0) -> Any:
        """Skip messages until one arrives on `topic`; return its decoded payload."""
        async with asyncio.timeout(timeout):
            while True:
                received, payload = await self._messages.get()
                if received == topic:
                    return payload

    async def assert_quiet(self, unknown_device: str = QUIET_DEVICE) -> None:
        """Assert nothing else was published: the next message must answer a sentinel get.

        Needs an EdgeCore emulator that does not know `unknown_device` (single-level id for the
        legacy layout).
        """
        topic = f"$hw/events/device/{unknown_device}/twin/get"
        await self.publish(topic, {"event_id": "quiet-check", "timestamp": 1})
        received, payload = await self.next()
        assert received == f"{topic}/result", f"unexpected message on {received}: {payload}"
        assert payload["event_id"] == "quiet-check"

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._reader


@pytest.fixture
async def probe(broker: MosquittoBroker) -> AsyncIterator[MqttProbe]:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe("$hw/#", qos=1)
        probe = MqttProbe(client)
        try:
            yield probe
        finally:
            await probe.close()
