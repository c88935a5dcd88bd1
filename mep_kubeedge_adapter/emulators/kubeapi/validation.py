"""Server-side defaults and validation that a client can observe, per kind.

Not the full API validation: the checks a client is likely to trip on (object names, a
workload's selector against its template labels, required containers and images, Service
ports) and the defaults a client reads back (a Pod's ``Pending`` phase and scheduler name, the
``DefaultTolerationSeconds`` tolerations, a workload's ``replicas: 1``, a Service's
``clusterIP``, a Namespace's finalizer and name label, a Secret's ``Opaque`` type and its
``stringData`` folded into ``data``). Failures are ``422 Invalid`` with ``details.causes``,
worded as the server words them.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from .errors import bad_request, invalid
from .resources import ResourceType

__all__ = ["NOT_READY_TAINT", "UNREACHABLE_TAINT", "ServiceAllocator", "admit", "selector_matches"]

_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_1123: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_1035: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

_SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_1123_MSG: Final = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_LABEL_1035_MSG: Final = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)

Cause = tuple[str, str, str]

NOT_READY_TAINT: Final = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT: Final = "node.kubernetes.io/unreachable"


def _name_causes(rtype: ResourceType, name: str, field: str = "metadata.name") -> list[Cause]:
    if rtype.kind == "Namespace":
        pattern, limit, message = _LABEL_1123, 63, _LABEL_1123_MSG
    elif rtype.kind == "Service":
        pattern, limit, message = _LABEL_1035, 63, _LABEL_1035_MSG
    else:
        pattern, limit, message = _SUBDOMAIN, 253, _SUBDOMAIN_MSG
    causes: list[Cause] = []
    if len(name) > limit:
        causes.append(
            (
                "FieldValueInvalid",
                field,
                f'Invalid value: "{name}": must be no more than {limit} characters',
            )
        )
    if not pattern.match(name):
        causes.append(("FieldValueInvalid", field, f'Invalid value: "{name}": {message}'))
    return causes


def _go_map(labels: Mapping[str, Any]) -> str:
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
    return "map[string]string{" + inner + "}"


class ServiceAllocator:
    """Hands out ClusterIPs from 10.96.0.0/12 and NodePorts from 30000-32767, as the server."""

    def __init__(self) -> None:
        self._ips: Iterator[int] = itertools.count(10)
        self._ports: Iterator[int] = itertools.count(30000)

    def cluster_ip(self) -> str:
        n = next(self._ips)
        return f"10.96.{n // 250}.{n % 250 + 1}"

    def node_port(self) -> int:
        return next(self._ports)


def admit(
    rtype: ResourceType,
    obj: dict[str, Any],
    old: Mapping[str, Any] | None,
    services: ServiceAllocator,
) -> None:
    """Default and validate ``obj`` (a create when ``old`` is None) in place; 422 on failure."""
    meta = obj["metadata"]
    causes: list[Cause] = []
    if old is None:
        causes += _name_causes(rtype, str(meta.get("name", "")))
    kind = rtype.kind
    if rtype.group == "apps":
        causes += _workload(rtype, obj)
    elif kind == "Pod":
        if old is None:
            _default_pod_spec(obj.setdefault("spec", {}), admission=True)
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj["spec"])}
        causes += _pod_spec_causes(obj.get("spec") or {}, "spec")
    elif kind == "Service":
        causes += _service(obj, old, services)
    elif kind == "Namespace":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        spec = obj.setdefault("spec", {})
        if old is None:
            spec.setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
    elif kind == "Secret":
        _secret(obj)
    elif kind in ("RoleBinding", "ClusterRoleBinding"):
        causes += _role_binding(obj, old, namespaced=rtype.namespaced)
    if causes:
        raise invalid(rtype.group, kind, str(meta.get("name", "")), causes)


# --------------------------------------------------------------------------------------------
# pods and pod templates


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_pod_spec(spec: dict[str, Any], *, admission: bool) -> None:
    """Defaults of a PodSpec (a template's too); ``admission`` adds a Pod's admission defaults."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            if not isinstance(container, dict):
                continue
            container.setdefault("resources", {})
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            if isinstance(container.get("image"), str):
                container.setdefault("imagePullPolicy", _image_pull_policy(container["image"]))
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
    if admission:
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        tolerations = spec.setdefault("tolerations", [])
        for key in (NOT_READY_TAINT, UNREACHABLE_TAINT):
            # DefaultTolerationSeconds admission: only when the pod tolerates neither.
            if not any(
                isinstance(t, dict)
                and t.get("key") in (key, None, "")
                and t.get("effect") in ("NoExecute", None, "")
                for t in tolerations
            ):
                tolerations.append(
                    {
                        "key": key,
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    }
                )


def _qos_class(spec: Mapping[str, Any]) -> str:
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    requests = [(c.get("resources") or {}).get("requests") or {} for c in containers]
    limits = [(c.get("resources") or {}).get("limits") or {} for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        set(lim) >= {"cpu", "memory"} and all(req.get(k, lim[k]) == lim[k] for k in lim)
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _pod_spec_causes(spec: Mapping[str, Any], path: str) -> list[Cause]:
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [("FieldValueRequired", f"{path}.containers", "Required value")]
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, container in enumerate(containers):
        where = f"{path}.containers[{i}]"
        if not isinstance(container, Mapping):
            causes.append(("FieldValueInvalid", where, "Invalid value: must be an object"))
            continue
        name = container.get("name")
        if not name:
            causes.append(("FieldValueRequired", f"{where}.name", "Required value"))
        elif not _LABEL_1123.match(str(name)):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{where}.name",
                    f'Invalid value: "{name}": {_LABEL_1123_MSG}',
                )
            )
        elif name in seen:
            causes.append(("FieldValueDuplicate", f"{where}.name", f'Duplicate value: "{name}"'))
        else:
            seen.add(str(name))
        if not container.get("image"):
            causes.append(("FieldValueRequired", f"{where}.image", "Required value"))
    return causes


# --------------------------------------------------------------------------------------------
# workloads (apps/v1)


_INITIAL_STATUS: Final = {
    # The fields of each status that are not omitempty, as a create's empty status encodes.
    "ReplicaSet": {"replicas": 0},
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "DaemonSet": {
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    },
}


def _workload(rtype: ResourceType, obj: dict[str, Any]) -> list[Cause]:
    spec = obj.setdefault("spec", {})
    kind = rtype.kind
    if obj.get("status") == {}:
        obj["status"] = dict(_INITIAL_STATUS.get(kind, {}))
    if kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        spec.setdefault("replicas", 1)
    if kind != "ReplicaSet":  # a ReplicaSetSpec has no such field
        spec.setdefault("revisionHistoryLimit", 10)
    if kind == "Deployment":
        spec.setdefault(
            "strategy",
            {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
        )
        spec.setdefault("progressDeadlineSeconds", 600)
    elif kind == "StatefulSet":
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault(
            "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
        )
    elif kind == "DaemonSet":
        spec.setdefault(
            "updateStrategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        )
    template = spec.get("template")
    if not isinstance(template, dict):
        return [("FieldValueRequired", "spec.template", "Required value")]
    template_spec = template.setdefault("spec", {})
    if isinstance(template_spec, dict):
        _default_pod_spec(template_spec, admission=False)
    causes = _pod_spec_causes(template_spec, "spec.template.spec")
    selector = spec.get("selector")
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        causes.append(("FieldValueRequired", "spec.selector", "Required value"))
        if isinstance(selector, dict):
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.selector",
                    "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                    "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is "
                    "invalid for deployment",
                )
            )
    elif not selector_matches(selector, labels):
        causes.append(
            (
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`",
            )
        )
    replicas = spec.get("replicas", 0)
    if not isinstance(replicas, int) or replicas < 0:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.replicas",
                f"Invalid value: {replicas}: must be greater than or equal to 0",
            )
        )
    return causes


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """A ``metav1.LabelSelector`` (matchLabels and matchExpressions) against labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


# --------------------------------------------------------------------------------------------
# services and secrets


def _service(
    obj: dict[str, Any], old: Mapping[str, Any] | None, services: ServiceAllocator
) -> list[Cause]:
    spec = obj.setdefault("spec", {})
    old_spec = (old or {}).get("spec") or {}
    svc_type = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    causes: list[Cause] = []
    ports = spec.get("ports")
    if svc_type != "ExternalName":
        if not ports and spec.get("clusterIP") != "None":
            causes.append(("FieldValueRequired", "spec.ports", "Required value"))
        # Allocated fields a replace leaves out are carried over, as the server does.
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if key not in spec and key in old_spec:
                spec[key] = copy.deepcopy(old_spec[key])
        if "clusterIP" not in spec:
            spec["clusterIP"] = services.cluster_ip()
        elif old_spec and spec["clusterIP"] != old_spec.get("clusterIP"):
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.clusterIPs[0]",
                    f'Invalid value: []string{{"{spec["clusterIP"]}"}}: may not change once set',
                )
            )
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if svc_type in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    old_ports = {p.get("port"): p for p in old_spec.get("ports") or [] if isinstance(p, dict)}
    for i, port in enumerate(ports or []):
        if not isinstance(port, dict) or not isinstance(port.get("port"), int):
            causes.append(("FieldValueRequired", f"spec.ports[{i}].port", "Required value"))
            continue
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port["port"])
        if svc_type in ("NodePort", "LoadBalancer") and "nodePort" not in port:
            previous = old_ports.get(port["port"], {}).get("nodePort")
            port["nodePort"] = previous or services.node_port()
    obj.setdefault("status", {"loadBalancer": {}})
    return causes


def _secret(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")
    data = obj.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as e:
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data '
                f"at input byte 0 (key {key!r}): {e}"
            ) from e
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        obj["data"] = data


# --------------------------------------------------------------------------------------------
# RBAC bindings

_RBAC_GROUP: Final = "rbac.authorization.k8s.io"


def _not_supported(value: Any, supported: tuple[str, ...]) -> str:
    quoted = ", ".join(f'"{v}"' for v in supported)
    return f'Unsupported value: "{value}": supported values: {quoted}'


def _role_binding(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None, *, namespaced: bool
) -> list[Cause]:
    """``ValidateRoleBinding`` / ``ValidateClusterRoleBinding`` and their update rule."""
    raw = obj.get("roleRef")
    ref: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    causes: list[Cause] = []
    if ref.get("apiGroup", "") != _RBAC_GROUP:
        causes.append(
            (
                "FieldValueNotSupported",
                "roleRef.apiGroup",
                _not_supported(ref.get("apiGroup", ""), (_RBAC_GROUP,)),
            )
        )
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.get("kind", "") not in kinds:
        causes.append(
            ("FieldValueNotSupported", "roleRef.kind", _not_supported(ref.get("kind", ""), kinds))
        )
    if not ref.get("name"):
        causes.append(("FieldValueRequired", "roleRef.name", "Required value"))
    for i, subject in enumerate(obj.get("subjects") or []):
        where = f"subjects[{i}]"
        if not isinstance(subject, Mapping):
            causes.append(("FieldValueInvalid", where, "Invalid value: must be an object"))
            continue
        if not subject.get("name"):
            causes.append(("FieldValueRequired", f"{where}.name", "Required value"))
        subject_kind = subject.get("kind", "")
        if subject_kind not in ("ServiceAccount", "User", "Group"):
            causes.append(
                (
                    "FieldValueNotSupported",
                    f"{where}.kind",
                    _not_supported(subject_kind, ("ServiceAccount", "User", "Group")),
                )
            )
        elif subject_kind == "ServiceAccount" and not namespaced and not subject.get("namespace"):
            causes.append(("FieldValueRequired", f"{where}.namespace", "Required value"))
    old_ref = (old or {}).get("roleRef")
    if old is not None and dict(old_ref or {}) != dict(ref):
        value = (
            f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", '
            f'Name:"{ref.get("name", "")}"}}'
        )
        causes.append(
            ("FieldValueInvalid", "roleRef", f"Invalid value: {value}: cannot change roleRef")
        )
    return causes
