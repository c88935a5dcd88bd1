"""The fake API server's built-in kinds (core/v1, apps/v1) through the real typed clients.

Each test pins a documented behaviour of the real API server that the MECM plugin will meet:
namespaces as objects, the status subresource split, generation, field selectors, the three
patch types, delete propagation and graceful pod deletion, defaults and validation.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes import client, watch

from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer

from .conftest import WatchThread

NS = "default"


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def pod(name: str, *, labels: dict[str, str] | None = None, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def deployment(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx:1.25"},
                        {"name": "side", "image": "busybox:1.36"},
                    ]
                },
            },
        },
    }


def error_body(exc: pytest.ExceptionInfo[client.ApiException]) -> dict[str, Any]:
    body = json.loads(exc.value.body or "")
    assert isinstance(body, dict)
    assert body["kind"] == "Status"
    return body


@pytest.fixture
def core(kube_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_client)


@pytest.fixture
def apps(kube_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube_client)


async def test_discovery_lists_core_apps_and_subresources(kube_client: client.ApiClient) -> None:
    core_list = await call(client.CoreV1Api(kube_client).get_api_resources)
    by_name = {r.name: r for r in core_list.resources}
    assert {"pods", "nodes", "namespaces", "services", "secrets", "configmaps", "events"} <= set(
        by_name
    )
    assert by_name["pods"].namespaced and not by_name["nodes"].namespaced
    assert not by_name["namespaces"].namespaced
    assert by_name["pods/status"].verbs == ["get", "patch", "update"]
    assert by_name["pods/binding"].kind == "Binding"
    assert "po" in by_name["pods"].short_names
    assert "watch" in by_name["events"].verbs

    apps_list = await call(client.AppsV1Api(kube_client).get_api_resources)
    names = {r.name for r in apps_list.resources}
    assert {"deployments", "deployments/status", "replicasets", "statefulsets", "daemonsets"} <= (
        names
    )
    groups = await call(client.ApisApi(kube_client).get_api_versions)
    assert {"apps", "devices.kubeedge.io", "metrics.k8s.io"} <= {g.name for g in groups.groups}


async def test_namespaces_are_objects(core: client.CoreV1Api) -> None:
    listed = await call(core.list_namespace)
    assert [n.metadata.name for n in listed.items] == [
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
        "lab",
        "other",
        "plant",
        "plant-1",
        "plant-2",
    ]
    default = await call(core.read_namespace, "default")
    assert default.status.phase == "Active"
    assert default.metadata.labels == {"kubernetes.io/metadata.name": "default"}
    assert default.spec.finalizers == ["kubernetes"]

    # NamespaceLifecycle: no content in a namespace that does not exist.
    with pytest.raises(client.ApiException) as exc:
        await call(core.create_namespaced_pod, "nope", pod("p"))
    assert exc.value.status == 404
    assert error_body(exc)["message"] == 'namespaces "nope" not found'

    with pytest.raises(client.ApiException) as exc:
        await call(core.delete_namespace, "kube-system")
    assert exc.value.status == 403
    assert error_body(exc)["reason"] == "Forbidden"


async def test_deleting_a_namespace_removes_its_contents(
    fake_apiserver: FakeApiServer, core: client.CoreV1Api, kube_client: client.ApiClient
) -> None:
    await call(core.create_namespace, {"metadata": {"name": "app-1"}})
    await call(core.create_namespaced_config_map, "app-1", {"metadata": {"name": "c"}})
    rv = fake_apiserver.resource_version
    w = watch.Watch()  # type: ignore[no-untyped-call]
    events = WatchThread(
        lambda: w.stream(  # type: ignore[no-untyped-call]
            core.list_namespace, resource_version=rv, timeout_seconds=5
        ),
        w,
    )
    await fake_apiserver.wait_for_watches(1)
    deleted = await call(core.delete_namespace, "app-1")  # typed as V1Status: a dict here
    assert deleted["status"]["phase"] == "Terminating"
    assert deleted["metadata"]["deletionTimestamp"]
    seen: list[tuple[str, ...]] = []
    while len(seen) < 2:
        event = await events.next()
        assert isinstance(event, dict)
        seen.append((event["type"], event["raw_object"]["status"]["phase"]))
    assert seen == [("MODIFIED", "Terminating"), ("DELETED", "Terminating")]
    assert fake_apiserver.objects("ConfigMap", "app-1") == []
    w.stop()  # type: ignore[no-untyped-call]
    fake_apiserver.drop_watches(abrupt=False)
    await events.join()


async def test_a_terminating_namespace_refuses_new_content(kube_client: client.ApiClient) -> None:
    async with FakeApiServer(finalize_namespaces=False) as fake:
        with client.ApiClient(client.Configuration(host=fake.url)) as api:
            core = client.CoreV1Api(api)
            await call(core.create_namespace, {"metadata": {"name": "going"}})
            await call(core.delete_namespace, "going")
            with pytest.raises(client.ApiException) as exc:
                await call(core.create_namespaced_pod, "going", pod("p"))
            assert exc.value.status == 403
            body = error_body(exc)
            assert body["details"]["causes"][0]["reason"] == "NamespaceTerminating"
            fake.finalize_namespace("going")
            assert "going" not in {n["metadata"]["name"] for n in fake.objects("Namespace")}
            api.rest_client.close()


async def test_pod_defaults_and_status_subresource(
    fake_apiserver: FakeApiServer, core: client.CoreV1Api
) -> None:
    body = pod("p1")
    body["status"] = {"phase": "Running"}  # ignored on create
    created = await call(core.create_namespaced_pod, NS, body)
    assert created.status.phase == "Pending"
    assert created.spec.scheduler_name == "default-scheduler"
    assert created.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert {(t.key, t.toleration_seconds) for t in created.spec.tolerations} == {
        ("node.kubernetes.io/not-ready", 300),
        ("node.kubernetes.io/unreachable", 300),
    }
    assert created.metadata.generation is None  # pods keep no generation (before 1.33)

    # A write to the main resource ignores status ...
    replaced = created.to_dict()
    replaced["metadata"]["labels"] = {"x": "y"}
    replaced["status"]["phase"] = "Running"
    after = await call(core.replace_namespaced_pod, "p1", NS, _camel(replaced))
    assert after.status.phase == "Pending"
    assert after.metadata.labels == {"x": "y"}

    # ... and a write to /status changes only status.
    status_write = {
        "metadata": {"name": "p1", "labels": {"x": "z"}},
        "spec": {"containers": [{"name": "other", "image": "x"}]},
        "status": {"phase": "Running", "podIP": "10.88.0.5"},
    }
    after = await call(core.replace_namespaced_pod_status, "p1", NS, status_write)
    assert after.status.phase == "Running"
    assert after.metadata.labels == {"x": "y"}
    assert [c.name for c in after.spec.containers] == ["app"]
    patched = await call(
        core.patch_namespaced_pod_status, "p1", NS, {"status": {"phase": "Succeeded"}}
    )
    assert patched.status.phase == "Succeeded"
    assert patched.status.pod_ip == "10.88.0.5"


def _camel(obj: dict[str, Any]) -> dict[str, Any]:
    """A typed model's ``to_dict`` back to wire names, via the client's own serializer."""
    serialized = client.ApiClient().sanitize_for_serialization(
        client.V1Pod.from_dict(obj)  # type: ignore[no-untyped-call]
    )
    assert isinstance(serialized, dict)
    return serialized


async def test_deployment_generation_and_status(apps: client.AppsV1Api) -> None:
    created = await call(apps.create_namespaced_deployment, NS, deployment("web"))
    assert created.spec.replicas == 1
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.status is not None and created.status.replicas is None

    scaled = await call(apps.patch_namespaced_deployment, "web", NS, {"spec": {"replicas": 3}})
    assert (scaled.spec.replicas, scaled.metadata.generation) == (3, 2)
    labelled = await call(
        apps.patch_namespaced_deployment, "web", NS, {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled.metadata.generation == 2  # metadata is not spec

    status = await call(
        apps.patch_namespaced_deployment_status,
        "web",
        NS,
        {"status": {"replicas": 3, "observedGeneration": 2}, "spec": {"replicas": 9}},
    )
    assert (status.status.replicas, status.spec.replicas, status.metadata.generation) == (3, 3, 2)
    same = await call(apps.patch_namespaced_deployment, "web", NS, {"spec": {"replicas": 3}})
    assert same.metadata.resource_version == status.metadata.resource_version  # no-op write


async def test_validation_answers_422(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    with pytest.raises(client.ApiException) as exc:
        await call(core.create_namespaced_pod, NS, pod("Bad_Name"))
    assert exc.value.status == 422
    body = error_body(exc)
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "Pod"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "RFC 1123 subdomain" in body["message"]

    mismatched = deployment("web", labels={"app": "other"})
    with pytest.raises(client.ApiException) as exc:
        await call(apps.create_namespaced_deployment, NS, mismatched)
    assert exc.value.status == 422
    body = error_body(exc)
    assert body["message"].startswith('Deployment.apps "web" is invalid: spec.template.metadata')
    assert "`selector` does not match template `labels`" in body["message"]

    no_image = pod("p")
    del no_image["spec"]["containers"][0]["image"]
    with pytest.raises(client.ApiException) as exc:
        await call(core.create_namespaced_pod, NS, no_image)
    assert error_body(exc)["details"]["causes"][0]["field"] == "spec.containers[0].image"

    with pytest.raises(client.ApiException) as exc:
        await call(core.create_namespace, {"metadata": {"name": "a.b"}})  # a label, not a domain
    assert exc.value.status == 422


async def test_service_cluster_ip_secret_data(core: client.CoreV1Api) -> None:
    svc: dict[str, Any] = {
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    created = await call(core.create_namespaced_service, NS, svc)
    ip = created.spec.cluster_ip
    assert ip.startswith("10.96.")
    assert created.spec.cluster_ips == [ip]
    assert created.spec.ports[0].target_port == 80
    assert 30000 <= created.spec.ports[0].node_port <= 32767
    # A replace that leaves the allocated fields out keeps them.
    svc["metadata"]["labels"] = {"v": "2"}
    replaced = await call(core.replace_namespaced_service, "web", NS, svc)
    assert replaced.spec.cluster_ip == ip
    assert replaced.spec.ports[0].node_port == created.spec.ports[0].node_port
    svc["spec"]["clusterIP"] = "10.96.200.200"
    with pytest.raises(client.ApiException) as exc:
        await call(core.replace_namespaced_service, "web", NS, svc)
    assert exc.value.status == 422
    assert error_body(exc)["details"]["causes"][0]["field"] == "spec.clusterIPs[0]"

    secret = await call(
        core.create_namespaced_secret,
        NS,
        {"metadata": {"name": "aksk"}, "stringData": {"ak": "abc"}},
    )
    assert secret.type == "Opaque"
    assert secret.data == {"ak": "YWJj"}
    assert secret.string_data is None


async def test_field_selectors(fake_apiserver: FakeApiServer, core: client.CoreV1Api) -> None:
    await call(core.create_namespaced_pod, NS, pod("on-edge", node="edge-1"))
    await call(core.create_namespaced_pod, NS, pod("pending"))
    on_edge = await call(core.list_pod_for_all_namespaces, field_selector="spec.nodeName=edge-1")
    assert [p.metadata.name for p in on_edge.items] == ["on-edge"]
    unbound = await call(
        core.list_namespaced_pod, NS, field_selector="spec.nodeName=,status.phase=Pending"
    )
    assert [p.metadata.name for p in unbound.items] == ["pending"]
    not_running = await call(core.list_namespaced_pod, NS, field_selector="status.phase!=Running")
    assert len(not_running.items) == 2

    target = await call(core.read_namespaced_pod, "pending", NS)
    for reason, kind in (("Scheduled", "Pod"), ("ScalingReplicaSet", "Deployment")):
        await call(
            core.create_namespaced_event,
            NS,
            {
                "metadata": {"name": f"ev-{reason.lower()}"},
                "involvedObject": {
                    "kind": kind,
                    "name": "pending",
                    "namespace": NS,
                    "uid": (target.metadata.uid if kind == "Pod" else "x"),
                },
                "reason": reason,
                "type": "Normal",
                "source": {"component": "default-scheduler"},
            },
        )
    events = await call(
        core.list_namespaced_event,
        NS,
        field_selector=f"involvedObject.kind=Pod,involvedObject.uid={target.metadata.uid}",
    )
    assert [e.reason for e in events.items] == ["Scheduled"]
    events = await call(core.list_namespaced_event, NS, field_selector="reason=ScalingReplicaSet")
    assert [e.involved_object.kind for e in events.items] == ["Deployment"]

    fake_apiserver.create({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1"}})
    fake_apiserver.create({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n2"}})
    nodes = await call(core.list_node, field_selector="metadata.name=n2")
    assert [n.metadata.name for n in nodes.items] == ["n2"]

    await call(core.create_namespaced_secret, NS, {"metadata": {"name": "s1"}, "data": {}})
    tls = {"metadata": {"name": "s2"}, "type": "kubernetes.io/tls", "data": {}}
    await call(core.create_namespaced_secret, NS, tls)
    secrets = await call(core.list_namespaced_secret, NS, field_selector="type=kubernetes.io/tls")
    assert [s.metadata.name for s in secrets.items] == ["s2"]

    with pytest.raises(client.ApiException) as exc:
        await call(core.list_namespaced_pod, NS, field_selector="spec.containers=x")
    assert exc.value.status == 400
    assert error_body(exc)["message"] == "field label not supported: spec.containers"
    with pytest.raises(client.ApiException) as exc:
        await call(core.list_node, field_selector="metadata.namespace=x")
    assert exc.value.status == 400
    with pytest.raises(client.ApiException) as exc:
        await call(core.list_namespaced_config_map, NS, field_selector="data.x=y")
    assert error_body(exc)["message"] == (
        '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


async def test_strategic_merge_json_and_merge_patches(
    apps: client.AppsV1Api, kube_client: client.ApiClient
) -> None:
    await call(apps.create_namespaced_deployment, NS, deployment("web"))
    # The typed client sends a dict as a strategic merge patch: containers merge by name.
    patched = await call(
        apps.patch_namespaced_deployment,
        "web",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}},
    )
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [
        ("app", "nginx:1.27"),
        ("side", "busybox:1.36"),
    ]
    removed = await call(
        apps.patch_namespaced_deployment,
        "web",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}},
    )
    assert [c.name for c in removed.spec.template.spec.containers] == ["app"]
    assert removed.metadata.generation == 3

    # A list body is a JSON patch.
    json_patched = await call(
        apps.patch_namespaced_deployment,
        "web",
        NS,
        [{"op": "replace", "path": "/spec/replicas", "value": 2}],
    )
    assert json_patched.spec.replicas == 2

    # A merge patch replaces lists whole.
    merged = await call(
        apps.patch_namespaced_deployment,
        "web",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "solo", "image": "x:1"}]}}}},
        _content_type="application/merge-patch+json",
    )
    assert [c.name for c in merged.spec.template.spec.containers] == ["solo"]


async def test_delete_propagation_and_finalizers(
    fake_apiserver: FakeApiServer, apps: client.AppsV1Api, kube_client: client.ApiClient
) -> None:
    await call(apps.create_namespaced_deployment, NS, deployment("bg"))
    answer = await call(
        apps.delete_namespaced_deployment, "bg", NS, propagation_policy="Background"
    )
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    assert answer["details"] == {
        "name": "bg",
        "group": "apps",
        "kind": "deployments",
        "uid": answer["details"]["uid"],
    }
    assert fake_apiserver.objects("Deployment") == []

    for policy, finalizer in (("Orphan", "orphan"), ("Foreground", "foregroundDeletion")):
        name = policy.lower()
        await call(apps.create_namespaced_deployment, NS, deployment(name))
        held = await call(apps.delete_namespaced_deployment, name, NS, propagation_policy=policy)
        assert held["metadata"]["finalizers"] == [finalizer]
        assert held["metadata"]["deletionTimestamp"]
        assert held["metadata"]["generation"] == 2
        # The garbage collector's last step: removing the finalizer completes the deletion.
        await call(
            apps.patch_namespaced_deployment,
            name,
            NS,
            [{"op": "remove", "path": "/metadata/finalizers"}],
        )
        with pytest.raises(client.ApiException) as exc:
            await call(apps.read_namespaced_deployment, name, NS)
        assert exc.value.status == 404
        assert error_body(exc)["message"] == f'deployments.apps "{name}" not found'

    await call(apps.create_namespaced_deployment, NS, deployment("bad"))
    with pytest.raises(client.ApiException) as exc:
        await call(apps.delete_namespaced_deployment, "bad", NS, propagation_policy="Sometimes")
    assert exc.value.status == 422


async def test_bound_pods_are_deleted_gracefully(
    fake_apiserver: FakeApiServer, core: client.CoreV1Api
) -> None:
    await call(core.create_namespaced_pod, NS, pod("unbound"))
    gone = await call(core.delete_namespaced_pod, "unbound", NS)
    assert gone.metadata.deletion_timestamp is None
    assert fake_apiserver.objects("Pod") == []

    await call(core.create_namespaced_pod, NS, pod("bound"))
    # The server answers a binding with a Status, which the typed client cannot read as the
    # V1Binding it expects (kubernetes-client/python#547): read the raw answer.
    answer = await call(
        core.create_namespaced_pod_binding,
        "bound",
        NS,
        {"metadata": {"name": "bound"}, "target": {"kind": "Node", "name": "edge-1"}},
        _preload_content=False,
    )
    assert json.loads(answer.data)["status"] == "Success"
    with pytest.raises(client.ApiException) as exc:
        await call(
            core.create_namespaced_pod_binding,
            "bound",
            NS,
            {"metadata": {"name": "bound"}, "target": {"kind": "Node", "name": "edge-2"}},
            _preload_content=False,
        )
    assert exc.value.status == 409
    bound = await call(core.read_namespaced_pod, "bound", NS)
    assert bound.spec.node_name == "edge-1"
    assert [(c.type, c.status) for c in bound.status.conditions] == [("PodScheduled", "True")]

    # Bound to a node: it waits for its kubelet, which deletes it with a grace period of 0.
    terminating = await call(core.delete_namespaced_pod, "bound", NS)
    assert terminating.metadata.deletion_grace_period_seconds == 30
    assert fake_apiserver.get("Pod", NS, "bound")["metadata"]["deletionTimestamp"]
    await call(core.delete_namespaced_pod, "bound", NS, grace_period_seconds=0)
    assert fake_apiserver.objects("Pod") == []


async def test_delete_collection_by_label(
    fake_apiserver: FakeApiServer, core: client.CoreV1Api
) -> None:
    for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
        cm = {"metadata": {"name": name, "labels": {"app": app}}}
        await call(core.create_namespaced_config_map, NS, cm)
    await call(core.delete_collection_namespaced_config_map, NS, label_selector="app=x")
    assert [c["metadata"]["name"] for c in fake_apiserver.objects("ConfigMap")] == ["c"]


async def test_watch_across_kinds_from_a_resource_version(
    fake_apiserver: FakeApiServer, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    listed = await call(core.list_pod_for_all_namespaces)
    rv = listed.metadata.resource_version
    await call(core.create_namespaced_pod, NS, pod("before-watch"))
    await call(apps.create_namespaced_deployment, NS, deployment("web"))  # another kind
    w = watch.Watch()  # type: ignore[no-untyped-call]
    pods = WatchThread(
        lambda: w.stream(  # type: ignore[no-untyped-call]
            core.list_pod_for_all_namespaces,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=5,
        ),
        w,
    )
    await fake_apiserver.wait_for_watches(1)
    await call(
        core.patch_namespaced_pod_status, "before-watch", NS, {"status": {"phase": "Running"}}
    )
    await call(core.delete_namespaced_pod, "before-watch", NS)
    seen: list[tuple[str, ...]] = []
    while len(seen) < 3:
        event = await pods.next()
        assert isinstance(event, dict)
        if event["type"] != "BOOKMARK":
            seen.append((event["type"], event["raw_object"]["kind"], event["object"].status.phase))
    assert seen == [
        ("ADDED", "Pod", "Pending"),
        ("MODIFIED", "Pod", "Running"),
        ("DELETED", "Pod", "Running"),
    ]
    w.stop()  # type: ignore[no-untyped-call]
    fake_apiserver.drop_watches(abrupt=False)
    await pods.join()

    fake_apiserver.compact()
    w2 = watch.Watch()  # type: ignore[no-untyped-call]
    stale = WatchThread(
        lambda: w2.stream(  # type: ignore[no-untyped-call]
            apps.list_namespaced_deployment, NS, resource_version=rv, timeout_seconds=5
        ),
        w2,
    )
    error = await stale.next()
    assert isinstance(error, client.ApiException)
    assert error.status == 410


async def test_service_accounts_and_rbac_are_stored_and_bindings_validated(
    kube_client: client.ApiClient, core: client.CoreV1Api
) -> None:
    """What an app's chart renders besides workloads (the adapter's chart has all of them)."""
    rbac = client.RbacAuthorizationV1Api(kube_client)
    groups = await call(client.ApisApi(kube_client).get_api_versions)
    assert "rbac.authorization.k8s.io" in {g.name for g in groups.groups}
    resources = {r.name: r for r in (await call(rbac.get_api_resources)).resources}
    assert {n: r.namespaced for n, r in resources.items()} == {
        "clusterrolebindings": False,
        "clusterroles": False,
        "rolebindings": True,
        "roles": True,
    }
    account = await call(
        core.create_namespaced_service_account, NS, {"metadata": {"name": "reader"}}
    )
    assert account.metadata.namespace == NS
    rule = {"apiGroups": ["devices.kubeedge.io"], "resources": ["devices"], "verbs": ["list"]}
    role = {"metadata": {"name": "reader"}, "rules": [rule]}
    await call(rbac.create_cluster_role, role)
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"}
    binding: dict[str, Any] = {
        "metadata": {"name": "reader"},
        "roleRef": role_ref,
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NS}],
    }
    created = await call(rbac.create_cluster_role_binding, binding)
    assert created.role_ref.name == "reader" and created.metadata.namespace is None

    # roleRef is immutable; a cluster binding's service account needs its namespace.
    changed = {**binding, "roleRef": {**role_ref, "name": "writer"}}
    with pytest.raises(client.ApiException) as exc:
        await call(rbac.replace_cluster_role_binding, "reader", changed)
    assert exc.value.status == 422
    (cause,) = error_body(exc)["details"]["causes"]
    assert cause["field"] == "roleRef"
    assert cause["message"].endswith(": cannot change roleRef")
    loose = {
        "metadata": {"name": "loose"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader"}],
    }
    with pytest.raises(client.ApiException) as exc:
        await call(rbac.create_cluster_role_binding, loose)
    assert {c["field"]: c["message"] for c in error_body(exc)["details"]["causes"]} == {
        "roleRef.kind": 'Unsupported value: "Role": supported values: "ClusterRole"',
        "subjects[0].namespace": "Required value",
    }
    # A RoleBinding may name a Role; its subjects default to its own namespace.
    await call(
        rbac.create_namespaced_role_binding,
        NS,
        {**loose, "metadata": {"name": "local"}},
    )
