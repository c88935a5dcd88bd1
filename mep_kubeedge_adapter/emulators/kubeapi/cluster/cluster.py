"""The cluster behind the fake API server: controllers, scheduler, nodes, metrics-server.

It works in-process on the fake's store, in the test's event loop. One *pass* runs, in order:
the garbage collector (when something was deleted), the Deployment, ReplicaSet, StatefulSet and DaemonSet controllers, the
scheduler, the taint-eviction controller and every node's agent (edged / kubelet), then
metrics-server. Like the real controllers' work queues, a pass looks only at the namespaces
that changed since the last one (everything after a node changed). Each pod moves at most one
stage per pass, so every transition is a separate stored change that a watch (or
:meth:`Cluster.wait_for`) sees.

Two ways to drive it:

- automatic (the default, ``async with Cluster(fake) as cluster``): a task runs a pass
  whenever anything was stored, until a pass changes nothing; tests ``await
  cluster.wait_for(...)`` a condition;
- manual (``Cluster(fake, auto=False)``): nothing moves until the test calls
  :meth:`Cluster.step` (one pass) or :meth:`Cluster.settle` (passes until nothing changes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, Self

from ..errors import ApiError
from ..selectors import parse_label_selector
from ..server import FakeApiServer
from ..storage import WatchEvent
from .context import Context
from .gc import collect_garbage
from .metrics_server import MetricsServer, UsageRule
from .nodes import ClusterNode
from .scheduler import schedule
from .workloads import (
    reconcile_daemonsets,
    reconcile_deployments,
    reconcile_replicasets,
    reconcile_statefulsets,
)

__all__ = ["Cluster"]

EDGE_KUBELET_VERSION: Final = "v1.30.14-kubeedge-v1.23.1"
"""An edge node's ``nodeInfo.kubeletVersion`` (KubeEdge's ``<kubernetes>-kubeedge-<version>``
form; the Kubernetes part is illustrative)."""


class Cluster:
    """An edge cluster in miniature around a :class:`FakeApiServer` (see the module doc).

    Every method must be called from the event loop's thread. Component errors that a real
    controller would log and retry (an ``ApiError`` from a write) are collected in
    :attr:`errors` and the pass goes on; anything else stops the cluster and is raised from
    :meth:`wait_for` / :meth:`settle`.
    """

    def __init__(
        self,
        fake: FakeApiServer,
        *,
        auto: bool = True,
        default_usage: tuple[str, str] = ("2m", "12Mi"),
    ) -> None:
        """``default_usage`` is each running container's (cpu, memory) unless a rule of
        :meth:`set_usage` matches it."""
        self.fake = fake
        self.auto = auto
        self._ctx = Context(fake)
        self._nodes: dict[str, ClusterNode] = {}
        self._metrics_server = MetricsServer(UsageRule(*default_usage))
        self._dirty_namespaces: set[str] = set()
        self._all_dirty = True
        self._deletions = True
        self.errors: list[ApiError] = []
        """Write errors met by the components (a healthy run has none)."""
        self._dirty = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop_listening: Callable[[], None] | None = None
        self.passes = 0
        """Passes run so far."""

    # ----------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        """Listen to the fake and, in automatic mode, start the reconcile task."""
        if self._stop_listening is None:
            self._stop_listening = self.fake.listen(self._on_event)
        if self.auto and self._task is None:
            self._task = asyncio.create_task(self._run(), name="kubeapi-cluster")
            self._dirty.set()

    async def stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_event(self, event: WatchEvent) -> None:
        self._changed.set()
        if event.key == "events":
            return  # no component acts on events
        meta = event.obj["metadata"]
        if event.type == "DELETED" or meta.get("deletionTimestamp"):
            self._deletions = True
        if event.key == "nodes":
            self._all_dirty = True
        elif meta.get("namespace"):
            self._dirty_namespaces.add(meta["namespace"])
        self._dirty.set()

    def wake(self) -> None:
        """Make the next pass look at everything (after changing a node's settings)."""
        self._all_dirty = True
        self._dirty.set()
        self._changed.set()

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self.step()
            self._changed.set()
            await asyncio.sleep(0)  # let the API server answer its clients between passes

    # ----------------------------------------------------------------------------- passes

    def step(self) -> bool:
        """Run one pass; True if it stored any change."""
        before = self.fake.store.rv
        ctx = self._ctx
        ctx.scope = None if self._all_dirty else set(self._dirty_namespaces)
        gc_due = self._deletions or self._all_dirty
        self._all_dirty = self._deletions = False
        self._dirty_namespaces.clear()
        if gc_due:
            self._guard(collect_garbage, ctx)
        for component in (
            reconcile_deployments,
            reconcile_replicasets,
            reconcile_statefulsets,
            reconcile_daemonsets,
            schedule,
        ):
            self._guard(component, ctx)
        for node in list(self._nodes.values()):
            self._guard(node.evict_expired, ctx)
            self._guard(node.sync, ctx)
        self._guard(self._scrape, ctx)
        self.passes += 1
        return self.fake.store.rv != before

    def _scrape(self, ctx: Context) -> None:
        self._metrics_server.scrape(ctx, self._nodes)

    def _guard(self, component: Callable[[Context], None], ctx: Context) -> None:
        try:
            component(ctx)
        except ApiError as e:
            self.errors.append(e)

    async def settle(self, max_passes: int = 200) -> int:
        """Run passes until one changes nothing; returns how many ran."""
        for n in range(1, max_passes + 1):
            if not self.step():
                return n
            await asyncio.sleep(0)
        raise RuntimeError(f"the cluster did not settle within {max_passes} passes")

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, re-checked after every stored change and pass.

        In manual mode this only returns if someone else (the code under test) makes the
        change; drive the cluster with :meth:`step` / :meth:`settle` instead.
        """
        async with asyncio.timeout(within):
            while True:
                self._raise_if_crashed()
                if predicate():
                    return
                self._changed.clear()
                await self._changed.wait()

    def _raise_if_crashed(self) -> None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            error = self._task.exception()
            if error is not None:
                raise RuntimeError("the cluster stopped") from error

    def elapse(self, seconds: float) -> None:
        """Move the virtual clock (used only for taint-based eviction's tolerationSeconds)."""
        self._ctx.now += seconds
        self.wake()

    # ----------------------------------------------------------------------------- nodes

    def add_edge_node(
        self,
        name: str,
        internal_ip: str,
        *,
        cpu: str = "4",
        memory: str = "8Gi",
        pods: int = 110,
        labels: Mapping[str, str] | None = None,
        report_event: bool = False,
        kubelet_version: str = EDGE_KUBELET_VERSION,
    ) -> ClusterNode:
        """Register an edge node as EdgeCore does; ``report_event`` is edged's reportEvent."""
        return self._add_node(
            name,
            internal_ip,
            edge=True,
            cpu=cpu,
            memory=memory,
            pods=pods,
            labels=labels or {},
            taints=[],
            report_event=report_event,
            kubelet_version=kubelet_version,
        )

    def add_cloud_node(
        self,
        name: str,
        internal_ip: str,
        *,
        cpu: str = "8",
        memory: str = "16Gi",
        pods: int = 110,
        labels: Mapping[str, str] | None = None,
        control_plane: bool = False,
        kubelet_version: str = "v1.29.0",
    ) -> ClusterNode:
        """Register a cloud (non-edge) node; a ``control_plane`` one carries the
        ``node-role.kubernetes.io/control-plane`` label and ``NoSchedule`` taint."""
        node_labels = dict(labels or {})
        taints: list[dict[str, Any]] = []
        if control_plane:
            node_labels["node-role.kubernetes.io/control-plane"] = ""
            taints.append({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
        return self._add_node(
            name,
            internal_ip,
            edge=False,
            cpu=cpu,
            memory=memory,
            pods=pods,
            labels=node_labels,
            taints=taints,
            report_event=True,
            kubelet_version=kubelet_version,
        )

    def _add_node(
        self,
        name: str,
        internal_ip: str,
        *,
        edge: bool,
        cpu: str,
        memory: str,
        pods: int,
        labels: Mapping[str, str],
        taints: list[dict[str, Any]],
        report_event: bool,
        kubelet_version: str,
    ) -> ClusterNode:
        if name in self._nodes:
            raise ValueError(f"node {name!r} exists")
        node = ClusterNode(
            self._ctx,
            self.wake,
            name,
            internal_ip,
            edge=edge,
            report_event=report_event,
            index=len(self._nodes) + 1,
        )
        node.register(
            cpu=cpu,
            memory=memory,
            pods=pods,
            labels=labels,
            taints=taints,
            kubelet_version=kubelet_version,
        )
        self._nodes[name] = node
        return node

    def node(self, name: str) -> ClusterNode:
        return self._nodes[name]

    # ----------------------------------------------------------------------------- metrics

    def set_usage(
        self,
        cpu: str,
        memory: str,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        container: str | None = None,
    ) -> None:
        """Usage of the running containers that match (the latest matching rule wins)."""
        rule = UsageRule(cpu, memory, namespace, dict(labels or {}), container)
        self._metrics_server.rules.insert(0, rule)
        self.wake()

    # ----------------------------------------------------------------------------- reading

    def pods(self, namespace: str | None = None, label_selector: str = "") -> list[dict[str, Any]]:
        """Copies of the pods (in a namespace, matching a label selector)."""
        requirements = parse_label_selector(label_selector)
        return [
            pod
            for pod in self.fake.objects("Pod", namespace)
            if all(r.matches(pod["metadata"].get("labels") or {}) for r in requirements)
        ]

    def running(self, namespace: str | None = None, label_selector: str = "") -> int:
        """How many of those pods are ``Running`` with every container ready."""
        return sum(
            1
            for pod in self.pods(namespace, label_selector)
            if (pod.get("status") or {}).get("phase") == "Running"
            and all(s.get("ready") for s in pod["status"].get("containerStatuses") or [])
            and not pod["metadata"].get("deletionTimestamp")
        )
