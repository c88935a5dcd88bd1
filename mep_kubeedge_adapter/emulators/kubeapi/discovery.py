"""Discovery documents: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<g>[/<v>]``.

Built from :class:`ServedGroup` entries, so what discovery says is exactly what the routes
serve: the resources, their scope, verbs, short names, categories and subresources
(``pods/status``, ``pods/binding``, ``deployments/status``, …). ``kubernetes.dynamic`` reads
these to find every resource, so they must be complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .resources import ResourceType, storage_version_hash

__all__ = [
    "ServedGroup",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "api_versions",
    "version_info",
]


@dataclass(frozen=True)
class ServedGroup:
    """One API group as served now: versions (preferred first) and resources per version."""

    name: str
    versions: tuple[str, ...]
    resources: dict[str, tuple[ResourceType, ...]] = field(default_factory=dict)
    storage: bool = True
    """False for an aggregated group (metrics.k8s.io): no storageVersionHash."""

    def group_version(self, version: str) -> str:
        return f"{self.name}/{version}" if self.name else version


def version_info(git_version: str) -> dict[str, Any]:
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2024-01-01T00:00:00Z",
        "goVersion": "go1.21.5",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_entry(group: ServedGroup) -> dict[str, Any]:
    entries = [{"groupVersion": group.group_version(v), "version": v} for v in group.versions]
    return {"name": group.name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(groups: Sequence[ServedGroup]) -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(g) for g in groups if g.name and g.versions],
    }


def api_group(group: ServedGroup) -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group)}


def _resource_entries(
    group: ServedGroup, version: str, rtype: ResourceType
) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rtype.plural,
        "singularName": rtype.singular,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": list(rtype.verbs),
    }
    if rtype.short_names:
        main["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        main["categories"] = list(rtype.categories)
    if group.storage:
        main["storageVersionHash"] = storage_version_hash(group.name, version, rtype.kind)
    entries = [main]
    if rtype.kind == "Pod":
        entries.append(
            {
                "name": "pods/binding",
                "singularName": "",
                "namespaced": True,
                "kind": "Binding",
                "verbs": ["create"],
            }
        )
    if rtype.has_status:
        entries.append(
            {
                "name": f"{rtype.plural}/status",
                "singularName": "",
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    return entries


def api_resource_list(group: ServedGroup, version: str) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "APIResourceList"}
    if group.name:
        body["apiVersion"] = "v1"
    body["groupVersion"] = group.group_version(version)
    body["resources"] = [
        entry
        for rtype in group.resources.get(version, ())
        for entry in _resource_entries(group, version, rtype)
    ]
    return body
