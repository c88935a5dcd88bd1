"""Callback delivery end to end: registry changes → sinks on loopback over real HTTP."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

from mep_kubeedge_adapter.domain import Device, DeviceId, PropertyChange, TwinChanged, TwinValue
from mep_kubeedge_adapter.notify.subscriptions import (
    FilteringCriteria,
    SubscriptionRequest,
    SubscriptionService,
    TimeStamp,
)
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry, DeviceSpec

from .conftest import (
    FAST,
    PUMP,
    THERMO,
    Clock,
    ServiceFactory,
    Sink,
    SinkFactory,
    add_devices,
    report,
    sample,
)

TWIN = "DeviceTwinChangeSubscription"


def twin_request(url: str, **criteria: object) -> SubscriptionRequest:
    return SubscriptionRequest(
        subscriptionType=TWIN,
        callbackReference=url,
        filteringCriteria=FilteringCriteria.model_validate(criteria) if criteria else None,
    )


async def test_twin_notifications_arrive_in_order_with_consecutive_sequences(
    service: SubscriptionService, registry: DeviceRegistry, sink: Sink, metrics: Metrics
) -> None:
    add_devices(registry)
    subscription = await service.create(
        twin_request(sink.url), base_url="https://gw/app-1/kubeedge_devices/v1"
    )
    for i in range(5):
        report(registry, THERMO, 1_000 + i, temperature=str(20 + i))
    received = await sink.wait_for(5)
    assert [n["sequence"] for n in received] == [1, 2, 3, 4, 5]
    first = received[0]
    assert first["notificationType"] == "DeviceTwinChangeNotification"
    assert first["subscriptionId"] == subscription.id
    assert first["device"] == {"namespace": "default", "name": "thermo-1"}
    assert first["changes"] == {
        "temperature": {
            "reported": {"value": "20", "timestamp": "1970-01-01T00:00:01.000Z"},
            "previous": None,
        }
    }
    assert received[1]["changes"]["temperature"]["previous"]["value"] == "20"
    assert first["_links"] == {
        "subscription": {
            "href": f"https://gw/app-1/kubeedge_devices/v1/subscriptions/{subscription.id}"
        }
    }
    assert set(first["timeStamp"]) == {"seconds", "nanoSeconds"}
    assert sample(metrics, "callback", "delivered") == 5


async def test_filters_pick_devices_models_properties_and_labels(
    service: SubscriptionService, registry: DeviceRegistry, sink_factory: SinkFactory
) -> None:
    add_devices(registry)
    by_device, by_model, by_property, by_label, everything = [
        await sink_factory() for _ in range(5)
    ]
    await service.create(twin_request(by_device.url, devices=["plant/pump-7"]))
    await service.create(twin_request(by_model.url, models=["thermometer"]))
    await service.create(twin_request(by_property.url, properties=["humidity"]))
    await service.create(twin_request(by_label.url, labels={"room": "lab", "tier": "gold"}))
    await service.create(twin_request(everything.url))
    report(registry, THERMO, 1, temperature="20")
    report(registry, THERMO, 2, temperature="21", humidity="40")
    report(registry, PUMP, 3, speed="900")
    await everything.wait_for(3)
    await by_device.wait_for(1)
    await by_model.wait_for(2)
    await by_property.wait_for(1)
    await by_label.wait_for(2)
    assert [n["device"]["name"] for n in by_device.received] == ["pump-7"]
    assert [n["device"]["name"] for n in by_model.received] == ["thermo-1", "thermo-1"]
    assert [set(n["changes"]) for n in by_property.received] == [{"humidity"}]
    assert by_property.received[0]["sequence"] == 1
    assert [n["device"]["name"] for n in by_label.received] == ["thermo-1", "thermo-1"]


async def test_state_and_membership_subscriptions(
    service: SubscriptionService, registry: DeviceRegistry, sink_factory: SinkFactory
) -> None:
    state_sink, membership_sink = await sink_factory(), await sink_factory()
    await service.create(
        SubscriptionRequest(
            subscriptionType="DeviceStateChangeSubscription", callbackReference=state_sink.url
        )
    )
    await service.create(
        SubscriptionRequest(
            subscriptionType="DeviceMembershipChangeSubscription",
            callbackReference=membership_sink.url,
            filteringCriteria=FilteringCriteria(models=["thermometer"]),
        )
    )
    add_devices(registry)
    registry.apply_state(THERMO, "online", "2026-11-25T21:11:41Z")
    registry.remove_spec(THERMO)
    (state,) = await state_sink.wait_for(1)
    assert (state["state"], state["previousState"]) == ("online", None)
    assert state["lastOnlineTime"] == "2026-11-25T21:11:41Z"
    added, removed = await membership_sink.wait_for(2)
    assert (added["changeType"], removed["changeType"]) == ("ADDED", "REMOVED")
    assert added["labels"] == {"room": "lab", "tier": "gold"}
    assert added["model"] == "thermometer"


async def test_a_failing_endpoint_gets_everything_in_order_after_it_recovers(
    service: SubscriptionService,
    registry: DeviceRegistry,
    sink_factory: SinkFactory,
    metrics: Metrics,
) -> None:
    flaky = await sink_factory(statuses=lambda n: 503 if n <= 4 else 200)
    add_devices(registry)
    await service.create(twin_request(flaky.url))
    for i in range(6):
        report(registry, THERMO, 10 + i, temperature=str(i))
    received = await flaky.wait_for(6)
    assert [n["sequence"] for n in received] == [1, 2, 3, 4, 5, 6]
    assert [n["changes"]["temperature"]["reported"]["value"] for n in received] == [
        str(i) for i in range(6)
    ]
    assert sample(metrics, "callback", "retried") == 4
    assert sample(metrics, "callback", "dropped") == 0


async def test_a_slow_subscriber_does_not_delay_a_fast_one(
    service: SubscriptionService, registry: DeviceRegistry, sink_factory: SinkFactory
) -> None:
    gate = asyncio.Event()
    slow = await sink_factory(gate=gate)
    fast = await sink_factory()
    add_devices(registry)
    await service.create(twin_request(slow.url))
    await service.create(twin_request(fast.url))
    for i in range(20):
        report(registry, THERMO, 10 + i, temperature=str(i))
    await fast.wait_for(20)
    await asyncio.wait_for(slow.entered.wait(), 3)
    assert slow.received == []
    assert not gate.is_set()
    gate.set()
    received = await slow.wait_for(20)
    assert [n["sequence"] for n in received] == list(range(1, 21))


async def test_a_flood_is_coalesced_within_the_bound_leaving_a_sequence_gap(
    service_factory: ServiceFactory,
    registry: DeviceRegistry,
    sink_factory: SinkFactory,
    metrics: Metrics,
) -> None:
    service = await service_factory(replace(FAST, coalesce_after=3, max_pending=5))
    gate = asyncio.Event()
    blocked = await sink_factory(gate=gate)
    add_devices(registry)
    subscription = await service.create(twin_request(blocked.url))
    report(registry, THERMO, 1, temperature="0")
    await asyncio.wait_for(blocked.entered.wait(), 3)  # notice 1 is in flight, held
    for i in range(1, 200):
        report(registry, THERMO, 1 + i, temperature=str(i), humidity=str(i % 7))
        report(registry, PUMP, 1 + i, speed=str(i))
        assert service.dispatcher.pending(subscription.id) <= 5
    gate.set()
    await blocked.wait_until(
        lambda: any(
            n["device"]["name"] == "thermo-1"
            and n["changes"]["temperature"]["reported"]["value"] == "199"
            for n in blocked.received
        )
    )
    await blocked.wait_until(
        lambda: any(
            n["device"]["name"] == "pump-7" and n["changes"]["speed"]["reported"]["value"] == "199"
            for n in blocked.received
        )
    )
    sequences = [n["sequence"] for n in blocked.received]
    assert sequences == sorted(sequences)
    assert sequences[-1] == 1 + 2 * 199
    assert len(sequences) < sequences[-1]  # gaps
    assert sample(metrics, "callback", "coalesced") > 0
    thermo = [
        n["changes"]["temperature"]
        for n in blocked.received
        if n["device"]["name"] == "thermo-1" and "temperature" in n["changes"]
    ]
    # Each delivered value names the value delivered before it as its previous one.
    for before, after in itertools.pairwise(thermo):
        assert after["previous"]["value"] == before["reported"]["value"]


async def test_the_hard_bound_drops_oldest_and_counts_them(
    service_factory: ServiceFactory,
    registry: DeviceRegistry,
    sink_factory: SinkFactory,
    metrics: Metrics,
) -> None:
    service = await service_factory(replace(FAST, coalesce_after=2, max_pending=4))
    gate = asyncio.Event()
    blocked = await sink_factory(gate=gate)
    subscription = await service.create(
        SubscriptionRequest(
            subscriptionType="DeviceMembershipChangeSubscription", callbackReference=blocked.url
        )
    )
    registry.upsert_spec(DeviceSpec(id=DeviceId("flood", "d0")))
    await asyncio.wait_for(blocked.entered.wait(), 3)  # notice 1 is in flight, held
    for i in range(1, 12):
        registry.upsert_spec(DeviceSpec(id=DeviceId("flood", f"d{i}")))
        assert service.dispatcher.pending(subscription.id) <= 4
    assert sample(metrics, "callback", "dropped") == 12 - 1 - 4
    gate.set()
    received = await blocked.wait_for(5)
    assert [n["sequence"] for n in received] == [1, 9, 10, 11, 12]


async def test_client_errors_are_dropped_without_retry(
    service: SubscriptionService,
    registry: DeviceRegistry,
    sink_factory: SinkFactory,
    metrics: Metrics,
) -> None:
    refusing = await sink_factory(statuses=lambda n: 404 if n == 1 else 204)
    add_devices(registry)
    await service.create(twin_request(refusing.url))
    report(registry, THERMO, 1, temperature="1")
    report(registry, THERMO, 2, temperature="2")
    (received,) = await refusing.wait_for(1)
    assert received["sequence"] == 2
    assert refusing.attempts == 2
    assert sample(metrics, "callback", "dropped") == 1
    assert sample(metrics, "callback", "retried") == 0


async def test_retries_are_bounded(
    service_factory: ServiceFactory,
    registry: DeviceRegistry,
    sink_factory: SinkFactory,
    metrics: Metrics,
) -> None:
    service = await service_factory(replace(FAST, max_attempts=3))
    down = await sink_factory(statuses=lambda n: 503 if n <= 3 else 204)
    add_devices(registry)
    await service.create(twin_request(down.url))
    report(registry, THERMO, 1, temperature="1")
    report(registry, THERMO, 2, temperature="2")
    (received,) = await down.wait_for(1)
    assert received["sequence"] == 2
    assert sample(metrics, "callback", "retried") == 2
    assert sample(metrics, "callback", "dropped") == 1


async def test_deleting_a_subscription_stops_its_worker(
    service: SubscriptionService, registry: DeviceRegistry, sink_factory: SinkFactory
) -> None:
    gate = asyncio.Event()
    blocked = await sink_factory(gate=gate)
    add_devices(registry)
    subscription = await service.create(twin_request(blocked.url))
    report(registry, THERMO, 1, temperature="1")
    await asyncio.wait_for(blocked.entered.wait(), 3)
    report(registry, THERMO, 2, temperature="2")
    await service.delete(subscription.id)
    assert service.dispatcher.pending(subscription.id) == 0
    report(registry, THERMO, 3, temperature="3")
    assert service.dispatcher.sequence(subscription.id) is None
    gate.set()


async def test_shutdown_gives_in_flight_a_grace_then_closes(
    service_factory: ServiceFactory,
    registry: DeviceRegistry,
    sink_factory: SinkFactory,
    metrics: Metrics,
) -> None:
    service = await service_factory()
    gate = asyncio.Event()
    blocked = await sink_factory(gate=gate)
    add_devices(registry)
    await service.create(twin_request(blocked.url))
    report(registry, THERMO, 1, temperature="1")
    report(registry, THERMO, 2, temperature="2")
    await asyncio.wait_for(blocked.entered.wait(), 3)
    await asyncio.wait_for(service.stop(), FAST.shutdown_grace + 1)
    assert sample(metrics, "callback", "dropped") == 2  # the held one was cut, the queued one left
    report(registry, THERMO, 3, temperature="3")  # no longer listening
    gate.set()


async def test_expired_subscriptions_get_nothing(
    service: SubscriptionService, registry: DeviceRegistry, sink: Sink, clock: Clock
) -> None:
    add_devices(registry)
    subscription = await service.create(
        SubscriptionRequest(
            subscriptionType=TWIN,
            callbackReference=sink.url,
            expiryDeadline=TimeStamp(seconds=clock.now // 1000 + 10),
        )
    )
    report(registry, THERMO, 1, temperature="1")
    await sink.wait_for(1)
    clock.now += 11_000
    report(registry, THERMO, 2, temperature="2")
    assert service.dispatcher.sequence(subscription.id) == 1


async def test_a_notice_that_cannot_be_rendered_is_dropped_and_the_worker_goes_on(
    service: SubscriptionService, registry: DeviceRegistry, sink: Sink, metrics: Metrics
) -> None:
    """A value stamped beyond the year 9999 cannot become RFC 3339; the codecs refuse such
    timestamps, and should one reach delivery anyway it costs only the notices that carry
    it (its own, and the next one, where it is the previous value)."""
    add_devices(registry)
    await service.create(twin_request(sink.url))
    report(registry, THERMO, 10**18, temperature="1")
    report(registry, THERMO, 2_000, temperature="2")
    report(registry, THERMO, 3_000, temperature="3")
    report(registry, THERMO, 4_000, temperature="4")
    received = await sink.wait_for(2)
    assert [n["sequence"] for n in received] == [3, 4]
    assert received[0]["changes"]["temperature"]["previous"]["value"] == "2"
    assert sample(metrics, "callback", "dropped") == 2
    assert sample(metrics, "callback", "delivered") == 2


async def test_filters_match_the_snapshot_the_event_carries(
    service: SubscriptionService, sink: Sink
) -> None:
    """The dispatcher takes the device's model and labels from the event, not from a read
    of the registry (which here does not even hold the device)."""
    await service.create(twin_request(sink.url, labels={"room": "lab"}, models=["thermometer"]))
    device = DeviceId("default", "elsewhere")
    change = PropertyChange(TwinValue("1", 1), None, None, None, True, False)
    for labels in ({"room": "hall"}, {"room": "lab"}):
        snapshot = Device(id=device, model="thermometer", labels=labels)
        service.dispatcher.on_change(TwinChanged(device, {"t": change}, 1, snapshot))
    (body,) = await sink.wait_for(1)
    assert body["device"] == {"namespace": "default", "name": "elsewhere"}
    assert body["sequence"] == 1
