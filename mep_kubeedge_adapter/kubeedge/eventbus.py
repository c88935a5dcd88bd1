"""The EventBus client: EdgeCore's MQTT topics → the registry, and desired writes → EdgeCore.

One connection (aiomqtt over paho-mqtt) owned by ``EventBusClient.run()``, which the
supervisor runs as a task. On every (re)connect it subscribes, asks EdgeCore for its
device list (``membership/get``) and each device's twin (``twin/get``), so the registry
matches EdgeCore after any outage. Between syncs it applies documents, results,
deltas, state results and membership updates as they come, and probes EdgeCore with
``membership/get`` so a connected-but-silent EdgeCore is noticed. After
``MKA_MQTT__SILENT_PROBES`` unanswered probes in a row the session itself is suspect (one
was seen connected and pinging, yet receiving nothing, for minutes): it is dropped and
re-established, and ``status()["problem"]`` says why meanwhile.

Requests are correlated with EdgeCore's answers by ``event_id`` only: EdgeCore
broadcasts every result to every subscriber and has no other correlation.

Received messages wait in a ``TopicFairQueue`` (``MKA_MQTT__MAX_QUEUED``,
``__MAX_QUEUED_PER_TOPIC``): bounded, served round robin between topics, so a flood on one
device costs that device its older values (counted as ``dropped``) while other devices'
updates and EdgeCore's answers to the probe go through.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import aiomqtt
import structlog
from prometheus_client import Counter

from mep_kubeedge_adapter.backoff import Backoff
from mep_kubeedge_adapter.domain import AdapterError, DeviceId, ErrorKind, now_ms
from mep_kubeedge_adapter.kubeedge.codec import (
    ErrorResult,
    MembershipList,
    MembershipUpdate,
    Message,
    StateResult,
    TwinDelta,
    TwinDocument,
    TwinResult,
    decode,
    encode_desired_update,
    encode_get,
)
from mep_kubeedge_adapter.kubeedge.inflow import BufferedSocket, TopicFairQueue
from mep_kubeedge_adapter.kubeedge.topics import (
    ParsedTopic,
    TopicKind,
    membership_get_topic,
    parse_topic,
    subscriptions,
    twin_get_topic,
    twin_update_topic,
)
from mep_kubeedge_adapter.observability import LogThrottle, Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import MqttSettings
from mep_kubeedge_adapter.supervisor import being_cancelled

log = structlog.get_logger(__name__)

SYNC_CONCURRENCY = 16
READ_BATCH = 256
"""Queued messages applied per wake-up of the reader before it yields to other tasks."""
_DEVICE_ID_CACHE = 4096
"""Topic ids remembered with their DeviceId (the layout settings never change)."""
PUBLISH_TIMEOUT = 3600.0
"""Seconds aiomqtt may wait for a PUBACK; the request's own deadline is what bounds it."""


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()


class EventBusClient:
    """EdgeCore's EventBus as the registry's source and the desired-write path."""

    def __init__(
        self,
        settings: MqttSettings,
        node_name: str,
        registry: DeviceRegistry,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._node = node_name
        self._registry = registry
        self._metrics = metrics
        self._client: aiomqtt.Client | None = None
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._topic_ids: dict[DeviceId, str] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._resync_needed = asyncio.Event()
        self.synced = asyncio.Event()
        """Set once the registry matches EdgeCore after the latest (re)connect."""
        self.connected = False
        self.edgecore_responsive: bool | None = None
        self.edgecore_node: str | None = None
        self.last_sync_ms: int | None = None
        self.last_error: str | None = None
        self.silent_probes = 0
        """membership/get probes in a row EdgeCore did not answer."""
        self.silent_since_ms: int | None = None
        self._status_event = asyncio.Event()
        self._message_counters: dict[tuple[str, str], Counter] = {}
        self._device_ids: dict[str, DeviceId | None] = {}
        self._devices_gauge: int | None = None
        self._inflow: TopicFairQueue[aiomqtt.Message] | None = None
        self._drop_log = LogThrottle()
        metrics.mqtt_queued.set_function(lambda: self.queued)

    @property
    def queued(self) -> int:
        """Received messages waiting to be applied."""
        return self._inflow.qsize() if self._inflow is not None else 0

    # ------------------------------------------------------------------ status

    @property
    def ready(self) -> bool:
        return self.connected and self.synced.is_set()

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: the broker connection and what EdgeCore looks like from here."""
        edgecore = {None: "unknown", True: "responsive", False: "silent"}[self.edgecore_responsive]
        return {
            "mqtt": "connected" if self.connected else "disconnected",
            "synced": self.synced.is_set(),
            "edgecore": edgecore,
            "edgecoreNode": self.edgecore_node,
            "lastSync": self.last_sync_ms,
            "lastError": self.last_error,
            "silentProbes": self.silent_probes,
            "queued": self.queued,
            "problem": self._problem(),
        }

    def _problem(self) -> str | None:
        """What is wrong, in one sentence for ``/readyz``; None when nothing is."""
        if not self.connected:
            return f"not connected to the EventBus broker: {self.last_error or 'connecting'}"
        if self.edgecore_responsive is False and self.silent_since_ms is not None:
            return (
                f"EdgeCore has not answered membership/get since {_rfc3339(self.silent_since_ms)} "
                f"({self.silent_probes} probes in a row); the session is re-established after "
                f"{self._settings.silent_probes}"
            )
        if not self.synced.is_set():
            return "connected; the sync with EdgeCore (membership/get, twin/get) is not complete"
        return None

    def _status_changed(self) -> None:
        self._status_event.set()
        self._status_event = asyncio.Event()

    async def wait_status(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        """Wait until ``predicate(self.status())`` holds, woken by every status change."""
        while not predicate(self.status()):
            await self._status_event.wait()

    def _set_responsive(self, responsive: bool) -> None:
        if responsive:
            self.silent_probes = 0
            self.silent_since_ms = None
        if self.edgecore_responsive is not responsive:
            self.edgecore_responsive = responsive
            self._metrics.edgecore_responsive.set(1 if responsive else 0)
            self._status_changed()

    def _note_silence(self) -> None:
        """One more probe went unanswered; at ``silent_probes`` in a row the session is
        given up (MqttError), and ``run`` connects again."""
        self.silent_probes += 1
        if self.silent_since_ms is None:
            self.silent_since_ms = now_ms()
        self._set_responsive(False)
        self._status_changed()
        if self.silent_probes >= self._settings.silent_probes:
            self._metrics.syncs.labels("edgecore-silent-reconnect").inc()
            raise aiomqtt.MqttError(
                f"EdgeCore answered none of {self.silent_probes} membership/get probes in a "
                "row; re-establishing the EventBus session"
            )

    # -------------------------------------------------------------- connection

    def _tls_context(self) -> ssl.SSLContext | None:
        s = self._settings
        if not s.tls:
            return None
        context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        if s.cert_file is not None and s.key_file is not None:
            context.load_cert_chain(str(s.cert_file), str(s.key_file))
        return context

    def _make_client(self) -> aiomqtt.Client:
        s = self._settings
        identifier = s.client_id or f"mka-{self._node}-{uuid.uuid4().hex[:8]}"
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            identifier=identifier,
            clean_session=True,
            tls_context=self._tls_context(),
            keepalive=30,
            timeout=10,
            queue_type=self._queue_type(),
        )

    def _queue_type(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """The class aiomqtt builds its incoming queue from: a ``TopicFairQueue`` with this
        client's bounds, which the reader drains in batches."""
        owner = self
        settings = self._settings

        class Inflow(TopicFairQueue[aiomqtt.Message]):
            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(
                    _topic_of,
                    per_topic=settings.max_queued_per_topic,
                    total=settings.max_queued,
                    on_drop=owner._dropped,
                )
                owner._inflow = self

        return Inflow

    def _dropped(self, message: aiomqtt.Message) -> None:
        """A received message the queue had no room for: counted, logged now and then."""
        topic = message.topic.value
        parsed = parse_topic(topic)
        self._count(parsed.kind.value if parsed is not None else "unknown", "dropped")
        folded = self._drop_log.note()
        if folded:
            log.warning(
                "eventbus_messages_dropped",
                reason="more arrive than the adapter applies (MKA_MQTT__MAX_QUEUED...)",
                count=folded,
                topic=topic,
            )

    async def run(self) -> None:
        """Connect, sync and consume until cancelled; reconnect with backoff on any loss."""
        backoff = Backoff(base=0.2, cap=10.0)
        first = True
        while True:
            if not first:
                self._metrics.mqtt_reconnects.inc()
            first = False
            try:
                async with self._make_client() as client:
                    _read_in_chunks(client)
                    self._client = client
                    self.connected = True
                    self._metrics.mqtt_connected.set(1)
                    self._status_changed()
                    self.last_error = None
                    backoff.reset()
                    log.info("eventbus_connected", broker=self._settings.url)
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                if being_cancelled():
                    raise asyncio.CancelledError from exc
                self.last_error = str(exc)
                log.warning("eventbus_connection_lost", broker=self._settings.url, error=str(exc))
            finally:
                self._on_disconnect()
            await asyncio.sleep(backoff.next_delay())

    def _on_disconnect(self) -> None:
        self._client = None
        self.connected = False
        self._metrics.mqtt_connected.set(0)
        self.synced.clear()
        self._status_changed()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    AdapterError(ErrorKind.UNAVAILABLE, "lost the connection to EdgeCore's broker")
                )
        self._pending.clear()
        for task in list(self._background):
            task.cancel()

    async def _session(self, client: aiomqtt.Client) -> None:
        """Read messages and keep in sync until the connection drops.

        The reader and the sync/probe loop run side by side; whichever ends first ends
        the session, and its exception (an MqttError means reconnect; anything else is
        a bug the supervisor logs and restarts us for) propagates.
        """
        filters = subscriptions(self._settings.topic_layout)
        await client.subscribe([(f, 1) for f in filters])
        reader = asyncio.create_task(self._read(client), name="eventbus-reader")
        syncer = asyncio.create_task(self._sync_and_probe(client), name="eventbus-sync")
        try:
            done, _ = await asyncio.wait({reader, syncer}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (reader, syncer):
                task.cancel()
            await asyncio.gather(reader, syncer, return_exceptions=True)

    async def _read(self, client: aiomqtt.Client) -> None:
        inflow = self._inflow
        async for message in client.messages:
            self.handle(message.topic.value, _payload_bytes(message.payload))
            if inflow is not None:
                self._apply_queued(inflow)
        raise aiomqtt.MqttError("message stream ended")

    def _apply_queued(self, inflow: TopicFairQueue[aiomqtt.Message]) -> None:
        """Apply what is queued already (up to ``READ_BATCH``), not one wake-up per message."""
        for _ in range(READ_BATCH):
            try:
                message = inflow.get_nowait()
            except asyncio.QueueEmpty:
                return
            self.handle(message.topic.value, _payload_bytes(message.payload))

    # -------------------------------------------------------------------- sync

    async def _sync_and_probe(self, client: aiomqtt.Client) -> None:
        backoff = Backoff(base=0.5, cap=self._settings.probe_interval)
        while True:
            if await self._full_sync(client):
                break
            await asyncio.sleep(backoff.next_delay())
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resync_needed.wait(), self._settings.probe_interval)
            self._resync_needed.clear()
            was_responsive = self.edgecore_responsive
            members = await self._request_membership(client)
            if members is None:
                if was_responsive:
                    log.warning("edgecore_silent", node=self.edgecore_node or self._node)
                self._note_silence()
                continue
            if not was_responsive:
                log.info("edgecore_answering_again")
                if not await self._full_sync(client, members):
                    continue
            elif self._resync_due():
                # EdgeCore may have restarted between two probes with other twin values;
                # nothing on MQTT says so, so the twins are read again now and then.
                await self._full_sync(client, members)
            else:
                added = self._apply_members(members)
                await self._fetch_twins(client, added)

    def _resync_due(self) -> bool:
        interval = self._settings.resync_interval
        if not interval or self.last_sync_ms is None:
            return False
        return now_ms() - self.last_sync_ms >= interval * 1000

    async def _full_sync(
        self, client: aiomqtt.Client, members: MembershipList | None = None
    ) -> bool:
        """membership/get, then twin/get for every device; True when all answered."""
        if members is None:
            members = await self._request_membership(client)
        if members is None:
            self._metrics.syncs.labels("edgecore-silent").inc()
            log.warning("sync_failed", reason="EdgeCore did not answer membership/get")
            self._note_silence()
            return False
        self._set_responsive(True)
        self._apply_members(members)
        complete = await self._fetch_twins(client, list(self._registry_eventbus_ids()))
        if not complete:
            self._metrics.syncs.labels("partial").inc()
            return False
        self._metrics.syncs.labels("complete").inc()
        self.last_sync_ms = now_ms()
        self._update_size_gauges()
        if not self.synced.is_set():
            log.info("eventbus_synced", devices=len(self._registry))
        self.synced.set()
        self._status_changed()
        return True

    def _registry_eventbus_ids(self) -> list[DeviceId]:
        return [d.id for d in self._registry.devices() if d.in_eventbus]

    def _apply_members(self, members: MembershipList) -> list[DeviceId]:
        """Reconcile the registry with EdgeCore's list; return the devices that were new."""
        listed: dict[DeviceId, str | None] = {}
        for member in members.devices:
            device_id = self._learn_device(member.id)
            if device_id is not None:
                listed[device_id] = member.description
        before = {d.id for d in self._registry.devices() if d.in_eventbus}
        self._registry.sync_membership(listed)
        # EdgeCore lists the last reported state too; it is how a late joiner learns it.
        for member in members.devices:
            if member.state:
                device_id = self._device_for_topic(member.id)
                if device_id is not None:
                    self._registry.apply_state(device_id, member.state, member.last_online)
        return [d for d in listed if d not in before]

    async def _fetch_twins(self, client: aiomqtt.Client, device_ids: list[DeviceId]) -> bool:
        if not device_ids:
            return True
        limit = asyncio.Semaphore(SYNC_CONCURRENCY)

        async def one(device_id: DeviceId) -> bool:
            async with limit:
                return await self._fetch_twin(client, device_id)

        results = await asyncio.gather(*(one(d) for d in device_ids))
        return all(results)

    async def _fetch_twin(self, client: aiomqtt.Client, device_id: DeviceId) -> bool:
        topic = twin_get_topic(self._topic_id(device_id))
        event_id = _new_event_id("get")
        try:
            answer = await self._request(client, topic, event_id, encode_get(event_id, now_ms()))
        except TimeoutError:
            log.warning("twin_get_timeout", device=str(device_id))
            return False
        if isinstance(answer, ErrorResult):
            if answer.code == 404:
                log.info("device_gone_on_edgecore", device=str(device_id), reason=answer.reason)
                self._registry.remove_member(device_id)
                return True
            log.warning(
                "twin_get_refused", device=str(device_id), code=answer.code, reason=answer.reason
            )
            return False
        if isinstance(answer, TwinResult):
            self._registry.sync_twin(
                device_id, {k: v for k, v in answer.twin.items() if v is not None}
            )
        return True

    async def _request_membership(self, client: aiomqtt.Client) -> MembershipList | None:
        event_id = _new_event_id("members")
        try:
            answer = await self._request(
                client,
                membership_get_topic(self._node),
                event_id,
                encode_get(event_id, now_ms()),
            )
        except TimeoutError:
            return None
        return answer if isinstance(answer, MembershipList) else None

    async def _request(
        self, client: aiomqtt.Client, topic: str, event_id: str, payload: bytes
    ) -> Message:
        """Publish a request and wait for EdgeCore's answer with the same ``event_id``.

        One deadline covers both: the broker's PUBACK can queue behind a backlog of
        incoming messages, and an unanswered request must not tear the connection down
        (aiomqtt's own operation timeout would), it is just unanswered (TimeoutError).
        """
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[event_id] = future

        async def exchange() -> Message:
            await client.publish(topic, payload, qos=1, timeout=PUBLISH_TIMEOUT)
            self._metrics.mqtt_published.labels(topic.rsplit("/", 2)[-2]).inc()
            return await future

        try:
            return await asyncio.wait_for(exchange(), self._settings.request_timeout)
        finally:
            self._pending.pop(event_id, None)

    # ------------------------------------------------------------ desired write

    async def write_desired(
        self, device_id: DeviceId, values: Mapping[str, tuple[str, str]]
    ) -> None:
        """Publish ``twin/update`` with ``expected`` values and wait for EdgeCore's verdict.

        ``values`` maps property → (value, twin type). Values must already satisfy
        EdgeCore's rules: EdgeCore reports some refusals on an id-less topic that cannot
        be matched to this request. The registry holds the new desired values when this
        returns. Raises AdapterError: UNAVAILABLE (no broker), UPSTREAM_REJECTED (EdgeCore
        answered with an error), UPSTREAM_TIMEOUT (no answer in time).
        """
        client = self._client
        if client is None or not self.connected:
            raise AdapterError(ErrorKind.UNAVAILABLE, "not connected to EdgeCore's EventBus")
        event_id = _new_event_id("write")
        payload = encode_desired_update(event_id, now_ms(), values)
        topic = twin_update_topic(self._topic_id(device_id))
        try:
            answer = await self._request(client, topic, event_id, payload)
        except TimeoutError:
            self._metrics.desired_writes.labels("eventbus", "timeout").inc()
            raise AdapterError(
                ErrorKind.UPSTREAM_TIMEOUT,
                f"EdgeCore did not answer the write within {self._settings.request_timeout:g} s",
            ) from None
        except aiomqtt.MqttError as exc:
            self._metrics.desired_writes.labels("eventbus", "unavailable").inc()
            raise AdapterError(ErrorKind.UNAVAILABLE, f"EventBus publish failed: {exc}") from exc
        if isinstance(answer, ErrorResult):
            self._metrics.desired_writes.labels("eventbus", "rejected").inc()
            raise AdapterError(
                ErrorKind.UPSTREAM_REJECTED,
                f"EdgeCore refused the write ({answer.code}): {answer.reason}",
            )
        self._metrics.desired_writes.labels("eventbus", "accepted").inc()

    # --------------------------------------------------------------- ingestion

    def handle(self, topic: str, payload: bytes) -> None:
        """Apply one message EdgeCore published. Never raises for bad input."""
        parsed = parse_topic(topic)
        if parsed is None:
            self._count("unknown", "unknown-topic")
            log.debug("unknown_topic", topic=topic)
            return
        kind = parsed.kind.value
        if len(payload) > self._settings.max_payload:
            self._count(kind, "oversized")
            log.warning("payload_too_large", topic=topic, size=len(payload))
            return
        try:
            message = decode(parsed.kind, payload)
        except ValueError as exc:  # CodecError is one
            self._count(kind, "malformed")
            log.warning("malformed_payload", topic=topic, error=str(exc))
            return
        outcome = self._dispatch(parsed, message)
        self._count(kind, outcome)

    def _count(self, kind: str, outcome: str) -> None:
        """``mka_mqtt_messages{kind, outcome}`` + 1, with the labelled child looked up once."""
        counter = self._message_counters.get((kind, outcome))
        if counter is None:
            counter = self._metrics.mqtt_messages.labels(kind, outcome)
            self._message_counters[(kind, outcome)] = counter
        counter.inc()

    def _dispatch(self, parsed: ParsedTopic, message: Message) -> str:
        pending = self._pending.get(message.event_id) if message.event_id else None
        if isinstance(message, MembershipList | MembershipUpdate):
            self.edgecore_node = parsed.topic_id
            if isinstance(message, MembershipList):
                if pending is not None and not pending.done():
                    pending.set_result(message)
                    return "answered"
                self._apply_members(message)
                return "applied"
            return self._apply_membership_update(message)

        device_id = self._device_for_topic(parsed.topic_id)
        if isinstance(message, ErrorResult):
            if pending is not None and not pending.done():
                pending.set_result(message)
                return "answered"
            log.warning(
                "edgecore_error_result",
                device=parsed.topic_id or None,
                topic_kind=parsed.kind.value,
                code=message.code,
                reason=message.reason,
                event_id=message.event_id,
            )
            return "error-result"
        if device_id is None:
            return "ignored"
        if device_id not in self._registry:
            self._resync_needed.set()
            return "unknown-device"
        if isinstance(message, TwinResult):
            if parsed.kind is TopicKind.TWIN_GET_RESULT:
                if pending is not None and not pending.done():
                    pending.set_result(message)
                    return "answered"
                self._registry.sync_twin(
                    device_id, {k: v for k, v in message.twin.items() if v is not None}
                )
            else:
                self._registry.apply_twin_states(device_id, message.twin)
                if pending is not None and not pending.done():
                    pending.set_result(message)
                    return "answered"
        elif isinstance(message, TwinDocument):
            self._registry.apply_document(device_id, message.current)
        elif isinstance(message, TwinDelta):
            self._registry.apply_twin_states(
                device_id, {k: v for k, v in message.twin.items() if v is not None}
            )
        elif isinstance(message, StateResult):
            self._registry.apply_state(device_id, message.state, message.last_online)
        self._update_size_gauges()
        return "applied"

    def _apply_membership_update(self, message: MembershipUpdate) -> str:
        client = self._client
        for member in message.added:
            device_id = self._learn_device(member.id)
            if device_id is None:
                continue
            known = device_id in self._registry and self._registry_has_eventbus(device_id)
            self._registry.add_member(device_id, member.description)
            if not known and client is not None:
                task = asyncio.create_task(
                    self._fetch_twin_logged(client, device_id), name=f"twin-get-{device_id}"
                )
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        for member in message.removed:
            device_id = self._learn_device(member.id)
            if device_id is not None:
                self._registry.remove_member(device_id)
                self._topic_ids.pop(device_id, None)
        self._update_size_gauges()
        return "applied"

    async def _fetch_twin_logged(self, client: aiomqtt.Client, device_id: DeviceId) -> None:
        """Read a new member's twin; a failure is logged, and the twin waits for the next
        resync (the periodic one, or the one after a reconnect)."""
        try:
            await self._fetch_twin(client, device_id)
        except (aiomqtt.MqttError, AdapterError) as exc:
            log.warning(
                "twin_get_failed",
                device=str(device_id),
                error=str(exc),
                detail="the twin is read again at the next resync",
            )

    def _registry_has_eventbus(self, device_id: DeviceId) -> bool:
        device = self._registry.get(device_id)
        return device is not None and device.in_eventbus

    def _update_size_gauges(self) -> None:
        # Called after every applied message; the gauge is only written when the count moved.
        count = len(self._registry)
        if count != self._devices_gauge:
            self._devices_gauge = count
            self._metrics.registry_devices.set(count)

    # --------------------------------------------------------------- device ids

    def _learn_device(self, topic_id: str) -> DeviceId | None:
        """The DeviceId for an id EdgeCore used, remembering how to address it."""
        device_id = self._device_for_topic(topic_id)
        if device_id is not None:
            self._topic_ids[device_id] = topic_id
        return device_id

    def _device_for_topic(self, topic_id: str) -> DeviceId | None:
        try:
            return self._device_ids[topic_id]
        except KeyError:
            pass
        device_id = self._parse_topic_id(topic_id)
        if len(self._device_ids) >= _DEVICE_ID_CACHE:
            self._device_ids.clear()
        self._device_ids[topic_id] = device_id
        return device_id

    def _parse_topic_id(self, topic_id: str) -> DeviceId | None:
        if not topic_id:
            return None
        layout = self._settings.topic_layout
        if "/" in topic_id:
            if layout == "legacy":
                return None
            namespace, _, name = topic_id.partition("/")
            if not namespace or not name:
                return None
            return DeviceId(namespace, name)
        if layout == "namespaced":
            return None
        return DeviceId(self._settings.default_namespace, topic_id)

    def _topic_id(self, device_id: DeviceId) -> str:
        known = self._topic_ids.get(device_id)
        if known is not None:
            return known
        if self._settings.topic_layout == "legacy":
            return device_id.name
        return str(device_id)


def _read_in_chunks(client: aiomqtt.Client) -> None:
    """Give paho a ``BufferedSocket``: aiomqtt and paho offer no setting for how they read,
    so the connected paho client's socket is wrapped in place."""
    paho = client._client
    sock = paho._sock
    if sock is not None and not isinstance(sock, BufferedSocket):
        paho._sock = BufferedSocket(sock)


def _rfc3339(millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(millis / 1000))


def _topic_of(message: aiomqtt.Message) -> str:
    return message.topic.value


def _new_event_id(purpose: str) -> str:
    return f"mka-{purpose}-{uuid.uuid4().hex}"
