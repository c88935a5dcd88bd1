"""The adapter's and the sample app's app packages deploy through the plugin, as MECM does it.

Both CSARs are built by ``packaging.build_csar`` for the emulated edge node, then driven the
way lcmcontroller drives a host: uploadConfig (the kubeconfig of the fake API server),
uploadPackage in 1 KiB chunks read from disk, queryPackageStatus, instantiate with the
``ak``/``sk`` lcmcontroller generated, query, terminate. The objects are checked in the fake
API server, strictly against the ``kubernetes`` client's models, and the pods are seen
Running by the emulated cluster's edged and through the plugin's ``query``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer
from mep_kubeedge_adapter.emulators.mep import AppIdentity
from mep_kubeedge_adapter.packaging import build_csar
from tests.deploy.conftest import kube_roundtrip, unknown_fields
from tests.mecm.conftest import EDGE_IP, EDGE_NODE, TENANT, Setup

INSTANCE_LABEL = "app.kubernetes.io/instance"
# lcmcontroller's instance ids are UUIDs; one that starts with a digit makes object names
# that start with a digit, which a Service name (an RFC 1035 label) must not.
APPS = {
    "adapter": ("0e6f4b1c-2d3a-4c5b-8e7f-9a0b1c2d3e4f", "DaemonSet", "mep-kubeedge-adapter"),
    "sample-app": ("5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a", "Deployment", "sample-edge-app"),
}


def _created_by(fake: FakeApiServer, instance: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every stored object labelled with ``instance``, by (kind, namespace, name)."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rtype in fake.store.types.values():
        for obj in fake.objects(rtype.key):
            meta = obj["metadata"]
            if (meta.get("labels") or {}).get(INSTANCE_LABEL) == instance:
                found[(rtype.kind, meta.get("namespace", ""), meta["name"])] = obj
    return found


def _without_nulls(value: Any) -> Any:
    """JSON ``null`` is an absent optional field (the server writes ``lastProbeTime: null``)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def _pod_spec_is_pinned(workload: dict[str, Any], instance: str) -> None:
    template = workload["spec"]["template"]
    assert template["metadata"]["labels"][INSTANCE_LABEL] == instance
    spec = template["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": EDGE_NODE}
    no_execute = {t["key"] for t in spec["tolerations"] if t.get("effect") == "NoExecute"}
    assert {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"} <= no_execute
    assert all("tolerationSeconds" not in t for t in spec["tolerations"])


@pytest.mark.parametrize("app", sorted(APPS))
async def test_the_app_package_deploys_runs_and_goes_away(
    setup: Setup, app: str, tmp_path: Path
) -> None:
    s = setup
    instance, workload_kind, namespace = APPS[app]
    identity = AppIdentity.generate()  # lcmcontroller's AK/SK for the instance
    package = build_csar(app, [EDGE_NODE])
    path = tmp_path / package.filename
    path.write_bytes(package.data)

    await s.register_host()
    assert await s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg", path) == "Success"
    assert await s.lcm.package_status(s.token, TENANT, EDGE_IP, "pkg") == "uploaded"
    parameters = {"ak": identity.ak, "sk": identity.sk}
    assert (
        await s.lcm.instantiate(s.token, TENANT, EDGE_IP, instance, "pkg", parameters) == "Success"
    )

    created = _created_by(s.fake, instance)
    secrets = [o for o in s.fake.objects("Secret") if o["metadata"]["name"] == f"{instance}-aksk"]
    assert len(secrets) == 1
    assert secrets[0]["metadata"]["namespace"] == namespace
    assert _decoded(secrets[0]) == {
        "appInsId": instance,
        "accesskey": identity.ak,
        "secretkey": identity.sk,
    }
    (workload,) = [o for (kind, _, _), o in created.items() if kind == workload_kind]
    assert workload["metadata"]["namespace"] == namespace
    _pod_spec_is_pinned(workload, instance)
    assert ("Namespace", "", namespace) in created
    for stored in created.values():  # the plugin's objects, and what controllers made of them
        obj = _without_nulls(stored)
        roundtrip = kube_roundtrip(obj)
        assert list(unknown_fields(obj, roundtrip)) == [], (obj["kind"], obj["metadata"]["name"])

    selector = f"{INSTANCE_LABEL}={instance}"
    await s.cluster.wait_for(lambda: s.cluster.running(namespace, selector) == 1)
    document = json.loads(await s.lcm.query(s.token, TENANT, EDGE_IP, instance))
    (pod,) = document["pods"]
    assert (pod["podstatus"], pod["nodeName"], pod["nodeReady"]) == ("Running", EDGE_NODE, "True")
    (running,) = s.cluster.pods(namespace, selector)
    assert pod["podname"] == running["metadata"]["name"]
    assert running["spec"]["nodeName"] == EDGE_NODE

    assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, instance) == "Success"
    await s.cluster.wait_for(lambda: not _created_by(s.fake, instance))
    assert s.cluster.pods(namespace) == []
    assert not [o for o in s.fake.objects("Secret") if o["metadata"]["name"] == f"{instance}-aksk"]
    for kind, object_namespace, name in created:
        with pytest.raises(KeyError):
            s.fake.get(kind, object_namespace, name)


async def test_the_adapter_and_the_sample_app_run_side_by_side(setup: Setup) -> None:
    """The whole EdgeGallery loop on one edge node: the adapter, then the app that uses it."""
    s = setup
    await s.register_host()
    identities = {app: AppIdentity.generate() for app in APPS}
    for app, (instance, _, _) in APPS.items():
        package = build_csar(app, [EDGE_NODE]).data
        assert await s.lcm.upload_package(s.token, TENANT, EDGE_IP, app, package) == "Success"
        parameters = {"ak": identities[app].ak, "sk": identities[app].sk}
        status = await s.lcm.instantiate(s.token, TENANT, EDGE_IP, instance, app, parameters)
        assert status == "Success"

    def all_running() -> bool:
        return all(
            s.cluster.running(namespace, f"{INSTANCE_LABEL}={instance}") == 1
            for instance, _, namespace in APPS.values()
        )

    await s.cluster.wait_for(all_running)
    for instance, _, _ in APPS.values():
        document = json.loads(await s.lcm.query(s.token, TENANT, EDGE_IP, instance))
        assert [p["podstatus"] for p in document["pods"]] == ["Running"]
    kpi = json.loads(await s.lcm.query_kpi(s.token, TENANT, EDGE_IP))
    assert kpi["retCode"] == 0 and kpi["data"]["cpuusage"]["used"] > 0
    for instance, _, _ in APPS.values():
        assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, instance) == "Success"
    await s.cluster.wait_for(
        lambda: not any(_created_by(s.fake, instance) for instance, _, _ in APPS.values())
    )
