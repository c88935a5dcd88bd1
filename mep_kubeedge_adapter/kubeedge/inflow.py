"""The EventBus client's incoming queue: bounded, and fair between topics.

paho acknowledges a message as soon as it has read it, so the broker's own queue limits
never hold back a flood the adapter cannot process: without a bound here, whatever
arrives faster than the registry absorbs it piles up in memory, and every other
device's update (and EdgeCore's answer to the probe) waits behind the pile.

``TopicFairQueue`` keeps one FIFO per topic and serves them round robin, so a message
on a quiet topic is handled after at most one message of each busy topic. Each topic
holds at most ``per_topic`` messages (beyond it its oldest is dropped: a flooding
device loses its own older values, which later ones supersede), and all topics
together at most ``total`` (beyond it the oldest message of the topic served next is
dropped). Every drop goes to ``on_drop``, which counts it. aiomqtt builds the queue
itself (``queue_type``) and its message iterator reads it; the EventBus client takes
what is already queued in batches (``get_nowait``), which costs far less per message
than the iterator's one wake-up each.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["BufferedSocket", "TopicFairQueue"]

T = TypeVar("T")

READ_CHUNK = 64 * 1024
"""Bytes asked of the kernel per read: many packets for one system call."""
READ_BUDGET = 256 * 1024
"""Bytes read in one wake-up of the event loop at most, before other tasks get a turn."""


class _RoundRobin(Generic[T]):
    """FIFOs per topic, served in turn; what ``asyncio.Queue`` keeps as ``_queue``."""

    __slots__ = ("_by_topic", "_on_drop", "_per_topic", "_size", "_topic_of", "_total")

    def __init__(
        self,
        topic_of: Callable[[T], str],
        per_topic: int,
        total: int,
        on_drop: Callable[[T], None],
    ) -> None:
        self._topic_of = topic_of
        self._per_topic = per_topic
        self._total = total
        self._on_drop = on_drop
        self._by_topic: OrderedDict[str, deque[T]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def append(self, item: T) -> None:
        topic = self._topic_of(item)
        queue = self._by_topic.get(topic)
        if queue is None:
            queue = self._by_topic[topic] = deque()
        if len(queue) >= self._per_topic:
            self._on_drop(queue.popleft())
            self._size -= 1
        elif self._size >= self._total:
            self._on_drop(self.popleft())
            queue = self._by_topic.setdefault(topic, queue)
        queue.append(item)
        self._size += 1

    def popleft(self) -> T:
        topic, queue = next(iter(self._by_topic.items()))
        item = queue.popleft()
        if queue:
            self._by_topic.move_to_end(topic)
        else:
            del self._by_topic[topic]
        self._size -= 1
        return item


class TopicFairQueue(asyncio.Queue[T]):
    """An ``asyncio.Queue`` that never refuses a put: it bounds itself by dropping (above)."""

    def __init__(
        self,
        topic_of: Callable[[T], str],
        *,
        per_topic: int,
        total: int,
        on_drop: Callable[[T], None],
    ) -> None:
        if not 1 <= per_topic <= total:
            raise ValueError("need 1 <= per_topic <= total")
        self._round_robin: _RoundRobin[T] = _RoundRobin(topic_of, per_topic, total, on_drop)
        super().__init__()

    def _init(self, maxsize: int) -> None:
        self._queue = self._round_robin

    def _put(self, item: T) -> None:
        self._round_robin.append(item)

    def _get(self) -> T:
        return self._round_robin.popleft()


class _Socket(Protocol):
    def recv(self, buffer_size: int, /) -> bytes: ...

    def send(self, buffer: bytes | bytearray, /) -> int: ...

    def close(self) -> None: ...

    def fileno(self) -> int: ...

    def setblocking(self, flag: bool, /) -> None: ...


class BufferedSocket:
    """paho's socket, read ``READ_CHUNK`` bytes at a time, up to ``READ_BUDGET`` a wake-up.

    paho reads each packet with at least three small ``recv`` calls, and aiomqtt reads
    one packet per wake-up of the event loop, so the client could not read faster than
    it applies messages: a flood then waits in the kernel and in the broker, in order,
    and every other device's update and EdgeCore's probe answer wait behind it. Served
    from large reads, paho's small reads cost no system call, and ``pending()`` (which
    aiomqtt consults, as for TLS) keeps a wake-up reading until the kernel has nothing
    more or ``READ_BUDGET`` bytes were read, so the messages reach the
    ``TopicFairQueue``, which decides what waits and what is dropped, while the event
    loop still gets its turn between two budgets.
    """

    __slots__ = ("_buffer", "_kernel_empty", "_round", "_sock")

    def __init__(self, sock: _Socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._round = 0
        """Bytes read from the kernel in this wake-up."""
        self._kernel_empty = False

    def recv(self, size: int, /) -> bytes:
        if not self._buffer:
            try:
                data = self._sock.recv(READ_CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._kernel_empty = True
                raise
            if not data:
                return b""
            self._round += len(data)
            self._buffer += data
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def pending(self) -> int:
        """Above zero while aiomqtt should read on in this wake-up: a whole packet is
        buffered, TLS holds decrypted bytes, or the kernel may hold more and the budget
        is not spent. At zero the wake-up ends and the budget starts again."""
        inner = getattr(self._sock, "pending", None)
        decrypted = int(inner()) if callable(inner) else 0
        if _whole_packet(self._buffer) or decrypted:
            return len(self._buffer) + decrypted or 1
        if not self._kernel_empty and self._round < READ_BUDGET:
            return 1
        self._round = 0
        self._kernel_empty = False
        return 0

    def send(self, buffer: bytes | bytearray, /) -> int:
        return self._sock.send(buffer)

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool, /) -> None:
        self._sock.setblocking(flag)


def _whole_packet(buffer: bytearray) -> bool:
    """Whether ``buffer``, which starts at a packet boundary, holds a whole MQTT packet
    (a type byte, a remaining length of one to four bytes, then that many bytes)."""
    length = 0
    multiplier = 1
    for index in range(1, min(5, len(buffer))):
        byte = buffer[index]
        length += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return len(buffer) >= index + 1 + length
        multiplier *= 128
    return False
