"""Everything a caller can make the plugin keep is bounded, and terminated instances are
remembered for a retention, then forgotten.

Bounds are refused with RESOURCE_EXHAUSTED and a message naming the setting, never with
"not found" (lcmcontroller would answer 404), and a refusal leaves nothing behind. Time is
the plugin's injected clock, moved by the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from mep_kubeedge_adapter.emulators.kubeapi import kubeconfig
from mep_kubeedge_adapter.emulators.pki import Pki
from mep_kubeedge_adapter.mecm.plugin import MecmPlugin
from mep_kubeedge_adapter.settings import MecmSettings
from tests.mecm.conftest import EDGE_IP, TENANT, Setup, lcm_client
from tests.mecm.packages import chart, csar, csar_files

OTHER_IP = "192.168.10.99"
"""A second MEC host of the same tenant (a config and packages need no edge node)."""
DAY_MS = 24 * 3600 * 1000


@contextlib.asynccontextmanager
async def bounded(s: Setup, pki: Pki, **limits: Any) -> AsyncIterator[Setup]:
    """The fixture's plugin restarted with ``limits``, on the same data and clock."""
    await s.plugin.__aexit__(None, None, None)
    settings = MecmSettings.model_validate({**s.settings.model_dump(), **limits})
    async with MecmPlugin(settings, clock=s.clock) as plugin, lcm_client(plugin, pki) as lcm:
        yield replace(s, plugin=plugin, lcm=lcm, settings=settings)


async def _refusal(call: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    message = str(caught.value.details())
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, message
    assert "not found" not in message
    return message


def _unpacked_size(package: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        return sum(entry.file_size for entry in archive.infolist())


def _stored_packages(s: Setup) -> int:
    return len(list((s.settings.data_dir / "packages").iterdir()))


def _rows(s: Setup, where: str) -> int:
    with contextlib.closing(sqlite3.connect(s.settings.data_dir / "state.sqlite3")) as db:
        (count,) = db.execute(f"SELECT COUNT(*) FROM instances WHERE {where}").fetchone()
    return int(count)


async def test_packages_are_bounded_per_tenant_and_in_all(setup: Setup, pki: Pki) -> None:
    async with bounded(setup, pki, max_packages_per_tenant=2, max_packages=3) as s:
        other = s.user_mgmt.token(user_id="tenant-2")
        for package_id in ("pkg-1", "pkg-2"):
            assert await s.lcm.upload_package(s.token, TENANT, EDGE_IP, package_id, csar()) == (
                "Success"
            )
        message = await _refusal(s.lcm.upload_package(s.token, TENANT, OTHER_IP, "pkg-3", csar()))
        assert message == (
            "this tenant already holds 2 packages, the most allowed "
            "(MKA_MECM__MAX_PACKAGES_PER_TENANT=2); delete one first"
        )
        assert _stored_packages(s) == 2
        assert list((s.settings.data_dir / "incoming").iterdir()) == []
        # uploading a package again replaces it: no room needed
        assert await s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-1", csar()) == "Success"

        assert await s.lcm.upload_package(other, "tenant-2", EDGE_IP, "pkg-a", csar()) == "Success"
        message = await _refusal(s.lcm.upload_package(other, "tenant-2", EDGE_IP, "pkg-b", csar()))
        assert "(MKA_MECM__MAX_PACKAGES=3)" in message and "holds 3 packages" in message
        assert await s.lcm.delete_package(s.token, TENANT, EDGE_IP, "pkg-2") == "Success"
        assert await s.lcm.upload_package(other, "tenant-2", EDGE_IP, "pkg-b", csar()) == "Success"
        assert _stored_packages(s) == 3


async def test_the_bytes_of_stored_packages_are_bounded(setup: Setup, pki: Pki) -> None:
    package = csar()
    size = _unpacked_size(package)
    bigger = csar_files(chart())
    bigger["Artifacts/Docs/readme.txt"] = b"x" * (size // 2)
    async with bounded(setup, pki, max_stored_package_bytes=2 * size + size // 4) as s:
        for package_id in ("pkg-1", "pkg-2"):
            assert await s.lcm.upload_package(s.token, TENANT, EDGE_IP, package_id, package) == (
                "Success"
            )
        message = await _refusal(s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-3", package))
        assert message == (
            f"the package takes {size} bytes unpacked and the stored packages {2 * size}, beyond "
            f"the {2 * size + size // 4} bytes allowed (MKA_MECM__MAX_STORED_PACKAGE_BYTES); "
            "delete packages first"
        )
        # a replacement counts its own size only, not the one it replaces as well
        assert await s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-1", package) == "Success"
        await _refusal(s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-1", csar(bigger)))
        assert await s.lcm.package_status(s.token, TENANT, EDGE_IP, "pkg-1") == "uploaded"
        assert _stored_packages(s) == 2
        assert list((s.settings.data_dir / "incoming").iterdir()) == []


async def test_uploads_in_progress_are_bounded(setup: Setup, pki: Pki) -> None:
    async with bounded(setup, pki, max_uploads_in_progress=1) as s:
        lcm = s.plugin.lcm
        assert lcm is not None
        incoming = s.settings.data_dir / "incoming"
        with lcm.incoming_package() as arriving:  # an upload that has sent its first chunk
            arriving.write(b"PK")
            message = await _refusal(
                s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-1", csar())
            )
            assert message == (
                "1 package uploads are in progress, the most allowed "
                "(MKA_MECM__MAX_UPLOADS_IN_PROGRESS=1); upload again when one has finished"
            )
            assert len(list(incoming.iterdir())) == 1
        assert list(incoming.iterdir()) == []
        assert await s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-1", csar()) == "Success"
        # refused or kept, an upload gives its slot back
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-2", b"PK" * 600)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert await s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-2", csar()) == "Success"


async def test_kubeconfigs_are_bounded_per_tenant_and_in_all(setup: Setup, pki: Pki) -> None:
    async with bounded(setup, pki, max_configs_per_tenant=1, max_configs=2) as s:
        config = kubeconfig(s.fake.url)
        assert await s.lcm.upload_config(s.token, TENANT, EDGE_IP, config) == "Success"
        assert await s.lcm.upload_config(s.token, TENANT, EDGE_IP, config) == "Success"
        message = await _refusal(s.lcm.upload_config(s.token, TENANT, OTHER_IP, config))
        assert "(MKA_MECM__MAX_CONFIGS_PER_TENANT=1); remove one first" in message
        second = s.user_mgmt.token(user_id="tenant-2")
        third = s.user_mgmt.token(user_id="tenant-3")
        assert await s.lcm.upload_config(second, "tenant-2", EDGE_IP, config) == "Success"
        message = await _refusal(s.lcm.upload_config(third, "tenant-3", EDGE_IP, config))
        assert "(MKA_MECM__MAX_CONFIGS=2)" in message
        assert len(list((s.settings.data_dir / "kubeconfigs").iterdir())) == 2
        assert await s.lcm.remove_config(s.token, TENANT, EDGE_IP) == "Success"
        assert await s.lcm.upload_config(third, "tenant-3", EDGE_IP, config) == "Success"


async def _host(s: Setup, token: str, tenant: str) -> None:
    assert await s.lcm.upload_config(token, tenant, EDGE_IP, kubeconfig(s.fake.url)) == "Success"
    assert await s.lcm.upload_package(token, tenant, EDGE_IP, "pkg-1", csar()) == "Success"


async def _instantiate(s: Setup, token: str, tenant: str, instance: str) -> str:
    parameters = {"ak": "AK", "sk": "SK", "appnamespace": f"ns-{instance}"}
    return await s.lcm.instantiate(token, tenant, EDGE_IP, instance, "pkg-1", parameters)


async def test_live_instances_are_bounded_per_tenant_and_in_all(setup: Setup, pki: Pki) -> None:
    async with bounded(setup, pki, max_instances_per_tenant=1, max_instances=2) as s:
        second = s.user_mgmt.token(user_id="tenant-2")
        third = s.user_mgmt.token(user_id="tenant-3")
        for token, tenant in ((s.token, TENANT), (second, "tenant-2"), (third, "tenant-3")):
            await _host(s, token, tenant)
        assert await _instantiate(s, s.token, TENANT, "app-1") == "Success"
        assert await _instantiate(s, s.token, TENANT, "app-1") == "Success"  # the same again
        message = await _refusal(_instantiate(s, s.token, TENANT, "app-2"))
        assert message == (
            "this tenant already holds 1 app instances, the most allowed "
            "(MKA_MECM__MAX_INSTANCES_PER_TENANT=1); terminate one first"
        )
        with pytest.raises(KeyError):  # nothing of app-2 was created
            s.fake.get("Namespace", "", "ns-app-2")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await s.lcm.query(s.token, TENANT, EDGE_IP, "app-2")
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND

        assert await _instantiate(s, second, "tenant-2", "app-3") == "Success"
        message = await _refusal(_instantiate(s, third, "tenant-3", "app-4"))
        assert "holds 2 app instances" in message and "(MKA_MECM__MAX_INSTANCES=2)" in message

        assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, "app-1") == "Success"
        assert await _instantiate(s, s.token, TENANT, "app-2") == "Success"
        message = await _refusal(_instantiate(s, third, "tenant-3", "app-4"))
        assert "(MKA_MECM__MAX_INSTANCES=2)" in message


async def test_concurrent_instantiations_do_not_overshoot_the_bound(setup: Setup, pki: Pki) -> None:
    async with bounded(setup, pki, max_instances_per_tenant=1) as s:
        await _host(s, s.token, TENANT)
        outcomes = await asyncio.gather(
            *(_instantiate(s, s.token, TENANT, f"app-{n}") for n in range(3)),
            return_exceptions=True,
        )
        assert outcomes.count("Success") == 1
        for refused in (o for o in outcomes if o != "Success"):
            assert isinstance(refused, grpc.aio.AioRpcError)
            assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _rows(s, "state = 'instantiated'") == 1


async def test_a_failed_instantiation_takes_no_room(setup: Setup, pki: Pki) -> None:
    async with bounded(setup, pki, max_instances_per_tenant=1) as s:
        await _host(s, s.token, TENANT)
        s.fake.finalize_namespaces = False  # the namespace stays Terminating
        assert await _instantiate(s, s.token, TENANT, "app-1") == "Success"
        assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, "app-1") == "Success"
        parameters = {"ak": "AK", "sk": "SK", "appnamespace": "ns-app-1"}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await s.lcm.instantiate(s.token, TENANT, EDGE_IP, "app-2", "pkg-1", parameters)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "being deleted" in str(caught.value.details())
        assert _rows(s, "instance_id = 'app-2'") == 0
        assert await _instantiate(s, s.token, TENANT, "app-3") == "Success"


async def test_a_terminated_instance_is_remembered_for_the_retention(
    setup: Setup, pki: Pki
) -> None:
    async with bounded(setup, pki, terminated_retention=2 * 24 * 3600) as s:
        await _host(s, s.token, TENANT)
        for instance in ("app-1", "app-2"):
            assert await _instantiate(s, s.token, TENANT, instance) == "Success"
        assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, "app-1") == "Success"
        s.clock.advance(2 * DAY_MS - 1)
        assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, "app-1") == "Success"
        s.clock.advance(1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await s.lcm.terminate(s.token, TENANT, EDGE_IP, "app-1")
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        assert caught.value.details() == "app instance app-1 not found"
        assert _rows(s, "instance_id = 'app-1'") == 1  # forgotten, purged at the next write
        assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, "app-2") == "Success"
        assert _rows(s, "instance_id = 'app-1'") == 0
        assert _rows(s, "instance_id = 'app-2'") == 1


async def test_the_retention_survives_a_restart(setup: Setup, pki: Pki) -> None:
    async with bounded(setup, pki) as s:
        await _host(s, s.token, TENANT)
        assert await _instantiate(s, s.token, TENANT, "app-1") == "Success"
        assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, "app-1") == "Success"
    s.clock.advance(7 * DAY_MS - 1)
    async with bounded(setup, pki) as s:
        assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, "app-1") == "Success"
    s.clock.advance(1)
    async with bounded(setup, pki) as s:
        assert _rows(s, "instance_id = 'app-1'") == 0  # purged when the store opened
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await s.lcm.terminate(s.token, TENANT, EDGE_IP, "app-1")
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_the_terminated_instances_remembered_are_bounded(setup: Setup, pki: Pki) -> None:
    async with bounded(setup, pki, max_terminated=2) as s:
        await _host(s, s.token, TENANT)
        for instance in ("app-1", "app-2", "app-3"):
            assert await _instantiate(s, s.token, TENANT, instance) == "Success"
            assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, instance) == "Success"
            s.clock.advance(1)
        assert _rows(s, "state = 'terminated'") == 2
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await s.lcm.terminate(s.token, TENANT, EDGE_IP, "app-1")
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        for instance in ("app-2", "app-3"):
            assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, instance) == "Success"


def test_settings_keep_each_tenants_bound_within_the_total(tmp_path: Path) -> None:
    for name in ("configs", "packages", "instances"):
        with pytest.raises(ValueError, match=f"max_{name}_per_tenant must be at most max_{name}"):
            MecmSettings.model_validate({f"max_{name}": 5, f"max_{name}_per_tenant": 6})
