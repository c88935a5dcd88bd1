"""Where an app instance runs: its edge Node, and what every object it creates must carry.

KubeEdge facts this relies on: EdgeCore registers edge nodes with the label
``node-role.kubernetes.io/edge`` and the edge host's IP as ``InternalIP``, so MECM's
``hostIp`` names an edge Node. Pods are pinned with ``nodeSelector`` on
``kubernetes.io/hostname`` (``nodeName`` piles up Terminating pods on an offline edge) and
tolerate ``unreachable``/``not-ready`` for ever (no ``tolerationSeconds``), so they are not
evicted while the edge is disconnected; a toleration of the optional edge taint is added too.

Pure functions over plain Kubernetes objects (dicts); the caller supplies the Node list.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Final

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

__all__ = [
    "EDGE_LABEL",
    "HOSTNAME_LABEL",
    "INSTANCE_LABEL",
    "TOLERATIONS",
    "find_edge_node",
    "hostname_of",
    "place",
    "pod_spec_paths",
]

EDGE_LABEL: Final = "node-role.kubernetes.io/edge"
HOSTNAME_LABEL: Final = "kubernetes.io/hostname"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
TOLERATIONS: Final = (
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": EDGE_LABEL, "operator": "Exists"},
)

_TEMPLATE_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": (),
}


def find_edge_node(nodes: Iterable[Mapping[str, Any]], host_ip: str) -> Mapping[str, Any]:
    """The edge Node whose InternalIP is ``host_ip``; AdapterError PRECONDITION_FAILED if none."""
    for node in nodes:
        labels = node.get("metadata", {}).get("labels") or {}
        if EDGE_LABEL not in labels:
            continue
        addresses = node.get("status", {}).get("addresses") or []
        if any(a.get("type") == "InternalIP" and a.get("address") == host_ip for a in addresses):
            return node
    raise AdapterError(
        ErrorKind.PRECONDITION_FAILED,
        f"no edge node (label {EDGE_LABEL}) has InternalIP {host_ip}; nothing was created",
    )


def hostname_of(node: Mapping[str, Any]) -> str:
    """The node's ``kubernetes.io/hostname`` label (its name when the label is absent)."""
    metadata = node.get("metadata", {})
    labels = metadata.get("labels") or {}
    return str(labels.get(HOSTNAME_LABEL) or metadata.get("name"))


def pod_spec_paths() -> Mapping[str, tuple[str, ...]]:
    """Kind → path to its pod template (``()``: the object is a Pod)."""
    return _TEMPLATE_PATHS


def place(obj: Mapping[str, Any], *, instance_id: str, hostname: str | None) -> dict[str, Any]:
    """A copy of ``obj`` labelled with the instance and, if it has pods, pinned to the node.

    ``hostname=None`` labels only (for objects that are not workloads, like the namespace).
    """
    placed = copy.deepcopy(dict(obj))
    _label(placed, instance_id)
    path = _TEMPLATE_PATHS.get(str(placed.get("kind")))
    if path is None or hostname is None:
        return placed
    template = placed
    for key in path:
        child = template.get(key)
        if not isinstance(child, dict):
            child = {}
            template[key] = child
        template = child
    if path:
        _label(template, instance_id)
    spec = template.get("spec")
    if not isinstance(spec, dict):
        spec = {}
        template["spec"] = spec
    selector = spec.get("nodeSelector")
    spec["nodeSelector"] = {
        **(selector if isinstance(selector, dict) else {}),
        HOSTNAME_LABEL: hostname,
    }
    spec.pop("nodeName", None)
    tolerations = spec.get("tolerations")
    merged = list(tolerations) if isinstance(tolerations, list) else []
    for toleration in TOLERATIONS:
        if not any(_same_toleration(t, toleration) for t in merged):
            merged.append(dict(toleration))
        else:
            merged = [dict(toleration) if _same_toleration(t, toleration) else t for t in merged]
    spec["tolerations"] = merged
    return placed


def _same_toleration(have: Any, want: Mapping[str, Any]) -> bool:
    return (
        isinstance(have, dict)
        and have.get("key") == want["key"]
        and have.get("effect") == want.get("effect")
    )


def _label(obj: dict[str, Any], instance_id: str) -> None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        obj["metadata"] = metadata
    labels = metadata.get("labels")
    metadata["labels"] = {
        **(labels if isinstance(labels, dict) else {}),
        INSTANCE_LABEL: instance_id,
    }
