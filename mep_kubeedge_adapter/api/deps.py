"""What the handlers need from the rest of the service, and where they find it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import Settings
from mep_kubeedge_adapter.usecases import DesiredWriter

if TYPE_CHECKING:
    from mep_kubeedge_adapter.api.iots import DeviceCrs
    from mep_kubeedge_adapter.api.subscriptions import SubscriptionApi

API_BASE = "/kubeedge_devices/v1"
"""The base path of the device API (SPEC §4); the MP1 ``serCategory.href``."""

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


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
