"""The JSON answers of ``query``, ``queryKPI`` and ``workloadEvents``, in k8splugin's shapes.

lcmcontroller hands these documents verbatim to MECM's front end, so the keys are k8splugin's
(reference §2), but the figures are computed per pod, which k8splugin did not do:

``query``
    ``{"pods": [{"podstatus", "podname", "containers": [{"containername", "metricsusage":
    {"cpuusage", "memusage", "diskusage"}}], "nodeName", "nodeReady"}], "services": [{"serviceName",
    "type", "ports": [{"port", "targetPort", "nodePort", "protocol", "name"}]}],
    "cpupercent", "mempercent"}``; ``{"status": "not running"}`` when there are no pods.
    ``podstatus`` is the pod's phase; each pod lists its own containers; ``cpuusage`` is
    ``"<usage millicores>/<allocatable millicores of that pod's node>"`` and ``memusage``
    ``"<usage bytes>/<allocatable bytes>"``; ``""`` where ``metrics.k8s.io`` has no figure.
    The metrics API reports no disk use, so ``diskusage`` is ``""``. ``cpupercent`` and
    ``mempercent`` are the instance's use as a percentage of its nodes' allocatable (numbers,
    two decimals), ``""`` without metrics. ``nodeName`` and ``nodeReady`` (the node's Ready
    condition: ``True``, ``False`` or ``Unknown``) are additions: while an edge node is offline
    the pod's status is the last one it reported.
``queryKPI``
    ``{"data": {"cpuusage": {"total", "used"}, "memusage": {"total", "used"}}, "retCode": 0,
    "message": "success", "params": null}`` for the host's node: ``total`` is its allocatable,
    ``used`` its usage from ``metrics.k8s.io``; CPU in nanocores and memory in KiB (the units of
    k8splugin's figures), as integers.
``workloadEvents``
    ``{"pods": [{"podName", "podEventsInfo": [...]}]}``: the messages of the pod's events, oldest
    first, then each waiting container's ``"<container>: <reason>: <message>"`` (EdgeCore sends
    kubelet events only with ``reportEvent``, so an image that cannot be pulled shows here
    either way); ``"Pod is running successfully"`` when there is nothing to say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from kubernetes.utils import parse_quantity

__all__ = [
    "MAX_EVENTS_PER_POD",
    "NOT_RUNNING",
    "kpi_document",
    "quantity",
    "query_document",
    "workload_events_document",
]

NOT_RUNNING: Final = {"status": "not running"}
NO_EVENTS: Final = "Pod is running successfully"
MAX_EVENTS_PER_POD: Final = 50

Obj = Mapping[str, Any]


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes Quantity (``"12345678n"``, ``"20Mi"``, ``"1.5"``), or None if absent/invalid."""
    if value is None or isinstance(value, bool):
        return None
    try:
        parsed = parse_quantity(value)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, ArithmeticError):
        return None
    return Decimal(parsed)


def _allocatable(node: Obj | None, resource: str, scale: int) -> int | None:
    if node is None:
        return None
    parsed = quantity((node.get("status", {}).get("allocatable") or {}).get(resource))
    return None if parsed is None else int(parsed * scale)


def _ready(node: Obj | None) -> str:
    if node is None:
        return "Unknown"
    for condition in node.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status") or "Unknown")
    return "Unknown"


def _container_usage(metrics: Obj | None) -> dict[str, Obj]:
    if metrics is None:
        return {}
    return {
        str(c.get("name")): c.get("usage") or {}
        for c in metrics.get("containers") or []
        if isinstance(c, Mapping)
    }


def query_document(
    pods: Sequence[Obj],
    nodes: Mapping[str, Obj],
    pod_metrics: Mapping[str, Obj],
    services: Sequence[Obj],
) -> dict[str, Any]:
    """``query``'s answer; ``pod_metrics`` maps pod name → PodMetrics (absent: no figures)."""
    if not pods:
        return dict(NOT_RUNNING)
    entries: list[dict[str, Any]] = []
    cpu_used = mem_used = Decimal(0)
    measured = False
    nodes_used: set[str] = set()
    for pod in pods:
        name = str(pod.get("metadata", {}).get("name"))
        node_name = str(pod.get("spec", {}).get("nodeName") or "")
        node = nodes.get(node_name)
        cpu_total = _allocatable(node, "cpu", 1000)
        mem_total = _allocatable(node, "memory", 1)
        usage = _container_usage(pod_metrics.get(name))
        containers = []
        for container in pod.get("spec", {}).get("containers") or []:
            cname = str(container.get("name"))
            used = usage.get(cname)
            cpu = quantity(used.get("cpu")) if used is not None else None
            mem = quantity(used.get("memory")) if used is not None else None
            if cpu is not None or mem is not None:
                measured = True
                nodes_used.add(node_name)
            cpu_used += cpu or 0
            mem_used += mem or 0
            containers.append(
                {
                    "containername": cname,
                    "metricsusage": {
                        "cpuusage": _ratio(None if cpu is None else int(cpu * 1000), cpu_total),
                        "memusage": _ratio(None if mem is None else int(mem), mem_total),
                        "diskusage": "",
                    },
                }
            )
        entries.append(
            {
                "podstatus": str(pod.get("status", {}).get("phase") or "Unknown"),
                "podname": name,
                "containers": containers,
                "nodeName": node_name,
                "nodeReady": _ready(node),
            }
        )
    document: dict[str, Any] = {"pods": entries, "services": [_service(s) for s in services]}
    cpu_capacity = sum(_allocatable(nodes.get(n), "cpu", 1000) or 0 for n in nodes_used)
    mem_capacity = sum(_allocatable(nodes.get(n), "memory", 1) or 0 for n in nodes_used)
    document["cpupercent"] = _percent(cpu_used * 1000, cpu_capacity) if measured else ""
    document["mempercent"] = _percent(mem_used, mem_capacity) if measured else ""
    return document


def _ratio(used: int | None, total: int | None) -> str:
    if used is None or total is None:
        return ""
    return f"{used}/{total}"


def _percent(used: Decimal, total: int) -> float | str:
    if total <= 0:
        return ""
    return round(float(used) * 100.0 / total, 2)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _service(service: Obj) -> dict[str, Any]:
    spec = service.get("spec") or {}
    return {
        "serviceName": _text(service.get("metadata", {}).get("name")),
        "type": _text(spec.get("type") or "ClusterIP"),
        "ports": [
            {
                "port": _text(port.get("port")),
                "targetPort": _text(port.get("targetPort")),
                "nodePort": _text(port.get("nodePort")),
                "protocol": _text(port.get("protocol") or "TCP"),
                "name": _text(port.get("name")),
            }
            for port in spec.get("ports") or []
        ],
    }


def kpi_document(node: Obj, node_metrics: Obj) -> dict[str, Any]:
    """``queryKPI``'s answer for one node and its NodeMetrics."""
    usage = node_metrics.get("usage") or {}
    cpu_used = quantity(usage.get("cpu"))
    mem_used = quantity(usage.get("memory"))
    return {
        "data": {
            "cpuusage": {
                "total": _allocatable(node, "cpu", 10**9) or 0,
                "used": int(cpu_used * 10**9) if cpu_used is not None else 0,
            },
            "memusage": {
                "total": (_allocatable(node, "memory", 1) or 0) // 1024,
                "used": int(mem_used) // 1024 if mem_used is not None else 0,
            },
        },
        "retCode": 0,
        "message": "success",
        "params": None,
    }


def _event_time(event: Obj) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or event.get("metadata", {}).get("creationTimestamp")
        or ""
    )


def workload_events_document(pods: Sequence[Obj], events: Iterable[Obj]) -> dict[str, Any]:
    """``workloadEvents``' answer: per pod, its events' messages and its waiting reasons."""
    by_pod: dict[str, list[Obj]] = {}
    uids = {str(p.get("metadata", {}).get("uid")): str(p["metadata"]["name"]) for p in pods}
    names = set(uids.values())
    for event in events:
        involved = event.get("involvedObject") or {}
        if involved.get("kind") != "Pod":
            continue
        pod_name = uids.get(str(involved.get("uid"))) or (
            str(involved.get("name")) if involved.get("name") in names else None
        )
        if pod_name is not None:
            by_pod.setdefault(pod_name, []).append(event)
    entries = []
    for pod in pods:
        name = str(pod["metadata"]["name"])
        ordered = sorted(by_pod.get(name, []), key=_event_time)
        lines = [str(e.get("message") or e.get("reason") or "").strip() for e in ordered]
        lines = [line for line in lines if line][-MAX_EVENTS_PER_POD:]
        lines.extend(_waiting_reasons(pod))
        entries.append({"podName": name, "podEventsInfo": lines or [NO_EVENTS]})
    return {"pods": entries}


def _waiting_reasons(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    lines = []
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            waiting = (container.get("state") or {}).get("waiting")
            if not isinstance(waiting, Mapping) or not waiting.get("reason"):
                continue
            parts = [str(container.get("name")), str(waiting["reason"])]
            if waiting.get("message"):
                parts.append(str(waiting["message"]).strip())
            lines.append(": ".join(parts))
    return lines
