"""The cluster component behind the fake: controllers, scheduler, EdgeCore, metrics-server.

Driven as the MECM plugin will drive a real KubeEdge cluster: objects are created through the
real ``kubernetes`` client, and what the cluster does is read back through it. No sleeps:
every transition is awaited with :meth:`Cluster.wait_for` or driven with explicit passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client, watch

from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer
from mep_kubeedge_adapter.emulators.kubeapi.cluster import Cluster

from .conftest import WatchThread

NS = "default"
EDGE_IP = "192.168.10.21"


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
async def cluster(fake_apiserver: FakeApiServer) -> AsyncIterator[Cluster]:
    """An automatic cluster: edge node ``edge-1`` (reportEvent off), cloud ``master``."""
    async with Cluster(fake_apiserver) as running:
        running.add_edge_node("edge-1", EDGE_IP)
        running.add_cloud_node("master", "192.168.10.2", control_plane=True)
        running.add_cloud_node("worker", "192.168.10.3")
        yield running
        assert running.errors == []


@pytest.fixture
def core(kube_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_client)


@pytest.fixture
def apps(kube_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube_client)


def app_deployment(
    name: str,
    *,
    node: str = "edge-1",
    image: str = "nginx:1.25",
    replicas: int = 1,
    tolerate_offline: bool = True,
) -> dict[str, Any]:
    """A Deployment placed as the MECM plugin places apps on an edge node."""
    spec: dict[str, Any] = {
        "nodeSelector": {"kubernetes.io/hostname": node},
        "containers": [{"name": "app", "image": image}],
    }
    if tolerate_offline:
        spec["tolerations"] = [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def waiting_reason(pod: dict[str, Any]) -> str | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        waiting = status.get("state", {}).get("waiting")
        if waiting:
            return str(waiting.get("reason"))
    return None


def reasons(fake: FakeApiServer, pod_name: str) -> list[str]:
    return [
        e["reason"]
        for e in fake.objects("Event", NS)
        if e["involvedObject"]["kind"] == "Pod" and e["involvedObject"]["name"] == pod_name
    ]


async def test_edge_nodes_register_as_edgecore_does(
    cluster: Cluster, core: client.CoreV1Api
) -> None:
    edge = await call(core.read_node, "edge-1")
    labels = edge.metadata.labels
    assert labels["node-role.kubernetes.io/edge"] == ""
    assert labels["node-role.kubernetes.io/agent"] == ""
    assert labels["kubernetes.io/hostname"] == "edge-1"
    assert [(a.type, a.address) for a in edge.status.addresses] == [
        ("InternalIP", EDGE_IP),
        ("Hostname", "edge-1"),
    ]
    assert edge.status.daemon_endpoints.kubelet_endpoint.port == 10350
    assert edge.status.allocatable == {"cpu": "4", "memory": "8Gi", "pods": "110"}
    ready = next(c for c in edge.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "KubeletReady")
    assert "-kubeedge-" in edge.status.node_info.kubelet_version

    edges = await call(core.list_node, label_selector="node-role.kubernetes.io/edge")
    assert [n.metadata.name for n in edges.items] == ["edge-1"]
    master = await call(core.read_node, "master")
    assert master.status.daemon_endpoints.kubelet_endpoint.port == 10250
    assert [t.key for t in master.spec.taints] == ["node-role.kubernetes.io/control-plane"]


async def test_deployment_runs_on_the_edge_node(
    fake_apiserver: FakeApiServer,
    cluster: Cluster,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
) -> None:
    listed = await call(core.list_namespaced_pod, NS)
    w = watch.Watch()  # type: ignore[no-untyped-call]
    pods = WatchThread(
        lambda: w.stream(  # type: ignore[no-untyped-call]
            core.list_namespaced_pod,
            NS,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=10,
        ),
        w,
    )
    await fake_apiserver.wait_for_watches(1)
    await call(apps.create_namespaced_deployment, NS, app_deployment("web", replicas=2))
    await cluster.wait_for(lambda: cluster.running(NS, "app=web") == 2)

    running = await call(core.list_namespaced_pod, NS, label_selector="app=web")
    for pod in running.items:
        assert pod.spec.node_name == "edge-1"
        assert pod.status.phase == "Running"
        assert pod.status.host_ip == EDGE_IP and pod.status.pod_ip
        [status] = pod.status.container_statuses
        assert (status.ready, status.started, status.restart_count) == (True, True, 0)
        assert status.state.running.started_at is not None
        assert status.container_id.startswith("containerd://")
        conditions = {c.type: c.status for c in pod.status.conditions}
        assert conditions == {
            "PodReadyToStartContainers": "True",
            "Initialized": "True",
            "Ready": "True",
            "ContainersReady": "True",
            "PodScheduled": "True",
        }
        owner = pod.metadata.owner_references[0]
        assert (owner.kind, owner.controller) == ("ReplicaSet", True)

    # Every stage of one pod is a stored change a watch sees, in order.
    name = running.items[0].metadata.name
    stages: list[str] = []
    while not stages or stages[-1] != "Running":
        event = await pods.next()
        assert isinstance(event, dict)
        obj = event["raw_object"]
        if obj["metadata"]["name"] != name:
            continue
        phase = obj["status"]["phase"]
        stage = waiting_reason(obj) or ("bound" if obj["spec"].get("nodeName") else "new")
        stages.append(phase if phase == "Running" else stage)
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == [
        "new",
        "bound",
        "ContainerCreating",
        "Running",
    ]
    w.stop()  # type: ignore[no-untyped-call]
    fake_apiserver.drop_watches(abrupt=False)
    await pods.join()

    await cluster.wait_for(
        lambda: fake_apiserver.get("Deployment", NS, "web")["status"].get("availableReplicas") == 2
    )
    deployment = await call(apps.read_namespaced_deployment, "web", NS)
    assert deployment.status.ready_replicas == 2
    assert deployment.status.observed_generation == 1
    available = next(c for c in deployment.status.conditions if c.type == "Available")
    assert available.status == "True"


async def test_unschedulable_pod_stays_pending_with_failed_scheduling(
    fake_apiserver: FakeApiServer, cluster: Cluster, apps: client.AppsV1Api
) -> None:
    await call(apps.create_namespaced_deployment, NS, app_deployment("nowhere", node="edge-9"))
    await cluster.wait_for(lambda: "FailedScheduling" in _all_reasons(fake_apiserver))
    [pod] = cluster.pods(NS, "app=nowhere")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    condition = pod["status"]["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "PodScheduled",
        "False",
        "Unschedulable",
    )
    assert condition["message"] == (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match Pod's node "
        "affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful "
        "for scheduling."
    )
    event = next(e for e in fake_apiserver.objects("Event") if e["reason"] == "FailedScheduling")
    assert event["type"] == "Warning" and event["message"] == condition["message"]

    # A node that fits appears: the scheduler retries.
    cluster.add_edge_node("edge-9", "192.168.10.29")
    await cluster.wait_for(lambda: cluster.running(NS, "app=nowhere") == 1)


def _all_reasons(fake: FakeApiServer) -> set[str]:
    return {e["reason"] for e in fake.objects("Event")}


async def test_missing_image_backs_off_until_it_appears(
    fake_apiserver: FakeApiServer, cluster: Cluster, apps: client.AppsV1Api
) -> None:
    edge = cluster.node("edge-1")
    edge.image_missing("registry.example/app:bad")
    await call(
        apps.create_namespaced_deployment,
        NS,
        app_deployment("broken", image="registry.example/app:bad"),
    )
    await cluster.wait_for(
        lambda: [waiting_reason(p) for p in cluster.pods(NS, "app=broken")] == ["ImagePullBackOff"]
    )
    [pod] = cluster.pods(NS, "app=broken")
    assert pod["status"]["phase"] == "Pending"
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["message"] == 'Back-off pulling image "registry.example/app:bad"'
    # reportEvent is off: the only pod event is the scheduler's.
    assert reasons(fake_apiserver, pod["metadata"]["name"]) == ["Scheduled"]

    edge.image_available("registry.example/app:bad")
    await cluster.wait_for(lambda: cluster.running(NS, "app=broken") == 1)


async def test_kubelet_events_only_with_report_event(
    fake_apiserver: FakeApiServer, cluster: Cluster, apps: client.AppsV1Api
) -> None:
    cluster.add_edge_node("edge-2", "192.168.10.22", report_event=True)
    for node in ("edge-1", "edge-2"):
        cluster.node(node).image_missing("app:missing")
        await call(apps.create_namespaced_deployment, NS, app_deployment(f"ok-{node}", node=node))
        await call(
            apps.create_namespaced_deployment,
            NS,
            app_deployment(f"bad-{node}", node=node, image="app:missing"),
        )
    await cluster.wait_for(
        lambda: (
            cluster.running(NS, "app in (ok-edge-1,ok-edge-2)") == 2
            and all(
                waiting_reason(p) == "ImagePullBackOff"
                for p in cluster.pods(NS, "app in (bad-edge-1,bad-edge-2)")
            )
        )
    )

    def pod_reasons(app: str) -> list[str]:
        [pod] = cluster.pods(NS, f"app={app}")
        return reasons(fake_apiserver, pod["metadata"]["name"])

    assert pod_reasons("ok-edge-1") == ["Scheduled"]
    assert pod_reasons("bad-edge-1") == ["Scheduled"]
    assert pod_reasons("ok-edge-2") == ["Scheduled", "Pulling", "Pulled", "Created", "Started"]
    assert pod_reasons("bad-edge-2") == [
        "Scheduled",
        "Pulling",
        "Failed",
        "Failed",
        "BackOff",
        "Failed",
    ]
    [pulled] = [e for e in fake_apiserver.objects("Event") if e["reason"] == "Pulled"]
    assert pulled["source"] == {"component": "kubelet", "host": "edge-2"}
    assert pulled["involvedObject"]["fieldPath"] == "spec.containers{app}"


async def test_offline_edge_freezes_pods_and_evicts_the_intolerant(
    fake_apiserver: FakeApiServer, cluster: Cluster, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    await call(apps.create_namespaced_deployment, NS, app_deployment("pinned"))
    await call(
        apps.create_namespaced_deployment,
        NS,
        app_deployment("default-tolerations", tolerate_offline=False),
    )
    await cluster.wait_for(lambda: cluster.running(NS) == 2)
    [before] = cluster.pods(NS, "app=pinned")

    edge = cluster.node("edge-1")
    edge.go_offline()
    node = await call(core.read_node, "edge-1")
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason, ready.message) == (
        "Unknown",
        "NodeStatusUnknown",
        "Kubelet stopped posting node status.",
    )
    assert {(t.key, t.effect) for t in node.spec.taints} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    [frozen] = cluster.pods(NS, "app=pinned")
    assert frozen["status"]["phase"] == "Running"
    assert frozen["status"]["containerStatuses"] == before["status"]["containerStatuses"]
    assert {c["type"]: c["status"] for c in frozen["status"]["conditions"]}["Ready"] == "False"

    # 300 s later (DefaultTolerationSeconds) the pod without our tolerations is evicted; it
    # stays Terminating while the node is away, and its replacement cannot be scheduled.
    cluster.elapse(301)
    await cluster.wait_for(
        lambda: (
            any(
                p["metadata"].get("deletionTimestamp")
                for p in cluster.pods(NS, "app=default-tolerations")
            )
            and "FailedScheduling" in _all_reasons(fake_apiserver)
        )
    )
    assert not cluster.pods(NS, "app=pinned")[0]["metadata"].get("deletionTimestamp")
    assert len(cluster.pods(NS, "app=default-tolerations")) == 2

    edge.come_online()
    await cluster.wait_for(lambda: cluster.running(NS) == 2 and len(cluster.pods(NS)) == 2)
    node = await call(core.read_node, "edge-1")
    assert node.spec.taints is None
    assert next(c for c in node.status.conditions if c.type == "Ready").status == "True"


async def test_metrics_follow_running_pods_on_online_nodes(
    fake_apiserver: FakeApiServer,
    cluster: Cluster,
    apps: client.AppsV1Api,
    kube_client: client.ApiClient,
) -> None:
    custom = client.CustomObjectsApi(kube_client)
    cluster.set_usage("250m", "64Mi", labels={"app": "busy"})
    cluster.node("edge-1").image_missing("app:missing")
    await call(apps.create_namespaced_deployment, NS, app_deployment("busy"))
    await call(apps.create_namespaced_deployment, NS, app_deployment("idle"))
    await call(apps.create_namespaced_deployment, NS, app_deployment("stuck", image="app:missing"))
    await cluster.wait_for(lambda: cluster.running(NS) == 2)
    await cluster.wait_for(lambda: len(fake_apiserver.metrics.pod_keys()) == 2)

    pods = await call(custom.list_namespaced_custom_object, "metrics.k8s.io", "v1beta1", NS, "pods")
    usage = {p["metadata"]["labels"]["app"]: p["containers"][0]["usage"] for p in pods["items"]}
    assert usage == {
        "busy": {"cpu": "250000000n", "memory": "65536Ki"},
        "idle": {"cpu": "2000000n", "memory": "12288Ki"},
    }
    node = await call(
        custom.get_cluster_custom_object, "metrics.k8s.io", "v1beta1", "nodes", "edge-1"
    )
    # The node's own 250m/512Mi plus its two running pods.
    assert node["usage"] == {"cpu": "502000000n", "memory": "602112Ki"}

    cluster.node("edge-1").go_offline()
    await cluster.wait_for(lambda: not fake_apiserver.metrics.pod_keys())
    with pytest.raises(client.ApiException) as exc:
        await call(custom.get_cluster_custom_object, "metrics.k8s.io", "v1beta1", "nodes", "edge-1")
    assert exc.value.status == 404


async def test_garbage_collection_follows_the_propagation_policy(
    fake_apiserver: FakeApiServer, cluster: Cluster, apps: client.AppsV1Api
) -> None:
    for name in ("bg", "fg", "orphan"):
        await call(apps.create_namespaced_deployment, NS, app_deployment(name))
    await cluster.wait_for(lambda: cluster.running(NS) == 3)

    await call(apps.delete_namespaced_deployment, "bg", NS)  # Background: the default
    await cluster.wait_for(lambda: not cluster.pods(NS, "app=bg"))
    assert not [
        rs
        for rs in fake_apiserver.objects("ReplicaSet")
        if rs["metadata"]["name"].startswith("bg-")
    ]

    held = await call(apps.delete_namespaced_deployment, "fg", NS, propagation_policy="Foreground")
    assert held["metadata"]["finalizers"] == ["foregroundDeletion"]
    await cluster.wait_for(
        lambda: (
            not [d for d in fake_apiserver.objects("Deployment") if d["metadata"]["name"] == "fg"]
        )
    )
    assert not cluster.pods(NS, "app=fg")

    await call(apps.delete_namespaced_deployment, "orphan", NS, propagation_policy="Orphan")
    await cluster.wait_for(
        lambda: [d["metadata"]["name"] for d in fake_apiserver.objects("Deployment")] == []
    )
    [rs] = fake_apiserver.objects("ReplicaSet")
    assert "ownerReferences" not in rs["metadata"]
    assert cluster.running(NS, "app=orphan") == 1


async def test_statefulset_and_daemonset(
    fake_apiserver: FakeApiServer, cluster: Cluster, apps: client.AppsV1Api
) -> None:
    cluster.add_edge_node("edge-2", "192.168.10.22")
    template = {
        "metadata": {"labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db", "image": "postgres:16"}]},
    }
    await call(
        apps.create_namespaced_stateful_set,
        NS,
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 3,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": template,
            },
        },
    )
    agent = {
        "metadata": {"labels": {"app": "agent"}},
        "spec": {
            "nodeSelector": {"node-role.kubernetes.io/edge": ""},
            "containers": [{"name": "agent", "image": "agent:1"}],
        },
    }
    await call(
        apps.create_namespaced_daemon_set,
        NS,
        {
            "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": agent},
        },
    )
    await cluster.wait_for(
        lambda: cluster.running(NS, "app=db") == 3 and cluster.running(NS, "app=agent") == 2
    )
    assert sorted(p["metadata"]["name"] for p in cluster.pods(NS, "app=db")) == [
        "db-0",
        "db-1",
        "db-2",
    ]
    assert sorted(p["spec"]["nodeName"] for p in cluster.pods(NS, "app=agent")) == [
        "edge-1",
        "edge-2",
    ]
    await cluster.wait_for(
        lambda: fake_apiserver.get("DaemonSet", NS, "agent")["status"].get("numberReady") == 2
    )


async def test_manual_mode_moves_only_when_stepped(fake_apiserver: FakeApiServer) -> None:
    cluster = Cluster(fake_apiserver, auto=False)
    cluster.start()
    cluster.add_edge_node("edge-1", EDGE_IP)
    fake_apiserver.create(app_deployment("web"))
    assert cluster.pods(NS) == []
    assert cluster.step() is True  # ReplicaSet, pod, binding, accepted by edged
    [pod] = cluster.pods(NS)
    assert waiting_reason(pod) == "ContainerCreating"
    passes = await cluster.settle()
    assert passes >= 2
    assert cluster.running(NS) == 1
    assert cluster.step() is False
    await cluster.stop()
