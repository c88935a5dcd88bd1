"""A read-only ``metrics.k8s.io/v1beta1``: metrics-server behind the aggregator.

Three states, as a real cluster has them (:class:`MetricsMode`):

- ``SERVED``: NodeMetrics and PodMetrics, list and get, cluster-wide and per namespace;
- ``ABSENT``: no APIService registered — the group is missing from ``/apis`` and every path
  under ``/apis/metrics.k8s.io`` is the generic 404;
- ``UNAVAILABLE``: registered but metrics-server is down — the group is listed and
  ``/apis/metrics.k8s.io`` answers, but ``/apis/metrics.k8s.io/v1beta1[/…]`` is the
  aggregator's plain-text ``503 service unavailable`` (kube-aggregator ``handler_proxy.go``).

Usage records are set by the test (or the cluster component's metrics-server) and joined with
the stored objects at request time, as metrics-server does with its listers: a node's record
shows only while the Node exists, a pod's only while the Pod exists and is ``Running``; both
carry the object's current labels, which label selectors match.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from .errors import ApiError, not_found
from .resources import METRICS_GROUP, NODE_METRICS, POD_METRICS, ResourceType
from .selectors import parse_label_selector
from .storage import Store, now_rfc3339

__all__ = ["MetricsApi", "MetricsMode"]

GROUP_VERSION: Final = f"{METRICS_GROUP}/v1beta1"


class MetricsMode(StrEnum):
    SERVED = "served"
    ABSENT = "absent"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class _Sample:
    usage: dict[str, str]
    timestamp: str


class MetricsApi:
    """metrics-server's state: its mode, and the last usage it scraped per node and pod.

    Usage values are Kubernetes quantities as metrics-server writes them (``"12345678n"``
    CPU nanocores, ``"20Mi"`` or ``"20971520"`` memory bytes); they are served as given.
    """

    def __init__(self, window: str = "15s") -> None:
        self.mode = MetricsMode.SERVED
        self.window = window
        self._nodes: dict[str, _Sample] = {}
        self._pods: dict[tuple[str, str], tuple[tuple[str, _Sample], ...]] = {}

    def set_node(self, name: str, usage: Mapping[str, str]) -> None:
        """Record a node's usage (``{"cpu": "250m", "memory": "1Gi"}``)."""
        self._nodes[name] = _Sample(dict(usage), now_rfc3339())

    def set_pod(
        self, namespace: str, name: str, containers: Mapping[str, Mapping[str, str]]
    ) -> None:
        """Record a pod's usage per container (``{"app": {"cpu": "5m", "memory": "20Mi"}}``)."""
        stamp = now_rfc3339()
        self._pods[(namespace, name)] = tuple(
            (container, _Sample(dict(usage), stamp)) for container, usage in containers.items()
        )

    def forget_node(self, name: str) -> None:
        self._nodes.pop(name, None)

    def forget_pod(self, namespace: str, name: str) -> None:
        self._pods.pop((namespace, name), None)

    def clear(self) -> None:
        self._nodes.clear()
        self._pods.clear()

    def node_usage(self, name: str) -> dict[str, str] | None:
        sample = self._nodes.get(name)
        return dict(sample.usage) if sample else None

    def pod_usage(self, namespace: str, name: str) -> dict[str, dict[str, str]] | None:
        containers = self._pods.get((namespace, name))
        if containers is None:
            return None
        return {container: dict(sample.usage) for container, sample in containers}

    def node_names(self) -> set[str]:
        return set(self._nodes)

    def pod_keys(self) -> set[tuple[str, str]]:
        return set(self._pods)

    # ----------------------------------------------------------------------------- serving

    def check_available(self) -> None:
        """Raise what the aggregator answers when metrics-server is not there."""
        if self.mode is MetricsMode.UNAVAILABLE:
            raise ApiError(503, "ServiceUnavailable", "service unavailable", plain_text=True)

    def _node_item(self, node: Mapping[str, Any]) -> dict[str, Any] | None:
        name = node["metadata"]["name"]
        sample = self._nodes.get(name)
        if sample is None:
            return None
        return {
            "metadata": {
                "name": name,
                "creationTimestamp": now_rfc3339(),
                "labels": copy.deepcopy(node["metadata"].get("labels") or {}),
            },
            "timestamp": sample.timestamp,
            "window": self.window,
            "usage": dict(sample.usage),
        }

    def _pod_item(self, pod: Mapping[str, Any]) -> dict[str, Any] | None:
        meta = pod["metadata"]
        containers = self._pods.get((meta["namespace"], meta["name"]))
        if containers is None or (pod.get("status") or {}).get("phase") != "Running":
            return None
        return {
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "creationTimestamp": now_rfc3339(),
                "labels": copy.deepcopy(meta.get("labels") or {}),
            },
            "timestamp": containers[0][1].timestamp if containers else now_rfc3339(),
            "window": self.window,
            "containers": [
                {"name": name, "usage": dict(sample.usage)} for name, sample in containers
            ],
        }

    def get(self, store: Store, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        if rtype is NODE_METRICS:
            node = store.find(store.types["nodes"], "", name)
            if node is None:
                raise not_found("", "node", name)
            item = self._node_item(node)
            missing = name
        else:
            pod = store.find(store.pods, namespace, name)
            if pod is None:
                raise not_found("", "pod", name)
            item = self._pod_item(pod)
            missing = f"{namespace}/{name}"
        if item is None:
            raise not_found(METRICS_GROUP, rtype.plural, missing)
        return {"kind": rtype.kind, "apiVersion": GROUP_VERSION, **item}

    def list(
        self,
        store: Store,
        rtype: ResourceType,
        namespace: str | None,
        label_selector: str,
        field_selector: str,
    ) -> dict[str, Any]:
        labels = parse_label_selector(label_selector)
        fields = _parse_fields(field_selector)
        source = store.types["nodes"] if rtype is NODE_METRICS else store.pods
        items: list[dict[str, Any]] = []
        for (ns, name), obj in store.select(source, namespace if rtype is POD_METRICS else None):
            obj_labels = obj["metadata"].get("labels") or {}
            if not all(r.matches(obj_labels) for r in labels):
                continue
            values = {"metadata.name": name, "metadata.namespace": ns}
            if not all((values.get(k, "") == v) == eq for k, eq, v in fields):
                continue
            item = self._node_item(obj) if rtype is NODE_METRICS else self._pod_item(obj)
            if item is not None:
                items.append(item)
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": GROUP_VERSION,
            "metadata": {},
            "items": items,
        }


def _parse_fields(selector: str) -> list[tuple[str, bool, str]]:
    """metrics-server matches field selectors against the object metadata fields only."""
    out: list[tuple[str, bool, str]] = []
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            out.append((key.strip(), False, value.strip()))
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            out.append((key.strip(), True, value.strip()))
        else:
            raise ApiError(400, "BadRequest", f"invalid selector: '{selector}'")
    return out
