"""The fake through ``kubernetes.dynamic.DynamicClient``, and its ``metrics.k8s.io``.

The dynamic client builds itself from discovery, so these tests also pin that discovery is
complete. metrics.k8s.io is tested in its three states: served, not registered (404), and
registered with metrics-server down (the aggregator's 503).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, dynamic

from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer, MetricsMode

NS = "default"
METRICS = "metrics.k8s.io"


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def dynamic_client(api: client.ApiClient, tmp_path: Path) -> dynamic.DynamicClient:
    """A dynamic client with its own discovery cache (the default file is shared per host)."""
    return dynamic.DynamicClient(  # type: ignore[no-untyped-call]
        api, cache_file=str(tmp_path / "discovery.json")
    )


def running_pod(fake: FakeApiServer, name: str, labels: dict[str, str]) -> None:
    fake.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "nginx:1.25"}]},
        }
    )
    fake.modify("Pod", NS, name, {"status": {"phase": "Running"}})


async def test_dynamic_client_finds_and_drives_every_kind(
    fake_apiserver: FakeApiServer, kube_client: client.ApiClient, tmp_path: Path
) -> None:
    dyn = await call(dynamic_client, kube_client, tmp_path)
    deployments = await call(dyn.resources.get, api_version="apps/v1", kind="Deployment")
    assert deployments.namespaced and set(deployments.subresources) == {"status"}
    nodes = await call(dyn.resources.get, api_version="v1", kind="Node")
    assert not nodes.namespaced
    pods = await call(dyn.resources.get, api_version="v1", kind="Pod")
    assert pods.subresources.keys() == {
        "status",
        "binding",
    }
    devices = await call(
        dyn.resources.get, api_version="devices.kubeedge.io/v1beta1", kind="Device"
    )
    assert devices.namespaced
    pod_metrics = await call(dyn.resources.get, api_version=f"{METRICS}/v1beta1", kind="PodMetrics")
    assert pod_metrics.verbs == ["get", "list"]

    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app.kubernetes.io/instance": "i-1"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
            },
        },
    }
    created = await call(deployments.create, body=body, namespace=NS)
    assert created.spec.replicas == 1
    listed = await call(
        deployments.get, namespace=NS, label_selector="app.kubernetes.io/instance=i-1"
    )
    assert [d.metadata.name for d in listed.items] == ["web"]
    status = await call(
        deployments.status.patch,
        name="web",
        namespace=NS,
        body={"status": {"readyReplicas": 1}},
        content_type="application/merge-patch+json",
    )
    assert status.status.readyReplicas == 1
    # The dynamic client's default patch type for a dict is strategic merge.
    patched = await call(
        deployments.patch, name="web", namespace=NS, body={"spec": {"replicas": 2}}
    )
    assert (patched.spec.replicas, patched.metadata.generation) == (2, 2)
    await call(deployments.delete, name="web", namespace=NS)
    with pytest.raises(dynamic.exceptions.NotFoundError):
        await call(deployments.get, name="web", namespace=NS)

    node = await call(
        nodes.create, body={"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
    )
    assert node.metadata.name == "n1" and node.metadata.namespace is None
    events = []
    for event in await call(
        lambda: list(nodes.watch(resource_version=node.metadata.resourceVersion, timeout=1))
    ):
        events.append(event["type"])
    assert events == []  # nothing after the node's own version, then the server-side timeout


async def test_metrics_served(fake_apiserver: FakeApiServer, kube_client: client.ApiClient) -> None:
    fake_apiserver.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/edge": ""}},
        }
    )
    running_pod(fake_apiserver, "web-1", {"app": "web"})
    running_pod(fake_apiserver, "db-1", {"app": "db"})
    fake_apiserver.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pending"},
            "spec": {"containers": [{"name": "app", "image": "x:1"}]},
        }
    )
    metrics = fake_apiserver.metrics
    metrics.set_node("n1", {"cpu": "123456789n", "memory": "1048576Ki"})
    metrics.set_pod(NS, "web-1", {"app": {"cpu": "5m", "memory": "20Mi"}})
    metrics.set_pod(NS, "db-1", {"app": {"cpu": "1", "memory": "1Gi"}})
    metrics.set_pod(NS, "pending", {"app": {"cpu": "1m", "memory": "1Mi"}})
    custom = client.CustomObjectsApi(kube_client)

    nodes = await call(custom.list_cluster_custom_object, METRICS, "v1beta1", "nodes")
    assert nodes["kind"] == "NodeMetricsList"
    assert nodes["metadata"] == {}
    [item] = nodes["items"]
    assert item["usage"] == {"cpu": "123456789n", "memory": "1048576Ki"}
    assert item["metadata"]["labels"] == {"node-role.kubernetes.io/edge": ""}
    assert item["window"] and item["timestamp"]

    pods = await call(
        custom.list_namespaced_custom_object,
        METRICS,
        "v1beta1",
        NS,
        "pods",
        label_selector="app=web",
    )
    assert [(p["metadata"]["name"], p["containers"]) for p in pods["items"]] == [
        ("web-1", [{"name": "app", "usage": {"cpu": "5m", "memory": "20Mi"}}])
    ]
    everywhere = await call(custom.list_cluster_custom_object, METRICS, "v1beta1", "pods")
    # No metrics for a pod that is not running, whatever was recorded.
    assert [p["metadata"]["name"] for p in everywhere["items"]] == ["db-1", "web-1"]

    one = await call(custom.get_namespaced_custom_object, METRICS, "v1beta1", NS, "pods", "db-1")
    assert one["kind"] == "PodMetrics" and one["apiVersion"] == f"{METRICS}/v1beta1"
    with pytest.raises(client.ApiException) as exc:
        await call(custom.get_namespaced_custom_object, METRICS, "v1beta1", NS, "pods", "pending")
    assert exc.value.status == 404
    assert (
        json.loads(exc.value.body or "")["message"] == f'pods.{METRICS} "default/pending" not found'
    )
    with pytest.raises(client.ApiException) as exc:
        await call(custom.get_cluster_custom_object, METRICS, "v1beta1", "nodes", "n9")
    assert exc.value.status == 404

    # Read-only: no watch, no writes.
    with pytest.raises(client.ApiException) as exc:
        await call(custom.list_cluster_custom_object, METRICS, "v1beta1", "nodes", watch=True)
    assert exc.value.status == 405


async def test_metrics_not_registered(tmp_path: Path) -> None:
    async with FakeApiServer(metrics=MetricsMode.ABSENT) as fake:
        with client.ApiClient(client.Configuration(host=fake.url)) as api:
            groups = await call(client.ApisApi(api).get_api_versions)
            assert METRICS not in {g.name for g in groups.groups}
            custom = client.CustomObjectsApi(api)
            for path in ((METRICS, "v1beta1", "nodes"),):
                with pytest.raises(client.ApiException) as exc:
                    await call(custom.list_cluster_custom_object, *path)
                assert exc.value.status == 404
                assert json.loads(exc.value.body or "")["message"] == (
                    "the server could not find the requested resource"
                )
            dyn = await call(dynamic_client, api, tmp_path)
            with pytest.raises(dynamic.exceptions.ResourceNotFoundError):
                await call(dyn.resources.get, api_version=f"{METRICS}/v1beta1", kind="NodeMetrics")
            api.rest_client.close()


async def test_metrics_registered_but_unavailable(tmp_path: Path) -> None:
    async with FakeApiServer(metrics=MetricsMode.UNAVAILABLE) as fake:
        with client.ApiClient(client.Configuration(host=fake.url)) as api:
            groups = await call(client.ApisApi(api).get_api_versions)
            assert METRICS in {g.name for g in groups.groups}  # the APIService is listed
            custom = client.CustomObjectsApi(api)
            with pytest.raises(client.ApiException) as exc:
                await call(custom.list_cluster_custom_object, METRICS, "v1beta1", "nodes")
            assert exc.value.status == 503
            assert exc.value.body == "service unavailable\n"  # the aggregator's plain text
            with pytest.raises(client.ApiException) as exc:
                await call(custom.get_api_resources, METRICS, "v1beta1")
            assert exc.value.status == 503

            # Discovery skips the unavailable group version instead of failing.
            dyn = await call(dynamic_client, api, tmp_path)
            with pytest.raises(dynamic.exceptions.ResourceNotFoundError):
                await call(dyn.resources.get, api_version=f"{METRICS}/v1beta1", kind="NodeMetrics")

            # metrics-server comes back.
            fake.metrics.mode = MetricsMode.SERVED
            listed = await call(custom.list_cluster_custom_object, METRICS, "v1beta1", "nodes")
            assert listed["items"] == []
            api.rest_client.close()
