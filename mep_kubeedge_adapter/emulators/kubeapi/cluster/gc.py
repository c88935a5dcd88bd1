"""The garbage collector: dependents follow their owners (``metadata.ownerReferences``).

- an object all of whose owners are gone is deleted (background cascading deletion);
- an owner held by the ``orphan`` finalizer has its references removed from its dependents,
  then the finalizer, which completes its deletion;
- an owner held by ``foregroundDeletion`` has its dependents deleted first; when none is
  left the finalizer goes and the owner with it.
"""

from __future__ import annotations

import copy
from typing import Any

from ..resources import ResourceType
from .context import Context

__all__ = ["collect_garbage"]


def collect_garbage(ctx: Context) -> None:
    live: dict[str, tuple[ResourceType, dict[str, Any]]] = {}
    dependents: dict[str, list[tuple[ResourceType, dict[str, Any]]]] = {}
    for rtype in ctx.store.types.values():
        for obj in ctx.all(rtype):
            live[obj["metadata"]["uid"]] = (rtype, obj)
            for ref in obj["metadata"].get("ownerReferences") or []:
                dependents.setdefault(str(ref.get("uid")), []).append((rtype, obj))
    for uid, (rtype, owner) in list(live.items()):
        finalizers = owner["metadata"].get("finalizers") or []
        if not owner["metadata"].get("deletionTimestamp"):
            continue
        if "orphan" in finalizers:
            for dep_type, dep in dependents.get(uid, []):
                updated = copy.deepcopy(dep)
                refs = [
                    r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid
                ]
                if refs:
                    updated["metadata"]["ownerReferences"] = refs
                else:
                    updated["metadata"].pop("ownerReferences", None)
                ctx.store.put(dep_type, dep, updated)
            _drop_finalizer(ctx, rtype, owner, "orphan")
        elif "foregroundDeletion" in finalizers:
            remaining = [
                (t, d)
                for t, d in dependents.get(uid, [])
                if ctx.store.find(t, d["metadata"].get("namespace", ""), d["metadata"]["name"])
            ]
            for dep_type, dep in remaining:
                if not dep["metadata"].get("deletionTimestamp"):
                    meta = dep["metadata"]
                    ctx.store.delete(dep_type, meta.get("namespace", ""), meta["name"])
            if not remaining:
                _drop_finalizer(ctx, rtype, owner, "foregroundDeletion")
    for rtype in ctx.store.types.values():
        for obj in ctx.all(rtype):
            refs = obj["metadata"].get("ownerReferences") or []
            meta = obj["metadata"]
            if (
                refs
                and not meta.get("deletionTimestamp")
                and not any(
                    str(r.get("uid")) in live and ctx.store.find(*_locate(live[str(r.get("uid"))]))
                    for r in refs
                )
            ):
                ctx.store.delete(rtype, meta.get("namespace", ""), meta["name"])


def _locate(entry: tuple[ResourceType, dict[str, Any]]) -> tuple[ResourceType, str, str]:
    rtype, obj = entry
    return rtype, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _drop_finalizer(ctx: Context, rtype: ResourceType, owner: dict[str, Any], name: str) -> None:
    current = ctx.store.find(
        rtype, owner["metadata"].get("namespace", ""), owner["metadata"]["name"]
    )
    if current is None:
        return
    updated = copy.deepcopy(current)
    updated["metadata"]["finalizers"] = [
        f for f in current["metadata"].get("finalizers") or [] if f != name
    ]
    if not updated["metadata"]["finalizers"]:
        del updated["metadata"]["finalizers"]
    ctx.store.put(rtype, current, updated)
