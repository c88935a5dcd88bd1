"""``Mp1Client``: EdgeGallery MP1 over aiohttp, with mepauth tokens handled for the caller.

One client owns one :class:`aiohttp.ClientSession` (use it as an async context manager) and one
cached bearer token. Tokens are fetched with an AK/SK-signed ``POST /mep/token``, refreshed a
margin before ``expires_in`` and once more when MP1 answers 401 (the call is then retried once).
A 401 from ``/mep/token`` itself means the AK is unknown or the signature wrong: that is raised
as :class:`CredentialsRejected` and never retried here, because three bad signatures within
300 s lock the AK for 15 minutes (:class:`Locked`).

Errors (``status`` is the HTTP status, ``None`` when no reply arrived)::

    Mp1Error
    ├── BadReply              2xx reply that does not decode
    ├── InvalidRequest        400
    │   └── LimitReached      400 "registered services have achieve the limit" (50 per app)
    ├── Unauthorized          401 from MP1, even with a fresh token (IP binding, wrong app id)
    ├── CredentialsRejected   401 from /mep/token: unknown AK or bad signature; back off long
    ├── Locked                403 "Access is locked." from /mep/token; wait ≥ 15 min
    ├── Forbidden             other 403
    ├── NotFound              404 (e.g. the MEP lost our instance: re-register)
    ├── Conflict              409 (heartbeat on an INACTIVE service: PUT it ACTIVE)
    └── Unavailable           connection errors, timeouts, 429 and 5xx; retry with backoff

``retry_after`` on an error is a hint in seconds for the caller's backoff, or ``None``.

TLS: with ``ca_file`` the MEP certificate is verified against that CA only; with
``tls_server_name`` the certificate is checked for that name (EdgeGallery's chart issues
``CN=edgegallery``) whatever host the URL names, and SNI carries it too.

Every HTTP request is reported to ``on_call(operation, outcome)`` (outcomes: ``ok`` or the
error kind, e.g. ``not_found``), so the service can count MP1 calls without this module
knowing about metrics.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from mep_kubeedge_adapter.mep import signing
from mep_kubeedge_adapter.mep.models import (
    LivenessInfo,
    Mp1DecodeError,
    ProblemDetails,
    ServiceInfo,
    TokenResponse,
    decode_error_body,
    decode_liveness,
    decode_service_info,
    decode_service_list,
    decode_token_response,
    encode_service_info,
)

__all__ = [
    "SERVICE_MGMT",
    "BadReply",
    "CallHook",
    "Conflict",
    "CredentialsRejected",
    "Forbidden",
    "InvalidRequest",
    "LimitReached",
    "Locked",
    "Mp1Client",
    "Mp1Error",
    "NotFound",
    "Unauthorized",
    "Unavailable",
]

SERVICE_MGMT = "/mep/mec_service_mgmt/v1"
LOCKOUT_SECONDS = 900.0

CallHook = Callable[[str, str], None]
"""``on_call(operation, outcome)``; called once per HTTP request, must not raise."""


class Mp1Error(Exception):
    """An MP1 or mepauth call failed. ``kind`` names the failure for metrics and logs."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        operation: str = "",
        problem: ProblemDetails | None = None,
        body: bytes = b"",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.operation = operation
        self.problem = problem
        self.body = body
        self.retry_after = retry_after


class BadReply(Mp1Error):
    kind = "bad_reply"


class InvalidRequest(Mp1Error):
    kind = "invalid"


class LimitReached(InvalidRequest):
    kind = "limit"


class Unauthorized(Mp1Error):
    kind = "unauthorized"


class CredentialsRejected(Mp1Error):
    kind = "rejected"


class Locked(Mp1Error):
    kind = "locked"


class Forbidden(Mp1Error):
    kind = "forbidden"


class NotFound(Mp1Error):
    kind = "not_found"


class Conflict(Mp1Error):
    kind = "conflict"


class Unavailable(Mp1Error):
    kind = "unavailable"


def _quote(segment: str) -> str:
    return URL.build(path=segment, encoded=False).raw_path.replace("/", "%2F")


class Mp1Client:
    """An edge app's MP1 session with EdgeGallery's MEP (token, services, liveness, discovery).

    ``base_url`` is the API gateway root, e.g. ``https://mep-api-gw.mep:8443``; paths below it
    start with ``/mep``. Not safe to share across event loops; safe for concurrent calls.
    """

    def __init__(
        self,
        base_url: str,
        app_instance_id: str,
        ak: str,
        sk: str,
        *,
        ca_file: str | None = None,
        tls_server_name: str | None = None,
        timeout: float = 10.0,
        token_refresh_margin: float = 60.0,
        on_call: CallHook | None = None,
    ) -> None:
        self._base = URL(base_url.rstrip("/"))
        if self._base.scheme not in ("http", "https") or not self._base.host:
            raise ValueError(f"MEP URL must be http(s)://host[:port], got {base_url!r}")
        self.app_instance_id = app_instance_id
        self._ak = ak
        self._sk = sk
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._margin = token_refresh_margin
        self._on_call = on_call
        self._server_name = tls_server_name
        self._ssl: ssl.SSLContext | bool = True
        if self._base.scheme == "https":
            context = ssl.create_default_context(cafile=ca_file)
            self._ssl = context
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_expiry = 0.0
        self._token_lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def base_url(self) -> str:
        return str(self._base)

    # --- token ----------------------------------------------------------------------

    async def token(self) -> str:
        """The current bearer token, fetched or refreshed as needed."""
        async with self._token_lock:
            if self._token is None or time.monotonic() >= self._token_expiry:
                await self._fetch_token()
            assert self._token is not None
            return self._token

    def invalidate_token(self) -> None:
        """Forget the cached token so the next call signs a new request."""
        self._token = None

    async def _fetch_token(self) -> None:
        host = self._base.host_port_subcomponent
        assert host is not None
        headers = signing.token_request_headers(self._ak, self._sk, host)
        status, body = await self._send(
            "token", "POST", signing.TOKEN_PATH, headers=headers, data=b""
        )
        if status != 200:
            raise self._token_error(status, body)
        try:
            reply: TokenResponse = decode_token_response(body)
        except Mp1DecodeError as exc:
            self._count("token", BadReply.kind)
            raise BadReply(str(exc), status=status, operation="token", body=body) from exc
        self._count("token", "ok")
        margin = min(self._margin, reply.expires_in / 2)
        self._token = reply.access_token
        self._token_expiry = time.monotonic() + reply.expires_in - margin

    def _token_error(self, status: int, body: bytes) -> Mp1Error:
        _, message = decode_error_body(body)
        text = f"token request: HTTP {status}: {message}"
        err: Mp1Error
        if status == 401:
            err = CredentialsRejected(
                text, status=status, operation="token", body=body, retry_after=LOCKOUT_SECONDS
            )
        elif status == 403:
            err = Locked(
                text, status=status, operation="token", body=body, retry_after=LOCKOUT_SECONDS
            )
        else:
            err = self._error_for(status, "token", body)
        self._count("token", err.kind)
        return err

    # --- transport --------------------------------------------------------------------

    def _count(self, operation: str, outcome: str) -> None:
        if self._on_call is not None:
            self._on_call(operation, outcome)

    async def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        data: bytes | None = None,
        params: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("Mp1Client is not open; use 'async with Mp1Client(...)'")
        url = self._base.with_path(path, encoded=True)
        if params:
            url = url.with_query(list(params))
        extra: dict[str, Any] = {}
        if self._server_name and self._base.scheme == "https":
            extra["server_hostname"] = self._server_name
        try:
            async with self._session.request(
                method, url, headers=dict(headers), data=data, ssl=self._ssl, **extra
            ) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._count(operation, Unavailable.kind)
            raise Unavailable(
                f"{operation}: {method} {path}: {type(exc).__name__}: {exc}",
                operation=operation,
            ) from exc

    def _error_for(self, status: int, operation: str, body: bytes) -> Mp1Error:
        problem, message = decode_error_body(body)
        text = f"{operation}: HTTP {status}: {message}"
        kwargs: dict[str, Any] = {
            "status": status,
            "operation": operation,
            "problem": problem,
            "body": body,
        }
        if status == 400:
            if "achieve the limit" in message:
                return LimitReached(text, **kwargs)
            return InvalidRequest(text, **kwargs)
        if status == 401:
            return Unauthorized(text, **kwargs)
        if status == 403:
            return Forbidden(text, **kwargs)
        if status == 404:
            return NotFound(text, **kwargs)
        if status == 409:
            return Conflict(text, **kwargs)
        if status == 429 or status >= 500:
            return Unavailable(text, **kwargs)
        return Mp1Error(text, **kwargs)

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        expect: int,
        body: bytes | None = None,
        params: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        """One MP1 call with the bearer token; on 401 refresh the token and retry once."""
        for attempt in (1, 2):
            token = await self.token()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            status, reply = await self._send(
                operation, method, path, headers=headers, data=body, params=params
            )
            if status == expect:
                self._count(operation, "ok")
                return reply
            err = self._error_for(status, operation, reply)
            self._count(operation, err.kind)
            if status == 401 and attempt == 1:
                async with self._token_lock:
                    if self._token == token:
                        self._token = None
                continue
            raise err
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _decode(operation: str, decoder: Callable[[bytes], Any], body: bytes) -> Any:
        try:
            return decoder(body)
        except Mp1DecodeError as exc:
            raise BadReply(str(exc), operation=operation, body=body) from exc

    def _app_path(self, *tail: str) -> str:
        parts = [SERVICE_MGMT, "applications", _quote(self.app_instance_id), *map(_quote, tail)]
        return "/".join(parts)

    # --- service management -------------------------------------------------------------

    async def list_services(self, ser_name: str | None = None) -> list[ServiceInfo]:
        """Our app's instances (any state), optionally only those named ``ser_name``."""
        params = [("ser_name", ser_name)] if ser_name else []
        reply = await self._call(
            "list_services", "GET", self._app_path("services"), expect=200, params=params
        )
        result: list[ServiceInfo] = self._decode("list_services", decode_service_list, reply)
        return result

    async def register(self, info: ServiceInfo) -> ServiceInfo:
        """POST ``info``; the reply carries ``serInstanceId`` and ``_links.self.liveness``.

        Its endpoint echoes *our* URIs: GET the service afterwards for the gateway URI.
        Raises :class:`~mep_kubeedge_adapter.mep.models.BodyTooLarge` before sending a body
        EdgeGallery would refuse.
        """
        reply = await self._call(
            "register",
            "POST",
            self._app_path("services"),
            expect=201,
            body=encode_service_info(info),
        )
        created: ServiceInfo = self._decode("register", decode_service_info, reply)
        if not created.serInstanceId:
            raise BadReply(
                "register: 201 without serInstanceId", operation="register", status=201, body=reply
            )
        return created

    async def get_service(self, ser_instance_id: str) -> ServiceInfo:
        reply = await self._call(
            "get_service", "GET", self._app_path("services", ser_instance_id), expect=200
        )
        result: ServiceInfo = self._decode("get_service", decode_service_info, reply)
        return result

    async def update_service(self, ser_instance_id: str, info: ServiceInfo) -> ServiceInfo:
        """PUT ``info`` (EdgeGallery *merges*: omitted or empty fields keep stored values).

        Also counts as a heartbeat and is the only way back from INACTIVE to ACTIVE.
        """
        reply = await self._call(
            "update_service",
            "PUT",
            self._app_path("services", ser_instance_id),
            expect=200,
            body=encode_service_info(info),
        )
        result: ServiceInfo = self._decode("update_service", decode_service_info, reply)
        return result

    async def delete_service(self, ser_instance_id: str) -> None:
        await self._call(
            "delete_service", "DELETE", self._app_path("services", ser_instance_id), expect=204
        )

    async def heartbeat(self, ser_instance_id: str, liveness_path: str | None = None) -> None:
        """``PUT …/liveness {"state":"ACTIVE"}`` (204).

        :class:`NotFound`: the MEP lost the instance (or liveness is off): re-register.
        :class:`Conflict`: the service is INACTIVE; a heartbeat cannot revive it.
        ``liveness_path`` is the ``_links.self.liveness`` of the registration, if known.
        """
        path = liveness_path or self._app_path("services", ser_instance_id, "liveness")
        await self._call("heartbeat", "PUT", path, expect=204, body=b'{"state":"ACTIVE"}')

    async def get_liveness(self, ser_instance_id: str) -> LivenessInfo:
        reply = await self._call(
            "get_liveness",
            "GET",
            self._app_path("services", ser_instance_id, "liveness"),
            expect=200,
        )
        result: LivenessInfo = self._decode("get_liveness", decode_liveness, reply)
        return result

    # --- discovery ------------------------------------------------------------------------

    async def discover(self, ser_name: str | None = None, **filters: str) -> list[ServiceInfo]:
        """``GET /services``: what *this app* may see (EdgeGallery filters by requiredServices).

        ``ser_name`` is an exact lookup on EdgeGallery and makes it ignore every other
        filter; other ``filters`` (``ser_category_id``, ``scope_of_locality``, ...) are ORed
        there, so treat them as advisory and filter the result yourself.
        """
        params = [("ser_name", ser_name)] if ser_name else []
        params += sorted(filters.items())
        reply = await self._call(
            "discover", "GET", f"{SERVICE_MGMT}/services", expect=200, params=params
        )
        result: list[ServiceInfo] = self._decode("discover", decode_service_list, reply)
        return result

    async def get_discovered(self, ser_instance_id: str) -> ServiceInfo:
        """``GET /services/{id}`` (not filtered by requiredServices on EdgeGallery)."""
        reply = await self._call(
            "get_discovered",
            "GET",
            f"{SERVICE_MGMT}/services/{_quote(ser_instance_id)}",
            expect=200,
        )
        result: ServiceInfo = self._decode("get_discovered", decode_service_info, reply)
        return result

    # --- service availability subscriptions -------------------------------------------------

    async def subscribe(
        self,
        callback_reference: str,
        *,
        ser_names: Sequence[str] = (),
        ser_instance_ids: Sequence[str] = (),
        states: Sequence[str] = (),
    ) -> tuple[str, dict[str, Any]]:
        """Create a SerAvailabilityNotificationSubscription; returns ``(id, reply body)``.

        Give ``ser_names`` or ``ser_instance_ids``: EdgeGallery matches nothing when only
        ``states`` is set. Expect an ATTRIBUTES_CHANGED notification per heartbeat.
        """
        criteria: dict[str, Any] = {}
        if ser_names:
            criteria["serNames"] = list(ser_names)
        if ser_instance_ids:
            criteria["serInstanceIds"] = list(ser_instance_ids)
        if states:
            criteria["states"] = list(states)
        body: dict[str, Any] = {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": callback_reference,
        }
        if criteria:
            body["filteringCriteria"] = criteria
        reply = await self._call(
            "subscribe",
            "POST",
            self._app_path("subscriptions"),
            expect=201,
            body=json.dumps(body).encode(),
        )
        try:
            data = json.loads(reply)
            sub_id = (
                data.get("subscriptionId") or str(data["_links"]["self"]["href"]).rsplit("/", 1)[-1]
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadReply(
                f"subscribe: unexpected reply: {exc}", operation="subscribe", status=201, body=reply
            ) from exc
        return str(sub_id), data

    async def unsubscribe(self, subscription_id: str) -> None:
        await self._call(
            "unsubscribe", "DELETE", self._app_path("subscriptions", subscription_id), expect=204
        )
