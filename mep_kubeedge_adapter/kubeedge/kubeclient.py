"""Building the synchronous ``kubernetes`` client for the kube source.

The three sources differ only in where the host and credentials come from:

- ``incluster``: the pod's ServiceAccount (``KUBERNETES_SERVICE_HOST`` and the mounted token);
  on an edge node with MetaServer authorization EdgeCore injects these so they point at it;
- ``kubeconfig``: a kubeconfig file (``MKA_KUBE__KUBECONFIG``, else the client's default);
- ``metaserver``: EdgeCore's MetaServer, plain HTTP without credentials
  (``http://127.0.0.1:10550`` unless ``MKA_KUBE__URL`` says otherwise).

``MKA_KUBE__URL`` overrides the host of every source. Retries inside urllib3 are turned off:
the kube source and the write path retry with the service's one backoff policy instead, and
a request to a server that is down must fail at once rather than after three silent tries.
"""

from __future__ import annotations

from typing import Final

from kubernetes import client, config

from mep_kubeedge_adapter.settings import KubeSettings

__all__ = ["CONNECT_TIMEOUT", "KubeClientError", "build_api_client", "describe_host"]

CONNECT_TIMEOUT: Final = 5.0
"""Seconds to wait for a TCP connection to the API server."""

_POOL_SIZE: Final = 8
"""Three long-lived watches plus lists and writes, without discarding connections."""


class KubeClientError(Exception):
    """The client could not be configured (no in-cluster environment, unreadable kubeconfig)."""


def build_api_client(settings: KubeSettings) -> client.ApiClient:
    """A configured ``ApiClient``; the caller closes it. Raises :class:`KubeClientError`.

    Blocking (it may read files); call it from a worker thread.
    """
    configuration = client.Configuration()
    try:
        if settings.source == "incluster":
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        elif settings.source == "kubeconfig":
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(settings.kubeconfig) if settings.kubeconfig else None,
                client_configuration=configuration,
            )
        elif settings.source != "metaserver":
            raise KubeClientError(f"kube source {settings.source!r} has no API client")
    except config.ConfigException as exc:
        raise KubeClientError(f"cannot configure the kube client: {exc}") from exc
    except OSError as exc:
        raise KubeClientError(f"cannot read the kube client configuration: {exc}") from exc
    url = settings.effective_url
    if url:
        configuration.host = url.rstrip("/")
    configuration.retries = 0
    configuration.connection_pool_maxsize = _POOL_SIZE
    return client.ApiClient(configuration)


def describe_host(api_client: client.ApiClient) -> str:
    """The API server's URL, for logs and ``/readyz`` (never credentials)."""
    return str(api_client.configuration.host)
