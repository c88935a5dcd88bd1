"""Objects, the one global resourceVersion, the bounded event history, and the write rules.

Like etcd behind the apiserver plus the registry strategies: every write goes through
:class:`Store`, which keeps server-owned metadata, the status subresource split, generation,
finalizers and graceful deletion, namespace lifecycle, and records one :class:`WatchEvent`
per change. Listeners (open watches, the cluster component's hook) are called synchronously
with each event and must not write to the store from inside the call.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    forbidden,
    invalid,
    namespace_terminating,
    not_found,
)
from .resources import ResourceType
from .validation import ServiceAllocator, admit

__all__ = [
    "BUILTIN_NAMESPACES",
    "IMMORTAL_NAMESPACES",
    "Listener",
    "Store",
    "WatchEvent",
    "now_rfc3339",
]

BUILTIN_NAMESPACES: Final = ("default", "kube-node-lease", "kube-public", "kube-system")
IMMORTAL_NAMESPACES: Final = frozenset({"default", "kube-public", "kube-system"})
"""Namespaces the NamespaceLifecycle admission refuses to delete."""

_SERVER_OWNED: Final = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
PROPAGATION_POLICIES: Final = frozenset({"Orphan", "Background", "Foreground"})


def now_rfc3339(offset_seconds: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    """One stored change: the global resourceVersion it got, and the object after it."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: str  # the qualified resource, e.g. "pods" or "deployments.apps"
    obj: Mapping[str, Any]


Listener = Callable[[WatchEvent], None]


class Store:
    """In-memory objects of every resource type, with the API server's write semantics."""

    def __init__(
        self,
        types: Iterable[ResourceType],
        *,
        history_size: int,
        namespaces: ResourceType,
        pods: ResourceType,
    ) -> None:
        self.types: dict[str, ResourceType] = {t.key: t for t in types}
        self.history_size = history_size
        self.namespaces = namespaces
        self.pods = pods
        self.rv = 1000
        self.history: deque[WatchEvent] = deque()
        self.compacted_rv = self.rv
        self.services = ServiceAllocator()
        self.on_namespace_terminating: Callable[[str], None] = lambda _name: None
        self._objects: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
            key: {} for key in self.types
        }
        """resource → namespace ("" if cluster-scoped) → name → object."""
        self._listeners: list[Listener] = []

    # ----------------------------------------------------------------------------- events

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every later event; returns the function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _record(self, type_: str, rtype: ResourceType, obj: Mapping[str, Any]) -> None:
        event = WatchEvent(self.rv, type_, rtype.key, copy.deepcopy(obj))
        self.history.append(event)
        while len(self.history) > self.history_size:
            self.compacted_rv = self.history.popleft().rv
        for listener in list(self._listeners):
            listener(event)

    def compact(self) -> None:
        self.history.clear()
        self.compacted_rv = self.rv

    # ----------------------------------------------------------------------------- reads

    def find(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object itself (not a copy), or None."""
        by_name = self._objects[rtype.key].get(namespace if rtype.namespaced else "")
        return None if by_name is None else by_name.get(name)

    def _keep(self, rtype: ResourceType, namespace: str, obj: dict[str, Any]) -> None:
        ns = namespace if rtype.namespaced else ""
        self._objects[rtype.key].setdefault(ns, {})[obj["metadata"]["name"]] = obj

    def _drop(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        ns = namespace if rtype.namespaced else ""
        by_name = self._objects[rtype.key].get(ns)
        if by_name is None:
            return None
        obj = by_name.pop(name, None)
        if not by_name:
            del self._objects[rtype.key][ns]
        return obj

    def lookup(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.find(rtype, namespace, name)
        if obj is None:
            raise not_found(rtype.group, rtype.plural, name)
        return obj

    def select(
        self, rtype: ResourceType, namespace: str | None = None
    ) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        """``((namespace, name), object)`` pairs in the server's order; objects not copied."""
        by_namespace = self._objects[rtype.key]
        namespaces = sorted(by_namespace) if namespace is None else [namespace]
        return [
            ((ns, name), by_namespace[ns][name])
            for ns in namespaces
            if ns in by_namespace
            for name in sorted(by_namespace[ns])
        ]

    # ----------------------------------------------------------------------------- create

    def create(
        self, rtype: ResourceType, namespace: str, body: Any, *, admission: bool = True
    ) -> dict[str, Any]:
        """A POST: name or generateName, namespace admission, defaults, validation; ADDED."""
        if not isinstance(body, Mapping) or not isinstance(body.get("metadata", {}), Mapping):
            raise bad_request("the body of the request must be an object")
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
        else:
            namespace = ""
            meta.pop("namespace", None)
        name = meta.get("name")
        if not name and meta.get("generateName"):
            suffix = "".join(random.choices(_NAME_ALPHABET, k=5))
            name = f"{meta['generateName']}{suffix}"
        if not name or not isinstance(name, str):
            raise invalid(
                rtype.group,
                rtype.kind,
                "",
                [
                    (
                        "FieldValueRequired",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    )
                ],
            )
        meta["name"] = name
        if rtype.namespaced:
            self._admit_namespace(rtype, namespace, name)
        if self.find(rtype, namespace, name) is not None:
            raise already_exists(rtype.group, rtype.plural, name)
        if rtype.clears_status_on_create:
            obj["status"] = {}
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            meta.pop(key, None)
        if admission:
            admit(rtype, obj, None, self.services)
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=self._next_rv(),
            creationTimestamp=now_rfc3339(),
        )
        if rtype.namespaced:
            meta["namespace"] = namespace
        if rtype.tracks_generation:
            meta["generation"] = 1
        obj["kind"] = rtype.kind
        obj.setdefault("apiVersion", f"{rtype.group}/v1" if rtype.group else "v1")
        self._keep(rtype, namespace, obj)
        self._record("ADDED", rtype, obj)
        return copy.deepcopy(obj)

    def _admit_namespace(self, rtype: ResourceType, namespace: str, name: str) -> None:
        ns = self.find(self.namespaces, "", namespace)
        if ns is None:
            raise not_found("", "namespaces", namespace)
        if (ns.get("status") or {}).get("phase") == "Terminating":
            raise namespace_terminating(rtype.group, rtype.plural, name, namespace)

    # ----------------------------------------------------------------------------- update

    def update(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        require_resource_version: bool = False,
        admission: bool = True,
    ) -> dict[str, Any]:
        """A PUT (or a patch's result) to the object or its ``status``; MODIFIED if it changed.

        A write to the main resource keeps the stored ``status`` of a kind with a status
        subresource; a write to ``status`` keeps everything but ``status``. A
        ``metadata.resourceVersion`` in the body must match the stored one (409).
        """
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise bad_request("the body of the request must be an object")
        meta = body["metadata"]
        if meta.get("name") not in (None, name):
            raise bad_request("the name of the object does not match the name on the URL")
        current = self.lookup(rtype, namespace, name)
        rv = meta.get("resourceVersion")
        if not rv and require_resource_version:
            raise invalid(
                rtype.group,
                rtype.kind,
                name,
                [
                    (
                        "FieldValueInvalid",
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise conflict(rtype.group, rtype.plural, name)
        if subresource == "status":
            updated = copy.deepcopy(current)
            if "status" in body:
                updated["status"] = copy.deepcopy(body["status"])
            else:
                updated.pop("status", None)
        else:
            updated = copy.deepcopy(body)
            if rtype.has_status:
                if "status" in current:
                    updated["status"] = copy.deepcopy(current["status"])
                else:
                    updated.pop("status", None)
        self._keep_server_metadata(current, updated)
        if admission and not subresource:
            admit(rtype, updated, current, self.services)
        return self._store_update(rtype, current, updated)

    def put(
        self, rtype: ResourceType, current: Mapping[str, Any], updated: dict[str, Any]
    ) -> dict[str, Any]:
        """A raw write of ``updated`` over ``current`` (spec and status alike, no admission),
        keeping server-owned metadata: what a controller with full access amounts to."""
        self._keep_server_metadata(current, updated)
        return self._store_update(rtype, current, updated)

    @staticmethod
    def _keep_server_metadata(current: Mapping[str, Any], updated: dict[str, Any]) -> None:
        cur_meta = current["metadata"]
        meta = updated.setdefault("metadata", {})
        for key in _SERVER_OWNED:
            if key in cur_meta:
                meta[key] = cur_meta[key]
            else:
                meta.pop(key, None)
        meta["resourceVersion"] = cur_meta["resourceVersion"]
        updated["kind"] = current["kind"]
        updated["apiVersion"] = current["apiVersion"]

    def _spec_part(self, rtype: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
        skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rtype.has_status else set())
        return {k: v for k, v in obj.items() if k not in skip}

    def _store_update(
        self, rtype: ResourceType, current: Mapping[str, Any], updated: dict[str, Any]
    ) -> dict[str, Any]:
        """Bump generation for spec changes, finish a pending deletion, emit MODIFIED.

        An update that changes nothing keeps the resourceVersion and emits no event, as the
        real API server does.
        """
        if updated == current:
            return copy.deepcopy(updated)
        meta = updated["metadata"]
        if rtype.tracks_generation and self._spec_part(rtype, updated) != self._spec_part(
            rtype, current
        ):
            meta["generation"] = int(meta.get("generation", 0)) + 1
        namespace, name = meta.get("namespace", ""), meta["name"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
        ):
            # The last finalizer is gone: the deletion completes.
            self._keep(rtype, namespace, updated)
            return self.remove(rtype, namespace, name)
        meta["resourceVersion"] = self._next_rv()
        self._keep(rtype, namespace, updated)
        self._record("MODIFIED", rtype, updated)
        return copy.deepcopy(updated)

    def bind(self, namespace: str, name: str, node: str) -> dict[str, Any]:
        """``pods/binding``: set ``spec.nodeName`` once, with the ``PodScheduled`` condition."""
        current = self.lookup(self.pods, namespace, name)
        bound = (current.get("spec") or {}).get("nodeName")
        if bound:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already '
                f'assigned to node "{bound}"',
                {"name": name, "kind": "pods/binding"},
            )
        if current["metadata"].get("deletionTimestamp"):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is being '
                "deleted, cannot be assigned to a host",
                {"name": name, "kind": "pods/binding"},
            )
        updated = copy.deepcopy(current)
        updated.setdefault("spec", {})["nodeName"] = node
        conditions = [
            c
            for c in (updated.setdefault("status", {}).get("conditions") or [])
            if c.get("type") != "PodScheduled"
        ]
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now_rfc3339(),
            }
        )
        updated["status"]["conditions"] = conditions
        return self._store_update(self.pods, current, updated)

    # ----------------------------------------------------------------------------- delete

    def delete(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        grace_seconds: int | None = None,
        preconditions: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """A DELETE: ``(object, deleted)``; not deleted yet while finalizers or a grace period
        hold it (it then carries ``deletionTimestamp``).

        ``Orphan`` and ``Foreground`` add the ``orphan`` / ``foregroundDeletion`` finalizer for
        the garbage collector to act on; ``Background`` (the default here) deletes at once and
        leaves the dependents to the collector. A Pod bound to a node is deleted gracefully:
        it stays, marked, until its kubelet deletes it with a grace period of 0.
        """
        current = self.lookup(rtype, namespace, name)
        meta = current["metadata"]
        if preconditions and (
            preconditions.get("uid") not in (None, meta["uid"])
            or preconditions.get("resourceVersion") not in (None, meta["resourceVersion"])
        ):
            raise conflict(rtype.group, rtype.plural, name)
        if propagation is not None and propagation not in PROPAGATION_POLICIES:
            raise invalid(
                "",
                "DeleteOptions",
                "",
                [
                    (
                        "FieldValueNotSupported",
                        "propagationPolicy",
                        f'Unsupported value: "{propagation}": supported values: "Foreground", '
                        '"Background", "Orphan", "nil"',
                    )
                ],
            )
        if rtype is self.namespaces:
            return self._delete_namespace(current), False
        graceful = self._grace_period(rtype, current, grace_seconds)
        if meta.get("deletionTimestamp"):
            if graceful == 0 and not meta.get("finalizers"):
                return self.remove(rtype, namespace, name), True
            return copy.deepcopy(current), False
        finalizers = list(meta.get("finalizers") or [])
        extra = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(propagation or "")
        if extra and extra not in finalizers:
            finalizers.append(extra)
        if not finalizers and not graceful:
            return self.remove(rtype, namespace, name), True
        updated = copy.deepcopy(current)
        umeta = updated["metadata"]
        if finalizers:
            umeta["finalizers"] = finalizers
        umeta["deletionTimestamp"] = now_rfc3339(graceful)
        umeta["deletionGracePeriodSeconds"] = graceful
        if rtype.tracks_generation:
            umeta["generation"] = int(umeta.get("generation", 0)) + 1
        umeta["resourceVersion"] = self._next_rv()
        self._keep(rtype, namespace, updated)
        self._record("MODIFIED", rtype, updated)
        return copy.deepcopy(updated), False

    def _grace_period(
        self, rtype: ResourceType, obj: Mapping[str, Any], requested: int | None
    ) -> int:
        if rtype is not self.pods:
            return 0
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(requested, 0)
        pending = obj["metadata"].get("deletionGracePeriodSeconds")
        if pending is not None:
            return int(pending)
        return int(spec.get("terminationGracePeriodSeconds", 30))

    def remove(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        """Delete at once, whatever holds the object; DELETED."""
        obj = self._drop(rtype, namespace, name)
        if obj is None:
            raise not_found(rtype.group, rtype.plural, name)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._record("DELETED", rtype, obj)
        return copy.deepcopy(obj)

    # ----------------------------------------------------------------------------- namespaces

    def ensure_namespace(self, name: str) -> None:
        if self.find(self.namespaces, "", name) is None:
            self.create(self.namespaces, "", {"metadata": {"name": name}})

    def _delete_namespace(self, current: dict[str, Any]) -> dict[str, Any]:
        name = current["metadata"]["name"]
        if name in IMMORTAL_NAMESPACES:
            raise forbidden("", "namespaces", name, "this namespace may not be deleted")
        if current["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(current)
        updated = copy.deepcopy(current)
        updated["metadata"]["deletionTimestamp"] = now_rfc3339()
        updated["metadata"]["deletionGracePeriodSeconds"] = 0
        updated["status"] = {**(updated.get("status") or {}), "phase": "Terminating"}
        updated["metadata"]["resourceVersion"] = self._next_rv()
        self._keep(self.namespaces, "", updated)
        self._record("MODIFIED", self.namespaces, updated)
        self.on_namespace_terminating(name)
        return copy.deepcopy(updated)

    def finalize_namespace(self, name: str) -> None:
        """The namespace controller's work: delete every object in it, then the namespace.

        Contents go at once, finalizers and grace periods notwithstanding (a simplification:
        the real controller waits for them).
        """
        ns = self.find(self.namespaces, "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        for rtype in self.types.values():
            if rtype.namespaced:
                for (_, obj_name), _obj in self.select(rtype, name):
                    self.remove(rtype, name, obj_name)
        self.remove(self.namespaces, "", name)
