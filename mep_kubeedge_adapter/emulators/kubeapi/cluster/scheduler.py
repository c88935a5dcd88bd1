"""The default scheduler: binds pending pods to a node that admits them.

Predicates: node selector and required node affinity, taints (``NoSchedule``/``NoExecute``)
against tolerations, cordoned nodes, and resource fit (cpu and memory requests, pod count)
against allocatable. Among feasible nodes the one with fewest pods wins (then by name).
Binding goes through ``pods/binding`` semantics and records ``Scheduled``; a pod no node
admits keeps ``PodScheduled=False`` (``Unschedulable``) with a ``FailedScheduling`` event in
the scheduler's wording, and is retried on every pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from .context import Context, set_condition
from .placement import node_admits
from .quantity import cpu_nanocores, memory_bytes

__all__ = ["schedule"]


def _requests(pod: Mapping[str, Any]) -> tuple[int, int]:
    cpu = memory = 0
    for container in pod["spec"].get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += cpu_nanocores(requests.get("cpu", 0))
        memory += memory_bytes(requests.get("memory", 0))
    return cpu, memory


class _NodeLoad:
    def __init__(self, node: Mapping[str, Any]) -> None:
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        self.cpu = cpu_nanocores(allocatable.get("cpu", 0))
        self.memory = memory_bytes(allocatable.get("memory", 0))
        self.max_pods = int(allocatable.get("pods", 0))
        self.pods = 0
        self.used_cpu = 0
        self.used_memory = 0

    def add(self, pod: Mapping[str, Any]) -> None:
        cpu, memory = _requests(pod)
        self.pods += 1
        self.used_cpu += cpu
        self.used_memory += memory

    def misfit(self, pod: Mapping[str, Any]) -> str | None:
        cpu, memory = _requests(pod)
        if self.pods + 1 > self.max_pods:
            return "Too many pods"
        if self.used_cpu + cpu > self.cpu:
            return "Insufficient cpu"
        if self.used_memory + memory > self.memory:
            return "Insufficient memory"
        return None


def _failure_message(total: int, reasons: Counter[str]) -> str:
    if total == 0:
        return "no nodes available to schedule pods"
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return (
        f"0/{total} nodes are available: {', '.join(parts)}. preemption: 0/{total} nodes are "
        f"available: {total} Preemption is not helpful for scheduling."
    )


def schedule(ctx: Context) -> None:
    pending = [
        pod
        for pod in ctx.scoped(ctx.pods)
        if not pod["spec"].get("nodeName")
        and not pod["metadata"].get("deletionTimestamp")
        and pod["spec"].get("schedulerName", "default-scheduler") == "default-scheduler"
    ]
    if not pending:
        return
    nodes = ctx.all(ctx.nodes)
    loads = {n["metadata"]["name"]: _NodeLoad(n) for n in nodes}
    for pod in ctx.all(ctx.pods):
        node_name = pod["spec"].get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if node_name in loads and phase not in ("Succeeded", "Failed"):
            loads[node_name].add(pod)
    for pod in pending:
        reasons: Counter[str] = Counter()
        feasible: list[str] = []
        for node in nodes:
            name = node["metadata"]["name"]
            reason = node_admits(node, pod) or loads[name].misfit(pod)
            if reason is None:
                feasible.append(name)
            else:
                reasons[reason] += 1
        meta = pod["metadata"]
        if feasible:
            chosen = min(feasible, key=lambda n: (loads[n].pods, n))
            bound = ctx.store.bind(meta["namespace"], meta["name"], chosen)
            loads[chosen].add(bound)
            ctx.record_event(
                bound,
                "Scheduled",
                f"Successfully assigned {meta['namespace']}/{meta['name']} to {chosen}",
                component="default-scheduler",
            )
            continue
        message = _failure_message(len(nodes), reasons)
        status = dict(pod.get("status") or {})
        conditions = [dict(c) for c in status.get("conditions") or []]
        previous = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if previous is not None and previous.get("message") == message:
            continue
        set_condition(
            conditions, "PodScheduled", "False", "Unschedulable", message, probe_time=True
        )
        status["conditions"] = conditions
        ctx.write_status(ctx.pods, pod, status)
        ctx.record_event(
            ctx.store.lookup(ctx.pods, meta["namespace"], meta["name"]),
            "FailedScheduling",
            message,
            component="default-scheduler",
            warning=True,
        )
