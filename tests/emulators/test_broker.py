"""MosquittoBroker: starts on loopback, carries `$hw` topics, restarts on the same port."""

from __future__ import annotations

import aiomqtt

from mep_kubeedge_adapter.emulators.broker import MosquittoBroker


async def _round_trip(broker: MosquittoBroker, topic: str, payload: bytes) -> bytes:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic, qos=1)
        await client.publish(topic, payload, qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            return message.payload
    raise AssertionError("no message received")


async def test_broker_carries_hw_topics(broker: MosquittoBroker) -> None:
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    payload = await _round_trip(broker, "$hw/events/device/default/x/twin/get", b"{}")
    assert payload == b"{}"


async def test_restart_on_the_same_port(broker: MosquittoBroker) -> None:
    port = broker.port
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe("$hw/#")
        await broker.stop()
        assert not broker.running
        received_error = False
        try:
            async for _ in client.messages:
                break
        except aiomqtt.MqttError:
            received_error = True
        assert received_error
    await broker.start()
    assert broker.running
    assert broker.port == port
    assert await _round_trip(broker, "$hw/restart", b"again") == b"again"


async def test_stop_is_idempotent_and_abrupt_stop_works() -> None:
    async with MosquittoBroker() as broker:
        await broker.stop(abrupt=True)
        await broker.stop()
        await broker.start()
        assert await _round_trip(broker, "plain/topic", b"1") == b"1"
