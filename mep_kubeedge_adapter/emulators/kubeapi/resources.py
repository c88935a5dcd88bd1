"""The resource table: every kind the fake serves, with what the real server knows about it.

Each :class:`ResourceType` carries the facts that change behaviour: scope, the status
subresource, whether ``metadata.generation`` is kept, what a create does to ``status``, the
field labels its field selectors accept (from the apiserver's field-label conversion
functions), its verbs, short names and categories for discovery.

Storage is keyed by the qualified resource (``pods``, ``deployments.apps``,
``devices.devices.kubeedge.io``), so an object read through any served version of its group is
the same object.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "APPS",
    "CORE",
    "CRD_GROUP",
    "METRICS",
    "METRICS_GROUP",
    "PROFILE_V1_14",
    "PROFILE_V1_22",
    "PROFILE_V1_23",
    "RBAC",
    "RBAC_GROUP",
    "Profile",
    "ResourceType",
    "crd_types",
    "storage_version_hash",
]

FieldGetter = Callable[[Mapping[str, Any]], str]

ALL_VERBS: Final = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)
NO_COLLECTION_DELETE: Final = ("create", "delete", "get", "list", "patch", "update", "watch")
READ_ONLY: Final = ("get", "list")
STATUS_VERBS: Final = ("get", "patch", "update")


def _path(*keys: str) -> FieldGetter:
    def get(obj: Mapping[str, Any]) -> str:
        node: Any = obj
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is None:
            return ""
        if isinstance(node, bool):
            return "true" if node else "false"
        return str(node)

    return get


@dataclass(frozen=True)
class ResourceType:
    """One served resource (not a version of it: versions are chosen when it is served)."""

    group: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    has_status: bool = False
    """A ``/status`` subresource: main writes keep status, status writes keep the rest."""
    tracks_generation: bool = False
    """``metadata.generation`` is set to 1 on create and bumped when the spec changes."""
    clears_status_on_create: bool = False
    """A create drops the given status (the server sets its own, e.g. a Pod's phase)."""
    field_labels: Mapping[str, FieldGetter] = field(default_factory=dict)
    """Field-selector labels beyond ``metadata.name`` (and ``metadata.namespace``)."""
    returns_deleted_object: bool = False
    """A delete answers the deleted object; otherwise a ``Status`` of ``Success``."""
    custom: bool = False
    """A custom resource: field-selector wording and no strategic merge patch."""

    @property
    def key(self) -> str:
        """The qualified resource, as errors name it and storage keys it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def selectable_fields(self, obj: Mapping[str, Any]) -> dict[str, str]:
        """The field set a field selector matches against (``ToSelectableFields``)."""
        meta = obj.get("metadata") or {}
        fields = {"metadata.name": str(meta.get("name", ""))}
        if self.namespaced:
            fields["metadata.namespace"] = str(meta.get("namespace", ""))
        for label, getter in self.field_labels.items():
            fields[label] = getter(obj)
        return fields

    def field_label_error(self, label: str) -> str:
        """The message of the 400 for an unsupported field label, in the server's words."""
        if self.custom or self.field_labels or not self.namespaced:
            return f"field label not supported: {label}"
        # Kinds with no conversion function of their own use the default one.
        return (
            f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"'
        )

    def supports_field(self, label: str) -> bool:
        if label == "metadata.name":
            return True
        if label == "metadata.namespace":
            return self.namespaced or not (self.custom or self.field_labels)
        return label in self.field_labels


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """An opaque hash like the server's (8 bytes of a SHA-256, base64)."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()[:8]
    return base64.b64encode(digest).decode()


# --------------------------------------------------------------------------------------------
# core/v1 and apps/v1

_POD_FIELDS: Final[Mapping[str, FieldGetter]] = {
    "spec.nodeName": _path("spec", "nodeName"),
    "spec.restartPolicy": _path("spec", "restartPolicy"),
    "spec.schedulerName": _path("spec", "schedulerName"),
    "spec.serviceAccountName": _path("spec", "serviceAccountName"),
    "spec.hostNetwork": lambda o: "true" if (o.get("spec") or {}).get("hostNetwork") else "false",
    "status.phase": _path("status", "phase"),
    "status.podIP": _path("status", "podIP"),
    "status.nominatedNodeName": _path("status", "nominatedNodeName"),
}
_EVENT_FIELDS: Final[Mapping[str, FieldGetter]] = {
    "involvedObject.kind": _path("involvedObject", "kind"),
    "involvedObject.namespace": _path("involvedObject", "namespace"),
    "involvedObject.name": _path("involvedObject", "name"),
    "involvedObject.uid": _path("involvedObject", "uid"),
    "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
    "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
    "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
    "reason": _path("reason"),
    "reportingComponent": _path("reportingComponent"),
    "source": _path("source", "component"),
    "type": _path("type"),
}

PODS: Final = ResourceType(
    "",
    "pods",
    "pod",
    "Pod",
    True,
    ("po",),
    ("all",),
    has_status=True,
    clears_status_on_create=True,
    returns_deleted_object=True,
    field_labels=_POD_FIELDS,
)
NODES: Final = ResourceType(
    "",
    "nodes",
    "node",
    "Node",
    False,
    ("no",),
    has_status=True,
    field_labels={
        "spec.unschedulable": lambda o: str(
            bool((o.get("spec") or {}).get("unschedulable"))
        ).lower()
    },
)
NAMESPACES: Final = ResourceType(
    "",
    "namespaces",
    "namespace",
    "Namespace",
    False,
    ("ns",),
    verbs=NO_COLLECTION_DELETE,
    has_status=True,
    clears_status_on_create=True,
    returns_deleted_object=True,
    field_labels={"status.phase": _path("status", "phase")},
)
SERVICES: Final = ResourceType(
    "",
    "services",
    "service",
    "Service",
    True,
    ("svc",),
    ("all",),
    has_status=True,
    clears_status_on_create=True,
    returns_deleted_object=True,
    field_labels={
        "spec.clusterIP": _path("spec", "clusterIP"),
        "spec.type": _path("spec", "type"),
    },
)
SECRETS: Final = ResourceType(
    "",
    "secrets",
    "secret",
    "Secret",
    True,
    field_labels={"type": _path("type")},
)
CONFIGMAPS: Final = ResourceType("", "configmaps", "configmap", "ConfigMap", True, ("cm",))
SERVICEACCOUNTS: Final = ResourceType(
    "", "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",)
)
EVENTS: Final = ResourceType(
    "", "events", "event", "Event", True, ("ev",), field_labels=_EVENT_FIELDS
)

_WORKLOAD: Final[dict[str, Any]] = {
    "categories": ("all",),
    "has_status": True,
    "tracks_generation": True,
    "clears_status_on_create": True,
}
DEPLOYMENTS: Final = ResourceType(
    "apps", "deployments", "deployment", "Deployment", True, ("deploy",), **_WORKLOAD
)
REPLICASETS: Final = ResourceType(
    "apps",
    "replicasets",
    "replicaset",
    "ReplicaSet",
    True,
    ("rs",),
    **_WORKLOAD,
    field_labels={"status.replicas": _path("status", "replicas")},
)
STATEFULSETS: Final = ResourceType(
    "apps", "statefulsets", "statefulset", "StatefulSet", True, ("sts",), **_WORKLOAD
)
DAEMONSETS: Final = ResourceType(
    "apps", "daemonsets", "daemonset", "DaemonSet", True, ("ds",), **_WORKLOAD
)

CORE: Final = (PODS, NODES, NAMESPACES, SERVICES, SECRETS, CONFIGMAPS, SERVICEACCOUNTS, EVENTS)
"""core/v1 (served at ``/api/v1``), in discovery order."""
APPS: Final = (DEPLOYMENTS, REPLICASETS, STATEFULSETS, DAEMONSETS)
"""apps/v1."""

# --------------------------------------------------------------------------------------------
# rbac.authorization.k8s.io/v1 (stored and validated; nothing is authorized by them)

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
RBAC: Final = (
    ResourceType(
        RBAC_GROUP, "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", False
    ),
    ResourceType(RBAC_GROUP, "clusterroles", "clusterrole", "ClusterRole", False),
    ResourceType(RBAC_GROUP, "rolebindings", "rolebinding", "RoleBinding", True),
    ResourceType(RBAC_GROUP, "roles", "role", "Role", True),
)
"""rbac.authorization.k8s.io/v1, in discovery order."""

# --------------------------------------------------------------------------------------------
# metrics.k8s.io (metrics-server, through the aggregator)

METRICS_GROUP: Final = "metrics.k8s.io"
NODE_METRICS: Final = ResourceType(
    METRICS_GROUP, "nodes", "", "NodeMetrics", False, verbs=READ_ONLY
)
POD_METRICS: Final = ResourceType(METRICS_GROUP, "pods", "", "PodMetrics", True, verbs=READ_ONLY)
METRICS: Final = (NODE_METRICS, POD_METRICS)

# --------------------------------------------------------------------------------------------
# KubeEdge device CRDs

CRD_GROUP: Final = "devices.kubeedge.io"
_CRD_KINDS: Final = {
    "devices": ("device", "Device"),
    "devicemodels": ("devicemodel", "DeviceModel"),
    "devicestatuses": ("devicestatus", "DeviceStatus"),
}

Profile = Mapping[str, tuple[str, ...]]
"""Served versions of ``devices.kubeedge.io`` (preferred first) → plurals served under each."""

PROFILE_V1_23: Final[Profile] = {
    "v1beta1": ("devices", "devicemodels", "devicestatuses"),
    "v1alpha2": ("devices", "devicemodels", "devicestatuses"),
}
"""KubeEdge 1.23+: DeviceStatus exists; v1alpha2 is still served (no conversion)."""
PROFILE_V1_22: Final[Profile] = {
    "v1beta1": ("devices", "devicemodels"),
    "v1alpha2": ("devices", "devicemodels"),
}
"""KubeEdge 1.15 to 1.22: no DeviceStatus; reported values live in ``Device.status.twins``."""
PROFILE_V1_14: Final[Profile] = {"v1alpha2": ("devices", "devicemodels")}
"""KubeEdge <= 1.14: only v1alpha2."""


def crd_types() -> dict[str, ResourceType]:
    """The device CRDs by plural. No status subresource: any change bumps generation."""
    return {
        plural: ResourceType(
            CRD_GROUP,
            plural,
            singular,
            kind,
            True,
            tracks_generation=True,
            returns_deleted_object=True,
            custom=True,
        )
        for plural, (singular, kind) in _CRD_KINDS.items()
    }
