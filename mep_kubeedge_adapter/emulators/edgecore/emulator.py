"""EdgeCore's devicetwin on an MQTT broker: the shell around the pure
:class:`~mep_kubeedge_adapter.emulators.edgecore.devicetwin.DeviceTwinModule`."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Self

import aiomqtt

from mep_kubeedge_adapter.emulators.edgecore.devicetwin import DeviceTwinModule
from mep_kubeedge_adapter.emulators.edgecore.twins import (
    DEVICE_PREFIX,
    NODE_PREFIX,
    EmulatedDevice,
    Publication,
    TopicLayout,
    now_ms,
)
from mep_kubeedge_adapter.supervisor import being_cancelled, cancel_and_wait

__all__ = ["EdgeCoreEmulator"]

logger = logging.getLogger(__name__)


class EdgeCoreEmulator:
    """EdgeCore's devicetwin on an MQTT broker, as an async context manager.

    Entering connects, subscribes and waits (up to `ready_timeout`) until it is serving;
    leaving disconnects. If the broker goes away it reconnects every `reconnect_interval`
    seconds (a real EdgeCore waits 5 s) and `ready` is false meanwhile. A broker that dies
    while a publication waits for its acknowledgement is noticed after `operation_timeout`.

    `silent = True` keeps the connection and keeps applying requests but publishes nothing:
    this reproduces an EdgeCore that stays connected yet never publishes again.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        node_name: str = "edge-node",
        devices: Iterable[EmulatedDevice] = (),
        topic_layout: TopicLayout = "namespaced",
        username: str | None = None,
        password: str | None = None,
        reconnect_interval: float = 1.0,
        ready_timeout: float = 10.0,
        operation_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.module = DeviceTwinModule(node_name, devices, topic_layout=topic_layout)
        self._username = username
        self._password = password
        self._reconnect_interval = reconnect_interval
        self._ready_timeout = ready_timeout
        self._operation_timeout = operation_timeout
        self._ready = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._publish_lock = asyncio.Lock()
        self.silent = False
        self.handled_messages = 0

    @property
    def node_name(self) -> str:
        return self.module.node_name

    @property
    def topic_layout(self) -> TopicLayout:
        return self.module.topic_layout

    @property
    def ready(self) -> bool:
        """Connected and subscribed."""
        return self._ready.is_set()

    async def __aenter__(self) -> Self:
        await self.start()
        try:
            await self.wait_ready(self._ready_timeout)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the connection task without waiting for the broker."""
        if self._task is None:
            self._task = asyncio.create_task(self._serve(), name="edgecore-emulator")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._ready.clear()

    async def wait_ready(self, timeout: float | None = 10.0) -> None:
        """Wait until connected and subscribed; raises `TimeoutError` after `timeout` s."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    # -- programmatic injection: same code path as the MQTT injection topics ---------------

    async def cloud_update(
        self, device_id: str, expected: Mapping[str, str], types: Mapping[str, str] | None = None
    ) -> None:
        """Apply desired values as a cloud sync would (document + delta on MQTT)."""
        payload = self.module.cloud_update_payload(device_id, expected, types)
        topic = f"{DEVICE_PREFIX}{device_id}/twin/cloud_updated"
        await self._publish_all(self.module.handle(topic, payload))

    async def add_device(self, device: EmulatedDevice) -> None:
        """Bind a device to this node at runtime (publishes `membership/updated`)."""
        entry = {"id": device.device_id(self.topic_layout), "name": device.name}
        if device.description:
            entry["description"] = device.description
        body = {"event_id": str(uuid.uuid4()), "timestamp": now_ms(), "added_devices": [entry]}
        topic = f"{NODE_PREFIX}{self.node_name}/membership/updated"
        await self._publish_all(self.module.handle(topic, json.dumps(body).encode()))
        stored = self.module.devices.get(entry["id"])
        if stored is not None and not stored.twins:
            stored.twins = copy.deepcopy(device.twins)

    async def remove_device(self, device_id: str) -> None:
        """Unbind a device from this node at runtime (publishes `membership/updated`)."""
        body = {
            "event_id": str(uuid.uuid4()),
            "timestamp": now_ms(),
            "removed_devices": [{"id": device_id, "name": device_id.rpartition("/")[2]}],
        }
        topic = f"{NODE_PREFIX}{self.node_name}/membership/updated"
        await self._publish_all(self.module.handle(topic, json.dumps(body).encode()))

    # -- internals -----------------------------------------------------------------------

    async def _publish_all(self, publications: Sequence[Publication]) -> None:
        client = self._client
        if self.silent or not publications:
            return
        if client is None:
            raise aiomqtt.MqttError("the emulator is not connected")
        async with self._publish_lock:
            for publication in publications:
                await client.publish(publication.topic, publication.encode(), qos=1, retain=False)

    async def _serve(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=f"edgecore-emulator-{self.node_name}-{uuid.uuid4().hex[:8]}",
                    username=self._username,
                    password=self._password,
                    timeout=self._operation_timeout,
                ) as client:
                    await client.subscribe([(topic, 1) for topic in self.module.subscriptions])
                    self._client = client
                    self._ready.set()
                    logger.info(
                        "edgecore emulator serving node %s on %s:%s (%s topics)",
                        self.node_name,
                        self.host,
                        self.port,
                        self.topic_layout,
                    )
                    async for message in client.messages:
                        await self._on_message(message)
            except aiomqtt.MqttError as exc:
                if being_cancelled():
                    raise asyncio.CancelledError from exc
                logger.warning("edgecore emulator lost the broker: %s", exc)
            finally:
                self._ready.clear()
                self._client = None
            await asyncio.sleep(self._reconnect_interval)

    async def _on_message(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else b""
        try:
            publications = self.module.handle(topic, payload)
        except Exception:
            logger.exception("edgecore emulator failed on a message on %s", topic)
            return
        self.handled_messages += 1
        logger.debug(
            "handled %s (%d bytes) -> %s",
            topic,
            len(payload),
            ", ".join(p.topic for p in publications) or "nothing",
        )
        await self._publish_all(publications)
