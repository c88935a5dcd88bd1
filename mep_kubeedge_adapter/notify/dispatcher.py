"""Change events → per-subscription queues: the registry listener and the delivery lifecycle.

The registry calls ``on_change`` synchronously after every change, so it only
matches and enqueues. The event carries the device's snapshot (model, labels), so
nothing is read back. The subscriptions of the event's type that may match are found
through a ``SubscriptionIndex`` (by device, model and label), so a change costs in
proportion to the subscriptions it may match, not to all of them. For each one that
matches, the part of the event it wants is selected (one content object per event, or
per property filter, so its encoding is shared), numbered (the ``sequence`` is taken
here, at enqueue time, so a notice coalesced or dropped later leaves a visible gap) and
handed to the subscription's callback channel and websocket fan-out. Nothing awaits;
all sending happens in per-subscription tasks, so one slow subscriber never holds up
another.
Every backlog draws on one ``PendingBudget`` (``max_pending_total``), exposed as the
``mka_notifications_pending`` gauge.

Shutdown (``stop``): stop listening, close websockets with 1001, let in-flight
callbacks finish within ``shutdown_grace``, count what is left as dropped, close
the HTTP session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from aiohttp import web

from mep_kubeedge_adapter.domain import (
    ChangeEvent,
    DeviceAdded,
    DeviceRemoved,
    DeviceUpdated,
    StateChanged,
    TwinChanged,
)
from mep_kubeedge_adapter.notify.addresses import AddressPolicy
from mep_kubeedge_adapter.notify.backlog import PendingBudget
from mep_kubeedge_adapter.notify.callbacks import CallbackChannel, CallbackClient, DeliverySettings
from mep_kubeedge_adapter.notify.index import SubscriptionIndex
from mep_kubeedge_adapter.notify.models import Subscription
from mep_kubeedge_adapter.notify.render import EVENT_TYPES, Change, Notice, content_of, narrow
from mep_kubeedge_adapter.notify.websocket import GOING_AWAY, NORMAL_CLOSURE, WebsocketFanout
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.supervisor import cancel_and_wait

__all__ = ["NotificationDispatcher", "SequenceSink"]

log = structlog.get_logger(__name__)

SequenceSink = Callable[[str, int], None]
"""Told every assigned (subscription id, sequence), to persist it; must not block."""


class _Feed:
    """One subscription's numbering and its delivery channels."""

    __slots__ = ("callback", "sequence", "subscription", "websockets")

    def __init__(
        self,
        subscription: Subscription,
        sequence: int,
        callback: CallbackChannel | None,
        websockets: WebsocketFanout | None,
    ) -> None:
        self.subscription = subscription
        self.sequence = sequence
        self.callback = callback
        self.websockets = websockets


class NotificationDispatcher:
    """Routes registry changes to subscribers. ``start()`` before use, ``stop()`` at the end."""

    def __init__(
        self,
        registry: DeviceRegistry,
        metrics: Metrics,
        policy: AddressPolicy,
        *,
        settings: DeliverySettings | None = None,
        on_sequence: SequenceSink | None = None,
        clock: Callable[[], int],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._settings = settings or DeliverySettings()
        self._monotonic = monotonic
        self._budget = PendingBudget(self._settings.max_pending_total)
        metrics.notifications_pending.set_function(lambda: self._budget.used)
        self._client = CallbackClient(policy, self._settings)
        self._on_sequence = on_sequence or (lambda _id, _seq: None)
        self._clock = clock
        self._feeds: dict[str, _Feed] = {}
        self._by_type: dict[str, SubscriptionIndex[_Feed]] = {
            kind: SubscriptionIndex() for kind in EVENT_TYPES
        }
        self._by_event: dict[type, SubscriptionIndex[_Feed]] = {
            event: self._by_type[kind] for kind, events in EVENT_TYPES.items() for event in events
        }
        self._stopping = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def settings(self) -> DeliverySettings:
        return self._settings

    async def start(self) -> None:
        await self._client.start()
        if self._unsubscribe is None:
            self._unsubscribe = self._registry.subscribe(self.on_change)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stopping.set()
        await self.close_websockets()
        workers = [
            f.callback.worker
            for f in self._feeds.values()
            if f.callback is not None and f.callback.worker is not None
        ]
        pending = [w for w in workers if not w.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._settings.shutdown_grace)
            for task in late:
                task.cancel()
            for task in late:
                await cancel_and_wait(task)
        abandoned = sum(
            f.callback.abandon() for f in self._feeds.values() if f.callback is not None
        )
        if abandoned:
            log.warning("notifications_abandoned_at_shutdown", count=abandoned)
        await self._client.close()

    async def close_websockets(self) -> None:
        """Close every attached websocket with 1001 (going away); wait until they are closed."""
        fanouts = [f.websockets for f in self._feeds.values() if f.websockets is not None]
        for fanout in fanouts:
            fanout.close(GOING_AWAY, "the adapter is shutting down")
        for fanout in fanouts:
            await fanout.wait_closed()

    # -------------------------------------------------------------- subscriptions

    def add(self, subscription: Subscription, sequence: int = 0) -> None:
        """Start routing to ``subscription``; numbering continues after ``sequence``."""
        callback = (
            CallbackChannel(
                subscription,
                self._client,
                self._settings,
                self._metrics,
                clock=self._clock,
                stopping=self._stopping,
                budget=self._budget,
                monotonic=self._monotonic,
            )
            if subscription.callback_reference
            else None
        )
        websockets = (
            WebsocketFanout(
                subscription,
                self._settings,
                self._metrics,
                park=callback is None,
                clock=self._clock,
                budget=self._budget,
                monotonic=self._monotonic,
            )
            if subscription.request_websocket_uri
            else None
        )
        feed = _Feed(subscription, sequence, callback, websockets)
        self._feeds[subscription.id] = feed
        self._by_type[subscription.subscription_type].add(
            subscription.id, subscription.selector, feed
        )

    def remove(self, subscription_id: str, reason: str = "subscription deleted") -> None:
        """Stop routing: the worker is cancelled and attached websockets are closed (1000)."""
        feed = self._feeds.pop(subscription_id, None)
        if feed is None:
            return
        self._by_type[feed.subscription.subscription_type].remove(subscription_id)
        if feed.callback is not None:
            feed.callback.cancel()
        if feed.websockets is not None:
            feed.websockets.close(NORMAL_CLOSURE, reason)

    def expire_parked(self) -> None:
        """Drop notices parked longer than ``max_age`` for websockets that never attached."""
        for feed in self._feeds.values():
            if feed.websockets is not None:
                feed.websockets.expire_parked()

    @property
    def pending_total(self) -> int:
        """Notices waiting in every backlog together."""
        return self._budget.used

    def sequence(self, subscription_id: str) -> int | None:
        """The last sequence assigned to a subscription."""
        feed = self._feeds.get(subscription_id)
        return None if feed is None else feed.sequence

    def pending(self, subscription_id: str) -> int:
        """Notices waiting in the subscription's longest backlog (callback or websocket)."""
        feed = self._feeds.get(subscription_id)
        if feed is None:
            return 0
        callback = len(feed.callback) if feed.callback is not None else 0
        sockets = len(feed.websockets) if feed.websockets is not None else 0
        return max(callback, sockets)

    async def serve_websocket(self, subscription_id: str, ws: web.WebSocketResponse) -> bool:
        """Deliver on ``ws`` until it closes; False if the subscription has no websocket feed."""
        feed = self._feeds.get(subscription_id)
        if feed is None or feed.websockets is None:
            return False
        await feed.websockets.serve(ws)
        return True

    # ------------------------------------------------------------------ listener

    def on_change(self, event: ChangeEvent) -> None:
        """The registry listener: match and enqueue only."""
        if self._stopping.is_set():
            return
        index = self._by_event.get(type(event))
        if not index:
            return
        if isinstance(event, TwinChanged | StateChanged):
            device_id, device = event.device, event.snapshot
        else:
            assert isinstance(event, DeviceAdded | DeviceRemoved | DeviceUpdated)
            device_id, device = event.device.id, event.device
        content = content_of(event)
        if content is None:
            return
        narrowed: dict[frozenset[str], Change | None] = {}
        now_ms = self._clock()
        enqueued = self._monotonic()
        for feed in index.candidates(device_id, device):
            subscription = feed.subscription
            selector = subscription.selector
            if not selector.matches_device(device_id, device) or subscription.expired(now_ms):
                continue
            change = content
            if selector.properties:
                if selector.properties in narrowed:
                    cut = narrowed[selector.properties]
                else:
                    cut = narrowed[selector.properties] = narrow(content, selector.properties)
                if cut is None:
                    continue
                change = cut
            feed.sequence += 1
            notice = Notice(feed.sequence, enqueued, change)
            self._on_sequence(subscription.id, feed.sequence)
            if feed.callback is not None:
                feed.callback.offer(notice)
            if feed.websockets is not None:
                feed.websockets.offer(notice)
