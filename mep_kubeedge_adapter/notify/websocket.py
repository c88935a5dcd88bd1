"""Websocket delivery: a subscription's notifications on every socket attached to it.

Each attached socket has its own ``Backlog``, so a slow reader falls behind alone
and is coalesced or trimmed by the same bounds as a callback. With no socket
attached, a websocket-only subscription parks its notifications in one backlog
(same bounds) and the next socket to attach receives them first; parked notices
older than ``max_age`` expire (``expire_parked``), so a socket that never attaches
costs nothing for long. A subscription that also has a callback keeps nothing for
absent sockets, the callback being its durable channel. At most
``max_sockets_per_subscription`` sockets attach at a time; another is closed with 1008.

Frames are JSON text, the same bytes as the callback POST (``render.encode``). Each
socket has one writer, its ``serve`` task: every wake-up it takes what is pending (up
to ``BATCH`` notices), in order, and writes them back to back with the socket corked
(``TCP_CORK`` where the system has it), so a burst leaves in a few TCP segments instead
of one segment, one send and one task switch per notification. The socket is pinged
whenever nothing was sent for ``heartbeat`` seconds, so idle intermediaries keep
the connection and a dead peer is noticed. ``close()`` ends every socket with the
given code: 1001 (going away) on shutdown, 1000 when the subscription is deleted
or expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from mep_kubeedge_adapter.notify.backlog import Backlog, PendingBudget, PushResult
from mep_kubeedge_adapter.notify.callbacks import DeliveryCounts, DeliverySettings
from mep_kubeedge_adapter.notify.models import Subscription
from mep_kubeedge_adapter.notify.render import Envelope, Notice, encode
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.supervisor import cancel_and_wait

__all__ = ["WebsocketFanout"]

CHANNEL = "websocket"

BATCH = 256
"""Notices written per wake-up at most, so one busy socket does not hold the loop long."""

_CORK: int | None = getattr(socket, "TCP_CORK", None)


@dataclass(slots=True, eq=False)
class _Attached:
    backlog: Backlog
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class WebsocketFanout:
    """The websockets attached to one subscription."""

    def __init__(
        self,
        subscription: Subscription,
        settings: DeliverySettings,
        metrics: Metrics,
        *,
        park: bool,
        clock: Callable[[], int],
        budget: PendingBudget | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subscription = subscription
        self._envelope = Envelope.for_subscription(
            subscription.subscription_type, subscription.id, subscription.href
        )
        self._settings = settings
        self._delivered = metrics.notifications.labels(channel=CHANNEL, outcome="delivered")
        self._park = park
        self._clock = clock
        self._budget = budget
        self._monotonic = monotonic
        self._counts = DeliveryCounts(metrics, CHANNEL, subscription.id)
        self._parked: Backlog | None = self._new_backlog() if park else None
        self._attached: list[_Attached] = []
        self._closing: tuple[int, str] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        """Pending notices: parked ones, or the longest backlog of an attached socket."""
        if self._attached:
            return max(len(a.backlog) for a in self._attached)
        return len(self._parked) if self._parked is not None else 0

    @property
    def sockets(self) -> int:
        return len(self._attached)

    def offer(self, notice: Notice) -> None:
        """Queue a notice for every attached socket (or park it). Never blocks."""
        if self._closing is not None:
            return
        if self._attached:
            for attached in self._attached:
                self._counts.account(attached.backlog.push(notice), "backlog full")
                attached.wake.set()
        elif self._parked is not None:
            self._counts.account(self._parked.push(notice), "backlog full")

    def close(self, code: int, message: str) -> None:
        """Ask every attached socket to close with ``code``; later attachments are refused.

        What is parked is forgotten: nobody can attach to receive it any more."""
        if self._closing is None:
            self._closing = (code, message)
        if self._parked is not None:
            self._parked.drain()
        for attached in self._attached:
            attached.wake.set()

    def expire_parked(self) -> None:
        """Drop parked notices older than ``max_age`` (counted): no socket came for them."""
        if self._parked is None or self._attached:
            return
        expired = self._parked.drop_older_than(self._monotonic() - self._settings.max_age)
        if expired:
            self._counts.account(PushResult(dropped=expired), "parked longer than max_age")

    async def wait_closed(self) -> None:
        """Return once no socket is attached any more."""
        await self._idle.wait()

    async def serve(self, ws: web.WebSocketResponse) -> None:
        """Deliver on ``ws`` until the client closes it or ``close()`` is called."""
        if self._closing is not None:
            code, message = self._closing
            await ws.close(code=code, message=message.encode())
            return
        if len(self._attached) >= self._settings.max_sockets_per_subscription:
            await ws.close(
                code=POLICY_VIOLATION,
                message=b"too many websockets on this subscription",
            )
            return
        if self._parked is not None and not self._attached:
            attached = _Attached(self._parked)
            self._parked = None
        else:
            attached = _Attached(self._new_backlog())
        self._attached.append(attached)
        self._idle.clear()
        reader = asyncio.create_task(
            _read_until_closed(ws), name=f"notify-websocket-read-{self._subscription.id}"
        )
        reader.add_done_callback(lambda _: attached.wake.set())
        try:
            await self._pump(ws, attached, reader)
        finally:
            await cancel_and_wait(reader)
            self._attached.remove(attached)
            if self._park and not self._attached and self._closing is None:
                self._parked = attached.backlog
            else:
                self._counts.account(PushResult(dropped=len(attached.backlog.drain())))
            if not self._attached:
                self._idle.set()

    async def _pump(
        self, ws: web.WebSocketResponse, attached: _Attached, reader: asyncio.Task[None]
    ) -> None:
        backlog = attached.backlog
        while True:
            if self._closing is not None:
                code, message = self._closing
                await ws.close(code=code, message=message.encode())
                return
            if reader.done() or ws.closed:
                return
            batch = backlog.take(BATCH)
            if not batch:
                attached.wake.clear()
                try:
                    await asyncio.wait_for(attached.wake.wait(), self._settings.heartbeat)
                except TimeoutError:
                    try:
                        await ws.ping()
                    except ConnectionError:
                        return
                continue
            frames = self._frames(batch)
            sent = 0
            try:
                with _corked(ws):
                    for frame in frames:
                        await ws.send_frame(frame, WSMsgType.TEXT)
                        sent += 1
            except ConnectionError:
                self._counts.account(PushResult(dropped=len(frames) - sent))
                return
            finally:
                if sent:
                    self._delivered.inc(sent)

    def _frames(self, batch: list[Notice]) -> list[bytes]:
        """The frames of ``batch`` in order; notices that are too old, belong to an expired
        subscription or cannot be encoded are dropped and counted."""
        frames: list[bytes] = []
        expired = self._subscription.expired(self._clock())
        oldest = self._monotonic() - self._settings.max_age
        for notice in batch:
            if expired:
                self._counts.account(PushResult(dropped=1), "subscription expired")
                continue
            if notice.enqueued < oldest:
                self._counts.account(PushResult(dropped=1), "too old")
                continue
            try:
                frames.append(encode(notice, self._envelope))
            except (ValueError, OverflowError) as exc:
                self._counts.account(PushResult(dropped=1), f"cannot be rendered: {exc}")
        return frames

    def _new_backlog(self) -> Backlog:
        return Backlog(
            coalesce_after=self._settings.coalesce_after,
            max_pending=self._settings.max_pending,
            budget=self._budget,
        )


@contextlib.contextmanager
def _corked(ws: web.WebSocketResponse) -> Iterator[None]:
    """Hold the socket's partial segments while a batch is written, push them at the end.

    Without ``TCP_CORK`` (or a socket), frames go out as they are written."""
    sock: Any = ws.get_extra_info("socket")
    if _CORK is None or sock is None:
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _CORK, 0)


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    """Consume client frames (none are expected) so pings are answered and a close is seen."""
    async for _message in ws:
        pass


GOING_AWAY = int(WSCloseCode.GOING_AWAY)
NORMAL_CLOSURE = int(WSCloseCode.OK)
POLICY_VIOLATION = int(WSCloseCode.POLICY_VIOLATION)
