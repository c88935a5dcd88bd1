"""One cloud cluster, reached with an uploaded kubeconfig through the ``kubernetes`` client.

KubeEdge's northbound interface is the cluster's Kubernetes API: CloudCore ships the pods
bound to edge nodes to EdgeCore and writes their status back. The client is built by the
shared kube access (:func:`~mep_kubeedge_adapter.kubeedge.kubeclient.kubeconfig_api_client`:
no urllib3 retries, and a kubeconfig that would run a program or read local files is
refused), and failures are worded by its one mapping
(:func:`~mep_kubeedge_adapter.kubeedge.kubeclient.adapter_error`). The client is synchronous;
every call runs in the plugin's own bounded thread pool, with a short read timeout so that a
stop never waits long.

Objects are addressed by ``apiVersion`` and ``kind``: well-known kinds from a table, any
other kind through the API's discovery document (as kubectl does). Errors become
:class:`~mep_kubeedge_adapter.domain.AdapterError` with a kind and a message that names
the object.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

import urllib3
from kubernetes import client

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind
from mep_kubeedge_adapter.kubeedge.kubeclient import (
    CONNECT_TIMEOUT,
    KubeClientError,
    adapter_error,
    kubeconfig_api_client,
)

__all__ = ["Cluster", "KubeApiError", "Resource"]

READ_TIMEOUT: Final = 5.0
"""Seconds to wait for an answer: short, so that a stop never waits long on a hung call."""
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a kind lives in the API: ``/api/v1`` or ``/apis/<group>/<version>``, plural, scope."""

    prefix: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        parts = [self.prefix]
        if self.namespaced:
            parts.append(f"namespaces/{quote(namespace or 'default', safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        return "/".join(parts)


def _prefix(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


_KNOWN: Final[Mapping[tuple[str, str], tuple[str, bool]]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Service"): ("services", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Event"): ("events", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    ("apps/v1", "ReplicaSet"): ("replicasets", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("batch/v1", "CronJob"): ("cronjobs", True),
}


class KubeApiError(AdapterError):
    """A refusal or failure of the cluster's API server; ``status`` is its HTTP status (0: none)."""

    def __init__(self, kind: ErrorKind, detail: str, status: int = 0) -> None:
        super().__init__(kind, detail)
        self.status = status


def _api_error(exc: Exception, what: str) -> KubeApiError:
    """The shared mapping, keeping the HTTP status for the callers' control flow.

    A 404 of the cluster is not an unknown config, package or instance of MECM's, so it is
    never ``NOT_FOUND`` here (lcmcontroller would answer 404 for it).
    """
    status = int(exc.status or 0) if isinstance(exc, client.ApiException) else 0
    mapped = adapter_error(exc, what)
    kind = ErrorKind.UPSTREAM_REJECTED if mapped.kind is ErrorKind.NOT_FOUND else mapped.kind
    detail = mapped.detail
    if isinstance(exc, client.ApiException):
        detail = f"{detail} ({_status_message(exc)})"
    return KubeApiError(kind, detail, status)


def _status_message(exc: client.ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return str(body["message"])
    except ValueError:
        pass
    return str(exc.reason or "no reason given")


class Cluster:
    """The API of one cluster. Blocking methods are private; the async ones run them in ``executor``."""

    def __init__(self, kubeconfig: Path, executor: Executor) -> None:
        self._kubeconfig = kubeconfig
        self._executor = executor
        self._api: client.ApiClient | None = None
        self._resources: dict[tuple[str, str], Resource] = {}

    async def _run(self, fn: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _client(self) -> client.ApiClient:
        if self._api is None:
            try:
                self._api = kubeconfig_api_client(self._kubeconfig)
            except KubeClientError as exc:
                raise AdapterError(
                    ErrorKind.INVALID, f"the kubeconfig cannot be used: {exc}"
                ) from None
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()  # type: ignore[no-untyped-call]
            self._api.rest_client.close()
            self._api = None

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
    ) -> Any:
        api = self._client()
        try:
            method, url, headers, payload, post = api.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = api.call_api(
                method,
                url,
                headers,
                payload,
                post,
                _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
            data = response.read()  # type: ignore[no-untyped-call]
            if not 200 <= response.status <= 299:
                raise client.ApiException(http_resp=response)
        except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _api_error(exc, what) from exc
        try:
            return json.loads(data) if data else None
        except ValueError:
            raise KubeApiError(
                ErrorKind.UPSTREAM_REJECTED, f"the cluster answered {what} with no JSON"
            ) from None

    def _resource(self, api_version: str, kind: str) -> Resource:
        known = self._resources.get((api_version, kind))
        if known is not None:
            return known
        table = _KNOWN.get((api_version, kind))
        if table is not None:
            resource = Resource(_prefix(api_version), table[0], table[1])
        else:
            resource = self._discover(api_version, kind)
        self._resources[(api_version, kind)] = resource
        return resource

    def _discover(self, api_version: str, kind: str) -> Resource:
        try:
            listing = self._call("GET", _prefix(api_version), f"discovery of {api_version}")
        except KubeApiError as exc:
            if exc.status == 404:
                raise AdapterError(
                    ErrorKind.INVALID, f"the cluster does not serve {api_version} (kind {kind})"
                ) from None
            raise
        for entry in (listing or {}).get("resources") or []:
            if entry.get("kind") == kind and "/" not in str(entry.get("name")):
                return Resource(
                    _prefix(api_version), str(entry["name"]), bool(entry.get("namespaced"))
                )
        raise AdapterError(
            ErrorKind.INVALID, f"the cluster does not serve kind {kind} in {api_version}"
        )

    # ------------------------------------------------------------------ async API

    async def server(self) -> str:
        """The API server's URL: two kubeconfigs naming the same URL reach the same cluster."""
        return await self._run(lambda: str(self._client().configuration.host).rstrip("/"))

    async def resource(self, api_version: str, kind: str) -> Resource:
        return await self._run(lambda: self._resource(api_version, kind))

    async def get(self, path: str, what: str) -> dict[str, Any] | None:
        """The object at ``path``, or None if it does not exist."""

        def fetch() -> dict[str, Any] | None:
            try:
                found = self._call("GET", path, f"reading {what}")
            except KubeApiError as exc:
                if exc.status == 404:
                    return None
                raise
            return found if isinstance(found, dict) else None

        return await self._run(fetch)

    async def list(
        self,
        path: str,
        what: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        if field_selector:
            query.append(("fieldSelector", field_selector))
        found = await self._run(lambda: self._call("GET", path, f"listing {what}", query=query))
        items = (found or {}).get("items") if isinstance(found, dict) else None
        return [i for i in items or [] if isinstance(i, dict)]

    async def create(self, path: str, body: Mapping[str, Any], what: str) -> dict[str, Any]:
        return dict(
            await self._run(lambda: self._call("POST", path, f"creating {what}", body=body))
        )

    async def replace(self, path: str, body: Mapping[str, Any], what: str) -> dict[str, Any]:
        return dict(
            await self._run(lambda: self._call("PUT", path, f"replacing {what}", body=body))
        )

    async def delete(self, path: str, what: str) -> bool:
        """Delete in the background (dependents too); False if it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}

        def remove() -> bool:
            try:
                self._call("DELETE", path, f"deleting {what}", body=body)
            except KubeApiError as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        return await self._run(remove)
