"""metrics-server: NodeMetrics and PodMetrics from what runs on online nodes.

Each pass updates the fake's records: a node online has its own usage plus its pods'; a pod
``Running`` on an online node has one record per container, from the latest matching
:class:`UsageRule` (or the default). Offline nodes and their pods have none (metrics-server
cannot scrape them). Values are written as metrics-server writes them: CPU in nanocores
(``"2000000n"``), memory in KiB (``"12288Ki"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .context import Context
from .nodes import ClusterNode
from .quantity import cpu_nanocores, memory_bytes

__all__ = ["MetricsServer", "UsageRule"]


@dataclass(frozen=True)
class UsageRule:
    """Usage for the containers it matches (unset fields match anything)."""

    cpu: str
    memory: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    container: str | None = None

    def matches(self, pod: Mapping[str, Any], container: str) -> bool:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        return (
            (self.namespace is None or meta["namespace"] == self.namespace)
            and all(labels.get(k) == v for k, v in self.labels.items())
            and (self.container is None or container == self.container)
        )


def _usage(cpu_n: int, memory_b: int) -> dict[str, str]:
    return {"cpu": f"{cpu_n}n", "memory": f"{memory_b // 1024}Ki"}


class MetricsServer:
    """Scrapes the pods of the namespaces a pass looks at, and every online node."""

    def __init__(self, default: UsageRule) -> None:
        self.default = default
        self.rules: list[UsageRule] = []
        self._pods: dict[tuple[str, str], tuple[str, int, int]] = {}
        """(namespace, pod) → (node, cpu nanocores, memory bytes) of the running pods."""

    def scrape(self, ctx: Context, nodes: Mapping[str, ClusterNode]) -> None:
        metrics = ctx.fake.metrics
        online = {name for name, node in nodes.items() if node.online}
        if ctx.scope is None:
            stale = set(self._pods)
        else:
            stale = {key for key in self._pods if key[0] in ctx.scope}
        for pod in ctx.scoped(ctx.pods):
            node = pod["spec"].get("nodeName")
            if node not in online or (pod.get("status") or {}).get("phase") != "Running":
                continue
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"])
            stale.discard(key)
            containers: dict[str, dict[str, str]] = {}
            total_cpu = total_memory = 0
            for c in pod["spec"].get("containers") or []:
                rule = next((r for r in self.rules if r.matches(pod, c["name"])), self.default)
                cpu, memory = cpu_nanocores(rule.cpu), memory_bytes(rule.memory)
                total_cpu += cpu
                total_memory += memory
                containers[c["name"]] = _usage(cpu, memory)
            self._pods[key] = (str(node), total_cpu, total_memory)
            if metrics.pod_usage(*key) != containers:
                metrics.set_pod(*key, containers)
        for key in stale:
            del self._pods[key]
            metrics.forget_pod(*key)
        for key, (node, _, _) in list(self._pods.items()):
            if node not in online:
                del self._pods[key]
                metrics.forget_pod(*key)
        totals = {
            name: [
                cpu_nanocores(nodes[name].usage["cpu"]),
                memory_bytes(nodes[name].usage["memory"]),
            ]
            for name in online
        }
        for node, cpu, memory in self._pods.values():
            totals[node][0] += cpu
            totals[node][1] += memory
        for name in online:
            usage = _usage(*totals[name])
            if metrics.node_usage(name) != usage:
                metrics.set_node(name, usage)
        for name in metrics.node_names() - online:
            metrics.forget_node(name)
