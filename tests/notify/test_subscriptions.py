"""SubscriptionService: validation, CRUD, JSON, persistence, expiry, gauge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind
from mep_kubeedge_adapter.notify.addresses import AddressPolicy
from mep_kubeedge_adapter.notify.models import Caller
from mep_kubeedge_adapter.notify.subscriptions import (
    FilteringCriteria,
    SubscriptionLimits,
    SubscriptionRequest,
    SubscriptionService,
    TimeStamp,
)
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import ApiSettings
from mep_kubeedge_adapter.store import StoredSubscription, SubscriptionStore

from .conftest import BASE_URL, THERMO, Clock, ServiceFactory, Sink, add_devices, report, sample

TWIN = "DeviceTwinChangeSubscription"
STATE = "DeviceStateChangeSubscription"


def callback(url: str, kind: str = TWIN) -> SubscriptionRequest:
    return SubscriptionRequest.model_validate({"subscriptionType": kind, "callbackReference": url})


async def refused(service: SubscriptionService, url: str) -> str:
    with pytest.raises(AdapterError) as caught:
        await service.create(callback(url))
    assert caught.value.kind is ErrorKind.INVALID
    return caught.value.detail


# ------------------------------------------------------------------ request model


def test_request_needs_a_delivery_channel() -> None:
    with pytest.raises(ValidationError, match="callbackReference"):
        SubscriptionRequest.model_validate({"subscriptionType": TWIN})


def test_request_refuses_unknown_fields_types_and_device_ids() -> None:
    with pytest.raises(ValidationError):
        SubscriptionRequest.model_validate(
            {"subscriptionType": TWIN, "requestWebsocketUri": True, "extra": 1}
        )
    with pytest.raises(ValidationError):
        SubscriptionRequest.model_validate(
            {"subscriptionType": "Nope", "requestWebsocketUri": True}
        )
    with pytest.raises(ValidationError, match="namespace/name"):
        FilteringCriteria(devices=["thermo-1"])


# --------------------------------------------------------------- callback checks


async def test_only_http_and_https_callbacks(service: SubscriptionService) -> None:
    assert "http or https" in await refused(service, "ftp://127.0.0.1/notify")
    assert "http or https" in await refused(service, "file:///etc/passwd")
    assert "no host" in await refused(service, "http:///notify")


async def test_link_local_callbacks_are_denied(service: SubscriptionService) -> None:
    assert "denied" in await refused(service, "http://169.254.169.254/latest/meta-data")
    assert "denied" in await refused(service, "http://[fe80::1]:8080/notify")
    assert "denied" in await refused(service, "http://[::ffff:169.254.1.1]/notify")


async def test_callbacks_must_stay_in_the_allowed_networks(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(api=ApiSettings(callback_networks=["10.0.0.0/8"]))
    assert "outside" in await refused(service, "http://127.0.0.1:9000/notify")


async def test_the_adapters_own_listener_is_refused(service: SubscriptionService) -> None:
    service.set_own_addresses(lambda: [("0.0.0.0", 8080)])
    assert "own listener" in await refused(service, "http://127.0.0.1:8080/notify")
    assert "own listener" in await refused(service, "http://localhost:8080/notify")
    assert "own listener" in await refused(service, "http://192.0.2.10:8080/notify")
    assert "own listener" in await refused(service, "http://0.0.0.0:8080/notify")
    await service.create(callback("http://127.0.0.1:8081/notify"))
    service.set_own_addresses(lambda: [("127.0.0.1", 9000)])
    assert "own listener" in await refused(service, "http://127.0.0.1:9000/")
    await service.create(callback("http://127.0.0.1:8080/notify"))


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["name", "address"])
async def test_the_address_is_checked_again_when_connecting(
    service: SubscriptionService, registry: DeviceRegistry, sink: Sink, metrics: Metrics, host: str
) -> None:
    """A name that later resolves to a refused address is not followed there; an address
    literal, which aiohttp connects to without resolving, is checked by the delivery client
    itself. Here the adapter's listener takes the sink's port after the subscription."""
    add_devices(registry)
    await service.create(callback(f"http://{host}:{sink.port}/notify"))
    consulted = asyncio.Event()

    def own_addresses() -> list[tuple[str, int]]:
        consulted.set()
        return [("0.0.0.0", sink.port)]  # the sink's port is "ours" now

    service.set_own_addresses(own_addresses)
    report(registry, THERMO, 1, temperature="1")
    await asyncio.wait_for(consulted.wait(), 3)  # the delivery client is checking
    service.set_own_addresses(lambda: [])
    report(registry, THERMO, 2, temperature="2")
    (received,) = await sink.wait_for(1)
    assert received["sequence"] == 2
    assert sink.attempts == 1
    assert sample(metrics, "callback", "retried") == 0
    assert sample(metrics, "callback", "dropped") == 1


async def test_a_past_expiry_is_refused(service: SubscriptionService, clock: Clock) -> None:
    request = SubscriptionRequest(
        subscriptionType=TWIN,
        requestWebsocketUri=True,
        expiryDeadline=TimeStamp(seconds=clock.now // 1000 - 1),
    )
    with pytest.raises(AdapterError, match="past") as caught:
        await service.create(request)
    assert caught.value.kind is ErrorKind.INVALID


# ------------------------------------------------------------------------- CRUD


async def test_create_get_list_delete(service: SubscriptionService) -> None:
    first = await service.create(
        callback("http://127.0.0.1:9/a"), base_url="http://gw/x/kubeedge_devices/v1"
    )
    second = await service.create(callback("http://127.0.0.1:9/b", STATE))
    assert await service.get(first.id) == first
    assert [s.id for s in await service.list()] == [first.id, second.id]
    assert first.base_url == "http://gw/x/kubeedge_devices/v1"
    assert second.base_url == BASE_URL
    await service.delete(first.id)
    with pytest.raises(AdapterError) as caught:
        await service.get(first.id)
    assert caught.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(AdapterError) as caught:
        await service.delete(first.id)
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert [s.id for s in await service.list()] == [second.id]


async def test_gauge_counts_subscriptions_by_type(
    service: SubscriptionService, metrics: Metrics
) -> None:
    def gauge(kind: str) -> float | None:
        return metrics.registry.get_sample_value("mka_subscriptions", {"type": kind})

    assert gauge(TWIN) == 0
    one = await service.create(callback("http://127.0.0.1:9/a"))
    await service.create(callback("http://127.0.0.1:9/b"))
    await service.create(callback("http://127.0.0.1:9/c", STATE))
    assert (gauge(TWIN), gauge(STATE)) == (2, 1)
    await service.delete(one.id)
    assert gauge(TWIN) == 1


# ------------------------------------------------------------ persistence, expiry


async def test_subscriptions_and_sequences_survive_a_restart(
    tmp_path: Path,
    service_factory: ServiceFactory,
    registry: DeviceRegistry,
    sink: Sink,
) -> None:
    add_devices(registry)
    path = tmp_path / "restart.sqlite3"
    store = SubscriptionStore(path, flush_interval=3600)
    await store.open()
    service = await service_factory(store_=store)
    subscription = await service.create(
        callback(sink.url), base_url="https://gw/app/kubeedge_devices/v1"
    )
    for i in range(3):
        report(registry, THERMO, 1 + i, temperature=str(i))
    await sink.wait_for(3)
    await service.stop()
    await store.close()

    async with SubscriptionStore(path) as reopened:
        restarted = await service_factory(store_=reopened)
        (loaded,) = await restarted.list()
        assert loaded == subscription
        assert loaded.base_url == "https://gw/app/kubeedge_devices/v1"
        report(registry, THERMO, 10, temperature="10")
        received = await sink.wait_for(4)
        assert received[-1]["sequence"] == 4
        assert received[-1]["_links"]["subscription"]["href"].startswith("https://gw/app/")
        await restarted.stop()


async def test_expire_removes_due_subscriptions(
    service: SubscriptionService, store: SubscriptionStore, clock: Clock, metrics: Metrics
) -> None:
    due = await service.create(
        SubscriptionRequest(
            subscriptionType=TWIN,
            requestWebsocketUri=True,
            expiryDeadline=TimeStamp(seconds=clock.now // 1000 + 10),
        )
    )
    kept = await service.create(callback("http://127.0.0.1:9/a"))
    assert await service.expire() == []
    clock.now += 10_001
    with pytest.raises(AdapterError):
        await service.get(due.id)  # already invisible
    assert await service.expire() == [due.id]
    assert await store.get(due.id) is None
    assert [s.id for s in await service.list()] == [kept.id]
    assert metrics.registry.get_sample_value("mka_subscriptions", {"type": TWIN}) == 1


async def test_start_drops_expired_and_skips_unreadable_records(
    store: SubscriptionStore, service_factory: ServiceFactory, clock: Clock
) -> None:
    body = {"subscriptionType": TWIN, "requestWebsocketUri": True}
    past = {**body, "expiryDeadline": {"seconds": clock.now // 1000 - 1, "nanoSeconds": 0}}
    await store.create(StoredSubscription("old", past, "http://gw", 1, clock.now - 1000, 0))
    await store.create(
        StoredSubscription("bad", {"subscriptionType": "X"}, "http://gw", 2, None, 0)
    )
    await store.create(StoredSubscription("good", body, "http://gw", 3, None, 7))
    service = await service_factory()
    assert [s.id for s in await service.list()] == ["good"]
    assert service.dispatcher.sequence("good") == 7
    assert await store.get("old") is None
    assert await store.get("bad") is not None  # kept for a newer adapter that can read it


# ------------------------------------------------------- callback guard: every form


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433:9000/notify",  # 127.0.0.1 as one number
        "http://127.1:9000/notify",  # dotted shorthand
        "http://0x7f.0.0.1:9000/notify",  # hexadecimal part
        "http://0177.0.0.1:9000/notify",  # octal part
        "http://127.0.0.1.:9000/notify",  # trailing dot on an address
        "http://evil.example\\@127.0.0.1:9000/notify",  # backslash before @
        "http://evil.example\\.127.0.0.1:9000/notify",
        "http://user@evil.example@127.0.0.1:9000/notify",  # two @ in the authority
        "http://exa mple:9000/notify",
        "http://127.0.0.1:9000/no tify",
        "http://127.0.0.1:9000/notify\r\nX-Injected: 1",
        "http://[fe80::1%25eth0]:9000/notify",  # zone id
        "http://-bad-.example:9000/notify",
        "http://b\u00fccher.example:9000/notify",  # send IRIs percent/IDNA-encoded
    ],
)
async def test_url_forms_the_delivery_client_would_refuse_are_refused_at_creation(
    service: SubscriptionService, url: str
) -> None:
    detail = await refused(service, url)
    assert "callbackReference" in detail
    assert "resolve" not in detail  # refused for its form, before any name lookup
    assert await service.list() == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/notify",
        "https://127.0.0.1:9000/a/b?c=d&e=%20f#frag",
        "http://[::1]:9000/notify",
        "http://localhost:9000/notify",
        "http://LocalHost:9000/notify",
        "http://user:secret@127.0.0.1:9000/notify",
    ],
)
async def test_well_formed_callback_urls_are_accepted(
    service: SubscriptionService, url: str
) -> None:
    created = await service.create(callback(url))
    assert created.callback_reference == url


def _interface_ipv4_addresses() -> list[str]:
    """This host's IPv4 interface addresses, read with SIOCGIFADDR (not how the adapter
    learns them)."""
    import fcntl
    import socket
    import struct

    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(probe.fileno(), 0x8915, request)  # SIOCGIFADDR
            except OSError:
                continue
            found.append(socket.inet_ntoa(answer[20:24]))
    return found


async def test_every_address_of_a_wildcard_listener_is_the_adapters_own() -> None:
    """Bound to 0.0.0.0 the API answers on every interface of the node, whatever the host
    name resolves to, and on the whole loopback range."""
    addresses = _interface_ipv4_addresses()
    assert [a for a in addresses if not a.startswith("127.")], addresses
    policy = AddressPolicy(["0.0.0.0/0", "::/0"], [])
    policy.set_own_addresses(lambda: [("0.0.0.0", 8080)])
    for address in [*addresses, "127.0.0.2", "127.255.255.254"]:
        with pytest.raises(AdapterError, match="own listener"):
            await policy.check_url(f"http://{address}:8080/notify")
        await policy.check_url(f"http://{address}:8081/notify")


async def test_concurrent_checks_learn_the_host_addresses_once() -> None:
    """Every connection asks the policy; a burst of them shares one look-up of this host."""
    lookups = 0

    def local_addresses() -> list[str]:
        nonlocal lookups
        lookups += 1
        return ["192.0.2.10"]

    policy = AddressPolicy(["0.0.0.0/0"], [], local_addresses=local_addresses)
    policy.set_own_addresses(lambda: [("0.0.0.0", 8080)])
    results = await asyncio.gather(
        *(policy.check_url("http://192.0.2.10:8080/notify") for _ in range(20)),
        return_exceptions=True,
    )
    assert all(isinstance(r, AdapterError) and "own listener" in r.detail for r in results)
    assert lookups == 1


async def test_stored_callbacks_are_checked_again_at_start(
    store: SubscriptionStore, service_factory: ServiceFactory
) -> None:
    """Allow and deny lists may have changed since a subscription was accepted."""

    def stored(sid: str, url: str) -> StoredSubscription:
        body = {"subscriptionType": TWIN, "callbackReference": url}
        return StoredSubscription(sid, body, "http://gw", 1, None, 0)

    await store.create(stored("inside", "http://10.1.2.3:9000/notify"))
    await store.create(stored("outside", "http://192.0.2.77:9000/notify"))
    await store.create(stored("metadata", "http://169.254.169.254/latest"))
    await store.create(stored("shorthand", "http://127.1:9000/notify"))
    service = await service_factory(api=ApiSettings(callback_networks=["10.0.0.0/8"]))
    assert [s.id for s in await service.list()] == ["inside"]
    for gone in ("outside", "metadata", "shorthand"):
        assert await store.get(gone) is None


async def test_ownership_survives_a_restart(
    tmp_path: Path, service_factory: ServiceFactory
) -> None:
    path = tmp_path / "owners.sqlite3"
    app_a = Caller(subject="app-a", address="10.0.0.1")
    app_b = Caller(subject="app-b", address="10.0.0.1")
    async with SubscriptionStore(path) as store:
        service = await service_factory(store_=store)
        created = await service.create(callback("http://127.0.0.1:9/n"), caller=app_a)
        await service.stop()
    async with SubscriptionStore(path) as reopened:
        restarted = await service_factory(store_=reopened)
        assert await restarted.get(created.id, caller=app_a) == created
        assert created.owner == "app-a"
        with pytest.raises(AdapterError) as other:
            await restarted.get(created.id, caller=app_b)
        assert other.value.kind is ErrorKind.NOT_FOUND
        assert await restarted.list(caller=app_b) == []
        with pytest.raises(AdapterError):
            await restarted.delete(created.id, caller=app_b)
        assert [s.id for s in await restarted.list(caller=app_a)] == [created.id]
        # Without auth (no subject) every caller is one tenant and sees it.
        assert [s.id for s in await restarted.list(caller=Caller(address="10.9.9.9"))] == [
            created.id
        ]
        await restarted.stop()


async def test_limits_refuse_new_subscriptions_and_keep_stored_ones(
    tmp_path: Path, service_factory: ServiceFactory
) -> None:
    path = tmp_path / "limits.sqlite3"
    app = Caller(subject="app-a")
    async with SubscriptionStore(path) as store:
        service = await service_factory(store_=store, limits=SubscriptionLimits(5, 5))
        made = [
            await service.create(callback("http://127.0.0.1:9/n"), caller=app) for _ in range(4)
        ]
        await service.stop()
    async with SubscriptionStore(path) as reopened:
        lowered = await service_factory(store_=reopened, limits=SubscriptionLimits(3, 2))
        assert {s.id for s in await lowered.list()} == {s.id for s in made}
        with pytest.raises(AdapterError) as refused:
            await lowered.create(callback("http://127.0.0.1:9/n"), caller=Caller("app-b"))
        assert refused.value.kind is ErrorKind.QUOTA_EXCEEDED
        for subscription in made[:2]:
            await lowered.delete(subscription.id)
        with pytest.raises(AdapterError, match="PER_CALLER"):
            await lowered.create(callback("http://127.0.0.1:9/n"), caller=app)
        await lowered.create(callback("http://127.0.0.1:9/n"), caller=Caller("app-b"))
        with pytest.raises(AdapterError, match="MAX_SUBSCRIPTIONS\\)"):
            await lowered.create(callback("http://127.0.0.1:9/n"), caller=Caller("app-c"))
        await lowered.stop()


async def test_a_refused_request_takes_no_room(service_factory: ServiceFactory) -> None:
    service = await service_factory(limits=SubscriptionLimits(1, 1))
    for _ in range(3):
        with pytest.raises(AdapterError) as refused:
            await service.create(callback("http://169.254.169.254/latest"))
        assert refused.value.kind is ErrorKind.INVALID
    await service.create(callback("http://127.0.0.1:9/n"))
