"""Plays the cluster behind the fake API server for the MECM tests.

The Deployment/ReplicaSet controller (a Deployment's pods, owned by it, removed with it), the
scheduler (a pod goes to the node its ``nodeSelector`` and tolerations allow, with a
``Scheduled`` event), EdgeCore on the edge node (Pending → Running, or ``ImagePullBackOff``
for an image whose name contains ``missing``; kubelet events only with ``report_event``, as
``modules.edged.reportEvent``), metrics-server (usage for Running pods) and the node going
offline (Ready ``Unknown``; its pods keep their last status). Every step runs on the loop,
after the write that caused it, so tests await conditions instead of sleeping.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer, WatchEvent

EDGE_NODE = "edge-node-1"
EDGE_IP = "192.168.10.11"
CLOUD_NODE = "cloud-1"
CLOUD_IP = "192.168.10.1"
POD_USAGE = {"cpu": "5000000n", "memory": "20Mi"}


def node(name: str, ip: str, *, edge: bool) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if edge:
        labels.update({"node-role.kubernetes.io/edge": "", "node-role.kubernetes.io/agent": ""})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ],
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "EdgeReady"}],
        },
    }


class EdgeCluster:
    """The controllers, scheduler, EdgeCore and metrics-server of a one-edge-node cluster."""

    def __init__(self, fake: FakeApiServer, *, report_event: bool = False) -> None:
        self.fake = fake
        self.report_event = report_event
        self.online = True
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        fake.create(node(EDGE_NODE, EDGE_IP, edge=True))
        fake.create(node(CLOUD_NODE, CLOUD_IP, edge=False))
        fake.metrics.set_node(EDGE_NODE, {"cpu": "1500000000n", "memory": "2097152Ki"})
        self._stop = fake.listen(self._on_event)

    def close(self) -> None:
        self._stop()

    def _on_event(self, event: WatchEvent) -> None:
        self._loop.call_soon(self._changed.set)
        if event.key == "deployments.apps":
            self._loop.call_soon(self._deployment, event.type, dict(event.obj))

    async def until(self, predicate: Callable[[], bool], within: float = 20.0) -> None:
        """Wait until ``predicate()`` holds, re-checked after every stored change."""
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.fake.objects("Pod", namespace)

    # ------------------------------------------------------------------ controllers

    def _owned(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.fake.objects("Pod", namespace)
            if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
        ]

    def _deployment(self, kind: str, deployment: dict[str, Any]) -> None:
        meta = deployment["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        owned = self._owned(namespace, uid)
        if kind == "DELETED":
            for pod in owned:
                self.fake.metrics.forget_pod(namespace, pod["metadata"]["name"])
                self.fake.delete("Pod", namespace, pod["metadata"]["name"])
            return
        template = deployment["spec"]["template"]
        wanted = int(deployment["spec"].get("replicas", 1))
        for pod in owned[wanted:]:
            self.fake.delete("Pod", namespace, pod["metadata"]["name"])
        for _ in range(wanted - len(owned)):
            name = f"{meta['name']}-{secrets.token_hex(3)}"
            self.fake.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": dict(template["metadata"].get("labels") or {}),
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": "Deployment",
                                "name": meta["name"],
                                "uid": uid,
                                "controller": True,
                            }
                        ],
                    },
                    "spec": dict(template["spec"]),
                }
            )
            self._loop.call_soon(self._schedule, namespace, name)

    def _event(self, pod: dict[str, Any], reason: str, message: str, source: str) -> None:
        meta = pod["metadata"]
        self.fake.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{meta['name']}.{secrets.token_hex(4)}",
                    "namespace": meta["namespace"],
                },
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta["uid"],
                },
                "reason": reason,
                "message": message,
                "source": {"component": source},
                "type": "Normal",
                "count": 1,
            }
        )

    def _schedule(self, namespace: str, name: str) -> None:
        pod = self.fake.get("Pod", namespace, name)
        selector = pod["spec"].get("nodeSelector") or {}
        for candidate in self.fake.objects("Node"):
            labels = candidate["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in selector.items()):
                target = candidate["metadata"]["name"]
                break
        else:
            return
        pod = self.fake.modify("Pod", namespace, name, {"spec": {"nodeName": target}})
        self._event(
            pod,
            "Scheduled",
            f"Successfully assigned {namespace}/{name} to {target}",
            "default-scheduler",
        )
        self._loop.call_soon(self._run_on_edge, namespace, name)

    # --------------------------------------------------------------------- EdgeCore

    def _run_on_edge(self, namespace: str, name: str) -> None:
        if not self.online:
            return
        try:
            pod = self.fake.get("Pod", namespace, name)
        except KeyError:
            return
        statuses = []
        pulling_failed = False
        for container in pod["spec"]["containers"]:
            image = str(container.get("image"))
            if "missing" in image:
                pulling_failed = True
                state: dict[str, Any] = {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{image}"',
                    }
                }
                if self.report_event:
                    self._event(pod, "Failed", f'Failed to pull image "{image}"', "kubelet")
            else:
                state = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
            statuses.append(
                {
                    "name": container["name"],
                    "image": image,
                    "ready": "running" in state,
                    "state": state,
                }
            )
        phase = "Pending" if pulling_failed else "Running"
        self.fake.modify(
            "Pod", namespace, name, {"status": {"phase": phase, "containerStatuses": statuses}}
        )
        if phase == "Running":
            self.fake.metrics.set_pod(
                namespace, name, {c["name"]: dict(POD_USAGE) for c in pod["spec"]["containers"]}
            )

    def go_offline(self) -> None:
        """The edge disconnects: the node controller marks it Unknown; pods keep their status."""
        self.online = False

        def unknown(obj: dict[str, Any]) -> None:
            obj["status"]["conditions"] = [
                {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
            ]

        self.fake.modify("Node", "", EDGE_NODE, unknown)
