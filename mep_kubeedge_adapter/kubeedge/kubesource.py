"""The kube source: Device, DeviceModel and DeviceStatus CRs into the registry.

How it reads (one loop per resource, all under the task :meth:`KubeSource.run`):

1. discovery picks the API version: ``v1beta1`` if served, else ``v1alpha2`` (KubeEdge <= 1.14);
   ``devicestatuses`` is watched only where it is served (KubeEdge >= 1.23). Where discovery
   documents are not served (some MetaServer builds), a one-item list of each resource decides;
2. list (paged), then watch from the list's resourceVersion with bookmarks; a watch that ends
   (server timeout, dropped connection) is resumed from the last resourceVersion seen. A
   resource counts as watched (``/readyz``: ``watching``, and ``connected`` once every served
   resource is) from the moment the API server accepted its watch (a 200 answer) until a
   request for it fails, not while a watch request is still unanswered or refused;
3. ``410 Gone`` re-lists. The new list is diffed against what was applied: objects gone from it
   are deleted, objects whose resourceVersion changed are applied again, the rest are skipped,
   so a re-list produces no duplicated and no lost change events;
4. every failure of the API server or the network waits on the service's backoff policy
   before the next try; a resource that is no longer served (404) triggers a new discovery.
   Anything else is a bug and is not retried here: it ends :meth:`KubeSource.run`, and the
   supervisor logs it with its traceback and restarts the source. An answer that says when to come back
   (``Retry-After``: a restarted API server's 429 "storage is (re)initializing" and 503) is
   followed instead, and the first answer after an outage resets the backoff: the delays
   grown while the server was away are not carried into its recovery.

The ``kubernetes`` client is synchronous. Lists, gets and writes run in worker threads
(``asyncio.to_thread``); each watch runs in a thread of the source's own pool and hands its
events to the event loop with ``call_soon_threadsafe``, so the registry is only ever touched
on the loop thread, in the order the API server sent the events (the watch request and its
reading are :class:`~mep_kubeedge_adapter.kubeedge.watchstream.WatchStream`'s). Stopping cuts
each watch's socket; every request has a connect and read timeout, every watch a
server-side timeout, so shutdown takes seconds at most.

What goes into the registry:

- Devices bound to this node (v1beta1 ``spec.nodeName``; v1alpha2 ``nodeSelector``), or any
  node with ``all_nodes``: labels, model, protocol, declared properties, desired values;
- reported values and state from ``DeviceStatus`` where it is served, else from the Device's
  ``status.twins`` (KubeEdge <= 1.22; on 1.23+ those are leftovers that are no longer updated);
- DeviceModels: property types, access modes, descriptions.

Timestamps: the registry keeps the newer of a CR value and an EventBus value. Reported values
carry cloudcore's ``metadata.timestamp``; a desired value without one is stamped with the time
the adapter first saw that value in the CR (a change of the CR is a new desired value; seeing
the same value again keeps its stamp, so re-lists change nothing).

Invalid CRs are logged and counted (``mka_kube_events{outcome="invalid"}``) and skipped; the
last valid state of that object stays applied.

Writes go through the same client: :attr:`KubeSource.crs` (Device CR create, replace,
delete) and :attr:`KubeSource.writer` (desired values), both in
:mod:`~mep_kubeedge_adapter.kubeedge.crwrites`; what they write is applied here at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import structlog
import urllib3
from kubernetes import client

from mep_kubeedge_adapter.backoff import Backoff
from mep_kubeedge_adapter.domain import (
    DeviceId,
    DeviceModel,
    ModelId,
    PropertySpec,
    TwinValue,
    now_ms,
)
from mep_kubeedge_adapter.kubeedge.crds import (
    API_GROUP,
    DeviceCR,
    DeviceModelCR,
    DeviceStatusCR,
    InvalidCR,
    decode_device,
    decode_device_model,
    decode_device_status,
)
from mep_kubeedge_adapter.kubeedge.crlists import (
    DEVICE_MODELS,
    DEVICE_STATUSES,
    RESOURCES,
    Discovery,
    custom_list,
    discover_blocking,
    list_blocking,
)
from mep_kubeedge_adapter.kubeedge.crwrites import DEVICES, DeviceCrWrites, KubeDesiredWriter
from mep_kubeedge_adapter.kubeedge.kubeclient import (
    CONNECT_TIMEOUT,
    TRANSIENT,
    KubeAccess,
    KubeClientError,
    build_api_client,
    describe_error,
    retry_after,
)
from mep_kubeedge_adapter.kubeedge.watchstream import WatchEvent, WatchStream
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry, DeviceSpec
from mep_kubeedge_adapter.settings import KubeSettings

__all__ = [
    "DEVICES",
    "DEVICE_MODELS",
    "DEVICE_STATUSES",
    "Discovery",
    "KubeSource",
    "ResourceState",
]

log = structlog.get_logger(__name__)


WATCH_READ_GRACE: Final = 30.0
"""A watch may stay silent this much longer than its server-side timeout before it is cut."""
STOP_GRACE: Final = 3.0
"""Seconds to wait for a watch thread to end after its socket was cut."""
_QUICK: Final = 1.0
"""A watch that ends sooner than this without an event counts as a failure (no busy loop)."""
_MIN_PAUSE: Final = 0.1
"""Seconds between two tries at least, whatever ``Retry-After`` says (no busy loop)."""
_SETTLED: Final = 10.0
"""Seconds the watches must have run before a new discovery starts from a fresh backoff."""

Key = tuple[str, str]


# --------------------------------------------------------------------------------------------
# state


@dataclass(slots=True)
class ResourceState:
    """The list/watch state of one resource, for ``/readyz``."""

    served: bool = False
    listed: bool = False
    watching: bool = False
    last_error: str | None = None
    resource_version: str | None = None
    relists: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "served": self.served,
            "listed": self.listed,
            "watching": self.watching,
            "lastError": self.last_error,
            "resourceVersion": self.resource_version,
            "relists": self.relists,
        }


@dataclass(slots=True)
class _Seen:
    """What was applied for one object: its resourceVersion and whether it is in the registry."""

    rv: str
    applied: bool


@dataclass(slots=True)
class _Cache:
    seen: dict[Key, _Seen] = field(default_factory=dict)


class _Gone(Exception):
    """410: the resourceVersion is too old; re-list."""


class _Rediscover(Exception):
    """A resource is no longer served (404) or discovery changed."""


def _rv_newer(a: str, b: str) -> bool:
    """Whether resourceVersion ``a`` is known to be newer than ``b``.

    resourceVersions are opaque; they are compared only when both are integers (etcd's
    revisions, and what every API server in practice hands out), to keep a late answer from
    undoing a newer watch event. Otherwise nothing is known and the answer is False.
    """
    if a.isdigit() and b.isdigit():
        return int(a) > int(b)
    return False


def _key_of(raw: Any) -> tuple[Key, str] | None:
    meta = raw.get("metadata") if isinstance(raw, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    ns = meta.get("namespace")
    rv = meta.get("resourceVersion")
    return (ns if isinstance(ns, str) and ns else "default", name), (
        rv if isinstance(rv, str) else ""
    )


# --------------------------------------------------------------------------------------------
# the source


class KubeSource:
    """Lists and watches the device CRs into ``registry``; writes Device CRs.

    Run :meth:`run` as a supervised task; :meth:`status` feeds ``/readyz``; :attr:`writer` is
    the ``DesiredWriter`` of ``MKA_API__WRITE_PATH=kube``. All methods must be called on the
    event loop's thread.
    """

    def __init__(
        self,
        settings: KubeSettings,
        node_name: str,
        registry: DeviceRegistry,
        metrics: Metrics,
        *,
        backoff: Callable[[], Backoff] | None = None,
        rediscover_interval: float | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        if settings.source == "none":
            raise ValueError("the kube source is disabled (MKA_KUBE__SOURCE=none)")
        self._settings = settings
        self._node = node_name
        self._registry = registry
        self._metrics = metrics
        self._new_backoff = backoff or (lambda: Backoff(base=0.5, cap=30.0))
        self._rediscover_interval = rediscover_interval or float(settings.watch_timeout)
        self._clock = clock
        self.access = KubeAccess(partial(build_api_client, settings), source=settings.source)
        self._discovery: Discovery | None = None
        self._resources = {plural: ResourceState() for plural in RESOURCES}
        self._caches = {plural: _Cache() for plural in RESOURCES}
        self._statuses: dict[DeviceId, DeviceStatusCR] = {}
        self._desired_stamps: dict[DeviceId, dict[str, TwinValue]] = {}
        self._watch_gen: dict[str, int] = {}
        self._gen_counter = itertools.count(1)
        self._gen_events: dict[int, int] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._status_event = asyncio.Event()
        self.last_error: str | None = None
        self.connected = False
        self.crs = DeviceCrWrites(self.access, settings.namespace, self)
        """Device CR create, replace and delete (the MEC 033 write side)."""
        self.writer = KubeDesiredWriter(self.crs, metrics)
        """The ``DesiredWriter`` of ``MKA_API__WRITE_PATH=kube``."""

    # ------------------------------------------------------------------ status

    @property
    def discovery(self) -> Discovery | None:
        return self._discovery

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: the API server, the version used and each resource's list/watch."""
        return {
            "source": self._settings.source,
            "url": self.access.host,
            "apiVersion": self._discovery.version if self._discovery else None,
            "connected": self.connected,
            "synced": self.synced,
            "lastError": self.last_error,
            "resources": {plural: state.as_dict() for plural, state in self._resources.items()},
        }

    @property
    def synced(self) -> bool:
        """Every served resource was listed at least once."""
        served = [s for s in self._resources.values() if s.served]
        return bool(served) and all(s.listed for s in served)

    def _status_changed(self) -> None:
        connected = any(s.served for s in self._resources.values()) and all(
            s.watching for s in self._resources.values() if s.served
        )
        if connected != self.connected:
            self.connected = connected
            self._metrics.kube_connected.set(1 if connected else 0)
        self._status_event.set()
        self._status_event = asyncio.Event()

    async def wait_status(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        """Wait until ``predicate(self.status())`` holds, woken by every status change."""
        while not predicate(self.status()):
            await self._status_event.wait()

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Discover, list and watch until cancelled; every failure is retried with backoff."""
        backoff = self._new_backoff()
        self._executor = ThreadPoolExecutor(
            max_workers=len(RESOURCES), thread_name_prefix="kube-watch"
        )
        try:
            while True:
                pause: float | None = None
                try:
                    await self.access.api()
                    discovery = await self._discover()
                    self._use(discovery)
                    self.last_error = None
                    self._status_changed()
                    started = asyncio.get_running_loop().time()
                    try:
                        await self._run_resources(discovery)
                    finally:
                        if asyncio.get_running_loop().time() - started > _SETTLED:
                            backoff.reset()
                except* _Rediscover as group:
                    log.info("kube_rediscovering", reason=str(group.exceptions[0]))
                except* TRANSIENT as group:
                    failure = group.exceptions[0]
                    self.last_error = describe_error(failure)
                    log.warning("kube_unavailable", error=self.last_error)
                    pause = retry_after(failure, backoff.cap)
                self._status_changed()
                if pause is not None:
                    backoff.reset()  # the server answered, and said when to come back
                    await asyncio.sleep(max(pause, _MIN_PAUSE))
                else:
                    await asyncio.sleep(backoff.next_delay())
        finally:
            self._watch_gen.clear()
            for state in self._resources.values():
                state.watching = False
            self._status_changed()
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False, cancel_futures=True)
            self.access.close()

    async def served_version(self) -> str:
        """The served Device version; discovers it if the watch loop has not yet (for the
        writes)."""
        if self._discovery is None:
            self._discovery = await self._discover()
        return self._discovery.version

    async def _discover(self) -> Discovery:
        namespace = self._settings.namespace
        found = await self.access.call(lambda api: discover_blocking(api, namespace))
        if found is None:
            raise KubeClientError(f"the API server serves no {API_GROUP} Device resource")
        return found

    def _use(self, discovery: Discovery) -> None:
        previous = self._discovery
        self._discovery = discovery
        for plural, state in self._resources.items():
            state.served = plural in discovery.resources
        if previous is not None and previous != discovery:
            # Another version or another source of reported values: apply everything again
            # (the registry only reports what really changed).
            for cache in self._caches.values():
                for seen in cache.seen.values():
                    seen.rv = ""
        log.info(
            "kube_discovered",
            version=discovery.version,
            resources=sorted(discovery.resources),
        )

    async def _run_resources(self, discovery: Discovery) -> None:
        async with asyncio.TaskGroup() as group:
            for plural in RESOURCES:
                if plural in discovery.resources:
                    group.create_task(
                        self._list_watch(plural, discovery.version), name=f"kube-{plural}"
                    )
            group.create_task(self._recheck_discovery(discovery), name="kube-discovery")

    async def _recheck_discovery(self, current: Discovery) -> None:
        """Notice an upgrade (DeviceStatus appearing, v1beta1 replacing v1alpha2)."""
        while True:
            await asyncio.sleep(self._rediscover_interval)
            with contextlib.suppress(*TRANSIENT):
                found = await self._discover()
                if found != current:
                    raise _Rediscover(f"served resources changed to {found}")

    # ------------------------------------------------------------- list/watch

    async def _list_watch(self, plural: str, version: str) -> None:
        backoff = self._new_backoff()
        loop = asyncio.get_running_loop()
        rv: str | None = None
        reason = "initial"
        fresh_list = False
        answering = True
        """The server answered the last request (it may have answered with an error)."""
        while True:
            healthy = False
            pause: float | None = None
            try:
                if rv is None:
                    rv = await self._relist(plural, version, reason)
                    fresh_list = True
                started = loop.time()
                rv, events = await self._watch(plural, version, rv)
                healthy = events > 0 or loop.time() - started >= _QUICK
                fresh_list = fresh_list and not healthy
            except _Gone:
                answering = True
                self._metrics.kube_events.labels(plural, "ERROR", "expired").inc()
                log.info("kube_watch_expired", resource=plural, resource_version=rv)
                rv, reason = None, "expired"
                healthy = not fresh_list
            except client.ApiException as exc:
                if exc.status == 404:
                    raise _Rediscover(f"{plural} is no longer served") from exc
                if exc.status and not answering:
                    backoff.reset()  # the server is back: the outage's delays are over
                answering = bool(exc.status)
                pause = retry_after(exc, backoff.cap)
                self._failed(plural, exc)
            except (urllib3.exceptions.HTTPError, OSError, KubeClientError) as exc:
                answering = False
                self._failed(plural, exc)
            except ValueError as exc:  # an answer the client could not decode
                log.error("kube_list_watch_error", resource=plural, exc_info=exc)
                self._failed(plural, exc)
            if healthy:
                backoff.reset()
                answering = True
            elif pause is not None:
                await asyncio.sleep(max(pause, _MIN_PAUSE))  # the server's pace, not the backoff's
            else:
                await asyncio.sleep(backoff.next_delay())

    def _failed(self, plural: str, exc: BaseException) -> None:
        state = self._resources[plural]
        state.watching = False
        state.last_error = describe_error(exc)
        log.warning("kube_list_watch_failed", resource=plural, error=state.last_error)
        self._status_changed()

    async def _relist(self, plural: str, version: str, reason: str) -> str:
        namespace = self._settings.namespace
        try:
            items, rv = await self.access.call(
                lambda api: list_blocking(api, plural, version, namespace)
            )
        except client.ApiException as exc:
            if exc.status == 410:
                raise _Gone from exc
            raise
        self._apply_list(plural, items, rv)
        state = self._resources[plural]
        state.listed = True
        state.relists += 1
        state.resource_version = rv
        self._metrics.kube_relists.labels(plural, reason).inc()
        log.info("kube_listed", resource=plural, reason=reason, items=len(items), rv=rv)
        self._status_changed()
        return rv

    async def _watch(self, plural: str, version: str, rv: str) -> tuple[str, int]:
        """Watch from ``rv`` until the stream ends; returns the last resourceVersion and the
        number of events (bookmarks included) received."""
        api = await self.access.api()
        loop = asyncio.get_running_loop()
        gen = next(self._gen_counter)
        self._watch_gen[plural] = gen
        self._gen_events[gen] = 0
        stream = WatchStream()
        future = loop.run_in_executor(
            self._executor,
            self._stream_blocking,
            stream,
            api,
            plural,
            version,
            rv,
            gen,
            loop,
        )
        future.add_done_callback(_retrieve)
        try:
            new_rv = await asyncio.shield(future)
        except asyncio.CancelledError:
            await _stop_watch(stream, future)
            raise
        except client.ApiException as exc:
            if exc.status == 410:
                raise _Gone from exc
            raise
        finally:
            if self._watch_gen.get(plural) == gen:
                del self._watch_gen[plural]
            events = self._gen_events.pop(gen, 0)
        self._resources[plural].resource_version = new_rv
        return new_rv, events

    def _stream_blocking(
        self,
        stream: WatchStream,
        api: client.ApiClient,
        plural: str,
        version: str,
        rv: str,
        gen: int,
        loop: asyncio.AbstractEventLoop,
    ) -> str:
        """Runs in a watch thread: tells the loop when the server accepted the watch, hands
        it every event, and returns the last resourceVersion."""
        timeout = self._settings.watch_timeout
        kwargs: dict[str, Any] = {
            "resource_version": rv,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout,
            "watch": True,
            "_preload_content": False,
            "_request_timeout": (CONNECT_TIMEOUT, timeout + WATCH_READ_GRACE),
        }
        request = partial(custom_list(api, version, plural, self._settings.namespace), **kwargs)

        def to_loop(callback: Callable[..., None], *args: Any) -> bool:
            try:
                loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                stream.stop()
                return False
            return True

        def on_event(event: WatchEvent) -> bool:
            return to_loop(self._on_event, plural, gen, event.type, event.raw)

        def on_accepted() -> None:
            to_loop(self._on_accepted, plural, gen)

        return stream.run(request, on_accepted, on_event) or rv

    # --------------------------------------------------------------- applying

    def _on_accepted(self, plural: str, gen: int) -> None:
        """The API server accepted a watch (on the loop thread): the resource is watched."""
        if self._watch_gen.get(plural) != gen:
            return
        state = self._resources[plural]
        state.watching = True
        state.last_error = None
        self._status_changed()

    def _on_event(self, plural: str, gen: int, kind: Any, raw: Any) -> None:
        """A watch event, on the loop thread, in the order the server sent them."""
        if self._watch_gen.get(plural) != gen:
            return  # a watch that was stopped; its late events are not ours any more
        self._gen_events[gen] = self._gen_events.get(gen, 0) + 1
        if kind == "BOOKMARK":
            meta = raw.get("metadata") if isinstance(raw, Mapping) else None
            if isinstance(meta, Mapping) and isinstance(meta.get("resourceVersion"), str):
                self._resources[plural].resource_version = meta["resourceVersion"]
            self._metrics.kube_events.labels(plural, "BOOKMARK", "ok").inc()
            return
        if kind in ("ADDED", "MODIFIED"):
            self._apply(plural, str(kind), raw)
        elif kind == "DELETED":
            found = _key_of(raw)
            if found is None:
                self._metrics.kube_events.labels(plural, "DELETED", "invalid").inc()
                return
            self._apply_deleted(plural, found[0], "DELETED")
        else:
            self._metrics.kube_events.labels(plural, str(kind), "ignored").inc()

    def _apply_list(self, plural: str, items: list[Any], list_rv: str) -> None:
        """Diff a fresh list against what was applied: deletes for the missing, upserts for
        changed resourceVersions only."""
        cache = self._caches[plural]
        present: set[Key] = set()
        for raw in items:
            found = _key_of(raw)
            if found is None:
                self._invalid(plural, "LIST", InvalidCR("metadata.name is required"))
                continue
            present.add(found[0])
            self._apply(plural, "LIST", raw)
        for key in [k for k in cache.seen if k not in present]:
            seen = cache.seen[key]
            if _rv_newer(seen.rv, list_rv):
                continue  # created by our own write after the list was taken
            self._apply_deleted(plural, key, "LIST")

    def _apply(self, plural: str, kind: str, raw: Any) -> None:
        found = _key_of(raw)
        if found is None:
            self._invalid(plural, kind, InvalidCR("metadata.name is required"))
            return
        key, rv = found
        cache = self._caches[plural]
        seen = cache.seen.get(key)
        if seen is not None and (seen.rv == rv or _rv_newer(seen.rv, rv)):
            self._metrics.kube_events.labels(plural, kind, "unchanged").inc()
            return
        was_applied = seen.applied if seen is not None else False
        try:
            if plural == DEVICES:
                applied = self._apply_device(decode_device(raw), was_applied)
            elif plural == DEVICE_MODELS:
                applied = self._apply_model(decode_device_model(raw))
            else:
                applied = self._apply_status(decode_device_status(raw))
        except InvalidCR as exc:
            self._invalid(plural, kind, exc)
            cache.seen[key] = _Seen(rv, was_applied)
            return
        cache.seen[key] = _Seen(rv, applied)
        outcome = "applied" if applied else ("unbound" if was_applied else "ignored")
        self._metrics.kube_events.labels(plural, kind, outcome).inc()

    def _apply_deleted(self, plural: str, key: Key, kind: str) -> None:
        seen = self._caches[plural].seen.pop(key, None)
        namespace, name = key
        if plural == DEVICES:
            device_id = DeviceId(namespace, name)
            self._desired_stamps.pop(device_id, None)
            if seen is not None and seen.applied:
                self._registry.remove_spec(device_id)
        elif plural == DEVICE_MODELS:
            self._registry.remove_model(ModelId(namespace, name))
        else:
            self._statuses.pop(DeviceId(namespace, name), None)
        self._metrics.kube_events.labels(plural, kind, "deleted").inc()

    def _invalid(self, plural: str, kind: str, exc: InvalidCR) -> None:
        self._metrics.kube_events.labels(plural, kind, "invalid").inc()
        log.warning("kube_invalid_cr", resource=plural, event_type=kind, error=str(exc))

    def _binds(self, cr: DeviceCR) -> bool:
        if self._settings.namespace and cr.namespace != self._settings.namespace:
            return False
        return self._settings.all_nodes or cr.node == self._node

    def _twins_in_device(self) -> bool:
        """Reported values and state live in the Device (no DeviceStatus served)."""
        return self._discovery is None or not self._discovery.has_device_status

    def _apply_device(self, cr: DeviceCR, was_applied: bool) -> bool:
        device_id = DeviceId(cr.namespace, cr.name)
        if not self._binds(cr):
            if was_applied:
                self._desired_stamps.pop(device_id, None)
                self._registry.remove_spec(device_id)
            return False
        in_device = self._twins_in_device()
        reported: dict[str, TwinValue] | None = None
        if in_device:
            reported = {
                p.name: TwinValue(p.reported.value, p.reported.timestamp_ms, "kube")
                for p in cr.properties
                if p.reported is not None
            }
        self._registry.upsert_spec(
            DeviceSpec(
                id=device_id,
                model=cr.model,
                node=cr.node,
                labels=cr.labels,
                description=cr.description,
                protocol=cr.protocol,
                declared_properties=[p.name for p in cr.properties],
                desired=self._stamp_desired(device_id, cr),
                reported=reported,
                state=cr.state if in_device else None,
                last_online=cr.last_online_time if in_device else None,
            )
        )
        status = self._statuses.get(device_id)
        if status is not None and not in_device:
            self._registry.apply_kube_reported(device_id, *_status_facts(status))
        return True

    def _stamp_desired(self, device_id: DeviceId, cr: DeviceCR) -> dict[str, TwinValue]:
        previous = self._desired_stamps.get(device_id, {})
        stamps: dict[str, TwinValue] = {}
        now: int | None = None
        for prop in cr.properties:
            desired = prop.desired
            if desired is None:
                continue
            if desired.timestamp_ms is not None:
                stamps[prop.name] = TwinValue(desired.value, desired.timestamp_ms, "kube")
                continue
            before = previous.get(prop.name)
            if before is not None and before.value == desired.value:
                stamps[prop.name] = before
                continue
            if now is None:
                now = self._clock()
            stamps[prop.name] = TwinValue(desired.value, now, "kube")
        self._desired_stamps[device_id] = stamps
        return dict(stamps)

    def _apply_model(self, cr: DeviceModelCR) -> bool:
        self._registry.upsert_model(
            DeviceModel(
                id=ModelId(cr.namespace, cr.name),
                properties={
                    p.name: PropertySpec(
                        name=p.name,
                        type=p.type or "STRING",
                        access_mode=p.access_mode,
                        description=p.description,
                        unit=p.unit,
                        minimum=p.minimum,
                        maximum=p.maximum,
                    )
                    for p in cr.properties
                },
                protocol=cr.protocol,
            )
        )
        return True

    def _apply_status(self, cr: DeviceStatusCR) -> bool:
        device_id = DeviceId(cr.namespace, cr.name)
        self._statuses[device_id] = cr
        device = self._caches[DEVICES].seen.get((cr.namespace, cr.name))
        if device is None or not device.applied or self._twins_in_device():
            return False
        self._registry.apply_kube_reported(device_id, *_status_facts(cr))
        return True

    def apply_device_object(self, raw: Mapping[str, Any], kind: str = "WRITE") -> None:
        """Apply a Device the API server just returned from a write (same rules as a watch
        event, so the watch's own copy of it later changes nothing)."""
        self._apply(DEVICES, kind, raw)

    def apply_device_deleted(self, device_id: DeviceId) -> None:
        """Forget a Device the adapter just deleted (the watch's DELETED then changes
        nothing)."""
        self._apply_deleted(DEVICES, (device_id.namespace, device_id.name), "WRITE")


# --------------------------------------------------------------------------------------------
# helpers


def _status_facts(
    cr: DeviceStatusCR,
) -> tuple[dict[str, TwinValue], str | None, str | None]:
    reported = {
        t.property_name: TwinValue(t.reported.value, t.reported.timestamp_ms, "kube")
        for t in cr.twins
        if t.reported is not None
    }
    return reported, cr.state, cr.last_online_time


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a watch thread's result as seen (it may end after its awaiter was cancelled)."""
    if not future.cancelled():
        future.exception()


async def _stop_watch(stream: WatchStream, future: asyncio.Future[Any]) -> None:
    """Cut a watch's socket and wait briefly for its thread.

    A stop shuts a socket that is open; one that lands while the request is still being made
    is repeated until the thread ends.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_GRACE
    while not future.done() and loop.time() < deadline:
        stream.stop()
        await asyncio.wait({future}, timeout=0.1)
    if not future.done():
        log.warning("kube_watch_thread_lingers")
