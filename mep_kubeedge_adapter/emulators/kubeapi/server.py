"""The fake API server: lifecycle, switches, and the Python helpers tests call.

No kube-apiserver can be installed where these tests run, so the adapter and the MECM plugin
are tested with the real ``kubernetes`` client talking HTTP to this server on loopback. See
``README.md`` for what is and is not faithful.

Usage (inside a running event loop; every helper must be called from that loop's thread)::

    async with FakeApiServer() as fake:
        fake.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
        ...  # point a kubernetes.client.Configuration at fake.url
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .discovery import ServedGroup
from .errors import ApiError, service_unavailable, storage_initializing
from .metrics import MetricsApi, MetricsMode
from .patching import apply_merge_patch
from .resources import (
    APPS,
    CORE,
    CRD_GROUP,
    METRICS,
    METRICS_GROUP,
    PROFILE_V1_23,
    RBAC,
    RBAC_GROUP,
    Profile,
    ResourceType,
    crd_types,
)
from .routes import make_app
from .storage import BUILTIN_NAMESPACES, Listener, Store, WatchEvent
from .watch import Watches

__all__ = ["FakeApiServer", "WatchEvent"]

_CORE_BY_KIND = {t.kind: t for t in CORE}


class FakeApiServer:
    """In-memory Kubernetes API server on ``127.0.0.1:<free port>``.

    Serves core/v1 (pods, nodes, namespaces, services, secrets, configmaps, serviceaccounts,
    events), apps/v1 (deployments, replicasets, statefulsets, daemonsets),
    rbac.authorization.k8s.io/v1 (roles, bindings), the KubeEdge device CRDs of a
    :data:`Profile`, and ``metrics.k8s.io/v1beta1`` in the state of :attr:`metrics`.

    State (objects, the resourceVersion counter, the bounded event history) lives in this
    object and survives :meth:`go_down` / :meth:`come_up`, like etcd behind a restarting
    apiserver. resourceVersions are one global counter rendered as a string.
    """

    def __init__(
        self,
        *,
        profile: Profile = PROFILE_V1_23,
        history_size: int = 1000,
        bookmark_interval: float = 60.0,
        default_watch_timeout: float = 1800.0,
        git_version: str = "v1.29.0",
        metrics: MetricsMode = MetricsMode.SERVED,
        namespaces: Iterable[str] = (),
        finalize_namespaces: bool = True,
    ) -> None:
        """``namespaces`` are created besides the built-in ones. With ``finalize_namespaces``
        off, a deleted namespace stays ``Terminating`` until :meth:`finalize_namespace`."""
        self._profile: dict[str, tuple[str, ...]] = dict(profile)
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.git_version = git_version
        self.finalize_namespaces = finalize_namespaces
        self._crds = crd_types()
        self.store = Store(
            (*CORE, *APPS, *RBAC, *self._crds.values()),
            history_size=history_size,
            namespaces=_CORE_BY_KIND["Namespace"],
            pods=_CORE_BY_KIND["Pod"],
        )
        """The storage; the cluster component reads and writes through it."""
        self.store.on_namespace_terminating = self._namespace_terminating
        self.watches = Watches(self.store)
        self.metrics = MetricsApi()
        """metrics.k8s.io: set ``metrics.mode`` and the usage records here."""
        self.metrics.mode = metrics
        self._runner: web.AppRunner | None = None
        self._refusals: dict[str, list[ApiError]] = {}
        """Per resource type: the errors its next watches get (see :meth:`come_up`)."""
        self._port = 0
        self.requests: list[str] = []
        """``"METHOD /path?query"`` of every request served, for assertions."""
        for name in (*BUILTIN_NAMESPACES, *namespaces):
            self.store.ensure_namespace(name)

    # ----------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.come_up()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.go_down()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; stable across :meth:`go_down` / :meth:`come_up`."""
        if not self._port:
            raise RuntimeError("the fake API server was never started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def is_up(self) -> bool:
        return self._runner is not None

    async def come_up(self, *, unavailable: int = 0, initializing: int = 0) -> None:
        """Start listening (again, on the same port after :meth:`go_down`).

        Like a kube-apiserver that restarts, the first watches of each resource can be
        refused: ``unavailable`` of them with ``503 ServiceUnavailable`` (``Retry-After: 5``),
        then ``initializing`` with ``429 TooManyRequests`` "storage is (re)initializing"
        (``Retry-After: 1``) while the watch cache fills. Lists are served (from etcd).
        """
        self._refusals = {
            key: [service_unavailable()] * unavailable + [storage_initializing()] * initializing
            for key in self.store.types
        }
        if self._runner is not None:
            return
        runner = web.AppRunner(make_app(self), shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port)
        await site.start()
        if not self._port:
            self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def go_down(self) -> None:
        """Stop listening and cut every open connection (watches end without a final chunk)."""
        if self._runner is None:
            return
        self.drop_watches(abrupt=True)
        runner, self._runner = self._runner, None
        await runner.cleanup()

    def watch_refusal(self, rtype: ResourceType) -> ApiError | None:
        """The error a watch of ``rtype`` gets now (see :meth:`come_up`), or None."""
        pending = self._refusals.get(rtype.key)
        return pending.pop(0) if pending else None

    # ----------------------------------------------------------------------------- controls

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion handed out."""
        return str(self.store.rv)

    @property
    def open_watches(self) -> int:
        return len(self.watches)

    async def wait_for_watches(self, count: int, within: float = 5.0) -> None:
        """Wait until at least ``count`` watch streams are open (tests await this, not sleep)."""
        await self.watches.wait_for(count, within)

    def serve(self, profile: Profile) -> None:
        """Switch the served device-CRD versions; watches on what is no longer served end."""
        self._profile = dict(profile)
        self.watches.drop(
            abrupt=False,
            where=lambda w: (
                w.filter.rtype.group == CRD_GROUP
                and w.filter.rtype.plural
                not in self._profile.get(w.group_version.split("/", 1)[1], ())
            ),
        )

    def compact(self) -> None:
        """Forget the event history: watches and exact lists from older versions get 410."""
        self.store.compact()

    def drop_watches(self, *, abrupt: bool = True) -> None:
        """End every open watch: ``abrupt`` cuts the connection, else the stream ends cleanly."""
        self.watches.drop(abrupt=abrupt)

    def served_groups(self) -> list[ServedGroup]:
        """The API groups as discovery shows them now (the core group first)."""
        groups = [
            ServedGroup("", ("v1",), {"v1": CORE}),
            ServedGroup("apps", ("v1",), {"v1": APPS}),
            ServedGroup(RBAC_GROUP, ("v1",), {"v1": RBAC}),
        ]
        versions = tuple(v for v, plurals in self._profile.items() if plurals)
        if versions:
            groups.append(
                ServedGroup(
                    CRD_GROUP,
                    versions,
                    {v: tuple(self._crds[p] for p in self._profile[v]) for v in versions},
                )
            )
        if self.metrics.mode is not MetricsMode.ABSENT:
            groups.append(ServedGroup(METRICS_GROUP, ("v1beta1",), {"v1beta1": METRICS}, False))
        return groups

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` synchronously after every stored change; returns a stop
        function. The listener must not write to the server from inside the call."""
        return self.store.listen(listener)

    def _namespace_terminating(self, name: str) -> None:
        if not self.finalize_namespaces:
            return
        try:
            asyncio.get_running_loop().call_soon(self.store.finalize_namespace, name)
        except RuntimeError:
            self.store.finalize_namespace(name)

    def finalize_namespace(self, name: str) -> None:
        """Play the namespace controller now: remove a Terminating namespace and its contents."""
        self.store.finalize_namespace(name)

    # ----------------------------------------------------------------------------- objects

    def resource(self, kind: str) -> ResourceType:
        """The stored resource for a Kind (``Pod``), plural (``pods``) or qualified resource
        (``deployments.apps``)."""
        for rtype in self.store.types.values():
            if kind in (rtype.kind, rtype.plural, rtype.key):
                return rtype
        raise ValueError(f"unknown kind {kind!r}")

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored objects of a kind, in the server's order."""
        rtype = self.resource(kind)
        return [copy.deepcopy(o) for _, o in self.store.select(rtype, namespace)]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A copy of one stored object; ``KeyError`` if absent (namespace ``""`` if
        cluster-scoped)."""
        obj = self.store.find(self.resource(kind), namespace, name)
        if obj is None:
            raise KeyError((kind, namespace, name))
        return copy.deepcopy(obj)

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store a new object (kind from ``obj``) as a client's POST would; returns it.

        Defaults and validation apply, and the namespace (``default`` when unset) must exist.
        """
        rtype = self.resource(str(obj.get("kind", "")))
        meta = obj.get("metadata") or {}
        return self.store.create(rtype, str(meta.get("namespace") or "default"), obj)

    def ensure_namespace(self, name: str) -> None:
        """Create the namespace unless it exists."""
        self.store.ensure_namespace(name)

    def modify(
        self,
        kind: str,
        namespace: str,
        name: str,
        change: Mapping[str, Any] | Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Change an object with a merge patch (dict) or an in-place function; emits MODIFIED.

        A raw write, as a controller with full access would make: spec and status alike, no
        admission; server-owned metadata is kept.
        """
        rtype = self.resource(kind)
        current = self.store.lookup(rtype, namespace, name)
        if callable(change):
            updated = copy.deepcopy(current)
            change(updated)
        else:
            updated = apply_merge_patch(current, change)
        return self.store.put(rtype, current, updated)

    def delete(
        self, kind: str, namespace: str, name: str, *, propagation: str | None = None
    ) -> dict[str, Any]:
        """Delete as a client would (finalizers and graceful pod deletion apply)."""
        obj, _ = self.store.delete(self.resource(kind), namespace, name, propagation=propagation)
        return obj
