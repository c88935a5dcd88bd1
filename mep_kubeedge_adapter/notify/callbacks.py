"""HTTP-callback delivery: one shared client session, one ordered worker per subscription.

``CallbackClient`` owns the single ``aiohttp.ClientSession`` every callback goes
through (a keep-alive pool with connection limits, timeouts, no redirects, and a
resolver that applies the ``AddressPolicy``), and classifies each answer:

* 2xx: delivered;
* connection errors, timeouts, 5xx and 429: retried with the shared ``Backoff``
  (a ``Retry-After`` longer than the backoff delay is honoured, up to its cap);
* any other status (4xx, 3xx) or a refused address: dropped at once, since
  repeating the same request cannot succeed.

``CallbackChannel`` is one subscription's queue and its delivery task. The task
is started when a notice is queued and ends when the backlog is empty, so an idle
subscription costs no task. It sends one notice at a time, retrying the head
before moving on, which keeps the order; a notice that is still undelivered after
``max_attempts`` tries or ``max_age`` seconds is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from mep_kubeedge_adapter.backoff import Backoff
from mep_kubeedge_adapter.backoff import retry_after as retry_after_seconds
from mep_kubeedge_adapter.domain import AdapterError
from mep_kubeedge_adapter.notify.addresses import AddressPolicy, CallbackTarget, parse_callback
from mep_kubeedge_adapter.notify.backlog import Backlog, PendingBudget, PushResult
from mep_kubeedge_adapter.notify.models import Subscription
from mep_kubeedge_adapter.notify.render import Envelope, Notice, encode
from mep_kubeedge_adapter.observability import LogThrottle, Metrics

__all__ = [
    "Attempt",
    "CallbackChannel",
    "CallbackClient",
    "DeliveryCounts",
    "DeliverySettings",
    "Destination",
    "RefusedAddress",
]

log = structlog.get_logger(__name__)

CHANNEL = "callback"


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Bounds and timing of notification delivery (both channels)."""

    coalesce_after: int = 1000
    """Pending notices per subscriber before coalescing starts."""
    max_pending: int = 2000
    """Hard bound of pending notices per subscriber; beyond it the oldest is dropped."""
    max_pending_total: int = 100_000
    """Pending notices of all subscribers together (``PendingBudget``)."""
    max_sockets_per_subscription: int = 4
    max_attempts: int = 10
    max_age: float = 600.0
    """Seconds a notice may wait for delivery (or parked for a websocket) before it is dropped."""
    request_timeout: float = 10.0
    connect_timeout: float = 5.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    shutdown_grace: float = 2.0
    """Seconds in-flight callbacks get to finish on shutdown."""
    heartbeat: float = 20.0
    """Seconds between websocket pings while no notification is sent."""
    connection_limit: int = 256
    connections_per_host: int = 16


class DeliveryCounts:
    """One subscription's ``mka_notifications`` counters on one channel, and its drop log.

    The label children are looked up once each (``labels()`` is not free, and a backlog
    under pressure coalesces or drops on every push); drops a backlog reports are logged
    through a ``LogThrottle``, since they can recur without end."""

    __slots__ = ("_channel", "_children", "_drop_log", "_metrics", "_subscription_id")

    def __init__(self, metrics: Metrics, channel: str, subscription_id: str) -> None:
        self._metrics = metrics
        self._channel = channel
        self._subscription_id = subscription_id
        self._children: dict[str, Any] = {}
        self._drop_log = LogThrottle()

    def count(self, outcome: str, amount: int) -> None:
        if amount:
            child = self._children.get(outcome)
            if child is None:
                child = self._children[outcome] = self._metrics.notifications.labels(
                    channel=self._channel, outcome=outcome
                )
            child.inc(amount)

    def account(self, result: PushResult, reason: str | None = None) -> None:
        """Count what a backlog coalesced and dropped; log the drops, throttled."""
        self.count("coalesced", result.coalesced)
        if result.dropped:
            self.count("dropped", result.dropped)
            folded = self._drop_log.note(result.dropped)
            if folded:
                log.warning(
                    "notification_dropped",
                    channel=self._channel,
                    subscription=self._subscription_id,
                    reason=reason,
                    count=folded,
                )


class RefusedAddress(OSError):
    """Every address of a callback host is refused by the ``AddressPolicy``."""


class _PolicyResolver(AbstractResolver):
    """Resolves through the default resolver, then removes the addresses the policy refuses."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await self._policy.prepare()
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._policy.refusal(r["host"], port) is None]
        if not allowed:
            raise RefusedAddress(f"every address of {host} is refused for callbacks")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one POST."""

    outcome: Literal["delivered", "retry", "reject"]
    detail: str
    retry_after: float | None = None


class CallbackClient:
    """The shared HTTP client for all callbacks; ``start()`` and ``close()`` bound its session."""

    def __init__(self, policy: AddressPolicy, settings: DeliverySettings) -> None:
        self._policy = policy
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        s = self._settings
        connector = aiohttp.TCPConnector(
            limit=s.connection_limit,
            limit_per_host=s.connections_per_host,
            resolver=_PolicyResolver(self._policy),
            ttl_dns_cache=10,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=s.request_timeout, sock_connect=s.connect_timeout),
            headers={"Content-Type": "application/json", "User-Agent": "mep-kubeedge-adapter"},
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(self, destination: Destination, body: bytes) -> Attempt:
        session = self._session
        if session is None:
            return Attempt("retry", "the callback client is not running")
        refusal = self._literal_refusal(destination)
        if refusal is not None:
            return Attempt("reject", refusal)
        try:
            async with session.post(destination.url, data=body, allow_redirects=False) as response:
                await response.read()
                status = response.status
                retry_after = retry_after_seconds(response.headers.get("Retry-After"), math.inf)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                return Attempt("reject", str(exc.os_error))
            return Attempt("retry", f"cannot connect: {exc}")
        except aiohttp.InvalidURL as exc:
            return Attempt("reject", f"the client refuses the URL: {exc}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Attempt("retry", f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return Attempt("delivered", str(status))
        if status >= 500 or status == 429:
            return Attempt("retry", f"HTTP {status}", retry_after)
        return Attempt("reject", f"HTTP {status}")

    def _literal_refusal(self, destination: Destination) -> str | None:
        """aiohttp connects to an address literal without calling the resolver, so the
        policy is applied here for those (on every attempt: the policy can change)."""
        if destination.invalid is not None:
            return destination.invalid
        target = destination.target
        if target is None or target.address is None:
            return None
        return self._policy.refusal_of(target.address, target.port)


@dataclass(frozen=True, slots=True)
class Destination:
    """A callback URL parsed once (by the client's own parser) for all its deliveries."""

    url: URL
    target: CallbackTarget | None
    invalid: str | None = None
    """Why the URL is refused (it was accepted once; the rules may have changed)."""

    @classmethod
    def of(cls, url: str) -> Destination:
        try:
            target = parse_callback(url)
        except AdapterError as exc:
            return cls(URL(), None, exc.detail)
        return cls(URL(url), target)


class CallbackChannel:
    """One subscription's callback backlog and its delivery task."""

    def __init__(
        self,
        subscription: Subscription,
        client: CallbackClient,
        settings: DeliverySettings,
        metrics: Metrics,
        *,
        clock: Callable[[], int],
        stopping: asyncio.Event,
        budget: PendingBudget | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        assert subscription.callback_reference is not None
        self._subscription = subscription
        self._destination = Destination.of(subscription.callback_reference)
        self._envelope = Envelope.for_subscription(
            subscription.subscription_type, subscription.id, subscription.href
        )
        self._client = client
        self._settings = settings
        self._clock = clock
        self._stopping = stopping
        self._cancelled = asyncio.Event()
        self._monotonic = monotonic
        self._counts = DeliveryCounts(metrics, CHANNEL, subscription.id)
        self._backlog = Backlog(
            coalesce_after=settings.coalesce_after,
            max_pending=settings.max_pending,
            budget=budget,
        )
        self._worker: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._backlog)

    @property
    def worker(self) -> asyncio.Task[None] | None:
        return self._worker

    def offer(self, notice: Notice) -> None:
        """Queue a notice and make sure a worker runs. Called from the registry listener."""
        self._counts.account(self._backlog.push(notice), "backlog full")
        if self._stopping.is_set() or self._cancelled.is_set():
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(
                self._run(), name=f"notify-callback-{self._subscription.id}"
            )

    def cancel(self) -> None:
        """The subscription is gone: stop at once, forget what is pending."""
        self._cancelled.set()
        self._backlog.drain()
        if self._worker is not None:
            self._worker.cancel()

    def abandon(self) -> int:
        """Shutdown: count what is still pending as dropped; returns how many."""
        left = len(self._backlog.drain())
        self._counts.count("dropped", left)
        return left

    async def _run(self) -> None:
        while not (self._stopping.is_set() or self._cancelled.is_set()):
            notice = self._backlog.pop()
            if notice is None:
                return
            try:
                await self._deliver(notice)
            except Exception as exc:
                # One bad notice must not take the subscription's delivery down with it.
                log.error(
                    "notification_failed",
                    channel=CHANNEL,
                    subscription=self._subscription.id,
                    sequence=notice.sequence,
                    exc_info=exc,
                )
                self._counts.count("dropped", 1)

    async def _deliver(self, notice: Notice) -> None:
        subscription = self._subscription
        try:
            body = encode(notice, self._envelope)
        except (ValueError, OverflowError) as exc:
            self._drop(notice, f"cannot be rendered: {exc}")
            return
        backoff: Backoff | None = None  # made on the first retry: seeding its RNG is not free
        attempts = 0
        while True:
            reason = self._give_up_reason(notice)
            if reason is not None:
                self._drop(notice, reason)
                return
            attempts += 1
            try:
                attempt = await self._client.post(self._destination, body)
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    self._drop(notice, "shutdown cut the delivery")
                raise
            if attempt.outcome == "delivered":
                self._counts.count("delivered", 1)
                return
            if attempt.outcome == "reject":
                self._drop(notice, attempt.detail)
                return
            if attempts >= self._settings.max_attempts:
                self._drop(notice, f"{attempts} attempts, last: {attempt.detail}")
                return
            self._counts.count("retried", 1)
            if backoff is None:
                backoff = Backoff(base=self._settings.backoff_base, cap=self._settings.backoff_cap)
            delay = backoff.next_delay()
            if attempt.retry_after is not None:
                delay = max(delay, min(attempt.retry_after, self._settings.backoff_cap))
            log.info(
                "notification_retry",
                channel=CHANNEL,
                subscription=subscription.id,
                sequence=notice.sequence,
                attempt=attempts,
                delay=round(delay, 3),
                detail=attempt.detail,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _give_up_reason(self, notice: Notice) -> str | None:
        if self._stopping.is_set():
            return "shutting down"
        if self._subscription.expired(self._clock()):
            return "subscription expired"
        if self._monotonic() - notice.enqueued > self._settings.max_age:
            return "too old"
        return None

    def _drop(self, notice: Notice, reason: str) -> None:
        self._counts.count("dropped", 1)
        log.warning(
            "notification_dropped",
            channel=CHANNEL,
            subscription=self._subscription.id,
            sequence=notice.sequence,
            reason=reason,
        )
