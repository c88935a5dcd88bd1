"""The Registrar against the MEP emulator over real HTTP on loopback.

The registry is filled directly (``add_member`` / ``upsert_spec``); the emulator validates
every MP1 body against MEC 011 and EdgeGallery's rules, and the ``mep`` fixture fails a test
whose requests produced a schema violation.

The registrar's own tests run on virtual time (``on_virtual_time``): the registrar, its client
and the emulator are parties of one event loop that read its clock, so heartbeats, liveness
windows and lock-out waits pass at once and exactly, and counts over a window are exact. The
test in the composition root runs in real time: the adapter's store works in a thread.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mep_kubeedge_adapter.backoff import Backoff
from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.emulators.mep import AppIdentity
from mep_kubeedge_adapter.mep.client import LOCKOUT_SECONDS, Mp1Client
from mep_kubeedge_adapter.mep.models import (
    ServiceState,
    node_service_info,
    rest_service_info,
    to_ser_name,
)
from mep_kubeedge_adapter.mep.registrar import (
    MepState,
    Registrar,
    steady_calls_per_minute,
    wanted_services,
)
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry, DeviceSpec
from mep_kubeedge_adapter.service import Adapter
from mep_kubeedge_adapter.settings import MepSettings, Settings

from .conftest import ObservedMep, eventually

NODE = "edge-1.lan"
PUBLIC = "http://127.0.0.1:9"
BEAT = 0.3
REGISTER = "POST /mep/mec_service_mgmt/v1/applications/{appInstanceId}/services"
DELETE = "DELETE /mep/mec_service_mgmt/v1/applications/{appInstanceId}/services/{serInstanceId}"
LIVENESS = (
    "PUT /mep/mec_service_mgmt/v1/applications/{appInstanceId}/services/{serInstanceId}/liveness"
)
TOKEN = "POST /mep/token"
NODE_SERVICE = to_ser_name("kubeedge-devices", NODE)
IOTS_SERVICE = to_ser_name("iots", NODE)

on_virtual_time = pytest.mark.usefixtures("virtual_clock")


def settings_for(mep: ObservedMep, app: AppIdentity, **overrides: Any) -> MepSettings:
    values: dict[str, Any] = {
        "url": mep.url,
        "app_instance_id": app.app_instance_id,
        "ak": app.ak,
        "sk": app.sk,
        "heartbeat_interval": BEAT,
        "deregister_timeout": 3.0,
        **overrides,
    }
    return MepSettings(**values)


@asynccontextmanager
async def running(
    settings: MepSettings, registry: DeviceRegistry | None = None, **kwargs: Any
) -> AsyncIterator[Registrar]:
    cap = kwargs.pop("backoff_cap", 1.0)
    registrar = Registrar(
        settings,
        NODE,
        registry if registry is not None else DeviceRegistry(),
        kwargs.pop("metrics", Metrics()),
        lambda: PUBLIC,
        settle=0.1,
        backoff=Backoff(base=0.05, cap=cap),
        **kwargs,
    )
    task = asyncio.create_task(registrar.run(), name="registrar")
    try:
        yield registrar
    finally:
        await registrar.shutdown()
        await asyncio.wait_for(task, 5)


def names(mep: ObservedMep, app: AppIdentity) -> list[str]:
    return sorted(
        s["serName"] for s in mep.services() if s["_links"]["appInstanceId"] == app.app_instance_id
    )


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def probe() -> bool:
        return condition()

    await eventually(probe, bool, timeout)


def add_devices(registry: DeviceRegistry, count: int, namespace: str = "default") -> list[DeviceId]:
    ids = [DeviceId(namespace, f"dev-{i:03}") for i in range(count)]
    for device_id in ids:
        registry.add_member(device_id)
    return ids


# ------------------------------------------------------------------ pure parts


def test_wanted_services_order_names_and_uris() -> None:
    registry = DeviceRegistry()
    registry.upsert_spec(DeviceSpec(DeviceId("plant", "b"), model="switch"))
    registry.upsert_spec(DeviceSpec(DeviceId("default", "a.1"), model="thermo"))
    registry.upsert_spec(DeviceSpec(DeviceId("default", "c"), model="thermo"))
    devices = registry.devices()

    node_only = wanted_services(devices, mode="node", node=NODE, public_url=PUBLIC + "/")
    assert [w.subject for w in node_only] == ["node", "iots"]
    assert node_only[0].info.endpoint_uris == [f"{PUBLIC}/kubeedge_devices/v1"]
    assert node_only[1].info.endpoint_uris == [f"{PUBLIC}/iots/v1"]
    assert "." not in node_only[0].ser_name

    per_model = wanted_services(devices, mode="per-model", node=NODE, public_url=PUBLIC)
    assert [w.subject for w in per_model] == [
        "node",
        "iots",
        "model default/thermo",
        "model plant/switch",
    ]
    assert per_model[2].info.endpoint_uris == [
        f"{PUBLIC}/kubeedge_devices/v1/device_models/default/thermo"
    ]

    per_device = wanted_services(devices, mode="per-device", node=NODE, public_url=PUBLIC)
    assert [w.subject for w in per_device][2:] == [
        "device default/a.1",
        "device default/c",
        "device plant/b",
    ]
    assert per_device[2].info.endpoint_uris == [f"{PUBLIC}/kubeedge_devices/v1/devices/default/a.1"]
    assert len({w.ser_name for w in per_device}) == len(per_device)
    for w in per_device:
        assert len(w.info.to_request()) > 0


def test_steady_state_formula() -> None:
    assert steady_calls_per_minute(2, 30) == pytest.approx(4.017, abs=0.001)
    assert steady_calls_per_minute(50, 30) == pytest.approx(100.017, abs=0.001)


# ------------------------------------------------------------------ node mode


@on_virtual_time
async def test_node_mode_registers_beats_and_deregisters(
    mep: ObservedMep, producer: AppIdentity
) -> None:
    metrics = Metrics()
    async with running(settings_for(mep, producer), metrics=metrics) as registrar:
        await until(lambda: registrar.state is MepState.REGISTERED)
        assert names(mep, producer) == sorted([NODE_SERVICE, IOTS_SERVICE])
        ids = registrar.registered()
        assert set(ids) == {NODE_SERVICE, IOTS_SERVICE}
        # The ids are the ones the emulator handed out in its 201 bodies.
        assert set(ids.values()) == {s["serInstanceId"] for s in mep.services()}
        # Beats keep them ACTIVE well past the emulator's liveness window (0.6 s + 0.3 s):
        # each instance beats once per interval, the first within its first interval.
        await asyncio.sleep(10 * BEAT)
        assert {mep.service_state(i) for i in ids.values()} == {"ACTIVE"}
        for sid in ids.values():
            beats = mep.beats[sid]
            gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
            assert gaps == pytest.approx([BEAT] * len(gaps), abs=1e-6)
            assert len(beats) >= 9
        assert mep.calls[LIVENESS] == sum(len(b) for b in mep.beats.values())
        assert registrar.status()["state"] == "registered"
        exposition = metrics.exposition().decode()
        assert 'mka_mep_state{state="registered"} 1.0' in exposition
        assert "mka_mep_services 2.0" in exposition
    assert names(mep, producer) == []
    assert registrar.state is MepState.STOPPED
    assert mep.calls[DELETE] == 2


@on_virtual_time
async def test_stale_instances_are_deleted_at_start(
    mep: ObservedMep, producer: AppIdentity
) -> None:
    async with Mp1Client(mep.url, producer.app_instance_id, producer.ak, producer.sk) as c:
        await c.register(node_service_info(NODE, PUBLIC))
        await c.register(node_service_info(NODE, PUBLIC))
        stale_device = to_ser_name(f"kubeedge-device-{to_ser_name(NODE)}", "default", "gone")
        await c.register(rest_service_info(stale_device, f"{PUBLIC}/x", category=None))
        other_node = node_service_info("edge-2", PUBLIC)
        await c.register(other_node)
    async with running(settings_for(mep, producer)) as registrar:
        await until(lambda: registrar.state is MepState.REGISTERED)
        assert names(mep, producer) == sorted([NODE_SERVICE, IOTS_SERVICE, other_node.serName])
    assert names(mep, producer) == [other_node.serName]


@on_virtual_time
async def test_wiped_mep_is_re_registered_within_two_heartbeats(
    mep: ObservedMep, producer: AppIdentity
) -> None:
    async with running(settings_for(mep, producer)) as registrar:
        await until(lambda: registrar.state is MepState.REGISTERED)
        before = set(registrar.registered().values())
        mep.wipe()
        wiped_at = asyncio.get_running_loop().time()
        await until(lambda: len(names(mep, producer)) == 2, timeout=2 * BEAT)
        assert asyncio.get_running_loop().time() - wiped_at <= 2 * BEAT
        assert set(registrar.registered().values()).isdisjoint(before)
        await until(lambda: registrar.state is MepState.REGISTERED)


@on_virtual_time
async def test_inactive_service_is_restored(mep: ObservedMep, producer: AppIdentity) -> None:
    async with running(settings_for(mep, producer)) as registrar:
        await until(lambda: registrar.state is MepState.REGISTERED)
        sid = registrar.registered()[NODE_SERVICE]
        inactive = node_service_info(NODE, PUBLIC, state=ServiceState.INACTIVE)
        async with Mp1Client(mep.url, producer.app_instance_id, producer.ak, producer.sk) as c:
            await c.update_service(sid, inactive)
        assert mep.service_state(sid) == "INACTIVE"
        await until(lambda: mep.service_state(sid) == "ACTIVE", timeout=2 * BEAT)
        assert registrar.registered()[NODE_SERVICE] == sid
        assert (
            mep.calls[
                "PUT /mep/mec_service_mgmt/v1/applications/{appInstanceId}/services/{serInstanceId}"
            ]
            == 2
        )


@on_virtual_time
async def test_mep_down_at_start_then_up(mep: ObservedMep, producer: AppIdentity) -> None:
    mep.down("close")
    async with running(settings_for(mep, producer), backoff_cap=0.2) as registrar:
        await until(
            lambda: (
                registrar.state is MepState.CONNECTING and "failed" in registrar.status()["reason"]
            )
        )
        assert names(mep, producer) == []
        mep.up()
        await until(lambda: registrar.state is MepState.REGISTERED)
        assert names(mep, producer) == sorted([NODE_SERVICE, IOTS_SERVICE])


@on_virtual_time
async def test_outage_after_registration_reconciles(
    mep: ObservedMep, producer: AppIdentity
) -> None:
    async with running(settings_for(mep, producer), backoff_cap=0.2) as registrar:
        await until(lambda: registrar.state is MepState.REGISTERED)
        held = dict(registrar.registered())
        mep.down("503")
        await until(lambda: registrar.state is MepState.CONNECTING)
        mep.up()
        await until(lambda: registrar.state is MepState.REGISTERED)
        # Short outage: the instances survived and are kept, not duplicated.
        assert registrar.registered() == held
        assert names(mep, producer) == sorted([NODE_SERVICE, IOTS_SERVICE])


@on_virtual_time
async def test_bad_credentials_lock_without_retry_storm(producer: AppIdentity) -> None:
    # An emulator of its own with a slow liveness check (nothing here beats): its check then
    # ticks once a second, and the quarter hour below passes in a thousand steps.
    async with ObservedMep(identities=[producer], liveness_seconds=60.0) as mep:
        settings = settings_for(mep, producer, sk="B" * 64)
        metrics = Metrics()
        async with running(settings, metrics=metrics, lockout_wait=60.0) as registrar:
            await until(lambda: registrar.state is MepState.LOCKED)
            # Nothing more for almost all of EdgeGallery's lock-out, longer than lockout_wait...
            await asyncio.sleep(LOCKOUT_SECONDS - 1.0)
            assert mep.calls[TOKEN] == 1
            assert mep.calls_total == 1
            status = registrar.status()
            assert status["state"] == "locked"
            assert "rejected" in status["reason"]
            assert 'mka_mep_state{state="locked"} 1.0' in metrics.exposition().decode()
            # ... then one new attempt, which is refused and locks again.
            await until(lambda: mep.calls[TOKEN] == 2, timeout=2.0)
            await until(lambda: registrar.state is MepState.LOCKED)
            assert mep.calls_total == 2
        assert mep.schema_violations == []


# ------------------------------------------------------------------ per-device / per-model


@on_virtual_time
async def test_per_device_bounded_concurrency_and_removal(
    mep: ObservedMep, producer: AppIdentity
) -> None:
    mep.register_delay = 0.05
    registry = DeviceRegistry()
    settings = settings_for(mep, producer, service_mode="per-device", register_concurrency=4)
    async with running(settings, registry) as registrar:
        await until(lambda: registrar.state is MepState.REGISTERED)
        ids = add_devices(registry, 40)
        await until(lambda: len(registrar.registered()) == 42)
        assert len(names(mep, producer)) == 42
        assert 2 <= mep.max_in_flight <= 4
        assert mep.calls[REGISTER] == 42
        for device_id in ids:
            registry.remove_member(device_id)
        await until(lambda: len(names(mep, producer)) == 2)
        assert sorted(registrar.registered()) == sorted([NODE_SERVICE, IOTS_SERVICE])
        assert mep.calls[REGISTER] == 42


@on_virtual_time
async def test_per_model_follows_models_in_use(mep: ObservedMep, producer: AppIdentity) -> None:
    registry = DeviceRegistry()
    settings = settings_for(mep, producer, service_mode="per-model")
    async with running(settings, registry) as registrar:
        registry.upsert_spec(DeviceSpec(DeviceId("default", "t1"), model="thermo"))
        registry.upsert_spec(DeviceSpec(DeviceId("default", "t2"), model="thermo"))
        registry.upsert_spec(DeviceSpec(DeviceId("plant", "s1"), model="switch"))
        await until(lambda: len(registrar.registered()) == 4)
        uris = {s["serName"]: s for s in mep.services()}
        assert len(uris) == 4
        registry.remove_spec(DeviceId("plant", "s1"))
        await until(lambda: len(names(mep, producer)) == 3)
        assert all("switch" not in n for n in registrar.registered())
        assert registrar.state is MepState.REGISTERED


@on_virtual_time
@pytest.mark.parametrize("configured_limit", [50, 100])
async def test_instance_limit_reports_and_never_loops(
    mep: ObservedMep, producer: AppIdentity, configured_limit: int
) -> None:
    """80 devices: 50 instances (node, iots, first 48 devices), 32 reported; no 400 loop.

    With ``max_services`` 100 the adapter does not know the limit and meets EdgeGallery's
    400; it must stop there too.
    """
    registry = DeviceRegistry()
    metrics = Metrics()
    settings = settings_for(
        mep,
        producer,
        service_mode="per-device",
        max_services=configured_limit,
        register_concurrency=8,
    )
    ids = add_devices(registry, 80)
    async with running(settings, registry, metrics=metrics) as registrar:
        await until(
            lambda: registrar.state is MepState.DEGRADED and len(registrar.registered()) == 50
        )
        posts = mep.calls[REGISTER]
        assert 50 <= posts <= 50 + 8
        # No new registration attempt while nothing changed: four rounds of heartbeats pass
        # (an absence, so a wait; on virtual time it costs no waiting).
        await asyncio.sleep(4 * BEAT)
        assert mep.calls[REGISTER] == posts
        held = names(mep, producer)
        assert len(held) == 50
        assert NODE_SERVICE in held and IOTS_SERVICE in held
        expected_missing = [f"device {i}" for i in ids[48:]]
        assert registrar.unregistered() == expected_missing
        status = registrar.status()
        assert status["state"] == "degraded"
        assert status["unregistered"]["count"] == 32
        assert status["unregistered"]["items"][0] == {
            "subject": "device default/dev-048",
            "serName": to_ser_name(f"kubeedge-device-{to_ser_name(NODE)}", "default", "dev-048"),
            "reason": "instance limit",
        }
        assert "mka_mep_unregistered 32.0" in metrics.exposition().decode()

        # A freed slot is used by the next device in the stable order.
        registry.remove_member(ids[0])
        await until(lambda: len(registrar.unregistered()) == 31)
        assert "device default/dev-048" not in registrar.unregistered()
        assert len(names(mep, producer)) == 50
    assert names(mep, producer) == []


@on_virtual_time
async def test_steady_state_calls_per_minute(mep: ObservedMep, producer: AppIdentity) -> None:
    """Over one minute of steady state, exactly one heartbeat per instance per interval and
    nothing else: the formula's count without its token term (one refresh an hour)."""
    async with running(settings_for(mep, producer)) as registrar:
        await until(lambda: registrar.state is MepState.REGISTERED)
        # An instance's first beat comes 0.5 to 1 interval after its registration: a quarter
        # of an interval past a whole one, no beat is due, so none sits on the window's edges.
        await asyncio.sleep(BEAT + BEAT / 4)
        mep.reset_calls()
        await asyncio.sleep(60.0)
        assert mep.calls_total == mep.calls[LIVENESS]
        assert mep.calls_total == math.floor(steady_calls_per_minute(2, BEAT))


# ------------------------------------------------------------------ in the composition root


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_adapter_serves_while_mep_is_down_and_deregisters_on_stop(
    mep: ObservedMep, producer: AppIdentity, tmp_path: Path
) -> None:
    settings = Settings(
        node_name=NODE,
        mqtt={"url": f"mqtt://127.0.0.1:{_closed_port()}"},
        api={"host": "127.0.0.1", "port": 0},
        store={"path": tmp_path / "state.sqlite3"},
        mep=settings_for(mep, producer).model_dump(),
    )
    mep.down("close")
    async with Adapter(settings) as adapter, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{adapter.api_port}"
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        assert adapter.registrar is not None
        registrar = adapter.registrar
        await until(lambda: "failed" in registrar.status()["reason"])
        async with http.get(f"{base}/readyz") as resp:
            body = await resp.json()
        assert body["mep"]["state"] == "connecting"
        mep.up()
        await until(lambda: registrar.state is MepState.REGISTERED, timeout=10)
        services = {s["serName"]: s for s in mep.services()}
        assert set(services) == {NODE_SERVICE, IOTS_SERVICE}
        # The advertised endpoint is this adapter's API: the emulator's gateway reaches it.
        gateway = services[NODE_SERVICE]["transportInfo"]["endpoint"]["uris"][0]
        token = mep.issue_token(producer.app_instance_id)
        async with http.get(
            f"{gateway}/devices",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/readyz") as resp:
            body = await resp.json()
        assert body["mep"]["state"] == "registered"
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert 'mka_mep_state{state="registered"} 1.0' in text
        assert 'mka_mep_calls_total{operation="register",outcome="ok"} 2.0' in text
    assert names(mep, producer) == []
