"""Nodes and what runs on them: EdgeCore's edged (or a cloud kubelet), and node lifecycle.

:class:`ClusterNode` is a node the test drives. An edge node registers as EdgeCore does
(``node-role.kubernetes.io/edge`` and ``…/agent`` labels, InternalIP and Hostname addresses,
``daemonEndpoints.kubeletEndpoint.Port`` 10350, a Ready condition); a cloud node as a kubelet
(port 10250, no edge labels). While online, its agent moves each bound pod one stage per pass:

1. accepted: ``startTime``, ``hostIP``, ``podIP``, containers waiting ``ContainerCreating``;
2. each container whose image can be pulled starts (``running``, ready, started); one whose
   image is missing waits ``ErrImagePull``, then ``ImagePullBackOff`` on the next pass, until
   the image appears; the pod is ``Running`` once every container runs;
3. steady: ``Ready`` and ``ContainersReady`` follow the containers.

A pod being deleted is killed and removed (grace period 0). Kubelet events (``Pulling``,
``Pulled``, ``Created``, ``Started``, ``Failed``, ``BackOff``, ``Killing``) are recorded only
when ``report_event`` is on: EdgeCore's ``modules.edged.reportEvent`` (off by default); a
cloud kubelet always reports.

Going offline plays the node lifecycle controller: the node's conditions turn ``Unknown``
(``NodeStatusUnknown``), the ``node.kubernetes.io/unreachable`` taints are added, its pods'
``Ready`` condition turns False (``MarkPodsNotReady``), and nothing else about them changes
until the node comes back. Pods that do not tolerate the ``NoExecute`` taint long enough are
evicted on the virtual clock (:meth:`Cluster.elapse`), and stay Terminating while the node is
offline, as on a real cluster.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Final

from ..storage import now_rfc3339
from ..validation import UNREACHABLE_TAINT
from .context import Context, set_condition
from .placement import tolerates

__all__ = ["EDGE_KUBELET_PORT", "ClusterNode"]

EDGE_KUBELET_PORT: Final = 10350
CLOUD_KUBELET_PORT: Final = 10250
_NODE_CONDITIONS: Final = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def _full_image(image: str) -> str:
    """``nginx:1.25`` → ``docker.io/library/nginx:1.25``, as containerd names it."""
    name = image if ":" in image.rsplit("/", 1)[-1] or "@" in image else f"{image}:latest"
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ClusterNode:
    """One node of the cluster, edge or cloud, as a test drives it.

    ``report_event`` and ``missing_images`` may be changed at any time; call
    :meth:`Cluster.wake` (or use :meth:`image_missing` / :meth:`image_available`) so that an
    automatic cluster acts on it.
    """

    def __init__(
        self,
        ctx: Context,
        wake: Callable[[], None],
        name: str,
        internal_ip: str,
        *,
        edge: bool,
        report_event: bool,
        index: int,
    ) -> None:
        self._ctx = ctx
        self._wake = wake
        self.name = name
        self.internal_ip = internal_ip
        self.edge = edge
        self.report_event = report_event
        self.missing_images: set[str] = set()
        """Images this node cannot pull (as written in the pod spec)."""
        self.usage: dict[str, str] = {"cpu": "250m", "memory": "512Mi"}
        """What the node itself uses besides its pods (metrics-server adds the pods')."""
        self.online = True
        self._offline_since = 0.0
        self._index = index
        self._pod_ips = 0

    def __repr__(self) -> str:
        role = "edge" if self.edge else "cloud"
        return f"<ClusterNode {self.name} {role} {'online' if self.online else 'offline'}>"

    # ----------------------------------------------------------------------------- registration

    def register(
        self,
        *,
        cpu: str,
        memory: str,
        pods: int,
        labels: Mapping[str, str],
        taints: list[dict[str, Any]],
        kubelet_version: str,
    ) -> None:
        node_labels = {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
        }
        if self.edge:
            node_labels["node-role.kubernetes.io/edge"] = ""
            node_labels["node-role.kubernetes.io/agent"] = ""
        node_labels.update(labels)
        resources = {"cpu": cpu, "memory": memory, "pods": str(pods)}
        spec: dict[str, Any] = {"podCIDR": f"10.244.{self._index}.0/24"}
        if taints:
            spec["taints"] = taints
        self._ctx.store.create(
            self._ctx.nodes,
            "",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.name, "labels": node_labels},
                "spec": spec,
                "status": {
                    "capacity": dict(resources),
                    "allocatable": dict(resources),
                    "addresses": [
                        {"type": "InternalIP", "address": self.internal_ip},
                        {"type": "Hostname", "address": self.name},
                    ],
                    "daemonEndpoints": {
                        "kubeletEndpoint": {
                            "Port": EDGE_KUBELET_PORT if self.edge else CLOUD_KUBELET_PORT
                        }
                    },
                    "nodeInfo": {
                        "architecture": "amd64",
                        "bootID": _digest(self.name + "boot")[:36],
                        "containerRuntimeVersion": "containerd://1.7.24",
                        "kernelVersion": "6.1.0-28-amd64",
                        "kubeProxyVersion": "",
                        "kubeletVersion": kubelet_version,
                        "machineID": _digest(self.name)[:32],
                        "operatingSystem": "linux",
                        "osImage": "Debian GNU/Linux 12 (bookworm)",
                        "systemUUID": _digest(self.name + "uuid")[:36],
                    },
                    "conditions": self._conditions([], ready=True),
                },
            },
        )

    @staticmethod
    def _conditions(current: list[dict[str, Any]], *, ready: bool) -> list[dict[str, Any]]:
        conditions = [dict(c) for c in current]
        for type_, reason, message in _NODE_CONDITIONS:
            if ready:
                set_condition(conditions, type_, "False", reason, message)
            else:
                set_condition(
                    conditions,
                    type_,
                    "Unknown",
                    "NodeStatusUnknown",
                    "Kubelet stopped posting node status.",
                )
        if ready:
            set_condition(
                conditions, "Ready", "True", "KubeletReady", "kubelet is posting ready status"
            )
        else:
            set_condition(
                conditions,
                "Ready",
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            )
        for c in conditions:
            c.setdefault("lastHeartbeatTime", c["lastTransitionTime"])
        return conditions

    def _node(self) -> dict[str, Any]:
        return self._ctx.store.lookup(self._ctx.nodes, "", self.name)

    # ----------------------------------------------------------------------------- test controls

    def image_missing(self, image: str) -> None:
        """Pulls of ``image`` fail on this node from now on."""
        self.missing_images.add(image)
        self._wake()

    def image_available(self, image: str) -> None:
        """``image`` can be pulled again: waiting containers start on the next pass."""
        self.missing_images.discard(image)
        self._wake()

    def go_offline(self) -> None:
        """The edge loses its connection: node Unknown and tainted, its pods frozen."""
        if not self.online:
            return
        self.online = False
        self._offline_since = self._ctx.now
        ctx = self._ctx
        node = self._node()
        updated = copy.deepcopy(node)
        updated["status"]["conditions"] = self._conditions(
            node["status"].get("conditions") or [], ready=False
        )
        taints = [
            t for t in updated["spec"].get("taints") or [] if t.get("key") != UNREACHABLE_TAINT
        ]
        taints.append({"key": UNREACHABLE_TAINT, "effect": "NoSchedule"})
        taints.append({"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": now_rfc3339()})
        updated["spec"]["taints"] = taints
        ctx.store.put(ctx.nodes, node, updated)
        ctx.record_event(
            updated,
            "NodeNotReady",
            f"Node {self.name} status is now: NodeNotReady",
            component="node-controller",
        )
        for pod in self._pods():
            status = copy.deepcopy(pod.get("status") or {})
            conditions = status.setdefault("conditions", [])
            if any(c.get("type") == "Ready" for c in conditions):
                set_condition(conditions, "Ready", "False", probe_time=True)
                ctx.write_status(ctx.pods, pod, status)
                ctx.record_event(
                    pod,
                    "NodeNotReady",
                    "Node is not ready",
                    component="node-controller",
                    warning=True,
                )
        self._wake()

    def come_online(self) -> None:
        """The edge is back: node Ready, taints gone; edged resumes on the next pass."""
        if self.online:
            return
        self.online = True
        node = self._node()
        updated = copy.deepcopy(node)
        updated["status"]["conditions"] = self._conditions(
            node["status"].get("conditions") or [], ready=True
        )
        taints = [
            t for t in updated["spec"].get("taints") or [] if t.get("key") != UNREACHABLE_TAINT
        ]
        if taints:
            updated["spec"]["taints"] = taints
        else:
            updated["spec"].pop("taints", None)
        self._ctx.store.put(self._ctx.nodes, node, updated)
        self._wake()

    # ----------------------------------------------------------------------------- the agent

    def _pods(self, *, scoped: bool = False) -> list[dict[str, Any]]:
        pods = self._ctx.scoped(self._ctx.pods) if scoped else self._ctx.all(self._ctx.pods)
        return [p for p in pods if p["spec"].get("nodeName") == self.name]

    def _event(
        self,
        pod: Mapping[str, Any],
        reason: str,
        message: str,
        *,
        container: str | None = None,
        warning: bool = False,
    ) -> None:
        if self.edge and not self.report_event:
            return
        self._ctx.record_event(
            pod,
            reason,
            message,
            component="kubelet",
            host=self.name,
            warning=warning,
            field_path=f"spec.containers{{{container}}}" if container else None,
        )

    def evict_expired(self, _ctx: Context | None = None) -> None:
        """The taint-eviction controller's part for this node while it is offline."""
        if self.online:
            return
        taint = {"key": UNREACHABLE_TAINT, "effect": "NoExecute"}
        for pod in self._pods():
            if pod["metadata"].get("deletionTimestamp"):
                continue
            tolerations = [t for t in pod["spec"].get("tolerations") or [] if tolerates([t], taint)]
            if tolerations:
                limits = [t.get("tolerationSeconds") for t in tolerations]
                if any(limit is None for limit in limits):
                    continue
                if self._ctx.now - self._offline_since < min(
                    int(x) for x in limits if x is not None
                ):
                    continue
            meta = pod["metadata"]
            self._ctx.store.delete(self._ctx.pods, meta["namespace"], meta["name"])
            self._ctx.record_event(
                pod,
                "TaintManagerEviction",
                f"Marking for deletion Pod {meta['namespace']}/{meta['name']}",
                component="taint-eviction-controller",
            )

    def sync(self, _ctx: Context | None = None) -> None:
        """One pass of edged / the kubelet over this node's pods (nothing while offline)."""
        if not self.online or self._ctx.store.find(self._ctx.nodes, "", self.name) is None:
            return
        for pod in self._pods(scoped=True):
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                for container in pod["spec"].get("containers") or []:
                    self._event(
                        pod,
                        "Killing",
                        f"Stopping container {container['name']}",
                        container=container["name"],
                    )
                self._ctx.store.delete(
                    self._ctx.pods, meta["namespace"], meta["name"], grace_seconds=0
                )
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                continue
            if not (pod.get("status") or {}).get("startTime"):
                self._accept(pod)
            else:
                self._advance(pod)

    def _pod_ip(self, pod: Mapping[str, Any]) -> str:
        if pod["spec"].get("hostNetwork"):
            return self.internal_ip
        self._pod_ips += 1
        return f"10.244.{self._index}.{self._pod_ips % 250 + 2}"

    def _accept(self, pod: dict[str, Any]) -> None:
        status = copy.deepcopy(pod.get("status") or {})
        ip = self._pod_ip(pod)
        now = now_rfc3339()
        status.update(
            phase="Pending",
            hostIP=self.internal_ip,
            hostIPs=[{"ip": self.internal_ip}],
            podIP=ip,
            podIPs=[{"ip": ip}],
            startTime=now,
        )
        conditions = status.setdefault("conditions", [])
        set_condition(conditions, "PodReadyToStartContainers", "True", probe_time=True)
        set_condition(conditions, "Initialized", "True", probe_time=True)
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        not_ready = f"containers with unready status: [{' '.join(names)}]"
        set_condition(
            conditions, "Ready", "False", "ContainersNotReady", not_ready, probe_time=True
        )
        set_condition(
            conditions, "ContainersReady", "False", "ContainersNotReady", not_ready, probe_time=True
        )
        set_condition(conditions, "PodScheduled", "True", probe_time=True)
        status["containerStatuses"] = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {},
            }
            for c in pod["spec"].get("containers") or []
        ]
        self._ctx.write_status(self._ctx.pods, pod, status)
        for c in pod["spec"].get("containers") or []:
            self._event(pod, "Pulling", f'Pulling image "{c["image"]}"', container=c["name"])

    def _advance(self, pod: dict[str, Any]) -> None:
        status = copy.deepcopy(pod.get("status") or {})
        statuses = {s["name"]: s for s in status.get("containerStatuses") or []}
        for c in pod["spec"].get("containers") or []:
            name, image = c["name"], c["image"]
            current = statuses.get(name)
            if current is None:
                continue
            waiting = (current.get("state") or {}).get("waiting")
            if waiting is None:
                continue
            if image in self.missing_images:
                self._pull_failed(pod, current, c, waiting.get("reason"))
            else:
                if waiting.get("reason") != "ContainerCreating":
                    self._event(pod, "Pulling", f'Pulling image "{image}"', container=name)
                self._start(pod, current, c)
        all_running = all("running" in (s.get("state") or {}) for s in statuses.values())
        status["containerStatuses"] = [
            statuses[c["name"]]
            for c in pod["spec"].get("containers") or []
            if c["name"] in statuses
        ]
        if all_running and statuses:
            status["phase"] = "Running"
        conditions = status.setdefault("conditions", [])
        unready = [s["name"] for s in status["containerStatuses"] if not s.get("ready")]
        if unready:
            message = f"containers with unready status: [{' '.join(unready)}]"
            set_condition(
                conditions, "Ready", "False", "ContainersNotReady", message, probe_time=True
            )
            set_condition(
                conditions,
                "ContainersReady",
                "False",
                "ContainersNotReady",
                message,
                probe_time=True,
            )
        else:
            set_condition(conditions, "Ready", "True", probe_time=True)
            set_condition(conditions, "ContainersReady", "True", probe_time=True)
        self._ctx.write_status(self._ctx.pods, pod, status)

    def _pull_failed(
        self,
        pod: dict[str, Any],
        current: dict[str, Any],
        container: Mapping[str, Any],
        reason: str | None,
    ) -> None:
        image, name = container["image"], container["name"]
        full = _full_image(image)
        error = (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{full}": failed '
            f'to resolve reference "{full}": {full}: not found'
        )
        if reason == "ContainerCreating" or reason is None:
            current["state"] = {"waiting": {"reason": "ErrImagePull", "message": error}}
            self._event(
                pod,
                "Failed",
                f'Failed to pull image "{image}": {error}',
                container=name,
                warning=True,
            )
            self._event(pod, "Failed", "Error: ErrImagePull", container=name, warning=True)
        elif reason == "ErrImagePull":
            back_off = f'Back-off pulling image "{image}"'
            current["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": back_off}}
            self._event(pod, "BackOff", back_off, container=name)
            self._event(pod, "Failed", "Error: ImagePullBackOff", container=name, warning=True)

    def _start(
        self, pod: dict[str, Any], current: dict[str, Any], container: Mapping[str, Any]
    ) -> None:
        image, name = container["image"], container["name"]
        full = _full_image(image)
        meta = pod["metadata"]
        current.update(
            imageID=f"{full.rsplit(':', 1)[0]}@sha256:{_digest(full)}",
            containerID=f"containerd://{_digest(meta['uid'] + name)}",
            ready=True,
            started=True,
            state={"running": {"startedAt": now_rfc3339()}},
        )
        self._event(
            pod,
            "Pulled",
            f'Successfully pulled image "{image}" in 1.018s (1.018s including waiting)',
            container=name,
        )
        self._event(pod, "Created", f"Created container {name}", container=name)
        self._event(pod, "Started", f"Started container {name}", container=name)
