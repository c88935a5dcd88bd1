"""The plugin over real gRPC with TLS, driven as lcmcontroller drives it, on the emulated cluster."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from mep_kubeedge_adapter.emulators.kubeapi import MetricsMode
from mep_kubeedge_adapter.emulators.pki import Pki
from mep_kubeedge_adapter.mecm.plugin import MecmPlugin
from tests.mecm.conftest import CLOUD_IP, EDGE_IP, EDGE_NODE, TENANT, Setup, lcm_client
from tests.mecm.packages import chart, csar, csar_files

INSTANCE = "3f1c2b7a-0d4e-4b6f-9a21-6c8e5d7f9b10"
PARAMETERS = {"ak": "AK-123", "sk": "SK-456"}
INSTANCE_LABEL = "app.kubernetes.io/instance"


async def _deploy(
    s: Setup, package: bytes | None = None, *, params: dict[str, str] | None = None
) -> None:
    await s.register_host()
    assert (
        await s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-1", package or csar())
        == "Success"
    )
    status = await s.lcm.instantiate(
        s.token, TENANT, EDGE_IP, INSTANCE, "pkg-1", {**PARAMETERS, **(params or {})}
    )
    assert status == "Success"


def _running(s: Setup, count: int = 1) -> bool:
    pods = s.cluster.pods("edge-apps")
    return len(pods) == count and all(p["status"].get("phase") == "Running" for p in pods)


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), str(caught.value.details())


async def test_deploy_query_and_terminate_an_app_on_the_edge_node(setup: Setup) -> None:
    s = setup
    await _deploy(s)
    assert await s.lcm.package_status(s.token, TENANT, EDGE_IP, "pkg-1") == "uploaded"

    namespace = s.fake.get("Namespace", "", "edge-apps")
    assert namespace["metadata"]["labels"][INSTANCE_LABEL] == INSTANCE
    secret = s.fake.get("Secret", "edge-apps", f"{INSTANCE}-aksk")
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "accesskey": "AK-123",
        "secretkey": "SK-456",
        "appInsId": INSTANCE,
    }
    (deployment,) = s.fake.objects("Deployment", "edge-apps")
    assert deployment["metadata"]["labels"][INSTANCE_LABEL] == INSTANCE
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"kubernetes.io/hostname": EDGE_NODE}
    assert {(t["key"], t.get("effect")) for t in pod_spec["tolerations"]} == {
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node-role.kubernetes.io/edge", None),
    }
    assert all("tolerationSeconds" not in t for t in pod_spec["tolerations"])
    env = pod_spec["containers"][0]["env"]
    assert env == [{"name": "APP_INSTANCE_ID", "value": INSTANCE}]
    assert pod_spec["containers"][0]["image"] == "swr.example/edgegallery/demoapp:1.0"
    # eg_template files stay off while their global flags are off
    assert s.fake.objects("ConfigMap", "edge-apps") == []

    await s.cluster.wait_for(lambda: _running(s))
    document = json.loads(await s.lcm.query(s.token, TENANT, EDGE_IP, INSTANCE))
    assert set(document) == {"pods", "services", "cpupercent", "mempercent"}
    (pod,) = document["pods"]
    assert set(pod) == {"podstatus", "podname", "containers", "nodeName", "nodeReady"}
    assert (pod["podstatus"], pod["nodeName"], pod["nodeReady"]) == ("Running", EDGE_NODE, "True")
    assert pod["podname"] == s.cluster.pods("edge-apps")[0]["metadata"]["name"]
    assert [c["containername"] for c in pod["containers"]] == ["app", "sidecar"]
    for container in pod["containers"]:
        assert container["metricsusage"] == {
            "cpuusage": "5/4000",
            "memusage": f"{20 * 1024 * 1024}/{8 * 1024**3}",
            "diskusage": "",
        }
    assert document["cpupercent"] == 0.25
    assert document["services"] == [
        {
            "serviceName": "demoapp-svc",
            "type": "NodePort",
            "ports": [
                {
                    "port": "8080",
                    "targetPort": "80",
                    "nodePort": "30080",
                    "protocol": "TCP",
                    "name": "http",
                }
            ],
        }
    ]
    events = json.loads(await s.lcm.workload_events(s.token, TENANT, EDGE_IP, INSTANCE))
    assert events["pods"][0]["podName"] == pod["podname"]
    assert events["pods"][0]["podEventsInfo"][0].startswith("Successfully assigned edge-apps/")
    kpi = json.loads(await s.lcm.query_kpi(s.token, TENANT, EDGE_IP))
    assert kpi == {
        "data": {
            "cpuusage": {"total": 4_000_000_000, "used": 1_500_000_000},
            "memusage": {"total": 8 * 1024 * 1024, "used": 2097152},
        },
        "retCode": 0,
        "message": "success",
        "params": None,
    }

    assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, INSTANCE) == "Success"
    await s.cluster.wait_for(lambda: not s.cluster.pods("edge-apps"))
    assert s.fake.objects("Deployment", "edge-apps") == []
    assert s.fake.objects("Secret", "edge-apps") == []
    with pytest.raises(KeyError):
        s.fake.get("Namespace", "", "edge-apps")
    assert await s.lcm.terminate(s.token, TENANT, EDGE_IP, INSTANCE) == "Success"
    code, message = await _code(s.lcm.query(s.token, TENANT, EDGE_IP, INSTANCE))
    assert code is grpc.StatusCode.NOT_FOUND and "not found" in message


async def test_instantiating_twice_is_idempotent(setup: Setup) -> None:
    s = setup
    await _deploy(s)
    before = {
        (o["kind"], o["metadata"]["name"])
        for k in ("Deployment", "Service", "Secret")
        for o in s.fake.objects(k, "edge-apps")
    }
    assert (
        await s.lcm.instantiate(s.token, TENANT, EDGE_IP, INSTANCE, "pkg-1", PARAMETERS)
        == "Success"
    )
    after = {
        (o["kind"], o["metadata"]["name"])
        for k in ("Deployment", "Service", "Secret")
        for o in s.fake.objects(k, "edge-apps")
    }
    assert before == after and len(after) == 3
    await s.cluster.wait_for(lambda: _running(s))


async def test_parameters_turn_on_guarded_templates(setup: Setup) -> None:
    s = setup
    await _deploy(s, params={"global.mepagent.enabled": "true"})
    (config,) = s.fake.objects("ConfigMap", "edge-apps")
    assert config["data"] == {"appInstanceId": INSTANCE}
    assert config["metadata"]["labels"][INSTANCE_LABEL] == INSTANCE


async def test_a_host_that_is_no_edge_node_is_refused_and_nothing_is_created(setup: Setup) -> None:
    s = setup
    await s.lcm.upload_config(s.token, TENANT, CLOUD_IP, (await _kubeconfig(s)))
    await s.lcm.upload_package(s.token, TENANT, CLOUD_IP, "pkg-1", csar())
    code, message = await _code(
        s.lcm.instantiate(s.token, TENANT, CLOUD_IP, INSTANCE, "pkg-1", PARAMETERS)
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert f"no edge node (label node-role.kubernetes.io/edge) has InternalIP {CLOUD_IP}" in message
    assert "not found" not in message
    assert s.fake.objects("Deployment") == [] and s.fake.objects("Secret") == []


async def _kubeconfig(s: Setup) -> bytes:
    from mep_kubeedge_adapter.emulators.kubeapi import kubeconfig

    return kubeconfig(s.fake.url)


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda s: s.lcm.query(s.token, TENANT, EDGE_IP, "unknown-instance"), "app instance"),
        (lambda s: s.lcm.terminate(s.token, TENANT, EDGE_IP, "unknown-instance"), "app instance"),
        (lambda s: s.lcm.package_status(s.token, TENANT, EDGE_IP, "nope"), "package nope"),
        (lambda s: s.lcm.delete_package(s.token, TENANT, EDGE_IP, "nope"), "package nope"),
        (lambda s: s.lcm.remove_config(s.token, TENANT, "10.0.0.9"), "config for host"),
        (lambda s: s.lcm.query_kpi(s.token, TENANT, "10.0.0.9"), "config for host"),
    ],
)
async def test_unknown_things_are_not_found(setup: Setup, call: Any, what: str) -> None:
    code, message = await _code(call(setup))
    assert code is grpc.StatusCode.NOT_FOUND
    assert what in message and "not found" in message


async def test_an_image_that_cannot_be_pulled_shows_in_workload_events(setup: Setup) -> None:
    s = setup
    s.edge.image_missing("swr.example/edgegallery/missing-image:1")
    await _deploy(s, csar(csar_files(chart(image="missing-image:1"))))
    await s.cluster.wait_for(
        lambda: any(
            ((c.get("state") or {}).get("waiting") or {}).get("reason") == "ImagePullBackOff"
            for p in s.cluster.pods("edge-apps")
            for c in p["status"].get("containerStatuses") or []
        )
    )
    query = json.loads(await s.lcm.query(s.token, TENANT, EDGE_IP, INSTANCE))
    assert query["pods"][0]["podstatus"] == "Pending"
    events = json.loads(await s.lcm.workload_events(s.token, TENANT, EDGE_IP, INSTANCE))
    lines = events["pods"][0]["podEventsInfo"]
    assert any(line.startswith("app: ImagePullBackOff: Back-off pulling image") for line in lines)
    assert not any("Failed to pull" in line for line in lines)  # no reportEvent


async def test_with_report_event_the_kubelets_events_show_and_the_app_starts_later(
    setup: Setup,
) -> None:
    s = setup
    image = "swr.example/edgegallery/missing-image:1"
    s.edge.report_event = True  # EdgeCore's modules.edged.reportEvent: true
    s.edge.image_missing(image)
    await _deploy(s, csar(csar_files(chart(image="missing-image:1"))))

    def backing_off() -> bool:
        events = s.fake.objects("Event", "edge-apps")
        return any(e["reason"] == "BackOff" for e in events)

    await s.cluster.wait_for(backing_off)
    events = json.loads(await s.lcm.workload_events(s.token, TENANT, EDGE_IP, INSTANCE))
    lines = events["pods"][0]["podEventsInfo"]
    assert lines[0].startswith("Successfully assigned edge-apps/")
    assert f'Pulling image "{image}"' in lines
    assert any(line.startswith(f'Failed to pull image "{image}": rpc error') for line in lines)
    assert f'Back-off pulling image "{image}"' in lines
    assert "Started container sidecar" in lines
    s.edge.image_available(image)  # the registry has it now: edged's next pull succeeds
    await s.cluster.wait_for(lambda: _running(s))
    document = json.loads(await s.lcm.query(s.token, TENANT, EDGE_IP, INSTANCE))
    assert document["pods"][0]["podstatus"] == "Running"


async def test_an_offline_edge_keeps_its_pods_and_says_so(setup: Setup) -> None:
    s = setup
    await _deploy(s)
    await s.cluster.wait_for(lambda: _running(s))
    (pod,) = s.cluster.pods("edge-apps")
    s.edge.go_offline()
    document = json.loads(await s.lcm.query(s.token, TENANT, EDGE_IP, INSTANCE))
    assert document["pods"][0]["podstatus"] == "Running"
    assert document["pods"][0]["nodeReady"] == "Unknown"
    # An hour offline: pods without tolerationSeconds are never evicted by the taint manager.
    passes = s.cluster.passes
    s.cluster.elapse(3600)
    await s.cluster.wait_for(lambda: s.cluster.passes > passes)
    (still,) = s.cluster.pods("edge-apps")
    assert still["metadata"]["uid"] == pod["metadata"]["uid"]
    assert "deletionTimestamp" not in still["metadata"]
    s.edge.come_online()

    def ready_again() -> bool:
        (current,) = s.cluster.pods("edge-apps")
        conditions = current["status"].get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    await s.cluster.wait_for(ready_again)
    document = json.loads(await s.lcm.query(s.token, TENANT, EDGE_IP, INSTANCE))
    assert (document["pods"][0]["podname"], document["pods"][0]["nodeReady"]) == (
        pod["metadata"]["name"],
        "True",
    )


@pytest.mark.parametrize("mode", [MetricsMode.ABSENT, MetricsMode.UNAVAILABLE])
async def test_without_metrics_query_has_no_figures_and_kpi_says_why(
    setup: Setup, mode: MetricsMode
) -> None:
    s = setup
    await _deploy(s)
    await s.cluster.wait_for(lambda: _running(s))
    s.fake.metrics.mode = mode
    document = json.loads(await s.lcm.query(s.token, TENANT, EDGE_IP, INSTANCE))
    assert document["cpupercent"] == ""
    assert document["pods"][0]["containers"][0]["metricsusage"]["cpuusage"] == ""
    code, message = await _code(s.lcm.query_kpi(s.token, TENANT, EDGE_IP))
    assert "metrics.k8s.io" in message and "not found" not in message
    assert code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE)


async def test_a_hostile_package_is_refused_and_leaves_nothing(setup: Setup) -> None:
    s = setup
    await s.register_host()
    files = csar_files(chart())
    files["../../etc/cron.d/evil"] = b"* * * * * root true"
    code, message = await _code(
        s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-1", csar(files))
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message == "package refused: entry '../../etc/cron.d/evil' leaves the package (..)"
    data = s.settings.data_dir
    assert list((data / "incoming").iterdir()) == []
    assert list((data / "packages").iterdir()) == []
    code, _ = await _code(s.lcm.package_status(s.token, TENANT, EDGE_IP, "pkg-1"))
    assert code is grpc.StatusCode.NOT_FOUND


async def test_a_kubeconfig_that_would_run_a_program_is_refused(setup: Setup) -> None:
    s = setup
    evil = (
        b"clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
        b"users: [{name: u, user: {exec: {command: /bin/sh}}}]\n"
        b"contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    code, message = await _code(s.lcm.upload_config(s.token, TENANT, EDGE_IP, evil))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "'exec'" in message
    assert list((s.settings.data_dir / "kubeconfigs").iterdir()) == []


async def test_kubeconfigs_are_stored_0600(setup: Setup) -> None:
    s = setup
    await s.register_host()
    (stored,) = list((s.settings.data_dir / "kubeconfigs").iterdir())
    assert stored.stat().st_mode & 0o777 == 0o600
    assert s.settings.data_dir.stat().st_mode & 0o777 == 0o700


async def test_state_survives_a_restart(setup: Setup, pki: Pki) -> None:
    s = setup
    await _deploy(s)
    await s.cluster.wait_for(lambda: _running(s))
    await s.plugin.__aexit__(None, None, None)
    async with MecmPlugin(s.settings, clock=s.clock) as again, lcm_client(again, pki) as lcm:
        assert await lcm.package_status(s.token, TENANT, EDGE_IP, "pkg-1") == "uploaded"
        document = json.loads(await lcm.query(s.token, TENANT, EDGE_IP, INSTANCE))
        assert document["pods"][0]["podstatus"] == "Running"
        assert await lcm.terminate(s.token, TENANT, EDGE_IP, INSTANCE) == "Success"
    await s.cluster.wait_for(lambda: not s.cluster.pods("edge-apps"))


async def test_same_instance_waits_and_other_instances_proceed(setup: Setup) -> None:
    s = setup
    await _deploy(s)
    lcm = s.plugin.lcm
    assert lcm is not None
    other = "9a8b7c6d-0000-4000-8000-000000000001"
    async with lcm._locks.hold(f"instance:{INSTANCE}"):
        blocked = asyncio.create_task(s.lcm.terminate(s.token, TENANT, EDGE_IP, INSTANCE))
        status = await s.lcm.instantiate(
            s.token, TENANT, EDGE_IP, other, "pkg-1", {**PARAMETERS, "appnamespace": "other-apps"}
        )
        assert status == "Success"
        assert not blocked.done()
        assert s.fake.objects("Deployment", "edge-apps") != []
    assert await blocked == "Success"
    assert (
        s.fake.get("Secret", "other-apps", f"{other}-aksk")["metadata"]["labels"][INSTANCE_LABEL]
        == other
    )


async def test_uploading_a_package_streams_it_in_1kib_chunks_to_disk(
    setup: Setup, tmp_path: Path
) -> None:
    s = setup
    await s.register_host()
    path = tmp_path / "app.csar"
    path.write_bytes(csar())
    assert await s.lcm.upload_package(s.token, TENANT, EDGE_IP, "pkg-2", path) == "Success"
    assert await s.lcm.delete_package(s.token, TENANT, EDGE_IP, "pkg-2") == "Success"
    assert list((s.settings.data_dir / "packages").iterdir()) == []
