"""Which device CRs the API server serves, and paged lists of them (blocking calls).

These run in worker threads for :mod:`~mep_kubeedge_adapter.kubeedge.kubesource`: discovery
picks the newest served version that has Devices (falling back to one-item lists where the
discovery documents are not served, as on some MetaServer builds), and a list gathers every
page with the first page's resourceVersion, which the watch then starts from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kubernetes import client

from mep_kubeedge_adapter.kubeedge.crds import API_GROUP, SUPPORTED_VERSIONS
from mep_kubeedge_adapter.kubeedge.crwrites import DEVICES
from mep_kubeedge_adapter.kubeedge.kubeclient import REQUEST_TIMEOUT, served_resources

__all__ = [
    "DEVICE_MODELS",
    "DEVICE_STATUSES",
    "LIST_PAGE",
    "RESOURCES",
    "Discovery",
    "custom_list",
    "discover_blocking",
    "list_blocking",
]

DEVICE_MODELS: Final = "devicemodels"
DEVICE_STATUSES: Final = "devicestatuses"
RESOURCES: Final = (DEVICES, DEVICE_MODELS, DEVICE_STATUSES)
LIST_PAGE: Final = 500


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the API server serves of ``devices.kubeedge.io``."""

    version: str
    resources: frozenset[str]

    @property
    def has_device_status(self) -> bool:
        return DEVICE_STATUSES in self.resources


def custom_list(
    api: client.ApiClient, version: str, plural: str, namespace: str | None
) -> Callable[..., Any]:
    """The client's list call for ``plural`` in ``namespace`` (every namespace when None);
    called with ``watch=True`` it is the watch request."""
    custom = client.CustomObjectsApi(api)
    if namespace:

        def namespaced(**kwargs: Any) -> Any:
            return custom.list_namespaced_custom_object(
                API_GROUP, version, namespace, plural, **kwargs
            )

        return namespaced

    def everywhere(**kwargs: Any) -> Any:
        return custom.list_cluster_custom_object(API_GROUP, version, plural, **kwargs)

    return everywhere


def list_blocking(
    api: client.ApiClient, plural: str, version: str, namespace: str | None
) -> tuple[list[Any], str]:
    """All objects (paged) and the first page's resourceVersion."""
    fn = custom_list(api, version, plural, namespace)
    items: list[Any] = []
    rv: str | None = None
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {
            "limit": LIST_PAGE,
            "_request_timeout": REQUEST_TIMEOUT,
        }
        if token:
            kwargs["_continue"] = token
        page = fn(**kwargs)
        if not isinstance(page, Mapping):
            raise client.ApiException(status=0, reason="the list answer is not an object")
        meta = page.get("metadata") or {}
        if rv is None:
            rv = str(meta.get("resourceVersion") or "")
        items.extend(page.get("items") or [])
        token = meta.get("continue") or None
        if not token:
            break
    return items, rv or ""


def discover_blocking(api: client.ApiClient, namespace: str | None) -> Discovery | None:
    """The newest served version with Devices, and which of the three resources it serves."""
    wanted = frozenset(RESOURCES)
    for version in SUPPORTED_VERSIONS:
        names = served_resources(api, API_GROUP, version)
        if names is not None and DEVICES in names:
            return Discovery(version, frozenset(names & wanted))
    # No discovery document: ask the collections themselves.
    for version in SUPPORTED_VERSIONS:
        served = frozenset(p for p in RESOURCES if _collection_served(api, version, p, namespace))
        if DEVICES in served:
            return Discovery(version, served)
    return None


def _collection_served(
    api: client.ApiClient, version: str, plural: str, namespace: str | None
) -> bool:
    try:
        custom_list(api, version, plural, namespace)(limit=1, _request_timeout=REQUEST_TIMEOUT)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
