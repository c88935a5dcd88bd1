"""The EventBus client's incoming queue: round robin between topics, bounded, drops counted."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mep_kubeedge_adapter.kubeedge.eventbus import EventBusClient
from mep_kubeedge_adapter.kubeedge.inflow import (
    READ_BUDGET,
    READ_CHUNK,
    BufferedSocket,
    TopicFairQueue,
)
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import MqttSettings

Item = tuple[str, int]


def make(per_topic: int, total: int) -> tuple[TopicFairQueue[Item], list[Item]]:
    dropped: list[Item] = []
    queue: TopicFairQueue[Item] = TopicFairQueue(
        lambda item: item[0], per_topic=per_topic, total=total, on_drop=dropped.append
    )
    return queue, dropped


def drain(queue: TopicFairQueue[Item]) -> list[Item]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def test_a_quiet_topic_overtakes_a_flood() -> None:
    queue, dropped = make(per_topic=1000, total=10_000)
    for n in range(500):
        queue.put_nowait(("flood", n))
    queue.put_nowait(("quiet", 0))
    queue.put_nowait(("probe-answer", 0))
    served = drain(queue)
    assert served[:3] == [("flood", 0), ("quiet", 0), ("probe-answer", 0)]
    assert [n for topic, n in served if topic == "flood"] == list(range(500))  # in order
    assert dropped == []


def test_a_flooding_topic_keeps_only_its_newest() -> None:
    queue, dropped = make(per_topic=3, total=100)
    for n in range(10):
        queue.put_nowait(("flood", n))
    assert queue.qsize() == 3
    assert dropped == [("flood", n) for n in range(7)]
    assert drain(queue) == [("flood", 7), ("flood", 8), ("flood", 9)]


def test_many_topics_together_stay_within_the_total() -> None:
    queue, dropped = make(per_topic=5, total=10)
    for n in range(40):
        queue.put_nowait((f"device-{n}", n))
        assert queue.qsize() <= 10
    assert len(dropped) == 30
    assert [n for _, n in drain(queue)] == list(range(30, 40))


def test_the_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="per_topic"):
        make(per_topic=11, total=10)


async def test_a_waiting_reader_is_woken() -> None:
    queue, _ = make(per_topic=5, total=10)
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(("a", 1))
    assert await asyncio.wait_for(reader, 3) == ("a", 1)


@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 1000)), max_size=300),
    st.integers(1, 20),
    st.integers(0, 40),
)
def test_nothing_is_lost_uncounted_and_each_topic_keeps_its_order(
    items: list[Item], per_topic: int, extra: int
) -> None:
    queue, dropped = make(per_topic, per_topic + extra)
    numbered = [(topic, index) for index, (topic, _) in enumerate(items)]
    for item in numbered:
        queue.put_nowait(item)
        assert queue.qsize() <= per_topic + extra
    served = drain(queue)
    assert sorted(served + dropped) == sorted(numbered)
    for topic in set(t for t, _ in numbered):
        order = [n for t, n in served if t == topic]
        assert order == sorted(order)


# ----------------------------------------------------------- reading in chunks


class Kernel:
    """A non-blocking socket whose receive buffer holds ``data`` (or refills forever)."""

    def __init__(self, data: bytes = b"", endless: bytes = b"") -> None:
        self.data = bytearray(data)
        self.endless = endless
        self.reads = 0

    def recv(self, size: int, /) -> bytes:
        if not self.data and self.endless:
            self.data += self.endless
        if not self.data:
            raise BlockingIOError
        self.reads += 1
        out = bytes(self.data[:size])
        del self.data[:size]
        return out

    def send(self, buffer: bytes | bytearray, /) -> int:
        return len(buffer)

    def close(self) -> None:
        pass

    def fileno(self) -> int:
        return -1

    def setblocking(self, flag: bool, /) -> None:
        pass


def packet(payload: bytes) -> bytes:
    """An MQTT PUBLISH-like frame: type byte, varint remaining length, payload."""
    length, encoded = len(payload), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([0x30]) + bytes(encoded) + payload


def read_packet(sock: BufferedSocket) -> bytes | None:
    """What paho does per packet: small reads, giving up (for now) when the kernel is dry."""
    try:
        head = sock.recv(1)
        length, multiplier = 0, 1
        while True:
            raw = sock.recv(1)
            head += raw
            byte = raw[0]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            if not byte & 0x80:
                break
        body = b""
        while len(body) < length:
            body += sock.recv(length - len(body))
        return head + body
    except BlockingIOError:
        return None


def wake_up(sock: BufferedSocket) -> list[bytes]:
    """aiomqtt's reader callback: read a packet, and again while ``pending()`` says so."""
    got = []
    while True:
        one = read_packet(sock)
        if one is not None:
            got.append(one)
        if sock.pending() > 0:
            continue
        return got


def test_one_wake_up_reads_everything_received_in_few_system_calls() -> None:
    frames = [packet(b"x" * size) for size in (10, 300, 5000, 200)]
    kernel = Kernel(b"".join(frames))
    sock = BufferedSocket(kernel)
    assert wake_up(sock) == frames
    assert kernel.reads == 1
    assert wake_up(sock) == []


def test_a_wake_up_ends_after_the_read_budget_when_the_flood_never_stops() -> None:
    frame = packet(b"f" * 500)
    kernel = Kernel(endless=frame * 50)
    sock = BufferedSocket(kernel)
    first = wake_up(sock)
    assert READ_BUDGET <= len(first) * len(frame) <= READ_BUDGET + READ_CHUNK + len(frame) * 51
    assert len(wake_up(sock)) == len(first)  # the next wake-up gets a fresh budget


def test_the_eventbus_queue_counts_what_it_drops_by_kind() -> None:
    """The EventBus client's queue (as aiomqtt builds it) counts each drop under the
    message's kind; the device that floods loses its oldest."""
    metrics = Metrics()
    settings = MqttSettings(max_queued=4, max_queued_per_topic=2)
    client = EventBusClient(settings, "edge-1", DeviceRegistry(), metrics)
    queue = client._queue_type()()
    flood = "$hw/events/device/default/thermo-1/twin/update/document"
    for value in range(5):
        queue.put_nowait(aiomqtt.Message(flood, str(value).encode(), 1, False, 1, None))
    members = "$hw/events/node/edge-1/membership/get/result"
    queue.put_nowait(aiomqtt.Message(members, b"{}", 1, False, 2, None))
    assert client.queued == 3
    dropped = metrics.registry.get_sample_value(
        "mka_mqtt_messages_total", {"kind": "twin/update/document", "outcome": "dropped"}
    )
    assert dropped == 3
    assert metrics.registry.get_sample_value("mka_mqtt_queued") == 3
    assert [queue.get_nowait().payload for _ in range(3)] == [b"3", b"{}", b"4"]
