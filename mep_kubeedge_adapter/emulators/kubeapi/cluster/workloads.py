"""The workload controllers: Deployment → ReplicaSet → Pods, StatefulSet, DaemonSet.

Each ``reconcile_*`` function makes one pass over its kind and returns nothing; what it wrote
shows in the store. Simplified as the README says: a Deployment's new template replaces the
old ReplicaSet at once (old ones scale to 0, no surge), a StatefulSet honours
``OrderedReady`` (pod N waits for 0…N-1 to be Running and Ready) and ``Parallel``, a
DaemonSet places one pod per node whose labels and taints admit it, pinned with the same
``matchFields`` node affinity the real controller uses.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from ..validation import NOT_READY_TAINT, UNREACHABLE_TAINT
from .context import Context, controller_of, owner_reference, set_condition, short_hash
from .placement import node_admits

__all__ = [
    "pod_is_active",
    "pod_is_ready",
    "reconcile_daemonsets",
    "reconcile_deployments",
    "reconcile_replicasets",
    "reconcile_statefulsets",
]

_DAEMON_TOLERATIONS: Final = [
    {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute"},
    {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def pod_is_active(pod: Mapping[str, Any]) -> bool:
    """Counts towards replicas: not being deleted, not finished."""
    phase = (pod.get("status") or {}).get("phase")
    return not pod["metadata"].get("deletionTimestamp") and phase not in ("Succeeded", "Failed")


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _owned(ctx: Context, owner: Mapping[str, Any], rtype: Any) -> list[dict[str, Any]]:
    uid = owner["metadata"]["uid"]
    namespace = owner["metadata"]["namespace"]
    return [o for o in ctx.all(rtype, namespace) if controller_of(o) == uid]


def _pod_from_template(
    owner: Mapping[str, Any], template: Mapping[str, Any], extra_labels: Mapping[str, str]
) -> dict[str, Any]:
    meta = copy.deepcopy(dict(template.get("metadata") or {}))
    meta["labels"] = {**(meta.get("labels") or {}), **extra_labels}
    meta["ownerReferences"] = [owner_reference(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": copy.deepcopy(dict(template.get("spec") or {})),
    }


# --------------------------------------------------------------------------------------------
# Deployment


def _template_hash(deployment: Mapping[str, Any]) -> str:
    return short_hash(deployment["spec"].get("template"))


def reconcile_deployments(ctx: Context) -> None:
    for deployment in ctx.scoped(ctx.deployments):
        if deployment["metadata"].get("deletionTimestamp"):
            continue
        _reconcile_deployment(ctx, deployment)


def _reconcile_deployment(ctx: Context, deployment: dict[str, Any]) -> None:
    meta, spec = deployment["metadata"], deployment["spec"]
    namespace = meta["namespace"]
    template_hash = _template_hash(deployment)
    new_name = f"{meta['name']}-{template_hash}"
    replicas = int(spec.get("replicas", 1))
    owned = _owned(ctx, deployment, ctx.replicasets)
    new_rs = next((rs for rs in owned if rs["metadata"]["name"] == new_name), None)
    if new_rs is None:
        template = copy.deepcopy(spec["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = (
            template_hash
        )
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
        revision = 1 + max(
            (int((rs["metadata"].get("annotations") or {}).get(_REVISION, "0")) for rs in owned),
            default=0,
        )
        new_rs = ctx.store.create(
            ctx.replicasets,
            namespace,
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": new_name,
                    "labels": dict(template["metadata"]["labels"]),
                    "annotations": {_REVISION: str(revision)},
                    "ownerReferences": [owner_reference(deployment)],
                },
                "spec": {"replicas": replicas, "selector": selector, "template": template},
            },
        )
        ctx.record_event(
            deployment,
            "ScalingReplicaSet",
            f"Scaled up replica set {new_name} from 0 to {replicas}",
            component="deployment-controller",
        )
    elif new_rs["spec"].get("replicas") != replicas:
        before = new_rs["spec"].get("replicas", 0)
        updated = copy.deepcopy(new_rs)
        updated["spec"]["replicas"] = replicas
        ctx.store.put(ctx.replicasets, new_rs, updated)
        verb = "up" if replicas > before else "down"
        ctx.record_event(
            deployment,
            "ScalingReplicaSet",
            f"Scaled {verb} replica set {new_name} from {before} to {replicas}",
            component="deployment-controller",
        )
    for old in owned:
        if old["metadata"]["name"] != new_name and old["spec"].get("replicas", 0) != 0:
            updated = copy.deepcopy(old)
            before = updated["spec"].get("replicas", 0)
            updated["spec"]["replicas"] = 0
            ctx.store.put(ctx.replicasets, old, updated)
            ctx.record_event(
                deployment,
                "ScalingReplicaSet",
                f"Scaled down replica set {old['metadata']['name']} from {before} to 0",
                component="deployment-controller",
            )
    _deployment_status(ctx, deployment, new_name)


_REVISION: Final = "deployment.kubernetes.io/revision"


def _deployment_status(ctx: Context, deployment: dict[str, Any], new_name: str) -> None:
    owned = _owned(ctx, deployment, ctx.replicasets)
    total = sum(int((rs.get("status") or {}).get("replicas", 0)) for rs in owned)
    wanted = sum(int(rs["spec"].get("replicas", 0)) for rs in owned)
    ready = sum(int((rs.get("status") or {}).get("readyReplicas", 0)) for rs in owned)
    available = sum(int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in owned)
    new_rs = next((rs for rs in owned if rs["metadata"]["name"] == new_name), None)
    updated = int(((new_rs or {}).get("status") or {}).get("replicas", 0))
    replicas = int(deployment["spec"].get("replicas", 1))
    status = copy.deepcopy(deployment.get("status") or {})
    status["observedGeneration"] = deployment["metadata"]["generation"]
    for key, value in (
        ("replicas", total),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("unavailableReplicas", max(wanted - available, 0)),
    ):
        if value:
            status[key] = value
        else:
            status.pop(key, None)
    conditions = status.setdefault("conditions", [])
    if available >= replicas:
        set_condition(
            conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            update_time=True,
        )
    else:
        set_condition(
            conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            update_time=True,
        )
    if updated == replicas and available >= replicas:
        progress = (
            "NewReplicaSetAvailable",
            f'ReplicaSet "{new_name}" has successfully progressed.',
        )
    else:
        progress = ("ReplicaSetUpdated", f'ReplicaSet "{new_name}" is progressing.')
    set_condition(conditions, "Progressing", "True", *progress, update_time=True)
    ctx.write_status(ctx.deployments, deployment, status)


# --------------------------------------------------------------------------------------------
# ReplicaSet


def reconcile_replicasets(ctx: Context) -> None:
    for rs in ctx.scoped(ctx.replicasets):
        if rs["metadata"].get("deletionTimestamp"):
            continue
        pods = [p for p in _owned(ctx, rs, ctx.pods) if pod_is_active(p)]
        want = int(rs["spec"].get("replicas", 1))
        name = rs["metadata"]["name"]
        for _ in range(want - len(pods)):
            pod = _pod_from_template(rs, rs["spec"]["template"], {})
            pod["metadata"]["generateName"] = f"{name}-"
            pod["metadata"].pop("name", None)
            created = ctx.store.create(ctx.pods, rs["metadata"]["namespace"], pod)
            ctx.record_event(
                rs,
                "SuccessfulCreate",
                f"Created pod: {created['metadata']['name']}",
                component="replicaset-controller",
            )
        if len(pods) > want:
            # Unscheduled, then not ready, then the newest go first.
            ranked = sorted(
                pods,
                key=lambda p: (
                    bool(p["spec"].get("nodeName")),
                    pod_is_ready(p),
                    -int(p["metadata"]["resourceVersion"]),
                ),
            )
            for victim in ranked[: len(pods) - want]:
                vmeta = victim["metadata"]
                ctx.store.delete(ctx.pods, vmeta["namespace"], vmeta["name"])
                ctx.record_event(
                    rs,
                    "SuccessfulDelete",
                    f"Deleted pod: {vmeta['name']}",
                    component="replicaset-controller",
                )
        pods = [p for p in _owned(ctx, rs, ctx.pods) if pod_is_active(p)]
        ready = sum(1 for p in pods if pod_is_ready(p))
        status: dict[str, Any] = {"replicas": len(pods)}
        if pods:
            status["fullyLabeledReplicas"] = len(pods)
        if ready:
            status["readyReplicas"] = ready
            status["availableReplicas"] = ready
        status["observedGeneration"] = rs["metadata"]["generation"]
        ctx.write_status(ctx.replicasets, rs, status)


# --------------------------------------------------------------------------------------------
# StatefulSet


def reconcile_statefulsets(ctx: Context) -> None:
    for sts in ctx.scoped(ctx.statefulsets):
        if sts["metadata"].get("deletionTimestamp"):
            continue
        meta, spec = sts["metadata"], sts["spec"]
        name, namespace = meta["name"], meta["namespace"]
        revision = f"{name}-{short_hash(spec.get('template'))}"
        want = int(spec.get("replicas", 1))
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        pods = {p["metadata"]["name"]: p for p in _owned(ctx, sts, ctx.pods)}
        for ordinal in range(want):
            pod_name = f"{name}-{ordinal}"
            if pod_name in pods:
                if ordered and not _running_and_ready(pods[pod_name]):
                    break
                continue
            pod = _pod_from_template(
                sts,
                spec["template"],
                {
                    "controller-revision-hash": revision,
                    "statefulset.kubernetes.io/pod-name": pod_name,
                    "apps.kubernetes.io/pod-index": str(ordinal),
                },
            )
            pod["metadata"]["name"] = pod_name
            pod["spec"]["hostname"] = pod_name
            if spec.get("serviceName"):
                pod["spec"]["subdomain"] = spec["serviceName"]
            ctx.store.create(ctx.pods, namespace, pod)
            ctx.record_event(
                sts,
                "SuccessfulCreate",
                f"create Pod {pod_name} in StatefulSet {name} successful",
                component="statefulset-controller",
            )
            if ordered:
                break
        for pod_name, pod in sorted(pods.items(), reverse=True):
            ordinal = int(pod_name.rsplit("-", 1)[1])
            if ordinal >= want and not pod["metadata"].get("deletionTimestamp"):
                ctx.store.delete(ctx.pods, namespace, pod_name)
                ctx.record_event(
                    sts,
                    "SuccessfulDelete",
                    f"delete Pod {pod_name} in StatefulSet {name} successful",
                    component="statefulset-controller",
                )
                if ordered:
                    break
        active = [p for p in _owned(ctx, sts, ctx.pods) if pod_is_active(p)]
        ready = sum(1 for p in active if pod_is_ready(p))
        status: dict[str, Any] = {
            "observedGeneration": meta["generation"],
            "replicas": len(active),
            "currentReplicas": len(active),
            "updatedReplicas": len(active),
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
            "availableReplicas": ready,
        }
        if ready:
            status["readyReplicas"] = ready
        ctx.write_status(ctx.statefulsets, sts, status)


def _running_and_ready(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and pod_is_ready(pod)


# --------------------------------------------------------------------------------------------
# DaemonSet


def reconcile_daemonsets(ctx: Context) -> None:
    nodes = ctx.all(ctx.nodes)
    for ds in ctx.scoped(ctx.daemonsets):
        if ds["metadata"].get("deletionTimestamp"):
            continue
        meta, spec = ds["metadata"], ds["spec"]
        template = spec["template"]
        tolerations = list(template.get("spec", {}).get("tolerations") or []) + _DAEMON_TOLERATIONS
        probe = {"spec": {**template.get("spec", {}), "tolerations": tolerations}}
        wanted = {n["metadata"]["name"] for n in nodes if node_admits(n, probe) is None}
        pods = [p for p in _owned(ctx, ds, ctx.pods) if pod_is_active(p)]
        placed = {_daemon_node(p) for p in pods}
        for node_name in sorted(wanted - placed):
            pod = _pod_from_template(
                ds,
                template,
                {"controller-revision-hash": short_hash(template), "pod-template-generation": "1"},
            )
            pod["metadata"]["generateName"] = f"{meta['name']}-"
            pod["spec"]["tolerations"] = copy.deepcopy(tolerations)
            pod["spec"]["affinity"] = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {
                                        "key": "metadata.name",
                                        "operator": "In",
                                        "values": [node_name],
                                    }
                                ]
                            }
                        ]
                    }
                }
            }
            created = ctx.store.create(ctx.pods, meta["namespace"], pod)
            ctx.record_event(
                ds,
                "SuccessfulCreate",
                f"Created pod: {created['metadata']['name']}",
                component="daemonset-controller",
            )
        for pod in pods:
            if _daemon_node(pod) not in wanted:
                ctx.store.delete(ctx.pods, pod["metadata"]["namespace"], pod["metadata"]["name"])
        pods = [p for p in _owned(ctx, ds, ctx.pods) if pod_is_active(p)]
        ready = sum(1 for p in pods if pod_is_ready(p))
        status = {
            "currentNumberScheduled": sum(1 for p in pods if p["spec"].get("nodeName")),
            "desiredNumberScheduled": len(wanted),
            "numberMisscheduled": 0,
            "numberReady": ready,
            "observedGeneration": meta["generation"],
            "updatedNumberScheduled": len(pods),
        }
        if ready:
            status["numberAvailable"] = ready
        if len(wanted) - ready:
            status["numberUnavailable"] = len(wanted) - ready
        ctx.write_status(ctx.daemonsets, ds, status)


def _daemon_node(pod: Mapping[str, Any]) -> str:
    terms = (
        (pod["spec"].get("affinity") or {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
        .get("nodeSelectorTerms", [])
    )
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return str(pod["spec"].get("nodeName", ""))
