"""``Registrar``: keeps this node's MP1 service instances registered, alive and tidy.

What it registers (``MKA_MEP__SERVICE_MODE``), in this priority order:

1. ``kubeedge-devices-<node>``: the device API (``<public>/kubeedge_devices/v1``);
2. ``iots-<node>``: the MEC 033 IoT API (``<public>/iots/v1``);
3. ``per-model``: one ``kubeedge-model-<node>-<ns>-<model>`` per DeviceModel name that a
   device uses (``…/device_models/{ns}/{name}``); ``per-device``: one
   ``kubeedge-device-<node>-<ns>-<name>`` per device (``…/devices/{ns}/{name}``), each group
   sorted by namespace and name so the order is stable across restarts.

serNames go through :func:`~.models.to_ser_name` (EdgeGallery's NAME rule: no dots). The
``kubeedge-devices-``, ``iots-``, ``kubeedge-device-<node>-`` and ``kubeedge-model-<node>-``
names of *this node* are "ours": at start (and after every outage) the app's instances are
listed and ours that the registrar does not hold are deleted before anything is registered,
so a restart never leaves duplicates behind.

Lifecycle, one task (:meth:`Registrar.run`):

* **register** what is wanted and missing, ``register_concurrency`` POSTs at a time; the
  ``serInstanceId`` and liveness link come from the 201 body;
* **heartbeat** each instance every ``heartbeat_interval`` seconds (``PUT …/liveness``);
  the first beat of each instance is placed at a stable fraction (½…1) of the interval after
  its registration, so beats of many instances are spread instead of arriving in a burst;
  404 → the MEP lost it: register again at once; 409 → INACTIVE: PUT the full ServiceInfo
  with ``state: ACTIVE`` (a PUT also counts as a beat);
* **follow the registry**: device and model additions, removals and model changes only set a
  flag; after ``settle`` seconds without further change the wanted set is recomputed once,
  so a burst of 40 new devices costs one reconcile, not 40;
* **deregister** every instance on stop, within ``deregister_timeout``.

Limits. EdgeGallery keeps at most 50 instances per app (``max_services``) and rate-limits
MP1 to 1000 calls/minute, probably shared by all apps. What does not fit is never retried
in a loop: the node and IoT services come first, the rest in the stable order, and the
wanted-but-unregistered subjects are listed in :meth:`Registrar.status` (``/readyz``), in
``mka_mep_unregistered`` and in one log line whenever the list changes. A 400 "limit"
lowers the capacity to what is held; only a freed slot or a full resync after an outage
tries again, so there is at most one such 400 per change. A body the MEP refuses with any
other 400 is reported as rejected and not retried until the subject changes.

Steady-state MP1 traffic, with N registered instances, heartbeat interval H seconds and a
token lifetime T (3600 s) minus the client's refresh margin m (60 s)::

    calls/minute = N * 60 / H  +  60 / (T - m)

e.g. node mode (N = 2, H = 30): 4.02/min; per-device at the limit (N = 50, H = 30):
100.02/min, a tenth of the shared 1000/min budget (H = 45 brings it to 66.7/min). Registry
churn adds one POST or DELETE per changed subject, after coalescing.

Failures. ``CredentialsRejected`` / ``Locked`` (bad AK/SK, or an AK locked after bad
signatures) → state ``locked`` and no MP1 call for ``lockout_wait`` (≥ the 15 min lock-out):
a bad signature is never retried blindly. ``Unavailable`` (MEP down, 5xx, 429) and other
transient errors → state ``connecting`` and a retry with the shared :class:`Backoff`; the
next attempt lists the app's instances first and repairs the difference (lost → register,
INACTIVE → PUT ACTIVE, unknown ours → delete). The API keeps serving throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import structlog

from mep_kubeedge_adapter.backoff import Backoff
from mep_kubeedge_adapter.domain import (
    ChangeEvent,
    Device,
    DeviceAdded,
    DeviceRemoved,
    DeviceUpdated,
    ModelChanged,
    ModelId,
)
from mep_kubeedge_adapter.mep.client import (
    LOCKOUT_SECONDS,
    Conflict,
    CredentialsRejected,
    InvalidRequest,
    LimitReached,
    Locked,
    Mp1Client,
    Mp1Error,
    NotFound,
)
from mep_kubeedge_adapter.mep.models import (
    KUBEEDGE_CATEGORY,
    BodyTooLarge,
    ServiceInfo,
    ServiceState,
    iots_service_info,
    node_service_info,
    rest_service_info,
    to_ser_name,
)
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import MepSettings

__all__ = [
    "MepState",
    "Registrar",
    "WantedService",
    "steady_calls_per_minute",
    "wanted_services",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEVICE_API = "/kubeedge_devices/v1"
STATUS_LIST_LIMIT = 20
"""At most this many unregistered subjects are listed by name in :meth:`Registrar.status`."""


class MepState(StrEnum):
    """What ``mka_mep_state{state=...}`` and ``/readyz`` report."""

    DISABLED = "disabled"
    """No ``MKA_MEP__URL``: the adapter runs without a MEP."""
    CONNECTING = "connecting"
    """Not (or no longer) in contact with the MEP; retrying with backoff."""
    REGISTERED = "registered"
    """Every wanted service is registered and beating."""
    DEGRADED = "degraded"
    """Registered, but some wanted services are not (instance limit or a refused body)."""
    LOCKED = "locked"
    """mepauth refuses our AK/SK or has locked the AK; waiting out the lock-out."""
    STOPPED = "stopped"
    """Deregistered on shutdown."""


@dataclass(frozen=True, slots=True)
class WantedService:
    """One service instance the adapter wants registered."""

    ser_name: str
    subject: str
    """What it stands for: ``node``, ``iots``, ``device <ns>/<name>``, ``model <ns>/<name>``."""
    info: ServiceInfo


def steady_calls_per_minute(
    services: int, heartbeat_interval: float, token_ttl: float = 3600.0, margin: float = 60.0
) -> float:
    """MP1 calls per minute once registered: heartbeats plus token refreshes (module doc)."""
    return services * 60.0 / heartbeat_interval + 60.0 / (token_ttl - margin)


def _segment(text: str) -> str:
    return quote(text, safe="")


def wanted_services(
    devices: Iterable[Device],
    *,
    mode: str,
    node: str,
    public_url: str,
    token_endpoint: str | None = None,
) -> list[WantedService]:
    """The services to register, highest priority first (see the module docstring)."""
    base = public_url.rstrip("/")
    extra: dict[str, Any] = {"token_endpoint": token_endpoint}
    wanted = [
        WantedService(
            to_ser_name("kubeedge-devices", node), "node", node_service_info(node, base, **extra)
        ),
        WantedService(to_ser_name("iots", node), "iots", iots_service_info(node, base, **extra)),
    ]
    node_token = to_ser_name(node)
    if mode == "per-model":
        models = sorted({ModelId(d.id.namespace, d.model) for d in devices if d.model})
        for model in models:
            name = to_ser_name(f"kubeedge-model-{node_token}", model.namespace, model.name)
            uri = f"{base}{DEVICE_API}/device_models/{_segment(model.namespace)}/" + _segment(
                model.name
            )
            wanted.append(
                WantedService(
                    name,
                    f"model {model}",
                    rest_service_info(name, uri, category=KUBEEDGE_CATEGORY, **extra),
                )
            )
    elif mode == "per-device":
        for device in sorted(devices, key=lambda d: d.id):
            name = to_ser_name(f"kubeedge-device-{node_token}", device.id.namespace, device.id.name)
            uri = f"{base}{DEVICE_API}/devices/{_segment(device.id.namespace)}/" + _segment(
                device.id.name
            )
            wanted.append(
                WantedService(
                    name,
                    f"device {device.id}",
                    rest_service_info(name, uri, category=KUBEEDGE_CATEGORY, **extra),
                )
            )
    return wanted


def _now() -> float:
    """The event loop's clock: the heartbeat schedule and the settle window are timers of the
    loop, so their deadlines are read from the clock the loop's timers follow."""
    return asyncio.get_running_loop().time()


def _spread(ser_name: str) -> float:
    """A stable fraction in [0.5, 1) that places an instance's first beat in the interval."""
    digest = hashlib.sha256(ser_name.encode()).digest()
    return 0.5 + int.from_bytes(digest[:4], "big") / 2**33


@dataclass(slots=True)
class _Registration:
    wanted: WantedService
    ser_instance_id: str
    liveness_path: str | None
    due: float


ClientFactory = Callable[[], Mp1Client]


class Registrar:
    """Registers this node's services with the MEP and keeps them alive (module docstring).

    ``public_url`` is called whenever bodies are built, so the API's bound port can be
    learned after the listener started. Run :meth:`run` as a supervised task and call
    :meth:`shutdown` before the API listener closes: deregistration happens while the
    advertised endpoints still answer.
    """

    def __init__(
        self,
        settings: MepSettings,
        node: str,
        registry: DeviceRegistry,
        metrics: Metrics,
        public_url: Callable[[], str],
        *,
        settle: float = 0.5,
        lockout_wait: float = LOCKOUT_SECONDS,
        backoff: Backoff | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        if not settings.url:
            raise ValueError("the registrar needs MKA_MEP__URL")
        self._settings = settings
        self._url: str = settings.url
        self._node = node
        self._registry = registry
        self._metrics = metrics
        self._public_url = public_url
        self._settle = settle
        self._lockout_wait = lockout_wait
        self._backoff = backoff or Backoff(base=1.0, cap=60.0)
        self._client_factory = client_factory or self._default_client
        self._node_token = to_ser_name(node)

        self._regs: dict[str, _Registration] = {}
        self._capacity = settings.max_services
        self._rejected: dict[str, str] = {}
        self._unregistered: list[tuple[WantedService, str]] = []
        self._wanted_count = 0
        self._interval = settings.heartbeat_interval
        self._dirty = True
        self._resync_needed = True
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._state = MepState.CONNECTING
        self._reason = "starting"
        self._state_event = asyncio.Event()
        self._last_error: str | None = None
        self._reported_unregistered: tuple[str, ...] = ()
        self._limit_hit = False
        self._set_state(MepState.CONNECTING, "starting")

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> MepState:
        return self._state

    def registered(self) -> dict[str, str]:
        """serName → serInstanceId of what is registered now."""
        return {name: reg.ser_instance_id for name, reg in self._regs.items()}

    def unregistered(self) -> list[str]:
        """Subjects that are wanted but not registered because of the limit or a refusal."""
        return [w.subject for w, _ in self._unregistered]

    def status(self) -> dict[str, Any]:
        """The ``mep`` entry of ``/readyz``."""
        shown = self._unregistered[:STATUS_LIST_LIMIT]
        body: dict[str, Any] = {
            "state": self._state.value,
            "reason": self._reason,
            "mode": self._settings.service_mode,
            "services": {"wanted": self._wanted_count, "registered": len(self._regs)},
            "heartbeatInterval": self._interval,
        }
        if self._unregistered:
            body["unregistered"] = {
                "count": len(self._unregistered),
                "items": [
                    {"subject": w.subject, "serName": w.ser_name, "reason": why} for w, why in shown
                ],
                "truncated": len(self._unregistered) > len(shown),
            }
        if self._last_error:
            body["lastError"] = self._last_error
        return body

    # ------------------------------------------------------------------ control

    def _on_change(self, event: ChangeEvent) -> None:
        """Registry listener: only flags the change (listeners must not block)."""
        if self._settings.service_mode == "node":
            return
        if isinstance(event, DeviceAdded | DeviceRemoved | DeviceUpdated | ModelChanged):
            self._dirty = True
            self._wake.set()

    @property
    def stopping(self) -> bool:
        """:meth:`shutdown` was called: :meth:`run` returns once it has deregistered."""
        return self._stop.is_set()

    async def shutdown(self) -> None:
        """Stop the loop and wait until every instance is deregistered (bounded)."""
        self._stop.set()
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), self._settings.deregister_timeout + 2.0)

    def _default_client(self) -> Mp1Client:
        s = self._settings
        assert s.app_instance_id and s.ak and s.sk
        return Mp1Client(
            self._url,
            s.app_instance_id,
            s.ak.get_secret_value(),
            s.sk.get_secret_value(),
            ca_file=str(s.ca_file) if s.ca_file else None,
            tls_server_name=s.tls_server_name,
            on_call=self._count_call,
        )

    def _count_call(self, operation: str, outcome: str) -> None:
        self._metrics.mep_calls.labels(operation, outcome).inc()

    async def wait_state(self, *states: MepState) -> MepState:
        """Wait until the registrar is in one of ``states``; woken by every state change."""
        while self._state not in states:
            await self._state_event.wait()
        return self._state

    def _set_state(self, state: MepState, reason: str) -> None:
        if state is not self._state or reason != self._reason:
            log.info("mep_state", state=state.value, reason=reason)
            self._state_event.set()
            self._state_event = asyncio.Event()
        self._state = state
        self._reason = reason
        for candidate in MepState:
            self._metrics.mep_state.labels(candidate.value).set(1 if candidate is state else 0)
        self._metrics.mep_services.set(len(self._regs))

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        """Register, beat and follow the registry until :meth:`shutdown`; then deregister."""
        self._done.clear()
        self._resync_needed = True
        self._dirty = True
        unsubscribe = self._registry.subscribe(self._on_change)
        try:
            async with self._client_factory() as client:
                try:
                    await self._serve(client)
                finally:
                    await self._deregister_all(client)
        finally:
            unsubscribe()
            self._done.set()

    async def _serve(self, client: Mp1Client) -> None:
        while not self._stop.is_set():
            try:
                if self._resync_needed:
                    await self._resync(client)
                    self._resync_needed = False
                await self._apply(client)
                self._backoff.reset()
                await self._beat_until_change(client)
            except (CredentialsRejected, Locked) as exc:
                wait = max(exc.retry_after or 0.0, self._lockout_wait)
                self._last_error = str(exc)
                what = "AK locked" if isinstance(exc, Locked) else "AK/SK rejected"
                self._set_state(MepState.LOCKED, f"{what}; next attempt in {wait:.0f}s")
                log.error("mep_credentials_refused", error=str(exc), wait=wait)
                self._resync_needed = True
                await self._sleep(wait)
            except (Mp1Error, BodyTooLarge) as exc:
                self._last_error = str(exc)
                delay_hint = getattr(exc, "retry_after", None)
                self._set_state(MepState.CONNECTING, f"MEP call failed: {exc}")
                log.warning("mep_unavailable", error=str(exc), registered=len(self._regs))
                self._resync_needed = True
                if delay_hint:
                    await self._sleep(delay_hint)
                else:
                    await self._backoff.wait(self._stop)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _ours(self, ser_name: str) -> bool:
        fixed = {to_ser_name("kubeedge-devices", self._node), to_ser_name("iots", self._node)}
        return ser_name in fixed or ser_name.startswith(
            (f"kubeedge-device-{self._node_token}-", f"kubeedge-model-{self._node_token}-")
        )

    async def _resync(self, client: Mp1Client) -> None:
        """List the app's instances; repair what we hold, delete ours that we do not hold."""
        listed = await client.list_services()
        held = {reg.ser_instance_id: name for name, reg in self._regs.items()}
        seen: set[str] = set()
        stale: list[str] = []
        foreign = 0
        for info in listed:
            sid = info.serInstanceId or ""
            if sid in held:
                seen.add(sid)
                reg = self._regs[held[sid]]
                if info.state is ServiceState.INACTIVE:
                    await self._restore(client, reg)
                elif info.state is ServiceState.SUSPENDED:
                    reg.due = _now()
            elif self._ours(info.serName):
                stale.append(sid)
            else:
                foreign += 1
        for sid, name in held.items():
            if sid not in seen:
                log.warning("mep_instance_lost", ser_name=name, ser_instance_id=sid)
                del self._regs[name]
        if stale:
            log.info("mep_deleting_stale", count=len(stale))
            await self._bounded([partial(self._delete, client, sid) for sid in stale])
        self._capacity = max(0, self._settings.max_services - foreign)
        self._dirty = True

    async def _delete(self, client: Mp1Client, ser_instance_id: str) -> None:
        with contextlib.suppress(NotFound):
            await client.delete_service(ser_instance_id)

    async def _bounded(self, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        """Run ``jobs`` ``register_concurrency`` at a time; re-raise the first failure."""
        limit = asyncio.Semaphore(self._settings.register_concurrency)

        async def one(job: Callable[[], Awaitable[T]]) -> T:
            async with limit:
                return await job()

        results = await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True)
        out: list[T] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            out.append(result)
        return out

    # ------------------------------------------------------------------ reconcile

    async def _apply(self, client: Mp1Client) -> None:
        """Bring the registered set in line with the wanted set."""
        self._dirty = False
        wanted = wanted_services(
            self._registry.devices(),
            mode=self._settings.service_mode,
            node=self._node,
            public_url=self._public_url(),
            token_endpoint=f"{self._url.rstrip('/')}/mep/token",
        )
        self._wanted_count = len(wanted)
        names = {w.ser_name for w in wanted}
        self._rejected = {k: v for k, v in self._rejected.items() if k in names}
        gone = [reg for name, reg in self._regs.items() if name not in names]
        if gone:
            await self._bounded([partial(self._deregister, client, reg) for reg in gone])
        slots = self._capacity - len(self._regs)
        missing = [
            w for w in wanted if w.ser_name not in self._regs and w.ser_name not in self._rejected
        ]
        batch = missing[: max(0, slots)]
        self._limit_hit = False
        if batch:
            await self._bounded([partial(self._register, client, w) for w in batch])
        self._report(wanted)

    async def _register(self, client: Mp1Client, wanted: WantedService) -> None:
        if self._limit_hit or self._stop.is_set():
            return
        try:
            created = await client.register(wanted.info)
        except LimitReached:
            self._limit_hit = True
            self._capacity = len(self._regs)
            log.warning("mep_instance_limit", held=len(self._regs), ser_name=wanted.ser_name)
            return
        except (InvalidRequest, BodyTooLarge) as exc:
            self._rejected[wanted.ser_name] = f"rejected: {exc}"
            log.error(
                "mep_registration_refused",
                ser_name=wanted.ser_name,
                subject=wanted.subject,
                error=str(exc),
            )
            return
        assert created.serInstanceId
        interval = self._settings.heartbeat_interval
        if created.livenessInterval:
            interval = min(interval, created.livenessInterval * 0.8)
        self._interval = interval
        self._regs[wanted.ser_name] = _Registration(
            wanted=wanted,
            ser_instance_id=created.serInstanceId,
            liveness_path=created.liveness_path,
            due=_now() + interval * _spread(wanted.ser_name),
        )
        self._metrics.mep_services.set(len(self._regs))
        log.info(
            "mep_registered",
            ser_name=wanted.ser_name,
            subject=wanted.subject,
            ser_instance_id=created.serInstanceId,
        )

    async def _deregister(self, client: Mp1Client, reg: _Registration) -> None:
        await self._delete(client, reg.ser_instance_id)
        self._regs.pop(reg.wanted.ser_name, None)
        self._metrics.mep_services.set(len(self._regs))
        log.info("mep_deregistered", ser_name=reg.wanted.ser_name, subject=reg.wanted.subject)

    def _report(self, wanted: list[WantedService]) -> None:
        unregistered: list[tuple[WantedService, str]] = []
        for w in wanted:
            if w.ser_name in self._regs:
                continue
            unregistered.append((w, self._rejected.get(w.ser_name, "instance limit")))
        self._unregistered = unregistered
        self._metrics.mep_unregistered.set(len(unregistered))
        subjects = tuple(w.subject for w, _ in unregistered)
        if subjects != self._reported_unregistered:
            self._reported_unregistered = subjects
            if subjects:
                log.warning(
                    "mep_services_not_registered",
                    count=len(subjects),
                    capacity=self._capacity,
                    subjects=list(subjects[:STATUS_LIST_LIMIT]),
                    truncated=len(subjects) > STATUS_LIST_LIMIT,
                )
            else:
                log.info("mep_all_services_registered", count=len(self._regs))
        if unregistered:
            self._set_state(
                MepState.DEGRADED, f"{len(unregistered)} of {len(wanted)} services not registered"
            )
        else:
            self._set_state(MepState.REGISTERED, f"{len(self._regs)} services registered")
        if not unregistered:
            self._last_error = None

    # ------------------------------------------------------------------ heartbeats

    async def _beat_until_change(self, client: Mp1Client) -> None:
        """Beat due instances until one was lost, the registry changed (and settled), or stop."""
        while not self._stop.is_set():
            if self._dirty:
                await self._coalesce()
                return
            now = _now()
            due = [reg for reg in self._regs.values() if reg.due <= now]
            if due:
                lost = await self._bounded([partial(self._beat, client, r) for r in due])
                if any(lost):
                    return
                continue
            next_due = min((r.due for r in self._regs.values()), default=now + self._interval)
            self._wake.clear()
            if self._dirty or self._stop.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_due - now))

    async def _coalesce(self) -> None:
        """Wait until the registry was quiet for ``settle`` s (at most 4 * ``settle`` in all)."""
        deadline = _now() + 4 * self._settle
        while not self._stop.is_set():
            self._wake.clear()
            self._dirty = False
            left = min(self._settle, deadline - _now())
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
            if not self._dirty:
                break
        self._dirty = True

    async def _beat(self, client: Mp1Client, reg: _Registration) -> bool:
        """One heartbeat; ``True`` when the MEP no longer knows the instance."""
        try:
            await client.heartbeat(reg.ser_instance_id, reg.liveness_path)
        except NotFound:
            log.warning(
                "mep_instance_lost",
                ser_name=reg.wanted.ser_name,
                ser_instance_id=reg.ser_instance_id,
            )
            self._regs.pop(reg.wanted.ser_name, None)
            self._metrics.mep_services.set(len(self._regs))
            return True
        except Conflict:
            return not await self._restore(client, reg)
        reg.due = _now() + self._interval
        return False

    async def _restore(self, client: Mp1Client, reg: _Registration) -> bool:
        """INACTIVE → ACTIVE: only a PUT of the full ServiceInfo can do it. ``False``: lost."""
        log.warning("mep_instance_inactive", ser_name=reg.wanted.ser_name)
        try:
            await client.update_service(reg.ser_instance_id, reg.wanted.info)
        except NotFound:
            self._regs.pop(reg.wanted.ser_name, None)
            self._metrics.mep_services.set(len(self._regs))
            return False
        reg.due = _now() + self._interval
        log.info("mep_instance_restored", ser_name=reg.wanted.ser_name)
        return True

    # ------------------------------------------------------------------ shutdown

    async def _deregister_all(self, client: Mp1Client) -> None:
        regs = list(self._regs.values())
        if regs:
            log.info("mep_deregistering", count=len(regs))
            try:
                async with asyncio.timeout(self._settings.deregister_timeout):
                    await self._bounded(
                        [partial(self._deregister_quietly, client, r) for r in regs]
                    )
            except TimeoutError:
                log.error(
                    "mep_deregister_timed_out",
                    left=sorted(self._regs),
                    timeout=self._settings.deregister_timeout,
                )
        if self._stop.is_set():
            self._set_state(MepState.STOPPED, f"{len(self._regs)} instances left registered")

    async def _deregister_quietly(self, client: Mp1Client, reg: _Registration) -> None:
        try:
            await self._deregister(client, reg)
        except Mp1Error as exc:
            log.warning("mep_deregister_failed", ser_name=reg.wanted.ser_name, error=str(exc))
