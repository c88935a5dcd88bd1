"""Whether a node admits a pod: cordon, taints, node selector and required node affinity.

Shared by the scheduler and the DaemonSet controller, as ``NodeShouldRunDaemonPod`` shares the
scheduler's predicates. The checks run in the order of the default profile's filter plugins
(NodeUnschedulable, TaintToleration, NodeAffinity), and the first refusal is the node's
reason, in the scheduler's words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["node_admits", "tolerates"]


def tolerates(tolerations: list[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """``v1.Toleration.ToleratesTaint``: key (or an empty key with Exists), value, effect."""
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        operator = t.get("operator") or "Equal"
        if not t.get("key"):
            if operator == "Exists":
                return True
            continue
        if t.get("key") != taint.get("key"):
            continue
        if operator == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _expression(labels: Mapping[str, str], expr: Mapping[str, Any]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    present = key in labels
    value = labels.get(str(key), "")
    match op:
        case "In":
            return present and value in values
        case "NotIn":
            return not present or value not in values
        case "Exists":
            return present
        case "DoesNotExist":
            return not present
        case "Gt" | "Lt":
            try:
                left, right = int(value), int(values[0])
            except (ValueError, IndexError):
                return False
            return present and (left > right if op == "Gt" else left < right)
    return False


def _affinity_matches(node: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    required = ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    labels = node["metadata"].get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}
    return any(
        all(_expression(labels, e) for e in term.get("matchExpressions") or [])
        and all(_expression(fields, e) for e in term.get("matchFields") or [])
        for term in terms
    )


def node_admits(node: Mapping[str, Any], pod: Mapping[str, Any]) -> str | None:
    """None when ``node`` may run ``pod``, else the scheduler's reason for refusing."""
    spec = pod.get("spec") or {}
    tolerations = list(spec.get("tolerations") or [])
    node_spec = node.get("spec") or {}
    if node_spec.get("unschedulable") and not tolerates(
        tolerations, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ):
        return "node(s) were unschedulable"
    for taint in node_spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    labels = node["metadata"].get("labels") or {}
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()) or not _affinity_matches(node, pod):
        return "node(s) didn't match Pod's node affinity/selector"
    return None
