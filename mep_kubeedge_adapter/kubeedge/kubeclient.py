"""Access to the Kubernetes API through the synchronous ``kubernetes`` client.

Everything here is shared by the users of the kube API: the kube source's list/watch
(``kubesource``) and its CR writes (``crwrites``) use one :class:`KubeAccess`; another user
builds its own :class:`KubeAccess` per cluster, for instance one per uploaded kubeconfig file
(:func:`kubeconfig_api_client`).

Building a client. :func:`build_api_client` builds the adapter's own client from
``MKA_KUBE__*``; the three sources differ only in where the host and credentials come from:

- ``incluster``: the pod's ServiceAccount (``KUBERNETES_SERVICE_HOST`` and the mounted token);
  on an edge node with MetaServer authorization EdgeCore injects these so they point at it;
- ``kubeconfig``: a kubeconfig file (``MKA_KUBE__KUBECONFIG``, else the client's default);
- ``metaserver``: EdgeCore's MetaServer, plain HTTP without credentials
  (``http://127.0.0.1:10550`` unless ``MKA_KUBE__URL`` says otherwise).

``MKA_KUBE__URL`` overrides the host of every source. :func:`kubeconfig_api_client` builds a
client from a kubeconfig file somebody else handed over: it refuses what would let that file
run commands or read this machine's files (``exec`` and ``auth-provider`` users, paths to
certificates, keys and token files); credentials must be inline.

Every client has urllib3's retries turned off: the callers retry with the service's one
backoff policy instead, and a request to a server that is down must fail at once rather than
after three silent tries. Building is blocking (it may read files); :class:`KubeAccess` does
it in a worker thread.

Calling. The client is synchronous: :meth:`KubeAccess.request` and :meth:`KubeAccess.call`
run one blocking call in a worker thread (``asyncio.to_thread``), with a connect and a read
timeout (:data:`REQUEST_TIMEOUT`). Long watches need a thread of their own; the kube source
keeps a pool for them.

Errors. A call raises one of :data:`API_ERRORS` (an answer: ``ApiException``; no answer:
urllib3's errors, ``OSError``); building raises :class:`KubeClientError`.
:func:`describe_error` words them for logs and ``/readyz``; :func:`adapter_error` maps them
onto :class:`~mep_kubeedge_adapter.domain.AdapterError` kinds, in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import structlog
import urllib3
import yaml
from kubernetes import client, config

from mep_kubeedge_adapter import backoff
from mep_kubeedge_adapter.domain import AdapterError, ErrorKind
from mep_kubeedge_adapter.settings import KubeSettings

__all__ = [
    "API_ERRORS",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "REQUEST_TIMEOUT",
    "TRANSIENT",
    "KubeAccess",
    "KubeClientError",
    "adapter_error",
    "build_api_client",
    "describe_error",
    "describe_host",
    "kubeconfig_api_client",
    "retry_after",
    "served_resources",
]

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT: Final = 5.0
"""Seconds to wait for a TCP connection to the API server."""
READ_TIMEOUT: Final = 30.0
"""Seconds to wait for a list, get or write answer."""
REQUEST_TIMEOUT: Final = (CONNECT_TIMEOUT, READ_TIMEOUT)
"""The ``_request_timeout`` of every call that is not a watch."""

_POOL_SIZE: Final = 8
"""Three long-lived watches plus lists and writes, without discarding connections."""

_T = TypeVar("_T")


class KubeClientError(Exception):
    """The client could not be configured (no in-cluster environment, unreadable or refused
    kubeconfig)."""


API_ERRORS: Final = (client.ApiException, urllib3.exceptions.HTTPError, OSError)
"""What a call to the API server may raise: an answer, or no answer."""
TRANSIENT: Final = (KubeClientError, *API_ERRORS)
"""What a caller that retries with backoff retries: no client yet, or a failed call."""


# --------------------------------------------------------------------------------------------
# building a client


def build_api_client(settings: KubeSettings) -> client.ApiClient:
    """The adapter's own ``ApiClient`` from ``MKA_KUBE__*``; the caller closes it. Raises
    :class:`KubeClientError`.

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
    return _api_client(configuration)


_USER_REFUSED: Final = {
    "exec": "runs a command",
    "auth-provider": "runs a login plugin",
    "tokenFile": "reads a token from a local file",
    "client-certificate": "reads a certificate from a local file (use client-certificate-data)",
    "client-key": "reads a key from a local file (use client-key-data)",
}
_CLUSTER_REFUSED: Final = {
    "certificate-authority": "reads a CA from a local file (use certificate-authority-data)",
}


def kubeconfig_api_client(path: Path, *, context: str | None = None) -> client.ApiClient:
    """An ``ApiClient`` from a kubeconfig file handed over by someone else; the caller closes
    it. Raises :class:`KubeClientError` for a file that cannot be read or parsed, a missing
    context, or a context whose user or cluster the file must not use here (see the module
    docstring). The file is never written back (no token refresh is persisted).

    Blocking (it reads the file); call it from a worker thread. The error messages name the
    offending key, never a credential.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KubeClientError(f"cannot read the kubeconfig: {exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeClientError("the kubeconfig is not YAML") from exc
    if not isinstance(document, dict):
        raise KubeClientError("the kubeconfig is not a YAML mapping")
    _refuse_local_references(document, context)
    configuration = client.Configuration()
    try:
        config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
            document, context=context, client_configuration=configuration, persist_config=False
        )
    except config.ConfigException as exc:
        raise KubeClientError(f"cannot configure the kube client: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise KubeClientError(
            f"the kubeconfig is malformed ({type(exc).__name__} while reading it)"
        ) from exc
    return _api_client(configuration)


def _named(document: Mapping[str, Any], section: str, name: Any) -> Mapping[str, Any]:
    """The body (``cluster``, ``user``, ``context``) of the entry called ``name``."""
    entries = document.get(section)
    if not isinstance(entries, list):
        raise KubeClientError(f"the kubeconfig has no {section} list")
    inner = section[:-1]
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            body = entry.get(inner)
            if not isinstance(body, Mapping):
                raise KubeClientError(f"the kubeconfig's {inner} {name!r} is not a mapping")
            return body
    raise KubeClientError(f"the kubeconfig has no {inner} {name!r}")


def _refuse_local_references(document: Mapping[str, Any], context: str | None) -> None:
    name = context if context is not None else document.get("current-context")
    if not isinstance(name, str) or not name:
        raise KubeClientError("the kubeconfig names no current-context")
    ctx = _named(document, "contexts", name)
    checks = (
        ("users", ctx.get("user"), _USER_REFUSED),
        ("clusters", ctx.get("cluster"), _CLUSTER_REFUSED),
    )
    for section, entry, refused in checks:
        body = _named(document, section, entry)
        for key, why in refused.items():
            if key in body:
                raise KubeClientError(
                    f"the kubeconfig's {section[:-1]} {entry!r} uses {key!r}, which {why}; "
                    "it is refused here"
                )


def _api_client(configuration: client.Configuration) -> client.ApiClient:
    configuration.retries = 0
    configuration.connection_pool_maxsize = _POOL_SIZE
    return client.ApiClient(configuration)


def describe_host(api_client: client.ApiClient) -> str:
    """The API server's URL, for logs and ``/readyz`` (never credentials)."""
    return str(api_client.configuration.host)


# --------------------------------------------------------------------------------------------
# calling


def served_resources(api: client.ApiClient, group: str, version: str) -> frozenset[str] | None:
    """Discovery: the resource names ``group/version`` serves (subresources included, as
    ``devices/status``), or ``None`` where the API server does not serve that version (404).

    Blocking; call it from a worker thread (or use :meth:`KubeAccess.served_resources`).
    """
    try:
        listing = client.CustomObjectsApi(api).get_api_resources(
            group, version, _request_timeout=REQUEST_TIMEOUT
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return frozenset(r.name for r in (listing.resources or []))


class KubeAccess:
    """One ``ApiClient``, built on first use in a worker thread, and calls to it in threads.

    ``build`` is :func:`build_api_client` or :func:`kubeconfig_api_client` with its arguments
    bound; ``log_fields`` go into the ``kube_client`` log line. :meth:`close` drops the client;
    the next call builds a new one. Methods must be called on the event loop's thread.
    """

    def __init__(self, build: Callable[[], client.ApiClient], **log_fields: Any) -> None:
        self._build = build
        self._log_fields = log_fields
        self._api: client.ApiClient | None = None

    @property
    def host(self) -> str | None:
        """The API server's URL once a client was built (for ``/readyz``), else ``None``."""
        return describe_host(self._api) if self._api is not None else None

    async def api(self) -> client.ApiClient:
        """The client, built now if there is none. Raises :class:`KubeClientError`."""
        if self._api is None:
            self._api = await asyncio.to_thread(self._build)
            log.info("kube_client", **self._log_fields, url=describe_host(self._api))
        return self._api

    async def call(self, fn: Callable[[client.ApiClient], _T]) -> _T:
        """``fn(api)`` in a worker thread: any blocking work with the client (a paged list,
        several calls in a row). ``fn`` passes its own timeouts (:data:`REQUEST_TIMEOUT`)."""
        api = await self.api()
        return await asyncio.to_thread(fn, api)

    async def request(
        self, api_type: Callable[[client.ApiClient], Any], method: str, /, *args: Any, **kwargs: Any
    ) -> Any:
        """One call ``api_type(api).method(*args, **kwargs)`` in a worker thread, with
        :data:`REQUEST_TIMEOUT` unless ``_request_timeout`` is given; errors are the caller's
        to map (:func:`adapter_error`)."""
        api = await self.api()
        fn = getattr(api_type(api), method)
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def served_resources(self, group: str, version: str) -> frozenset[str] | None:
        """:func:`served_resources` in a worker thread."""
        api = await self.api()
        return await asyncio.to_thread(served_resources, api, group, version)

    def close(self) -> None:
        """Close the client's connections; a later call builds a new client."""
        api, self._api = self._api, None
        if api is not None:
            api.close()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------------------------
# errors


def retry_after(exc: BaseException, cap: float) -> float | None:
    """The seconds the API server asked the caller to wait (``Retry-After`` of an answer,
    such as a restarted server's 429 "storage is (re)initializing" or a 503), at most
    ``cap``; None when it did not ask."""
    if not isinstance(exc, client.ApiException) or not exc.headers:
        return None
    return backoff.retry_after(exc.headers.get("Retry-After"), cap)


def describe_error(exc: BaseException) -> str:
    """A failure in a few words, for logs and ``/readyz`` (no credentials, no traceback)."""
    if isinstance(exc, client.ApiException):
        return f"HTTP {exc.status}: {exc.reason}"
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        return f"unreachable: {exc.reason}"
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return f"connection: {exc}"
    return f"{type(exc).__name__}: {exc}"


def adapter_error(exc: BaseException, what: str) -> AdapterError:
    """One mapping of client failures onto error kinds; ``what`` names the object."""
    if isinstance(exc, AdapterError):
        return exc
    if isinstance(exc, KubeClientError):
        return AdapterError(ErrorKind.UNAVAILABLE, str(exc))
    if isinstance(exc, client.ApiException):
        status = exc.status or 0
        detail = f"{what}: the kube API answered {status} {exc.reason}"
        if status == 404:
            return AdapterError(ErrorKind.NOT_FOUND, f"{what} does not exist in the kube API")
        if status == 409:
            return AdapterError(ErrorKind.CONFLICT, detail)
        if status in (400, 422):
            return AdapterError(ErrorKind.INVALID, detail)
        if status in (401, 403):
            return AdapterError(ErrorKind.FORBIDDEN, detail)
        if status == 504:
            return AdapterError(ErrorKind.UPSTREAM_TIMEOUT, detail)
        if status in (0, 502, 503):
            return AdapterError(ErrorKind.UNAVAILABLE, detail)
        return AdapterError(ErrorKind.UPSTREAM_REJECTED, detail)
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return AdapterError(ErrorKind.UPSTREAM_TIMEOUT, f"{what}: the kube API did not answer")
    return AdapterError(ErrorKind.UNAVAILABLE, f"{what}: the kube API is unreachable ({exc})")
