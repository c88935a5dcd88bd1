"""Find a MEC service's endpoint over MP1 the way an edge app on EdgeGallery has to.

EdgeGallery's ``GET /mep/mec_service_mgmt/v1/services`` only honours ``ser_name`` (an exact
lookup that disables every other filter); ``ser_category_id``, ``scope_of_locality``,
``is_local`` and ``consumed_local_only`` are ORed rather than ANDed, and ``ser_instance_id`` is
ignored. Results are further limited to the serNames in the *caller's* ``requiredServices``
(from its APPD), and SUSPENDED or INACTIVE instances stay listed. So this helper asks with
``ser_name`` only and filters client-side: serName, ``serCategory.id`` and state ACTIVE.

Example (a consumer app with its own AK/SK)::

    uris = await discover_endpoints(
        "https://mep-api-gw.mep:8443", app_id, ak, sk,
        ser_name="kubeedge-devices-edge-1", ca_file="ca.crt", tls_server_name="edgegallery")
    # -> ["https://mep-api-gw.mep:8443/kubeedge-devices-edge-1<20 hex>"]

Call the URI with ``Authorization: Bearer <your token>`` (the gateway checks it). The gateway
URI changes on every re-registration of the provider, so rediscover after a failure.
"""

from __future__ import annotations

from collections.abc import Iterable

from mep_kubeedge_adapter.mep.client import InvalidRequest, Mp1Client
from mep_kubeedge_adapter.mep.models import ServiceInfo, ServiceState

__all__ = ["discover_endpoints", "select_endpoints", "select_services"]


def select_services(
    services: Iterable[ServiceInfo],
    *,
    ser_name: str | None = None,
    category_id: str | None = None,
    only_active: bool = True,
) -> list[ServiceInfo]:
    """Apply the filters EdgeGallery does not apply reliably, in ETSI's AND sense."""
    return [
        s
        for s in services
        if (ser_name is None or s.serName == ser_name)
        and (category_id is None or (s.serCategory is not None and s.serCategory.id == category_id))
        and (not only_active or s.state is ServiceState.ACTIVE)
    ]


def select_endpoints(
    services: Iterable[ServiceInfo],
    *,
    ser_name: str | None = None,
    category_id: str | None = None,
    only_active: bool = True,
) -> list[str]:
    """Endpoint URIs of the services that pass :func:`select_services`, in reply order."""
    uris: list[str] = []
    chosen = select_services(
        services, ser_name=ser_name, category_id=category_id, only_active=only_active
    )
    for service in chosen:
        uris.extend(u for u in service.endpoint_uris if u not in uris)
    return uris


async def discover_endpoints(
    base_url: str,
    app_instance_id: str,
    ak: str,
    sk: str,
    *,
    ser_name: str | None = None,
    category_id: str | None = None,
    only_active: bool = True,
    ca_file: str | None = None,
    tls_server_name: str | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """Token with the caller's own AK/SK, one discovery GET, client-side filtering.

    Returns ``[]`` when nothing visible matches, including EdgeGallery's 400 for an unknown
    ``ser_name`` (a service-center error, not an empty list). Other failures raise
    :class:`~mep_kubeedge_adapter.mep.client.Mp1Error` subclasses.
    """
    async with Mp1Client(
        base_url,
        app_instance_id,
        ak,
        sk,
        ca_file=ca_file,
        tls_server_name=tls_server_name,
        timeout=timeout,
    ) as client:
        try:
            services = await client.discover(ser_name=ser_name)
        except InvalidRequest as exc:
            if ser_name is not None and exc.problem is None:
                return []
            raise
    return select_endpoints(
        services, ser_name=ser_name, category_id=category_id, only_active=only_active
    )
