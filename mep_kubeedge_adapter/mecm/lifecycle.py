"""The plugin's use cases: one function per AppLCM call, whatever the transport.

Identifiers are checked here (``hostIp`` an IP address; ids of at most 128 letters, digits,
``.``, ``_`` or ``-``; an app instance id usable in Kubernetes names). An unknown config,
package or app instance is ``NOT_FOUND`` with ``not found`` in the message, which
lcmcontroller turns into 404. Another tenant's instance is unknown too.

Writes to one app instance (instantiate, terminate) are serialised; different instances
proceed in parallel. Instantiate returns once the objects are accepted by the API server; it
never waits for pods (lcmcontroller gives every call 180 s).

What callers can make the plugin keep is bounded (:mod:`~mep_kubeedge_adapter.mecm.quota`):
kubeconfigs, packages and their bytes, uploads in progress, live instances, each per tenant
and in all; a new one beyond a bound is refused (RESOURCE_EXHAUSTED) and changes nothing.
Terminated instances are remembered for the retention the store was given: terminating one
again answers ``Success`` within it, and ``not found`` (like an instance never known) after.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import structlog

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind
from mep_kubeedge_adapter.kubeedge.kubeclient import KubeClientError, kubeconfig_api_client
from mep_kubeedge_adapter.mecm import status
from mep_kubeedge_adapter.mecm.apply import (
    aksk_secret,
    apply_object,
    delete_object,
    ensure_namespace,
    install_order,
    namespace_owner,
)
from mep_kubeedge_adapter.mecm.csar import (
    chart_default_values,
    check_chart_archive,
    inspect_package,
    load_manifests,
)
from mep_kubeedge_adapter.mecm.kube import Cluster, KubeApiError
from mep_kubeedge_adapter.mecm.placement import (
    EDGE_LABEL,
    INSTANCE_LABEL,
    find_edge_node,
    hostname_of,
)
from mep_kubeedge_adapter.mecm.quota import (
    Limits,
    UploadSlots,
    check_package_bytes,
)
from mep_kubeedge_adapter.mecm.render import ChartError, render_chart
from mep_kubeedge_adapter.mecm.state import (
    InstanceRecord,
    LcmStore,
    ObjectRef,
    PackageRecord,
    directory_bytes,
)
from mep_kubeedge_adapter.mecm.unpack import PackageRefused, UnpackLimits, unpack_zip
from mep_kubeedge_adapter.mecm.values import (
    AK,
    SK,
    aksk_secret_name,
    chart_values,
    instance_namespace,
)

__all__ = ["MAX_KUBECONFIG_BYTES", "AppLcm", "IncomingPackage", "not_found"]

log = structlog.get_logger(__name__)

SUCCESS: Final = "Success"
MAX_KUBECONFIG_BYTES: Final = 5 * 1024 * 1024
"""lcmcontroller's own limit on an uploaded config file."""
METRICS: Final = "/apis/metrics.k8s.io/v1beta1"
_ID: Final = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_INSTANCE_ID: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,56}[a-z0-9])?$")


def not_found(what: str) -> AdapterError:
    return AdapterError(ErrorKind.NOT_FOUND, f"{what} not found")


def check_host(host_ip: str) -> str:
    try:
        return str(ipaddress.ip_address(host_ip))
    except ValueError:
        raise AdapterError(ErrorKind.INVALID, f"hostIp {host_ip!r} is not an IP address") from None


def check_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise AdapterError(
            ErrorKind.INVALID, f"{what} must be 1 to 128 letters, digits, '.', '_' or '-'"
        )
    return value


def check_instance_id(value: str) -> str:
    if not _INSTANCE_ID.match(value):
        raise AdapterError(
            ErrorKind.INVALID,
            "appInstanceId must be at most 58 lower-case letters, digits or '-' (a UUID)",
        )
    return value


class IncomingPackage:
    """A CSAR arriving in chunks, written straight to disk, with its size capped.

    The first chunk takes one of the upload slots (or is refused when none is free); the slot
    is given back by :meth:`release`, once the package is unpacked and kept, or refused.
    """

    def __init__(self, path: Path, limit: int, slots: UploadSlots) -> None:
        self.path = path
        self._limit = limit
        self._slots = slots
        self._holds_slot = False
        self.size = 0
        self._file: Any = None

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            self._slots.take()
            self._holds_slot = True
            self._file = self.path.open("xb")
            os.chmod(self.path, 0o600)
        self.size += len(chunk)
        if self.size > self._limit:
            raise PackageRefused(f"the package is larger than the limit of {self._limit} bytes")
        self._file.write(chunk)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def release(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        if self._holds_slot:
            self._holds_slot = False
            self._slots.give_back()


class _Locks:
    """One lock per key, dropped when nobody holds or waits for it (the table stays small)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass(frozen=True, slots=True)
class _Workload:
    objects: list[Mapping[str, Any]]
    namespace: str


class AppLcm:
    """The use cases over the state store and the clusters of the uploaded kubeconfigs."""

    def __init__(
        self,
        store: LcmStore,
        executor: Executor,
        *,
        max_package_bytes: int,
        unpack_limits: UnpackLimits,
        limits: Limits,
    ) -> None:
        self._store = store
        self._executor = executor
        self._max_package_bytes = max_package_bytes
        self._limits = unpack_limits
        self._quota = limits
        self._uploads = UploadSlots(limits.uploads_in_progress)
        self._clusters: dict[tuple[str, str], Cluster] = {}
        self._locks = _Locks()

    def close(self) -> None:
        for cluster in self._clusters.values():
            cluster.close()
        self._clusters.clear()

    async def _blocking(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -------------------------------------------------------------------- configs

    async def upload_config(self, tenant: str, host_ip: str, content: bytes) -> str:
        host = check_host(host_ip)
        check_id(tenant, "tenantId")
        await self._blocking(self._check_kubeconfig, content)
        async with self._locks.hold(f"config:{tenant}:{host}"), self._locks.hold("quota:configs"):
            if await self._store.config(tenant, host) is None:
                self._quota.check_room(
                    "configs",
                    await self._store.config_holdings(tenant),
                    what="host configs",
                    remedy="remove one first",
                )
            await self._store.put_config(tenant, host, content)
            self._forget_cluster(tenant, host)
        log.info("mecm.config.uploaded", tenant=tenant, host=host)
        return SUCCESS

    async def remove_config(self, tenant: str, host_ip: str) -> str:
        host = check_host(host_ip)
        async with self._locks.hold(f"config:{tenant}:{host}"):
            if not await self._store.delete_config(tenant, host):
                raise not_found(f"config for host {host}")
            self._forget_cluster(tenant, host)
        log.info("mecm.config.removed", tenant=tenant, host=host)
        return SUCCESS

    def _check_kubeconfig(self, content: bytes) -> None:
        """Refuse, before storing it, a kubeconfig the shared kube access would not use."""
        if len(content) > MAX_KUBECONFIG_BYTES:
            raise AdapterError(
                ErrorKind.TOO_LARGE, f"the config file is larger than {MAX_KUBECONFIG_BYTES} bytes"
            )
        scratch = self._store.incoming_dir / f"{uuid.uuid4().hex}.kubeconfig"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            kubeconfig_api_client(scratch).close()  # type: ignore[no-untyped-call]
        except KubeClientError as exc:
            raise AdapterError(ErrorKind.INVALID, f"kubeconfig refused: {exc}") from None
        finally:
            scratch.unlink(missing_ok=True)

    def _forget_cluster(self, tenant: str, host: str) -> None:
        cluster = self._clusters.pop((tenant, host), None)
        if cluster is not None:
            cluster.close()

    async def _cluster(self, tenant: str, host: str) -> Cluster:
        cluster = self._clusters.get((tenant, host))
        if cluster is None:
            path = await self._store.config(tenant, host)
            if path is None:
                raise not_found(f"config for host {host}")
            cluster = self._clusters.setdefault((tenant, host), Cluster(path, self._executor))
        return cluster

    # ------------------------------------------------------------------- packages

    @contextlib.contextmanager
    def incoming_package(self) -> Any:
        """An :class:`IncomingPackage` in the data directory, removed afterwards."""
        path = self._store.incoming_dir / f"{uuid.uuid4().hex}.csar"
        incoming = IncomingPackage(path, self._max_package_bytes, self._uploads)
        try:
            yield incoming
        finally:
            incoming.release()

    async def upload_package(
        self, tenant: str, host_ip: str, package_id: str, incoming: IncomingPackage
    ) -> str:
        """Unpack and check the received CSAR, then keep it; nothing stays behind if refused."""
        host = check_host(host_ip)
        check_id(tenant, "tenantId")
        check_id(package_id, "appPackageId")
        incoming.close()
        if incoming.size == 0:
            raise PackageRefused("the package is empty")
        unpacked = self._store.incoming_dir / uuid.uuid4().hex
        try:
            files = await self._blocking(unpack_zip, incoming.path, unpacked, self._limits)
            contents = await self._blocking(inspect_package, unpacked, files, self._limits)
            record = PackageRecord(
                tenant,
                host,
                package_id,
                contents.deploy,
                contents.artifacts,
                contents.metadata,
                await self._blocking(directory_bytes, unpacked),
            )
            async with (
                self._locks.hold(f"package:{tenant}:{host}:{package_id}"),
                self._locks.hold("quota:packages"),
            ):
                await self._check_package_room(record)
                await self._store.put_package(record, unpacked)
        finally:
            if unpacked.exists():
                shutil.rmtree(unpacked, ignore_errors=True)
        log.info("mecm.package.uploaded", tenant=tenant, host=host, package=package_id)
        return SUCCESS

    async def _check_package_room(self, record: PackageRecord) -> None:
        replaced = await self._store.package(record.tenant, record.host, record.package_id)
        if replaced is None:
            self._quota.check_room(
                "packages",
                await self._store.package_holdings(record.tenant),
                what="packages",
                remedy="delete one first",
            )
        check_package_bytes(
            record.disk_bytes,
            await self._store.stored_package_bytes(),
            0 if replaced is None else replaced.disk_bytes,
            self._quota.stored_package_bytes,
        )

    async def delete_package(self, tenant: str, host_ip: str, package_id: str) -> str:
        host = check_host(host_ip)
        async with self._locks.hold(f"package:{tenant}:{host}:{package_id}"):
            if not await self._store.delete_package(tenant, host, package_id):
                raise not_found(f"package {package_id} for host {host}")
        return SUCCESS

    async def package_status(self, tenant: str, host_ip: str, package_id: str) -> str:
        host = check_host(host_ip)
        if await self._store.package(tenant, host, package_id) is None:
            raise not_found(f"package {package_id} for host {host}")
        return "uploaded"

    # ------------------------------------------------------------------ instances

    async def instantiate(
        self,
        tenant: str,
        host_ip: str,
        instance_id: str,
        package_id: str,
        parameters: Mapping[str, str],
    ) -> str:
        host = check_host(host_ip)
        check_instance_id(instance_id)
        check_id(package_id, "appPackageId")
        if not parameters.get(AK) or not parameters.get(SK):
            raise AdapterError(ErrorKind.INVALID, "parameters ak and sk are required")
        async with self._locks.hold(f"instance:{instance_id}"):
            previous = await self._store.instance(instance_id)
            live = previous if previous is not None and previous.state == "instantiated" else None
            if live is not None and (live.tenant, live.host) != (tenant, host):
                raise AdapterError(
                    ErrorKind.CONFLICT,
                    f"app instance {instance_id} already runs elsewhere; terminate it first",
                )
            package = await self._store.package(tenant, host, package_id)
            if package is None:
                raise not_found(f"package {package_id} for host {host}")
            cluster = await self._cluster(tenant, host)
            nodes = await cluster.list("/api/v1/nodes", "edge nodes", label_selector=EDGE_LABEL)
            node = find_edge_node(nodes, host)
            workload = await self._workload(package, instance_id, parameters)
            record = InstanceRecord(
                instance_id,
                tenant,
                host,
                package_id,
                workload.namespace,
                str(node["metadata"]["name"]),
                previous is not None
                and previous.state == "instantiated"
                and previous.created_namespace,
                previous.objects
                if previous is not None and previous.state == "instantiated"
                else (),
                "instantiated",
            )
            if live is not None:
                await self._apply(cluster, record, workload, parameters, hostname_of(node))
            else:
                await self._claim(record)
                try:
                    await self._apply(cluster, record, workload, parameters, hostname_of(node))
                except AdapterError:
                    await self._abandon(record, previous)
                    raise
        log.info("mecm.instantiated", tenant=tenant, host=host, instance=instance_id)
        return SUCCESS

    async def _claim(self, record: InstanceRecord) -> None:
        """Record a new live instance if the bounds leave room, before the cluster is touched
        (so that concurrent instantiations cannot overshoot them)."""
        async with self._locks.hold("quota:instances"):
            self._quota.check_room(
                "instances",
                await self._store.live_holdings(record.tenant),
                what="app instances",
                remedy="terminate one first",
            )
            await self._store.put_instance(record)

    async def _abandon(self, record: InstanceRecord, previous: InstanceRecord | None) -> None:
        """A new instance failed before anything of it was created: as if never asked."""
        stored = await self._store.instance(record.instance_id)
        if stored is None or stored.objects or stored.created_namespace:
            return  # the record lists what terminate must remove
        if previous is None:
            await self._store.delete_instance(record.instance_id)
        else:
            await self._store.put_instance(previous)

    async def _workload(
        self, package: PackageRecord, instance_id: str, parameters: Mapping[str, str]
    ) -> _Workload:
        root = self._store.package_dir(package.tenant, package.host, package.package_id)
        if package.deploy == "manifests":
            namespace = instance_namespace(parameters, {})
            objects: list[Mapping[str, Any]] = []
            for artifact in package.artifacts:
                objects.extend(await self._blocking(load_manifests, root / artifact, artifact))
            return _Workload(objects, namespace)
        chart, defaults = await self._blocking(
            _read_chart, root / package.artifacts[0], self._limits, package.artifacts[0]
        )
        namespace = instance_namespace(parameters, defaults)
        values = chart_values(parameters, instance_id=instance_id, namespace=namespace)
        try:
            rendered = await self._blocking(_render, chart, values, instance_id, namespace)
        except ChartError as exc:
            raise AdapterError(ErrorKind.INVALID, str(exc)) from None
        return _Workload(list(rendered), namespace)

    async def _apply(
        self,
        cluster: Cluster,
        record: InstanceRecord,
        workload: _Workload,
        parameters: Mapping[str, str],
        hostname: str,
    ) -> None:
        """Namespace, AK/SK Secret, then the objects; recorded as they are created."""
        instance_id, namespace = record.instance_id, workload.namespace
        if namespace != "default":
            # Under the namespace's lock until the record names it, so that a terminate of
            # another instance sees this one as a user before it would delete the namespace.
            async with self._locks.hold(_namespace_key(namespace)):
                created = await ensure_namespace(cluster, namespace, instance_id)
                record = replace(record, created_namespace=record.created_namespace or created)
                await self._store.put_instance(record)
        else:
            await self._store.put_instance(record)
        objects = list(workload.objects)
        secret_name = aksk_secret_name(instance_id)
        if not any(
            o.get("kind") == "Secret" and (o.get("metadata") or {}).get("name") == secret_name
            for o in objects
        ):
            objects.insert(
                0, aksk_secret(namespace, secret_name, instance_id, parameters[AK], parameters[SK])
            )
        applied = list(record.objects)
        for obj in install_order(objects):
            if (
                obj.get("kind") == "Namespace"
                and (obj.get("metadata") or {}).get("name") == namespace
            ):
                continue
            ref = await apply_object(
                cluster, obj, instance_id=instance_id, namespace=namespace, hostname=hostname
            )
            if ref not in applied:
                applied.append(ref)
                record = replace(record, objects=tuple(applied))
                await self._store.put_instance(record)

    async def terminate(self, tenant: str, host_ip: str, instance_id: str) -> str:
        host = check_host(host_ip)
        async with self._locks.hold(f"instance:{instance_id}"):
            record = await self._known_instance(tenant, instance_id)
            if record.state == "terminated":
                return SUCCESS
            cluster = await self._cluster(record.tenant, record.host)
            remaining = list(record.objects)
            for ref in reversed(record.objects):
                if _is_namespace(ref):
                    continue  # released below, like the instance's own namespace
                await delete_object(cluster, ref)
                remaining.remove(ref)
                await self._store.put_instance(replace(record, objects=tuple(remaining)))
            held: list[ObjectRef] = []
            for namespace in _released_namespaces(record):
                async with self._locks.hold(_namespace_key(namespace)):
                    if await self._release_namespace(cluster, record, namespace):
                        held.append(ObjectRef("v1", "Namespace", "", namespace))
            await self._store.put_instance(
                replace(record, objects=tuple(held), created_namespace=False, state="terminated")
            )
        await self._store.purge_terminated()
        log.info("mecm.terminated", tenant=tenant, host=host, instance=instance_id)
        return SUCCESS

    async def _release_namespace(
        self, cluster: Cluster, record: InstanceRecord, namespace: str
    ) -> bool:
        """Delete ``namespace`` if the plugin created it and no other live instance uses it;
        True if this instance created it and it stays for others (the terminated record then
        holds it, so that the last of them knows the plugin made it).

        The plugin created a namespace when its instance label names an app instance the
        plugin has a record of (this one or another, live or terminated). Any other namespace
        (made by the cluster's operator, say) is left as it is: only the instance's objects go.
        """
        resource = await cluster.resource("v1", "Namespace")
        existing = await cluster.get(resource.path(None, namespace), f"namespace {namespace}")
        if existing is None or (existing.get("metadata") or {}).get("deletionTimestamp"):
            await self._store.release_namespace(namespace)
            return False
        owner = namespace_owner(existing)
        if owner is None or (owner != record.instance_id and not await self._store.knows(owner)):
            log.info("mecm.namespace.left", namespace=namespace, reason="not created by the plugin")
            return False
        users = await self._namespace_users(cluster, record, namespace)
        if users:
            log.info("mecm.namespace.kept", namespace=namespace, users=users)
            return owner == record.instance_id
        await delete_object(cluster, ObjectRef("v1", "Namespace", "", namespace))
        await self._store.release_namespace(namespace)
        return False

    async def _namespace_users(
        self, cluster: Cluster, record: InstanceRecord, namespace: str
    ) -> list[str]:
        """The other live instances with objects in ``namespace`` of ``cluster``.

        Instances of other (tenant, host) pairs share the cluster when their kubeconfig names
        the same API server (one kubeconfig serves every edge node of a cluster); one whose
        kubeconfig is gone or unusable counts as a user (the namespace is kept, not lost).
        """
        server = await cluster.server()
        users: list[str] = []
        for other in await self._store.live_instances():
            if other.instance_id == record.instance_id or namespace not in _namespaces(other):
                continue
            if (other.tenant, other.host) != (record.tenant, record.host):
                try:
                    elsewhere = await (await self._cluster(other.tenant, other.host)).server()
                except AdapterError:
                    elsewhere = server
                if elsewhere != server:
                    continue
            users.append(other.instance_id)
        return users

    async def _known_instance(self, tenant: str, instance_id: str) -> InstanceRecord:
        record = await self._store.instance(instance_id)
        if record is None or (tenant and record.tenant != tenant):
            raise not_found(f"app instance {instance_id}")
        return record

    async def _running_instance(self, tenant: str, instance_id: str) -> InstanceRecord:
        record = await self._known_instance(tenant, instance_id)
        if record.state != "instantiated":
            raise not_found(f"app instance {instance_id}")
        return record

    # --------------------------------------------------------------------- status

    async def _pods(self, cluster: Cluster, record: InstanceRecord) -> list[dict[str, Any]]:
        selector = f"{INSTANCE_LABEL}={record.instance_id}"
        pods: list[dict[str, Any]] = []
        for namespace in _namespaces(record):
            pods.extend(
                await cluster.list(
                    f"/api/v1/namespaces/{namespace}/pods", "pods", label_selector=selector
                )
            )
        return pods

    async def query(self, tenant: str, host_ip: str, instance_id: str) -> str:
        check_host(host_ip)
        record = await self._running_instance(tenant, instance_id)
        cluster = await self._cluster(record.tenant, record.host)
        pods = await self._pods(cluster, record)
        if not pods:
            return _json(status.NOT_RUNNING)
        selector = f"{INSTANCE_LABEL}={record.instance_id}"
        nodes: dict[str, dict[str, Any]] = {}
        for name in {str(p.get("spec", {}).get("nodeName") or "") for p in pods} - {""}:
            node = await cluster.get(f"/api/v1/nodes/{name}", f"node {name}")
            if node is not None:
                nodes[name] = node
        metrics: dict[str, dict[str, Any]] = {}
        services: list[dict[str, Any]] = []
        for namespace in _namespaces(record):
            with contextlib.suppress(KubeApiError):
                for item in await cluster.list(
                    f"{METRICS}/namespaces/{namespace}/pods", "pod metrics", label_selector=selector
                ):
                    metrics[str(item.get("metadata", {}).get("name"))] = item
            services.extend(
                await cluster.list(
                    f"/api/v1/namespaces/{namespace}/services", "services", label_selector=selector
                )
            )
        return _json(status.query_document(pods, nodes, metrics, services))

    async def query_kpi(self, tenant: str, host_ip: str) -> str:
        host = check_host(host_ip)
        cluster = await self._cluster(tenant, host)
        node = find_edge_node(
            await cluster.list("/api/v1/nodes", "edge nodes", label_selector=EDGE_LABEL), host
        )
        name = str(node["metadata"]["name"])
        try:
            node_metrics = await cluster.get(f"{METRICS}/nodes/{name}", f"metrics of node {name}")
        except KubeApiError as exc:
            raise await self._metrics_problem(cluster, name, exc.status) from None
        if node_metrics is None:
            raise await self._metrics_problem(cluster, name, 404)
        return _json(status.kpi_document(node, node_metrics))

    async def _metrics_problem(self, cluster: Cluster, node: str, code: int) -> AdapterError:
        try:
            served = await cluster.get(METRICS, "the metrics.k8s.io API") is not None
        except KubeApiError:
            served = False
        if not served:
            return AdapterError(
                ErrorKind.PRECONDITION_FAILED,
                "the cluster does not serve metrics.k8s.io (install metrics-server, with "
                "KubeEdge's EdgeStream on, to see resource use)",
            )
        if code == 404:
            return AdapterError(
                ErrorKind.UNAVAILABLE, f"metrics.k8s.io has no figures for node {node} yet"
            )
        return AdapterError(
            ErrorKind.UNAVAILABLE, f"metrics.k8s.io is unavailable ({code}); try again later"
        )

    async def workload_events(self, tenant: str, host_ip: str, instance_id: str) -> str:
        check_host(host_ip)
        record = await self._running_instance(tenant, instance_id)
        cluster = await self._cluster(record.tenant, record.host)
        pods = await self._pods(cluster, record)
        events: list[dict[str, Any]] = []
        for pod in pods:
            metadata = pod.get("metadata", {})
            events.extend(
                await cluster.list(
                    f"/api/v1/namespaces/{metadata.get('namespace')}/events",
                    "events",
                    field_selector=f"involvedObject.kind=Pod,involvedObject.name={metadata.get('name')}",
                )
            )
        return _json(status.workload_events_document(pods, events))


def _read_chart(path: Path, limits: UnpackLimits, name: str) -> tuple[bytes, dict[str, Any]]:
    """The chart archive's bytes and its own values.yaml (blocking: file and YAML work)."""
    chart = path.read_bytes()
    top = check_chart_archive(chart, limits, name=name)
    return chart, chart_default_values(chart, top)


def _render(
    chart: bytes, values: dict[str, Any], release: str, namespace: str
) -> tuple[dict[str, Any], ...]:
    return render_chart(chart, values, release=release, namespace=namespace).objects


def _namespaces(record: InstanceRecord) -> list[str]:
    """The namespaces the instance has (or will have) objects in."""
    found = {record.namespace}
    found.update(o.namespace for o in record.objects if o.namespace)
    return sorted(found)


def _is_namespace(ref: ObjectRef) -> bool:
    return (ref.api_version, ref.kind) == ("v1", "Namespace")


def _released_namespaces(record: InstanceRecord) -> list[str]:
    """What terminate considers deleting: the instance's namespaces and the ones it applied."""
    found = set(_namespaces(record))
    found.update(ref.name for ref in record.objects if _is_namespace(ref))
    found.discard("default")
    return sorted(found)


def _namespace_key(namespace: str) -> str:
    return f"namespace:{namespace}"


def _json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))
