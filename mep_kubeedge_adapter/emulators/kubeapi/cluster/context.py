"""What every part of the cluster shares: the store, the kinds, the clock, events, helpers.

Writes go through the fake's :class:`~mep_kubeedge_adapter.emulators.kubeapi.storage.Store`, as the real components'
writes go through the API server: creates are admitted (defaults, validation), status goes
through the status subresource, deletes honour finalizers and grace periods.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..resources import ResourceType
from ..server import FakeApiServer
from ..storage import Store, now_rfc3339

__all__ = ["Context", "controller_of", "owner_reference", "set_condition", "short_hash"]


def short_hash(value: Any, length: int = 10) -> str:
    """A stable name suffix from the alphabet the controllers use for hashes."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(repr(value).encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A controller reference to ``owner``, as the workload controllers set it."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controller, if any."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: str,
    reason: str | None = None,
    message: str | None = None,
    *,
    probe_time: bool = False,
    update_time: bool = False,
) -> None:
    """Set a condition in place, keeping its timestamps while its status is unchanged."""
    old = next((c for c in conditions if c.get("type") == type_), None)
    now = now_rfc3339()
    new: dict[str, Any] = {"type": type_, "status": status}
    if probe_time:
        new["lastProbeTime"] = None
    if update_time:
        new["lastUpdateTime"] = (
            old["lastUpdateTime"]
            if old and old.get("status") == status and old.get("reason") == reason
            else now
        )
    new["lastTransitionTime"] = (
        old["lastTransitionTime"] if old and old.get("status") == status else now
    )
    if reason is not None:
        new["reason"] = reason
    if message is not None:
        new["message"] = message
    if old is None:
        conditions.append(new)
    else:
        conditions[conditions.index(old)] = new


@dataclass
class Context:
    """The fake, its store and kinds, the virtual clock and the event recorder."""

    fake: FakeApiServer
    now: float = 0.0
    """Virtual seconds since the cluster started; only :meth:`Cluster.elapse` moves it."""
    scope: set[str] | None = None
    """Namespaces this pass looks at (those changed since the last pass); None: all."""
    _event_names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.store: Store = self.fake.store
        kind = self.fake.resource
        self.pods: ResourceType = kind("Pod")
        self.nodes: ResourceType = kind("Node")
        self.events: ResourceType = kind("Event")
        self.deployments: ResourceType = kind("Deployment")
        self.replicasets: ResourceType = kind("ReplicaSet")
        self.statefulsets: ResourceType = kind("StatefulSet")
        self.daemonsets: ResourceType = kind("DaemonSet")

    def all(self, rtype: ResourceType, namespace: str | None = None) -> list[dict[str, Any]]:
        """The stored objects (not copies: copy before changing)."""
        return [obj for _, obj in self.store.select(rtype, namespace)]

    def scoped(self, rtype: ResourceType) -> list[dict[str, Any]]:
        """The stored objects of a namespaced kind in this pass's namespaces (not copies)."""
        if self.scope is None:
            return self.all(rtype)
        return [obj for ns in sorted(self.scope) for obj in self.all(rtype, ns)]

    def write_status(self, rtype: ResourceType, obj: Mapping[str, Any], status: Any) -> None:
        """Write ``status`` through the status subresource (a no-op when unchanged)."""
        meta = obj["metadata"]
        if obj.get("status") == status:
            return
        body = {"metadata": {"name": meta["name"]}, "status": copy.deepcopy(status)}
        self.store.update(
            rtype, meta.get("namespace", ""), meta["name"], body, subresource="status"
        )

    def record_event(
        self,
        obj: Mapping[str, Any],
        reason: str,
        message: str,
        *,
        component: str,
        host: str | None = None,
        warning: bool = False,
        field_path: str | None = None,
    ) -> None:
        """Record an Event on ``obj``; a repeat of the same one bumps its ``count``."""
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        involved: dict[str, Any] = {
            "kind": obj["kind"],
            "namespace": meta.get("namespace", ""),
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": obj["apiVersion"],
            "resourceVersion": meta["resourceVersion"],
        }
        if field_path:
            involved["fieldPath"] = field_path
        source = {"component": component, **({"host": host} if host else {})}
        for existing in self.all(self.events, namespace):
            same = existing.get("involvedObject", {})
            if (
                same.get("uid") == meta["uid"]
                and existing.get("reason") == reason
                and existing.get("message") == message
                and existing.get("source") == source
            ):
                updated = copy.deepcopy(existing)
                updated["count"] = int(existing.get("count", 1)) + 1
                updated["lastTimestamp"] = now_rfc3339()
                self.store.put(self.events, existing, updated)
                return
        now = now_rfc3339()
        self.store.create(
            self.events,
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{meta['name']}.{next(self._event_names):016x}"},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "source": source,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "type": "Warning" if warning else "Normal",
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": host or "",
            },
        )
