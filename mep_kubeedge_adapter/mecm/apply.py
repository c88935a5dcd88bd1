"""Creating an app instance's objects in the cluster, and removing them again.

Create, or replace what exists (``GET`` + ``PUT`` with its resourceVersion on ``409``), so that
instantiating the same instance twice is idempotent. An existing object is replaced only
when it carries this instance's label: a package can neither take over another instance's
objects nor anything the plugin did not create. Objects go in in Helm's kind order
(namespace, accounts, secrets and config before services and workloads) and out in reverse.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Final

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind
from mep_kubeedge_adapter.mecm.kube import Cluster, KubeApiError
from mep_kubeedge_adapter.mecm.placement import INSTANCE_LABEL, place
from mep_kubeedge_adapter.mecm.state import ObjectRef

__all__ = [
    "aksk_secret",
    "apply_object",
    "delete_object",
    "ensure_namespace",
    "install_order",
    "namespace_owner",
]

_ORDER: Final = (
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
)


def install_order(objects: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``objects`` sorted by Helm's install order of kinds (unknown kinds last), stable."""
    rank = {kind: i for i, kind in enumerate(_ORDER)}
    return sorted(objects, key=lambda o: rank.get(str(o.get("kind")), len(_ORDER)))


def aksk_secret(namespace: str, name: str, instance_id: str, ak: str, sk: str) -> dict[str, Any]:
    """The Secret with the instance's AK/SK, as EdgeGallery's mep-agent reads it."""
    data = {"accesskey": ak, "secretkey": sk, "appInsId": instance_id}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _owner(obj: Mapping[str, Any]) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    owner = labels.get(INSTANCE_LABEL)
    return str(owner) if owner is not None else None


def namespace_owner(namespace: Mapping[str, Any]) -> str | None:
    """The app instance a Namespace object was created for (its instance label), if any."""
    return _owner(namespace)


async def ensure_namespace(cluster: Cluster, namespace: str, instance_id: str) -> bool:
    """Create ``namespace`` if needed; True if it is this instance's (created by it).

    A namespace being deleted (Terminating) accepts no new objects; that is an UNAVAILABLE
    error telling the caller to try again once it is gone.
    """
    resource = await cluster.resource("v1", "Namespace")
    existing = await cluster.get(resource.path(None, namespace), f"namespace {namespace}")
    if existing is not None:
        if (existing.get("metadata") or {}).get("deletionTimestamp"):
            raise AdapterError(
                ErrorKind.UNAVAILABLE,
                f"namespace {namespace} is being deleted; instantiate again once it is gone",
            )
        return _owner(existing) == instance_id
    body = place(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        instance_id=instance_id,
        hostname=None,
    )
    try:
        await cluster.create(resource.path(None), body, f"namespace {namespace}")
    except KubeApiError as exc:
        if exc.status != 409:
            raise
        return False
    return True


async def apply_object(
    cluster: Cluster, obj: Mapping[str, Any], *, instance_id: str, namespace: str, hostname: str
) -> ObjectRef:
    """Create ``obj`` (labelled and placed), or replace this instance's existing copy."""
    api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
    resource = await cluster.resource(api_version, kind)
    body = place(obj, instance_id=instance_id, hostname=hostname)
    metadata = body["metadata"]
    name = str(metadata["name"])
    if resource.namespaced:
        metadata["namespace"] = str(metadata.get("namespace") or namespace)
    else:
        metadata.pop("namespace", None)
    ref = ObjectRef(api_version, kind, str(metadata.get("namespace") or ""), name)
    target = resource.path(ref.namespace or None)
    try:
        await cluster.create(target, body, str(ref))
        return ref
    except KubeApiError as exc:
        if exc.status != 409:
            raise
    path = resource.path(ref.namespace or None, name)
    existing = await cluster.get(path, str(ref))
    if existing is None:
        await cluster.create(target, body, str(ref))
        return ref
    owner = _owner(existing)
    if owner != instance_id:
        holder = f"app instance {owner}" if owner else "something other than this plugin"
        raise AdapterError(ErrorKind.CONFLICT, f"{ref} already exists and belongs to {holder}")
    metadata["resourceVersion"] = existing["metadata"].get("resourceVersion")
    if kind == "Service":
        _keep_allocated(body, existing)
    await cluster.replace(path, body, str(ref))
    return ref


def _keep_allocated(body: dict[str, Any], existing: Mapping[str, Any]) -> None:
    """A Service keeps the cluster IPs it was given (they are immutable)."""
    spec = body.setdefault("spec", {})
    old = existing.get("spec") or {}
    for key in ("clusterIP", "clusterIPs"):
        if key not in spec and key in old:
            spec[key] = old[key]


async def delete_object(cluster: Cluster, ref: ObjectRef) -> bool:
    """Delete ``ref``; False if it was already gone."""
    resource = await cluster.resource(ref.api_version, ref.kind)
    return await cluster.delete(resource.path(ref.namespace or None, ref.name), str(ref))
