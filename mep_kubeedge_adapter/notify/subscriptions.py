"""Subscriptions: the use cases behind ``/subscriptions`` (SPEC §4, §6).

``SubscriptionService`` is what the API calls. It validates requests (callback
URL scheme and addresses, expiry), keeps subscriptions in the ``SubscriptionStore``
so they survive restarts, removes expired ones periodically, keeps the
``mka_subscriptions`` gauge, and owns the ``NotificationDispatcher`` that
delivers their notifications.

Bounds (``SubscriptionLimits``): the adapter holds at most ``total`` subscriptions, and
each caller (``Caller.quota_key``: the token subject, without auth the client address)
at most ``per_caller``; they are checked before anything else is done for a request.
Subscriptions loaded at start all stay, even beyond lowered limits; new ones wait until
the count is below them again.

Errors are ``AdapterError``: INVALID for a refused callback URL or a past expiry,
NOT_FOUND for an unknown id (or one the caller does not own), QUOTA_EXCEEDED beyond a
limit.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, get_args

import structlog
from aiohttp import web
from pydantic import ValidationError

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind, now_ms
from mep_kubeedge_adapter.notify.addresses import AddressPolicy, OwnAddresses
from mep_kubeedge_adapter.notify.callbacks import DeliverySettings
from mep_kubeedge_adapter.notify.dispatcher import NotificationDispatcher
from mep_kubeedge_adapter.notify.models import (
    Caller,
    FilteringCriteria,
    Subscription,
    SubscriptionRequest,
    SubscriptionType,
    TimeStamp,
)
from mep_kubeedge_adapter.notify.websocket import POLICY_VIOLATION
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import ApiSettings, NotifySettings
from mep_kubeedge_adapter.store import StoredSubscription, SubscriptionStore

__all__ = [
    "THE_ADAPTER",
    "Caller",
    "DeliverySettings",
    "FilteringCriteria",
    "Subscription",
    "SubscriptionLimits",
    "SubscriptionRequest",
    "SubscriptionService",
    "SubscriptionType",
    "TimeStamp",
]

log = structlog.get_logger(__name__)

SUBSCRIPTION_TYPES: tuple[str, ...] = get_args(SubscriptionType)

THE_ADAPTER = Caller()
"""The caller of internal uses (benchmarks, the demo): no subject, so it sees everything."""


@dataclass(frozen=True, slots=True)
class SubscriptionLimits:
    """How many subscriptions the adapter holds (``total``) and one caller may hold."""

    total: int = 1000
    per_caller: int = 100


_RENAMED_SETTINGS = {"retry_base": "backoff_base", "retry_cap": "backoff_cap"}
"""``MKA_NOTIFY__`` settings whose ``DeliverySettings`` field has another name."""
_LIMIT_SETTINGS = {"max_subscriptions": "total", "max_subscriptions_per_caller": "per_caller"}
"""The ``MKA_NOTIFY__`` settings that are ``SubscriptionLimits``."""


def delivery_settings(notify: NotifySettings) -> DeliverySettings:
    """``DeliverySettings`` from the ``notify`` settings group: each setting goes to the field
    of its name (or its renamed field); the fields no setting names keep their defaults."""
    fields = {f.name for f in dataclasses.fields(DeliverySettings)}
    given: dict[str, Any] = {}
    for name, value in notify.model_dump().items():
        field = _RENAMED_SETTINGS.get(name, name)
        if field in fields:
            given[field] = value
        elif name not in _LIMIT_SETTINGS:
            raise TypeError(f"notify.{name} is neither a delivery setting nor a limit")
    return DeliverySettings(**given)


def subscription_limits(notify: NotifySettings) -> SubscriptionLimits:
    """``SubscriptionLimits`` from the ``notify`` settings group."""
    return SubscriptionLimits(
        **{field: getattr(notify, name) for name, field in _LIMIT_SETTINGS.items()}
    )


class SubscriptionService:
    """Create, read, list and delete subscriptions; deliver their notifications.

    ``start()`` loads the stored subscriptions and starts listening to the
    registry; ``stop()`` ends delivery (the store is closed by its owner, after).
    """

    def __init__(
        self,
        store: SubscriptionStore,
        registry: DeviceRegistry,
        metrics: Metrics,
        api: ApiSettings,
        *,
        delivery: DeliverySettings | None = None,
        clock: Callable[[], int] = now_ms,
        monotonic: Callable[[], float] = time.monotonic,
        expiry_interval: float = 2.0,
        fallback_base_url: Callable[[], str] | None = None,
        local_addresses: Callable[[], Iterable[str]] | None = None,
        limits: SubscriptionLimits | None = None,
    ) -> None:
        self._store = store
        self._limits = limits or SubscriptionLimits()
        self._held: Counter[str] = Counter()
        """Subscriptions held (and being created) per ``Caller.quota_key``."""
        self._metrics = metrics
        self._clock = clock
        self._expiry_interval = expiry_interval
        self._fallback_base_url = fallback_base_url or (lambda: "")
        self._policy = AddressPolicy(
            api.callback_networks, api.callback_deny_networks, local_addresses=local_addresses
        )
        self.dispatcher = NotificationDispatcher(
            registry,
            metrics,
            self._policy,
            settings=delivery,
            on_sequence=store.note_sequence,
            clock=clock,
            monotonic=monotonic,
        )
        self._subscriptions: dict[str, Subscription] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load stored subscriptions (dropping expired ones), then start delivery."""
        now = self._clock()
        for record in await self._store.list():
            try:
                request = SubscriptionRequest.model_validate(record.body)
            except ValidationError as exc:
                log.error(
                    "stored_subscription_unreadable",
                    subscription=record.id,
                    errors=exc.errors(include_url=False, include_input=False),
                )
                continue
            subscription = Subscription.from_request(
                record.id,
                request,
                created=record.created,
                base_url=record.base_url,
                owner=record.owner,
                caller_key=record.caller,
            )
            if subscription.expired(now):
                await self._store.delete(record.id)
                log.info("subscription_expired", subscription=record.id)
                continue
            refusal = await self._refusal_at_start(subscription)
            if refusal is not None:
                await self._store.delete(record.id)
                log.warning("stored_subscription_refused", subscription=record.id, reason=refusal)
                continue
            self._subscriptions[record.id] = subscription
            self._hold(subscription.caller_key)
            self.dispatcher.add(subscription, record.sequence)
        held = self._held.total()
        if held > self._limits.total:
            log.warning(
                "subscriptions_above_limit",
                held=held,
                limit=self._limits.total,
                detail="all are kept; new ones are refused until fewer are held",
            )
        self._update_gauge()
        await self.dispatcher.start()
        log.info("subscriptions_loaded", count=len(self._subscriptions))

    async def _refusal_at_start(self, subscription: Subscription) -> str | None:
        """Why a stored callback is no longer acceptable (the allow and deny lists may
        have changed since it was accepted), or None. Its form and an address literal are
        checked; a host name is not looked up here (every connection checks its addresses)."""
        if subscription.callback_reference is None:
            return None
        try:
            await self._policy.check_url(subscription.callback_reference, resolve=False)
        except AdapterError as exc:
            return exc.detail
        return None

    async def stop(self) -> None:
        """Stop delivering; in-flight callbacks get a short grace."""
        await self.dispatcher.stop()

    async def close_websockets(self) -> None:
        """Close every notification websocket with 1001 (before the API listener stops)."""
        await self.dispatcher.close_websockets()

    def set_own_addresses(self, addresses: OwnAddresses) -> None:
        """The API listener's (host, port) pairs; no callback may point at them."""
        self._policy.set_own_addresses(addresses)

    # ------------------------------------------------------------------ use cases

    async def create(
        self,
        request: SubscriptionRequest,
        *,
        base_url: str | None = None,
        caller: Caller = THE_ADAPTER,
    ) -> Subscription:
        """Accept a subscription for ``caller``. ``base_url`` is the API base the caller used."""
        self._reserve(caller)
        try:
            return await self._create(request, base_url, caller)
        except BaseException:
            self._release(caller.quota_key)
            raise

    async def _create(
        self, request: SubscriptionRequest, base_url: str | None, caller: Caller
    ) -> Subscription:
        if request.callbackReference is not None:
            await self._policy.check_url(request.callbackReference)
        now = self._clock()
        expiry = request.expiryDeadline.millis if request.expiryDeadline else None
        if expiry is not None and expiry <= now:
            raise AdapterError(ErrorKind.INVALID, "expiryDeadline is in the past")
        subscription = Subscription.from_request(
            str(uuid.uuid4()),
            request,
            created=now,
            base_url=base_url if base_url is not None else self._fallback_base_url(),
            owner=caller.subject,
            caller_key=caller.quota_key,
        )
        await self._store.create(
            StoredSubscription(
                id=subscription.id,
                body=subscription.body(),
                base_url=subscription.base_url,
                created=now,
                expiry=expiry,
                sequence=0,
                owner=subscription.owner,
                caller=subscription.caller_key,
            )
        )
        self._subscriptions[subscription.id] = subscription
        self.dispatcher.add(subscription)
        self._update_gauge()
        log.info(
            "subscription_created",
            subscription=subscription.id,
            type=subscription.subscription_type,
            callback=subscription.callback_reference is not None,
            websocket=subscription.request_websocket_uri,
        )
        return subscription

    async def get(self, subscription_id: str, *, caller: Caller = THE_ADAPTER) -> Subscription:
        """The subscription, if ``caller`` owns it (else NOT_FOUND, as if there were none)."""
        subscription = self._subscriptions.get(subscription_id)
        if (
            subscription is None
            or subscription.expired(self._clock())
            or not caller.owns(subscription)
        ):
            raise AdapterError(ErrorKind.NOT_FOUND, f"no subscription {subscription_id!r}")
        return subscription

    async def list(self, *, caller: Caller = THE_ADAPTER) -> builtins.list[Subscription]:
        """``caller``'s live subscriptions, oldest first."""
        now = self._clock()
        return [s for s in self._subscriptions.values() if not s.expired(now) and caller.owns(s)]

    async def delete(self, subscription_id: str, *, caller: Caller = THE_ADAPTER) -> None:
        subscription = self._subscriptions.get(subscription_id)
        if subscription is None or not caller.owns(subscription):
            raise AdapterError(ErrorKind.NOT_FOUND, f"no subscription {subscription_id!r}")
        del self._subscriptions[subscription_id]
        self._release(subscription.caller_key)
        self.dispatcher.remove(subscription_id)
        await self._store.delete(subscription_id)
        self._update_gauge()
        log.info("subscription_deleted", subscription=subscription_id)

    async def expire(self) -> builtins.list[str]:
        """Remove every subscription whose expiry deadline has passed; their ids."""
        now = self._clock()
        expired = [sid for sid, s in self._subscriptions.items() if s.expired(now)]
        for sid in expired:
            self._release(self._subscriptions.pop(sid).caller_key)
            self.dispatcher.remove(sid, reason="subscription expired")
        self.dispatcher.expire_parked()
        gone = sorted({*expired, *await self._store.expire_before(now)})
        if gone:
            self._update_gauge()
            log.info("subscriptions_expired", subscriptions=gone)
        return gone

    async def serve_websocket(
        self, subscription_id: str, ws: web.WebSocketResponse, *, caller: Caller = THE_ADAPTER
    ) -> None:
        """Deliver a subscription's notifications on a prepared websocket until it closes.

        Returns when the client closes, the subscription goes away (close 1000) or
        the adapter shuts down (close 1001). A subscription that does not exist or
        did not ask for websocket delivery gets the socket closed with 1008; call
        ``get()`` before upgrading to answer 404 instead.
        """
        subscription = self._subscriptions.get(subscription_id)
        if (
            subscription is None
            or not subscription.request_websocket_uri
            or not caller.owns(subscription)
        ):
            await ws.close(
                code=POLICY_VIOLATION, message=b"no websocket delivery for this subscription"
            )
            return
        if not await self.dispatcher.serve_websocket(subscription_id, ws):
            await ws.close(code=POLICY_VIOLATION, message=b"subscription is gone")

    # ------------------------------------------------------------------ internals

    async def run_expiry(self) -> None:
        """Remove expired subscriptions every ``expiry_interval`` seconds, until cancelled;
        the owner runs it as a supervised task between ``start()`` and ``stop()``."""
        while True:
            await asyncio.sleep(self._expiry_interval)
            try:
                await self.expire()
            except Exception as exc:
                log.error("subscription_expiry_failed", exc_info=exc)

    def _reserve(self, caller: Caller) -> None:
        """Count a subscription about to be made, or refuse it beyond a limit."""
        key = caller.quota_key
        if self._held[key] >= self._limits.per_caller:
            raise AdapterError(
                ErrorKind.QUOTA_EXCEEDED,
                f"this caller holds its maximum of {self._limits.per_caller} subscriptions "
                "(MKA_NOTIFY__MAX_SUBSCRIPTIONS_PER_CALLER); delete one first",
                title="Subscription limit reached",
            )
        if self._held.total() >= self._limits.total:
            raise AdapterError(
                ErrorKind.QUOTA_EXCEEDED,
                f"the adapter holds its maximum of {self._limits.total} subscriptions "
                "(MKA_NOTIFY__MAX_SUBSCRIPTIONS)",
                title="Subscription limit reached",
            )
        self._hold(key)

    def _hold(self, key: str) -> None:
        self._held[key] += 1

    def _release(self, key: str) -> None:
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]

    def _update_gauge(self) -> None:
        counts = dict.fromkeys(SUBSCRIPTION_TYPES, 0)
        for subscription in self._subscriptions.values():
            counts[subscription.subscription_type] += 1
        for kind, count in counts.items():
            self._metrics.subscriptions.labels(type=kind).set(count)
