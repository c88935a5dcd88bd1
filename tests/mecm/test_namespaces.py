"""Who deletes an app instance's namespace: only the last live instance that uses it.

Two instances may name the same ``appconfig.appnamespace``, on one MEC host or on two edge
nodes of one cluster. Terminating one of them removes its own objects and leaves the
namespace while another live instance still has objects there; the last one out deletes a
namespace the plugin created. A namespace the plugin did not create is never deleted.
"""

from __future__ import annotations

import json

import grpc
import pytest

from mep_kubeedge_adapter.emulators.kubeapi import kubeconfig
from tests.mecm.conftest import EDGE_IP, TENANT, Setup
from tests.mecm.packages import chart, csar, csar_files

FIRST = "0a1b2c3d-0000-4000-8000-000000000001"
SECOND = "0a1b2c3d-0000-4000-8000-000000000002"
SHARED = "shared-apps"
OTHER_EDGE_NODE = "edge-node-2"
OTHER_EDGE_IP = "192.168.10.12"


async def _instantiate(s: Setup, instance: str, host: str, namespace: str = SHARED) -> None:
    """``instance`` from its own package (its own chart name, so its own object names)."""
    parameters = {"ak": "AK", "sk": "SK", "appnamespace": namespace}
    status = await s.lcm.instantiate(s.token, TENANT, host, instance, instance[-4:], parameters)
    assert status == "Success"


async def _register(s: Setup, *hosts: str) -> None:
    for host in hosts:
        assert await s.lcm.upload_config(s.token, TENANT, host, kubeconfig(s.fake.url)) == "Success"
        for instance in (FIRST, SECOND):
            name = f"app-{instance[-4:]}"
            package = csar(csar_files(chart(name), name=name))
            status = await s.lcm.upload_package(s.token, TENANT, host, instance[-4:], package)
            assert status == "Success"


def _namespace_exists(s: Setup, name: str) -> bool:
    try:
        s.fake.get("Namespace", "", name)
    except KeyError:
        return False
    return True


def _owned(s: Setup, instance: str, namespace: str = SHARED) -> list[str]:
    """Kinds and names of the objects in ``namespace`` labelled with ``instance``."""
    return sorted(
        f"{o['kind']}/{o['metadata']['name']}"
        for kind in ("Deployment", "Service", "Secret")
        for o in s.fake.objects(kind, namespace)
        if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/instance") == instance
    )


def _running(s: Setup, instance: str) -> bool:
    return s.cluster.running(SHARED, f"app.kubernetes.io/instance={instance}") == 1


@pytest.mark.parametrize("first_out", [FIRST, SECOND], ids=["creator-first", "creator-last"])
async def test_a_shared_namespace_stays_until_its_last_instance_is_terminated(
    setup: Setup, first_out: str
) -> None:
    s = setup
    s.cluster.add_edge_node(OTHER_EDGE_NODE, OTHER_EDGE_IP)
    await _register(s, EDGE_IP, OTHER_EDGE_IP)
    await _instantiate(s, FIRST, EDGE_IP)  # creates the namespace
    await _instantiate(s, SECOND, OTHER_EDGE_IP)  # another node of the same cluster
    await s.cluster.wait_for(lambda: _running(s, FIRST) and _running(s, SECOND))
    last_out = SECOND if first_out == FIRST else FIRST
    hosts = {FIRST: EDGE_IP, SECOND: OTHER_EDGE_IP}
    survivors = _owned(s, last_out)
    assert len(survivors) == 3

    assert await s.lcm.terminate(s.token, TENANT, hosts[first_out], first_out) == "Success"
    await s.cluster.wait_for(
        lambda: not s.cluster.pods(SHARED, f"app.kubernetes.io/instance={first_out}")
    )
    assert _owned(s, first_out) == []
    assert _namespace_exists(s, SHARED)
    assert "deletionTimestamp" not in s.fake.get("Namespace", "", SHARED)["metadata"]
    assert _owned(s, last_out) == survivors
    document = json.loads(await s.lcm.query(s.token, TENANT, hosts[last_out], last_out))
    assert document["pods"][0]["podstatus"] == "Running"

    assert await s.lcm.terminate(s.token, TENANT, hosts[last_out], last_out) == "Success"
    await s.cluster.wait_for(lambda: not _namespace_exists(s, SHARED))


async def test_a_namespace_the_plugin_did_not_create_is_left_in_place(setup: Setup) -> None:
    s = setup
    s.fake.ensure_namespace("team-apps")  # made by the cluster's operator
    await _register(s, EDGE_IP)
    await _instantiate(s, FIRST, EDGE_IP, namespace="team-apps")
    assert len(_owned(s, FIRST, "team-apps")) == 3
    assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, FIRST) == "Success"
    assert _owned(s, FIRST, "team-apps") == []
    namespace = s.fake.get("Namespace", "", "team-apps")
    assert "deletionTimestamp" not in namespace["metadata"]
    assert "app.kubernetes.io/instance" not in (namespace["metadata"].get("labels") or {})


async def test_instantiating_into_a_namespace_being_deleted_asks_to_try_again(
    setup: Setup,
) -> None:
    s = setup
    s.fake.finalize_namespaces = False  # the namespace controller is slow to empty it
    await _register(s, EDGE_IP)
    await _instantiate(s, FIRST, EDGE_IP)
    assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, FIRST) == "Success"
    assert "deletionTimestamp" in s.fake.get("Namespace", "", SHARED)["metadata"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _instantiate(s, SECOND, EDGE_IP)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == (
        f"namespace {SHARED} is being deleted; instantiate again once it is gone"
    )
    assert _owned(s, SECOND) == []
    s.fake.finalize_namespace(SHARED)
    await _instantiate(s, SECOND, EDGE_IP)
    assert _owned(s, SECOND) != []
    assert (
        s.fake.get("Namespace", "", SHARED)["metadata"]["labels"]["app.kubernetes.io/instance"]
        == SECOND
    )


async def test_a_namespace_outlives_the_retention_of_the_instance_that_created_it(
    setup: Setup,
) -> None:
    """The creator's record is what tells the last instance out that the plugin made the
    namespace, so it is kept past its retention until the namespace goes."""
    s = setup
    third = "0a1b2c3d-0000-4000-8000-000000000003"
    await _register(s, EDGE_IP)
    await _instantiate(s, FIRST, EDGE_IP)  # creates the namespace
    await _instantiate(s, SECOND, EDGE_IP)
    assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, FIRST) == "Success"
    assert _namespace_exists(s, SHARED)

    s.clock.advance(8 * 24 * 3600 * 1000)  # beyond the week terminated instances are kept
    parameters = {"ak": "AK", "sk": "SK", "appnamespace": "other-apps"}
    status = await s.lcm.instantiate(s.token, TENANT, EDGE_IP, third, FIRST[-4:], parameters)
    assert status == "Success"
    assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, third) == "Success"  # purges
    assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, FIRST) == "Success"  # still held

    assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, SECOND) == "Success"
    await s.cluster.wait_for(lambda: not _namespace_exists(s, SHARED))
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # released, then purged
        await s.lcm.terminate(s.token, TENANT, EDGE_IP, FIRST)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
