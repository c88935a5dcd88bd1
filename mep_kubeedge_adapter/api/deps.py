"""What the handlers need from the rest of the service, and where they find it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from mep_kubeedge_adapter.domain import DeviceDefinition, DeviceId
from mep_kubeedge_adapter.notify.models import Caller, Subscription, SubscriptionRequest
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import Settings
from mep_kubeedge_adapter.usecases import DesiredWriter

__all__ = ["API_BASE", "DEPS", "ApiDeps", "DeviceCrs", "Readiness", "SubscriptionApi"]

API_BASE = "/kubeedge_devices/v1"
"""The base path of the device API (SPEC §4); the MP1 ``serCategory.href``."""

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


class SubscriptionApi(Protocol):
    """What the subscription routes need from the subscription engine; ``caller`` scopes
    each call (with JWT, a subscription belongs to the token subject that created it)."""

    async def create(
        self, request: SubscriptionRequest, *, base_url: str, caller: Caller
    ) -> Subscription: ...

    async def get(self, subscription_id: str, *, caller: Caller) -> Subscription: ...

    async def list(self, *, caller: Caller) -> list[Subscription]: ...

    async def delete(self, subscription_id: str, *, caller: Caller) -> None: ...

    async def serve_websocket(
        self, subscription_id: str, ws: web.WebSocketResponse, *, caller: Caller
    ) -> None: ...


class DeviceCrs(Protocol):
    """What the MEC 033 write side needs: Device CRs created, replaced and deleted.

    Each call returns once the API server accepted the write and the registry shows it, and
    raises :class:`~mep_kubeedge_adapter.domain.AdapterError` (NOT_FOUND, CONFLICT, INVALID,
    FORBIDDEN, UNAVAILABLE...) otherwise.
    """

    async def create(self, definition: DeviceDefinition) -> None:
        """A new Device CR from ``definition`` (CONFLICT if the name is taken)."""
        ...

    async def replace(self, definition: DeviceDefinition) -> None:
        """The existing Device CR with the model, node and labels of ``definition``; the
        rest of the CR (properties, protocol) is kept."""
        ...

    async def delete(self, device_id: DeviceId) -> None: ...


@dataclass(slots=True)
class ApiDeps:
    """What the handlers need from the service; built by the composition root.

    ``subscriptions`` is ``None`` while no subscription engine runs; the subscription
    routes then answer 503 instead of disappearing from the API.
    """

    settings: Settings
    registry: DeviceRegistry
    metrics: Metrics
    readiness: Readiness
    writer: DesiredWriter
    subscriptions: SubscriptionApi | None = None
    device_crs: DeviceCrs | None = None
    """The kube source's Device CR writes, for the MEC 033 write side (else 403)."""


DEPS = web.AppKey("deps", ApiDeps)
