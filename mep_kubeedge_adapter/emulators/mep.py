"""An EdgeGallery-flavoured MEP for labs and tests: ``mep-kubeedge-adapter mep-emulator``.

It plays mepauth (AK/SK-signed tokens, lock-out), Kong (bearer check, IP binding, per-service
gateway routes) and mepserver (MEC 011 service management with EdgeGallery's rules, liveness,
discovery, service-availability notifications) in one aiohttp server. It is written from the
EdgeGallery and ETSI references and deliberately shares no code with the adapter's MP1 client,
so a misunderstanding on one side shows up as a failing test instead of passing twice.

Running it::

    mep-kubeedge-adapter mep-emulator --port 30443              # demo identity, HTTP
    mep-kubeedge-adapter mep-emulator --cert srv.pem --key srv.key --identities apps.json

``apps.json`` is a list of ``{"appInstanceId", "ak", "sk", "requiredServices": [...]}``
(AK 20 and SK 64 characters of ``[A-Za-z0-9_+/=]``, appInstanceId a UUID). Without it the
emulator knows one identity, EdgeGallery's public demo pair (appInstanceId
``5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f``), or the one given by ``--app-instance-id/--ak/--sk``.
``--required-services`` (comma separated, default ``*``) sets what that identity may discover;
real EdgeGallery gives its demo identity none.

What an app sees (all paths as on EdgeGallery's API gateway):

* ``POST /mep/token``: mepauth. Empty body; ``Authorization: SDK-HMAC-SHA256 Access=<AK>,
  SignedHeaders=content-type;host;x-sdk-date, Signature=<hex>``, ``x-sdk-date``
  ``YYYYMMDDTHHMMSSZ``. 400 on a malformed header or date, 401 ``"Invalid access or
  signature."`` for an unknown AK or bad signature, and 3 bad signatures in 300 s lock the AK
  for 900 s (403 ``"Access is locked."`` even for good ones). Errors are JSON strings. The 200
  body is ``{"access_token", "token_type": "Bearer", "expires_in": 3600}``; the token is an
  RS512 JWT with ``exp`` (fractional), ``iss`` ``mepauth``, ``sub`` appInstanceId and
  ``clientip``. Its public key: ``GET /admin/jwt-public-key`` (PEM) or ``--jwt-public-key-out``.
* ``/mep/mec_service_mgmt/v1/...``: bearer token required (else 401 ``{"message":
  "Unauthorized"}`` like Kong); the token's ``clientip`` must be the caller's address and its
  ``sub`` the path's ``{appInstanceId}`` (401 ProblemDetails). Services (POST/GET/PUT/DELETE),
  ``PUT|GET …/services/{id}/liveness``, ``GET /services[?ser_name=]``, ``GET /services/{id}``,
  ``GET /transports`` and availability subscriptions behave as EdgeGallery's mepserver,
  including its quirks: 4096-byte body limit, NAME rule for serName, 50 instances per app,
  defaults, any non-zero ``livenessInterval`` becoming the platform interval, 32-hex
  serInstanceIds, ``_links.self.liveness``, false booleans omitted, ``endpoint`` with ``null``
  members, grantTypes split oddly, merge-on-PUT, SUSPENDED after interval + grace without a
  beat, discovery limited to the caller's ``requiredServices`` (``*`` = all), errors as
  ProblemDetails with ``text/plain`` and an internal ``status`` code, subscription lists 404
  when empty, and an ATTRIBUTES_CHANGED notification for every beat.
* Registered endpoints are rewritten to gateway URIs ``<emulator url>/<serName><20 hex>``
  (the 201 reply still echoes the provider URIs). The emulator proxies those like Kong: a valid
  bearer token is required, the prefix is stripped, ``X-Forwarded-*`` headers are added.
  Websocket upgrades are proxied too, after the same token check: the upstream handshake comes
  first (its refusal status, or 502, is the caller's answer), then frames go both ways until one
  side closes, and its close code is passed on.
* Request bodies (and the emulator's own replies) are validated against the ETSI MEC 011
  v2.1.1 OpenAPI (3.0 file) with openapi-core; a request that fails gets 400 with the schema
  error. This is stricter than EdgeGallery, which for example accepts a ``transportInfo``
  without ``security``: an app that passes here is ETSI-conformant *and* EdgeGallery-proof.
  Relaxed in the loaded copy (the files themselves are unchanged):
  ``serInstanceId`` and ``_links`` are not read-only (MEC 011 wants ``serInstanceId`` in PUT);
  a subscription request need not carry ``_links`` (it is response-only in the spec text);
  ``state`` may be ``SUSPENDED`` (liveness, MEC 011 v2.2.1+); in replies ``grantTypes`` items
  are free strings and ``endpoint`` is ``anyOf`` with a nullable ``alternative`` (EdgeGallery's
  ``null`` members and its lost ``alternative``). Liveness and token bodies are not in v2.1.1
  and are checked by hand.

Admin calls (not MP1, no token): ``POST /admin/wipe`` (registry and subscriptions lost, as
after a MEP data loss), ``POST /admin/down`` (``{"mode": "close"}`` drops connections,
``{"mode": "503"}`` answers 503) and ``POST /admin/up``, ``GET|POST /admin/identities`` and
``DELETE /admin/identities/{appInstanceId}`` (POST ``{}`` generates one), ``POST
/admin/lockouts/reset``, ``GET|DELETE /admin/calls`` (requests per route, for calls-per-minute
figures), ``GET /admin/services`` (the registry with liveness state) and ``GET
/admin/jwt-public-key``. EdgeGallery's own unauthenticated provisioning call ``PUT
/mep/appMng/v1/applications/{appInstanceId}/confs`` works too.

In Python, :class:`MepEmulator` is an async context manager with the same controls as methods
(``wipe()``, ``down()``, ``up()``, ``provision()``, ``issue_token()``, ``calls``...).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import ssl
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote_plus, urlsplit

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mep_kubeedge_adapter.supervisor import cancel_and_wait

__all__ = [
    "DEMO_AK",
    "DEMO_APP_INSTANCE_ID",
    "DEMO_SK",
    "AppIdentity",
    "MepEmulator",
    "add_arguments",
    "run",
]

log = logging.getLogger(__name__)

DEMO_APP_INSTANCE_ID = "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f"
DEMO_AK = "QVUJMSUMgS0VZLS0tLS0"
DEMO_SK = "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc"

SM = "/mep/mec_service_mgmt/v1"
BODY_LIMIT = 4096
MAX_SUBSCRIPTIONS = 50
SPEC_HOST = "http://127.0.0.1:8081"

_AUTH_RE = re.compile(
    r"^SDK-HMAC-SHA256 Access=([\w=+/]{20}), SignedHeaders=([^, ]{28}), Signature=([^, ]{64})$"
)
_DATE_RE = re.compile(r"^\d{8}T\d{6}Z$")
_AK_RE = re.compile(r"^[\w+/=]{20}$")
_SK_RE = re.compile(r"^[\w+/=]{64}$")
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_HEX32_RE = re.compile(r"[0-9a-f]{32}")
_NAME_RE = re.compile(r"^[A-Za-z0-9]*$|^[A-Za-z0-9][A-Za-z0-9_-]*[A-Za-z0-9]$")
_ID_RE = re.compile(r"^[A-Za-z0-9]*$|^[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]$")
_PROTO_RE = re.compile(r"^[A-Za-z0-9.]*$|^[A-Za-z0-9.][A-Za-z0-9_.-]*[A-Za-z0-9.]$")
_TRANSPORT_TYPES = {
    "REST_HTTP",
    "MB_TOPIC_BASED",
    "MB_ROUTING",
    "MB_PUBSUB",
    "RPC",
    "RPC_STREAMING",
    "WEBSOCKET",
}
_GRANT_TYPES = {
    "OAUTH2_AUTHORIZATION_CODE",
    "OAUTH2_IMPLICIT_GRANT",
    "OAUTH2_RESOURCE_OWNER",
    "OAUTH2_CLIENT_CREDENTIALS",
}
_SERIALIZERS = {"JSON", "XML", "PROTOBUF3"}
_LOCALITIES = {"MEC_SYSTEM", "MEC_HOST", "NFVI_POP", "ZONE", "ZONE_GROUP", "NFVI_NODE"}
_STATES = {"ACTIVE", "INACTIVE", "SUSPENDED"}
_SUB_TYPES = {"SerAvailabilityNotificationSubscription", "AppTerminationNotificationSubscription"}

# mepserver internal error codes (the ProblemDetails ``status``)
_C_PARSE, _C_NOT_FOUND, _C_SUB_NOT_FOUND, _C_APP_ID = 4, 3, 5, 11
_C_REGISTER, _C_PARAM, _C_SUB, _C_NO_LIVENESS, _C_INACTIVE = 12, 14, 15, 17, 18


# --------------------------------------------------------------------------------------------
# identities


@dataclass
class AppIdentity:
    """An app's mepauth credentials and APPD ``requiredServices`` (``*`` = discover all)."""

    app_instance_id: str
    ak: str
    sk: str
    required_services: list[str] = field(default_factory=list)
    app_name: str = ""

    def __post_init__(self) -> None:
        if not _UUID_RE.match(self.app_instance_id):
            raise ValueError(f"appInstanceId must be a UUID: {self.app_instance_id!r}")
        if not _AK_RE.match(self.ak):
            raise ValueError("AK must be 20 characters of [A-Za-z0-9_+/=]")
        if not _SK_RE.match(self.sk):
            raise ValueError("SK must be 64 characters of [A-Za-z0-9_+/=]")

    @classmethod
    def generate(cls, required_services: Iterable[str] = ("*",), app_name: str = "") -> Self:
        """A fresh identity as MECM's lcmcontroller makes one (base64 of 14 and 48 bytes)."""
        return cls(
            app_instance_id=str(uuid.uuid4()),
            ak=base64.b64encode(secrets.token_bytes(14)).decode(),
            sk=base64.b64encode(secrets.token_bytes(48)).decode(),
            required_services=list(required_services),
            app_name=app_name,
        )

    @classmethod
    def demo(cls, required_services: Iterable[str] = ("*",)) -> Self:
        """EdgeGallery's public demo identity (its chart gives it no requiredServices)."""
        return cls(DEMO_APP_INSTANCE_ID, DEMO_AK, DEMO_SK, list(required_services), "demo")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            app_instance_id=str(data["appInstanceId"]),
            ak=str(data["ak"]),
            sk=str(data["sk"]),
            required_services=[str(s) for s in data.get("requiredServices", [])],
            app_name=str(data.get("appName", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "appInstanceId": self.app_instance_id,
            "ak": self.ak,
            "sk": self.sk,
            "requiredServices": list(self.required_services),
            "appName": self.app_name,
        }

    def may_discover(self, ser_name: str) -> bool:
        rs = self.required_services
        return "*" in rs or "service-discovery" in rs or ser_name in rs


# --------------------------------------------------------------------------------------------
# mepauth's signature check (server side: rebuild from the received request)


def _go_query_escape(value: str) -> str:
    return quote_plus(value, safe="")


def _expected_signature(request: web.Request, signed_headers: str, sk: str, date: str) -> str:
    segments = [s for s in request.path.split("/") if s not in ("", ".", "..")]
    uri = "/" + "/".join(_go_query_escape(s) for s in segments) + ("/" if segments else "")
    query = "&".join(
        sorted(f"{_go_query_escape(k)}={_go_query_escape(v)}" for k, v in request.query.items())
    )
    lines = []
    names = sorted(signed_headers.lower().split(";"))
    for name in names:
        if name == "host":
            values = [request.host]
        else:
            values = [v.strip() for v in request.headers.getall(name, [])]
        lines.append(f"{name}:{','.join(sorted(values))}")
    header_block = "".join(f"{line}\n" for line in sorted(lines))
    body_hash = hashlib.sha256(b"").hexdigest()
    canonical = "\n".join(["POST", uri, query, header_block, ";".join(names), body_hash])
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join(["SDK-HMAC-SHA256", date, digest])
    return hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------
# OpenAPI validation


def _load_spec() -> dict[str, Any]:
    path = Path(__file__).with_name("mep_openapi") / "MecServiceMgmtApi.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _relax_common(spec: dict[str, Any]) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    schemas["ServiceInfo.SerInstanceId"].pop("readOnly", None)
    schemas["Self"].pop("readOnly", None)
    sub = schemas["SerAvailabilityNotificationSubscription"]
    sub["required"] = [r for r in sub["required"] if r != "_links"]
    schemas["ServiceState"]["enum"] = ["ACTIVE", "INACTIVE", "SUSPENDED"]
    return spec


def _relax_responses(spec: dict[str, Any]) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    schemas["SecurityInfo.OAuth2Info.GrantType"].pop("enum", None)
    endpoint = schemas["TransportInfo"]["properties"]["endpoint"]
    endpoint["anyOf"] = endpoint.pop("oneOf")
    schemas["EndPointInfo.Alternative"]["properties"]["alternative"]["nullable"] = True
    return spec


class _SpecValidator:
    """Validates MP1 requests and replies against the relaxed ETSI MEC 011 v2.1.1 document."""

    def __init__(self) -> None:
        from openapi_core import OpenAPI

        base = _load_spec()
        self._requests = OpenAPI.from_dict(_relax_common(copy.deepcopy(base)))
        self._responses = OpenAPI.from_dict(_relax_responses(_relax_common(copy.deepcopy(base))))

    @staticmethod
    def _mock_request(request: web.Request, body: bytes | None) -> Any:
        from openapi_core.testing import MockRequest

        args: dict[str, Any] = {}
        for key in request.query:
            values = request.query.getall(key)
            args[key] = values if key in ("ser_name", "ser_instance_id") else values[0]
        return MockRequest(
            SPEC_HOST,
            request.method.lower(),
            request.path.removeprefix("/mep"),
            args=args,
            data=body or None,
            content_type=request.content_type if body else "application/json",
        )

    def check_request(self, request: web.Request, body: bytes | None) -> str | None:
        from openapi_core.exceptions import OpenAPIError

        try:
            self._requests.validate_request(self._mock_request(request, body))
        except OpenAPIError as exc:
            return _schema_message(exc)
        return None

    def check_response(
        self, request: web.Request, body: bytes | None, response: web.Response
    ) -> str | None:
        from openapi_core.exceptions import OpenAPIError
        from openapi_core.testing import MockResponse

        data = response.body if isinstance(response.body, bytes) else b""
        mock = MockResponse(
            data,
            status_code=response.status,
            headers={k.lower(): v for k, v in response.headers.items()},
            content_type=response.content_type,
        )
        try:
            self._responses.validate_response(self._mock_request(request, body), mock)
        except OpenAPIError as exc:
            return _schema_message(exc)
        return None


def _schema_message(exc: Exception) -> str:
    cause = exc.__cause__
    errors = getattr(cause, "schema_errors", None)
    if errors:
        return "; ".join(
            f"{'/'.join(str(p) for p in e.absolute_path) or '(body)'}: {e.message}" for e in errors
        )
    return f"{type(exc).__name__}: {exc}"


@lru_cache(maxsize=1)
def _spec_validator() -> _SpecValidator:
    return _SpecValidator()


# --------------------------------------------------------------------------------------------
# registry records


@dataclass
class _Service:
    ser_instance_id: str
    app_instance_id: str
    body: dict[str, Any]
    provider_uris: list[str]
    gateways: dict[str, str]
    """provider URI -> gwName"""
    liveness_on: bool
    last_beat: float
    last_beat_wall: float


@dataclass
class _Subscription:
    subscription_id: str
    app_instance_id: str
    body: dict[str, Any]


def _problem(http: int, code: int, detail: str, title: str | None = None) -> web.Response:
    """mepserver's error reply: a ProblemDetails sent as text/plain, internal code as status."""
    default = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
    }.get(http, "Error")
    body = {"title": title or default, "status": code, "detail": detail}
    return web.Response(status=http, text=json.dumps(body), content_type="text/plain")


def _auth_error(http: int, message: str) -> web.Response:
    """mepauth's error reply: a JSON string."""
    return web.json_response(message, status=http)


def _kong_unauthorized() -> web.Response:
    return web.json_response({"message": "Unauthorized"}, status=401)


def _kong_bad_gateway(exc: BaseException) -> web.Response:
    return web.json_response(
        {"message": f"An invalid response was received from the upstream server: {exc}"},
        status=502,
    )


_WS_CLOSE_TIMEOUT = 2.0
"""Seconds a proxied websocket waits for the peer's close frame."""

_Websocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _relay(source: _Websocket, sink: _Websocket) -> tuple[int | None, bytes]:
    """Copy data frames until ``source`` closes; its close code and reason."""
    while True:
        msg = await source.receive()
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return msg.data, (msg.extra or "").encode()
        if msg.type in (
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            return source.close_code, b""
        with contextlib.suppress(ConnectionResetError):  # the sink is closing: its relay ends
            if msg.type is aiohttp.WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await sink.send_bytes(msg.data)


def _relayable_close_code(code: int | None) -> int:
    """``code`` if it may be sent; 1000 for a close without one, 1001 for a lost connection."""
    if code is not None and (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        return code
    return aiohttp.WSCloseCode.OK if not code else aiohttp.WSCloseCode.GOING_AWAY


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, ensure_ascii=False).encode(),
        content_type="application/json",
        headers={"X-Response-Status": str(status), **(headers or {})},
    )


def _is_uri(value: object) -> bool:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return False
    parts = urlsplit(value)
    return bool(parts.scheme and (parts.netloc or parts.path)) or value.startswith("/")


def _is_abs_uri(value: object) -> bool:
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


def _check_len(
    value: object,
    limit: int,
    what: str,
    regex: re.Pattern[str] | None = None,
    required: bool = False,
) -> str | None:
    if value is None or value == "":
        return f"{what} is required" if required else None
    if not isinstance(value, str):
        return f"{what} must be a string"
    if len(value) > limit:
        return f"{what} longer than {limit}"
    if regex is not None and not regex.match(value):
        return f"{what} {value!r} has invalid characters"
    return None


def _eg_validate(body: dict[str, Any]) -> str | None:
    """mepserver's own rules (go-playground/validator plus its regexes), first failure."""
    checks: list[str | None] = [
        _check_len(body.get("serName"), 128, "serName", _NAME_RE, required=True),
        _check_len(body.get("version"), 32, "version", required=True),
        _check_len(body.get("transportId"), 64, "transportId", _ID_RE),
    ]
    cat = body.get("serCategory")
    if isinstance(cat, dict):
        href = cat.get("href")
        checks += [
            None if not href or _is_uri(href) else "serCategory.href must be a URI",
            _check_len(cat.get("id"), 64, "serCategory.id", _ID_RE),
            _check_len(cat.get("name"), 128, "serCategory.name", _NAME_RE),
            _check_len(cat.get("version"), 32, "serCategory.version"),
        ]
    if body.get("state") not in ("ACTIVE", "INACTIVE"):
        checks.append("state must be ACTIVE or INACTIVE")
    if body.get("serializer") not in _SERIALIZERS:
        checks.append("serializer must be JSON, XML or PROTOBUF3")
    scope = body.get("scopeOfLocality")
    if scope not in (None, "") and scope not in _LOCALITIES:
        checks.append("scopeOfLocality is invalid")
    interval = body.get("livenessInterval", 0)
    if interval is not None and (
        not isinstance(interval, int)
        or isinstance(interval, bool)
        or not 0 <= interval <= 2147483646
    ):
        checks.append("livenessInterval must be an integer 0..2147483646")
    ti = body.get("transportInfo")
    if isinstance(ti, dict):
        checks += [
            _check_len(ti.get("id"), 64, "transportInfo.id", _ID_RE),
            _check_len(ti.get("name"), 128, "transportInfo.name", _NAME_RE),
            _check_len(ti.get("description"), 128, "transportInfo.description"),
            _check_len(ti.get("protocol"), 32, "transportInfo.protocol", _PROTO_RE),
            _check_len(ti.get("version"), 32, "transportInfo.version"),
            None if ti.get("type") in _TRANSPORT_TYPES else "transportInfo.type is invalid",
        ]
        ep = ti.get("endpoint") or {}
        for uri in ep.get("uris") or []:
            if not _is_uri(uri):
                checks.append(f"endpoint uri {uri!r} is invalid")
        for addr in ep.get("addresses") or []:
            port = addr.get("port") if isinstance(addr, dict) else None
            if (
                not isinstance(addr, dict)
                or not addr.get("host")
                or not (isinstance(port, int) and 1 <= port <= 65535)
            ):
                checks.append("endpoint address needs host and port 1..65535")
        oauth = (ti.get("security") or {}).get("oAuth2Info")
        if isinstance(oauth, dict) and oauth:
            grants = oauth.get("grantTypes") or []
            if not 1 <= len(grants) <= 4 or any(g not in _GRANT_TYPES for g in grants):
                checks.append("oAuth2Info.grantTypes must hold 1..4 known grant types")
            te = oauth.get("tokenEndpoint")
            if te and not _is_uri(te):
                checks.append("oAuth2Info.tokenEndpoint must be a URI")
    return next((c for c in checks if c), None)


def _merge(stored: Any, update: Any) -> Any:
    """EdgeGallery's PUT: values that are missing, empty or null do not clear stored ones."""
    if isinstance(stored, dict) and isinstance(update, dict):
        out = dict(stored)
        for key, value in update.items():
            if value in (None, "", [], {}):
                continue
            out[key] = _merge(stored.get(key), value)
        return out
    return update


# --------------------------------------------------------------------------------------------
# the emulator


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_APP_ID = web.RequestKey("app_instance_id", str)
_BODY = web.RequestKey("body", bytes)


class MepEmulator:
    """EdgeGallery's MEP on one aiohttp server (see the module docstring for the behaviour).

    Timing knobs let tests run in seconds: ``liveness_seconds`` is the platform's heartbeat
    interval (EdgeGallery: 60, whatever the provider proposes), ``liveness_grace`` the slack
    before SUSPENDED (default EdgeGallery's ``min(ceil(5 % of interval), 5)``), and the
    lock-out is ``lockout_threshold`` bad signatures within ``lockout_window`` seconds locking
    the AK for ``lockout_seconds``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        identities: Iterable[AppIdentity] | None = None,
        token_ttl: int = 3600,
        liveness_seconds: float = 60.0,
        liveness_grace: float | None = None,
        lockout_threshold: int = 3,
        lockout_window: float = 300.0,
        lockout_seconds: float = 900.0,
        max_services_per_app: int = 50,
        validate: bool = True,
        state_changed_events: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self.identities: dict[str, AppIdentity] = {}
        for ident in identities if identities is not None else [AppIdentity.demo()]:
            self.provision(ident)
        self.token_ttl = token_ttl
        self.liveness_seconds = liveness_seconds
        self.liveness_grace = (
            liveness_grace
            if liveness_grace is not None
            else float(min(math.ceil(0.05 * liveness_seconds), 5))
        )
        self.lockout_threshold = lockout_threshold
        self.lockout_window = lockout_window
        self.lockout_seconds = lockout_seconds
        self.max_services_per_app = max_services_per_app
        self.validate = validate
        self.state_changed_events = state_changed_events

        self.calls: Counter[str] = Counter()
        self.calls_since = time.time()
        self.schema_violations: list[str] = []
        self.notifications_sent: list[tuple[str, dict[str, Any]]] = []
        self.down_mode: str | None = None

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwt_public_key_pem: bytes = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._services: dict[str, _Service] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._transport_id = str(uuid.uuid4())
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.validate:
            _spec_validator()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        scheme = "https" if self._ssl else "http"
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{scheme}://{shown}:{self.port}"
        self._tasks = [
            asyncio.create_task(self._liveness_monitor(), name="mep-emulator-liveness"),
            asyncio.create_task(self._deliver_notifications(), name="mep-emulator-notify"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._count_middleware, self._down_middleware, self._mp1_middleware],
            client_max_size=1024 * 1024,
        )
        app.on_shutdown.append(self._stop_websockets)
        r = app.router
        r.add_post("/mep/token", self._token)
        confs = "/mep/appMng/v1/applications/{appInstanceId}/confs"
        r.add_put(confs, self._put_confs)
        r.add_get(confs, self._get_confs)
        r.add_delete(confs, self._delete_confs)
        r.add_get(f"{SM}/services", self._discover)
        r.add_get(f"{SM}/services/{{serInstanceId}}", self._discover_one)
        r.add_get(f"{SM}/transports", self._transports)
        app_sv = f"{SM}/applications/{{appInstanceId}}/services"
        r.add_get(app_sv, self._list_services)
        r.add_post(app_sv, self._register)
        r.add_get(app_sv + "/{serInstanceId}", self._get_service)
        r.add_put(app_sv + "/{serInstanceId}", self._update_service)
        r.add_delete(app_sv + "/{serInstanceId}", self._delete_service)
        r.add_get(app_sv + "/{serInstanceId}/liveness", self._get_liveness)
        r.add_put(app_sv + "/{serInstanceId}/liveness", self._put_liveness)
        app_sub = f"{SM}/applications/{{appInstanceId}}/subscriptions"
        r.add_get(app_sub, self._list_subscriptions)
        r.add_post(app_sub, self._subscribe)
        r.add_get(app_sub + "/{subscriptionId}", self._get_subscription)
        r.add_delete(app_sub + "/{subscriptionId}", self._unsubscribe)
        r.add_get("/admin/jwt-public-key", self._admin_key)
        r.add_post("/admin/wipe", self._admin_wipe)
        r.add_post("/admin/down", self._admin_down)
        r.add_post("/admin/up", self._admin_up)
        r.add_get("/admin/identities", self._admin_identities)
        r.add_post("/admin/identities", self._admin_provision)
        r.add_delete("/admin/identities/{appInstanceId}", self._admin_remove_identity)
        r.add_post("/admin/lockouts/reset", self._admin_reset_lockouts)
        r.add_get("/admin/calls", self._admin_calls)
        r.add_delete("/admin/calls", self._admin_reset_calls)
        r.add_get("/admin/services", self._admin_services)
        r.add_route("*", "/{gwName}", self._gateway)
        r.add_route("*", "/{gwName}/{tail:.*}", self._gateway)
        return app

    # --- controls usable from tests ------------------------------------------------------

    def provision(self, identity: AppIdentity) -> AppIdentity:
        """Add or replace an app identity (what MECM's confs PUT does)."""
        for existing in list(self.identities.values()):
            if existing.ak == identity.ak and existing.app_instance_id != identity.app_instance_id:
                raise ValueError("AK already belongs to another app")
        self.identities[identity.app_instance_id] = identity
        return identity

    def remove_identity(self, app_instance_id: str) -> None:
        self.identities.pop(app_instance_id, None)

    def set_required_services(self, app_instance_id: str, names: Iterable[str]) -> None:
        self.identities[app_instance_id].required_services = list(names)

    def wipe(self) -> None:
        """Forget every service and subscription, as a MEP that lost its registry."""
        self._services.clear()
        self._subscriptions.clear()

    def down(self, mode: str = "close") -> None:
        """``close``: drop every connection without a reply; ``503``: answer 503."""
        if mode not in ("close", "503"):
            raise ValueError("mode must be 'close' or '503'")
        self.down_mode = mode

    def up(self) -> None:
        self.down_mode = None

    def reset_lockouts(self) -> None:
        self._failures.clear()
        self._locked_until.clear()

    def reset_calls(self) -> None:
        self.calls.clear()
        self.calls_since = time.time()

    @property
    def calls_total(self) -> int:
        return sum(self.calls.values())

    def issue_token(self, app_instance_id: str, client_ip: str = "127.0.0.1") -> str:
        """A mepauth JWT for ``app_instance_id`` without the signing dance."""
        claims = {
            "exp": time.time() + self.token_ttl,
            "iss": "mepauth",
            "sub": app_instance_id,
            "clientip": client_ip,
        }
        return jwt.encode(claims, self._key, algorithm="RS512")

    def services(self) -> list[dict[str, Any]]:
        """The registry as GET would show it, plus ``appInstanceId``."""
        return [self._render(s) for s in self._services.values()]

    def service_state(self, ser_instance_id: str) -> str | None:
        svc = self._services.get(ser_instance_id)
        return None if svc is None else str(svc.body["state"])

    @property
    def liveness_interval(self) -> int:
        """What ``livenessInterval`` reads in replies (60 on EdgeGallery)."""
        return max(1, math.ceil(self.liveness_seconds))

    # --- middlewares -------------------------------------------------------------------------

    @web.middleware
    async def _count_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else request.path
        if route.startswith("/{gwName}"):
            route = "/{gwName}"
        self.calls[f"{request.method} {route}"] += 1
        return await handler(request)

    @web.middleware
    async def _down_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.down_mode is None or request.path.startswith("/admin/"):
            return await handler(request)
        if self.down_mode == "503":
            return web.Response(status=503, text="service unavailable")
        if request.transport is not None:
            request.transport.abort()
        raise web.HTTPServiceUnavailable()

    @web.middleware
    async def _mp1_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(("/mep/mec_service_mgmt/", "/mep/mec_app_support/")):
            return await handler(request)
        claims = self._bearer_claims(request)
        if claims is None or claims.get("clientip") != request.remote:
            return _kong_unauthorized()
        request[_BODY] = b""
        request[_APP_ID] = str(claims.get("sub", ""))
        path_app = request.match_info.get("appInstanceId")
        if path_app is not None:
            if not _UUID_RE.match(path_app):
                return _problem(400, _C_PARAM, "appInstanceId must be a UUID")
            if path_app != request[_APP_ID]:
                return _problem(401, _C_APP_ID, "UnAuthorization to access the resource")
        body: bytes | None = None
        if request.method in ("POST", "PUT"):
            raw = await request.read()
            if len(raw) > BODY_LIMIT:
                return _problem(400, _C_PARAM, "request body too large")
            body = raw
            request[_BODY] = raw
        spec_checked = (
            self.validate
            and request.match_info.route.resource is not None
            and ("liveness" not in request.path)
        )
        if spec_checked and body is not None:
            problem = _spec_validator().check_request(request, body)
            if problem is not None:
                return _problem(400, _C_PARAM, f"not a valid MEC 011 body: {problem}")
        response = await handler(request)
        if spec_checked and isinstance(response, web.Response) and response.status < 300:
            problem = _spec_validator().check_response(request, body, response)
            if problem is not None:
                message = f"{request.method} {request.path} -> {response.status}: {problem}"
                log.error("MEP emulator reply violates MEC 011: %s", message)
                self.schema_violations.append(message)
        return response

    def _bearer_claims(self, request: web.Request) -> dict[str, Any] | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                header[7:].strip(),
                self._key.public_key(),
                algorithms=["RS512"],
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        return claims

    # --- mepauth -------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        if not request.remote:
            return _auth_error(400, "Bad X-Real-Ip")
        match = _AUTH_RE.match(request.headers.get("Authorization", ""))
        if match is None:
            return _auth_error(400, "Bad auth header format")
        ak, signed_headers, sig = match.groups()
        date = request.headers.get("x-sdk-date", "")
        try:
            if not _DATE_RE.match(date):
                raise ValueError(date)
            datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return _auth_error(400, "Bad x-sdk-time format")
        now = time.monotonic()
        if self._locked_until.get(ak, 0.0) > now:
            return _auth_error(403, "Access is locked.")
        ident = next((i for i in self.identities.values() if i.ak == ak), None)
        if ident is None:
            return _auth_error(401, "Invalid access or signature.")
        expected = _expected_signature(request, signed_headers, ident.sk, date)
        if not hmac.compare_digest(expected, sig):
            recent = [t for t in self._failures.get(ak, []) if now - t < self.lockout_window]
            recent.append(now)
            self._failures[ak] = recent
            if len(recent) >= self.lockout_threshold:
                self._locked_until[ak] = now + self.lockout_seconds
                self._failures[ak] = []
            return _auth_error(401, "Invalid access or signature.")
        token = self.issue_token(ident.app_instance_id, request.remote)
        return _json({"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl})

    async def _put_confs(self, request: web.Request) -> web.Response:
        app_id = request.match_info["appInstanceId"]
        try:
            data = json.loads(await request.read())
            creds = data["authInfo"]["credentials"]
            info = data.get("appInfo") or {}
            ident = AppIdentity(
                app_id,
                creds["accessKeyId"],
                creds["secretKey"],
                list(info.get("requiredServices") or []),
                str(info.get("appName", "")),
            )
            self.provision(ident)
        except (ValueError, KeyError, TypeError) as exc:
            return _auth_error(400, f"Bad request: {exc}")
        return _json(data)

    async def _get_confs(self, request: web.Request) -> web.Response:
        ident = self.identities.get(request.match_info["appInstanceId"])
        if ident is None:
            return _auth_error(404, "not found")
        return _json(
            {
                "authInfo": {"credentials": {"accessKeyId": ident.ak}},
                "appInfo": {"appName": ident.app_name, "requiredServices": ident.required_services},
            }
        )

    async def _delete_confs(self, request: web.Request) -> web.Response:
        self.remove_identity(request.match_info["appInstanceId"])
        return web.Response(status=200)

    # --- services ----------------------------------------------------------------------------

    def _gateway_uri(self, gw_name: str) -> str:
        return f"{self.url}/{gw_name}"

    def _render(self, svc: _Service, provider_endpoint: bool = False) -> dict[str, Any]:
        """Serialise like mepserver: false booleans omitted, endpoint members null, etc."""
        b = svc.body
        out: dict[str, Any] = {"serInstanceId": svc.ser_instance_id, "serName": b["serName"]}
        if b.get("serCategory"):
            out["serCategory"] = {
                k: b["serCategory"].get(k, "") for k in ("href", "id", "name", "version")
            }
        out["version"] = b["version"]
        out["state"] = b["state"]
        if b.get("transportId"):
            out["transportId"] = b["transportId"]
        ti = b.get("transportInfo") or {}
        oauth = (ti.get("security") or {}).get("oAuth2Info") or {}
        joined = "\uff0c".join(oauth.get("grantTypes") or [])
        uris = (
            svc.provider_uris
            if provider_endpoint
            else [self._gateway_uri(g) for g in svc.gateways.values()]
        )
        transport: dict[str, Any] = {"id": ti.get("id", ""), "name": ti.get("name", "")}
        if ti.get("description"):
            transport["description"] = ti["description"]
        transport.update(
            {
                "type": ti.get("type", ""),
                "protocol": ti.get("protocol", ""),
                "version": ti.get("version", ""),
                "endpoint": {"uris": uris, "addresses": None, "alternative": None},
                "security": {
                    "oAuth2Info": {
                        "grantTypes": joined.split(","),
                        "tokenEndpoint": oauth.get("tokenEndpoint", ""),
                    }
                },
            }
        )
        out["transportInfo"] = transport
        out["serializer"] = b["serializer"]
        out["scopeOfLocality"] = b["scopeOfLocality"]
        if b.get("consumedLocalOnly"):
            out["consumedLocalOnly"] = True
        if b.get("isLocal"):
            out["isLocal"] = True
        out["livenessInterval"] = self.liveness_interval if svc.liveness_on else 0
        links: dict[str, Any] = {"self": {}, "appInstanceId": svc.app_instance_id}
        if svc.liveness_on:
            links["self"]["liveness"] = (
                f"{SM}/applications/{svc.app_instance_id}/services/{svc.ser_instance_id}/liveness"
            )
        out["_links"] = links
        return out

    @staticmethod
    def _apply_defaults(body: dict[str, Any]) -> dict[str, Any]:
        out = dict(body)
        out.pop("serInstanceId", None)
        out.pop("_links", None)
        if not out.get("scopeOfLocality"):
            out["scopeOfLocality"] = "MEC_HOST"
        for flag in ("consumedLocalOnly", "isLocal"):
            if out.get(flag) is None:
                out[flag] = True
        ti = out.get("transportInfo")
        if isinstance(ti, dict):
            ti = dict(ti)
            ti.pop("implSpecificInfo", None)
            out["transportInfo"] = ti
        return out

    def _provider_uris(self, body: dict[str, Any]) -> list[str]:
        ti = body.get("transportInfo") or {}
        ep = ti.get("endpoint") or {}
        if ep.get("uris"):
            return [str(u) for u in ep["uris"]]
        if ep.get("addresses"):
            proto = str(ti.get("protocol") or "http")
            return [f"{proto}://{a['host']}:{a['port']}/" for a in ep["addresses"]]
        return []

    def _parse_service_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = json.loads(request[_BODY])
        except ValueError as exc:
            return _problem(400, _C_PARSE, f"body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _problem(400, _C_PARSE, "body must be a JSON object")
        problem = _eg_validate(body)
        if problem is not None:
            return _problem(400, _C_PARAM, problem)
        return self._apply_defaults(body)

    def _find(self, request: web.Request) -> _Service | None:
        match = _HEX32_RE.search(request.match_info["serInstanceId"])
        return None if match is None else self._services.get(match.group(0))

    def _check_id(self, request: web.Request) -> web.Response | None:
        if _HEX32_RE.search(request.match_info["serInstanceId"]) is None:
            return _problem(400, _C_PARAM, "serInstanceId must contain 32 hex characters")
        return None

    async def _register(self, request: web.Request) -> web.Response:
        app_id = request.match_info["appInstanceId"]
        body = self._parse_service_body(request)
        if isinstance(body, web.Response):
            return body
        owned = sum(1 for s in self._services.values() if s.app_instance_id == app_id)
        if owned >= self.max_services_per_app:
            return _problem(400, _C_REGISTER, "registered services have achieve the limit")
        sc_service = hashlib.sha256(str(body["serName"]).encode()).hexdigest()[:16]
        ser_id = sc_service + secrets.token_hex(8)
        providers = self._provider_uris(body)
        interval = body.get("livenessInterval") or 0
        now = time.monotonic()
        svc = _Service(
            ser_instance_id=ser_id,
            app_instance_id=app_id,
            body=body,
            provider_uris=providers,
            gateways={u: f"{body['serName']}{uuid.uuid4().hex[:20]}" for u in providers},
            liveness_on=interval != 0,
            last_beat=now,
            last_beat_wall=time.time(),
        )
        self._services[ser_id] = svc
        self._notify(svc, "ADDED")
        return _json(
            self._render(svc, provider_endpoint=True),
            201,
            {"Location": f"/mep/mp1/v1/services/{ser_id}"},
        )

    async def _list_services(self, request: web.Request) -> web.Response:
        app_id = request.match_info["appInstanceId"]
        names = request.query.getall("ser_name", [])
        return _json(
            [
                self._render(s)
                for s in self._services.values()
                if s.app_instance_id == app_id and (not names or s.body["serName"] in names)
            ]
        )

    async def _get_service(self, request: web.Request) -> web.Response:
        bad = self._check_id(request)
        if bad is not None:
            return bad
        svc = self._find(request)
        if svc is None:
            return _problem(404, _C_NOT_FOUND, "service instance not found")
        return _json(self._render(svc))

    async def _update_service(self, request: web.Request) -> web.Response:
        bad = self._check_id(request)
        if bad is not None:
            return bad
        svc = self._find(request)
        if svc is None:
            return _problem(404, _C_NOT_FOUND, "service instance not found")
        body = self._parse_service_body(request)
        if isinstance(body, web.Response):
            return body
        old_state = svc.body["state"]
        merged = _merge(svc.body, body)
        new_providers = self._provider_uris(body) or svc.provider_uris
        svc.gateways = {
            u: svc.gateways.get(u) or f"{merged['serName']}{uuid.uuid4().hex[:20]}"
            for u in new_providers
        }
        svc.provider_uris = new_providers
        svc.body = merged
        if "livenessInterval" in body:
            svc.liveness_on = bool(body["livenessInterval"])
        svc.last_beat = time.monotonic()
        svc.last_beat_wall = time.time()
        state_only = old_state != merged["state"]
        self._notify(svc, "STATE_CHANGED" if state_only else "ATTRIBUTES_CHANGED")
        echo = self._render(
            _Service(
                svc.ser_instance_id,
                svc.app_instance_id,
                self._apply_defaults(body),
                svc.provider_uris,
                svc.gateways,
                svc.liveness_on,
                0.0,
                0.0,
            )
        )
        echo["transportInfo"]["endpoint"]["uris"] = [
            self._gateway_uri(g) for g in svc.gateways.values()
        ]
        return _json(echo)

    async def _delete_service(self, request: web.Request) -> web.Response:
        bad = self._check_id(request)
        if bad is not None:
            return bad
        svc = self._find(request)
        if svc is None:
            return _problem(404, _C_NOT_FOUND, "service instance not found")
        del self._services[svc.ser_instance_id]
        self._notify(svc, "REMOVED")
        return web.Response(status=204)

    async def _get_liveness(self, request: web.Request) -> web.Response:
        svc = self._find(request)
        if svc is None:
            return _problem(404, _C_NOT_FOUND, "service instance not found")
        if not svc.liveness_on:
            return _problem(404, _C_NO_LIVENESS, "liveness is not enabled for this service")
        seconds = int(svc.last_beat_wall)
        return _json(
            {
                "state": svc.body["state"],
                "timeStamp": {
                    "seconds": seconds,
                    "nanoSeconds": int((svc.last_beat_wall - seconds) * 1e9),
                },
                "interval": self.liveness_interval,
            }
        )

    async def _put_liveness(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(request[_BODY] or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("state") != "ACTIVE":
            return _problem(400, _C_PARAM, 'body must be {"state":"ACTIVE"}')
        svc = self._find(request)
        if svc is None:
            return _problem(404, _C_NOT_FOUND, "service instance not found")
        if not svc.liveness_on:
            return _problem(404, _C_NO_LIVENESS, "liveness is not enabled for this service")
        if svc.body["state"] == "INACTIVE":
            return _problem(409, _C_INACTIVE, "service is INACTIVE")
        was = svc.body["state"]
        svc.body["state"] = "ACTIVE"
        svc.last_beat = time.monotonic()
        svc.last_beat_wall = time.time()
        change = "STATE_CHANGED" if was != "ACTIVE" else "ATTRIBUTES_CHANGED"
        self._notify(svc, change)
        return web.Response(status=204)

    async def _liveness_monitor(self) -> None:
        tick = min(1.0, max(0.05, self.liveness_seconds / 20))
        while True:
            await asyncio.sleep(tick)
            limit = self.liveness_seconds + self.liveness_grace
            now = time.monotonic()
            for svc in list(self._services.values()):
                if (
                    svc.liveness_on
                    and svc.body["state"] == "ACTIVE"
                    and (now - svc.last_beat > limit)
                ):
                    svc.body["state"] = "SUSPENDED"
                    self._notify(svc, "STATE_CHANGED")

    # --- discovery -----------------------------------------------------------------------------

    async def _discover(self, request: web.Request) -> web.Response:
        ident = self.identities.get(request[_APP_ID])
        if ident is None:
            return _json([])
        names = request.query.getall("ser_name", [])
        if names:
            found = [s for s in self._services.values() if s.body["serName"] in names]
            if not found:
                return web.json_response(
                    {
                        "errorCode": "400012",
                        "errorMessage": "Micro-service does not exist",
                        "detail": f"service {names[0]} does not exist",
                    },
                    status=400,
                )
        else:
            found = list(self._services.values())
            filters: dict[str, Callable[[_Service], object]] = {
                "ser_category_id": lambda s: (s.body.get("serCategory") or {}).get("id", ""),
                "scope_of_locality": lambda s: s.body.get("scopeOfLocality", ""),
                "consumed_local_only": lambda s: str(bool(s.body.get("consumedLocalOnly"))),
                "is_local": lambda s: str(bool(s.body.get("isLocal"))),
            }
            given = {k: request.query[k] for k in filters if k in request.query}
            if given:
                found = [
                    s
                    for s in found
                    if any(str(filters[k](s)).lower() == v.lower() for k, v in given.items())
                ]
        return _json([self._render(s) for s in found if ident.may_discover(s.body["serName"])])

    async def _discover_one(self, request: web.Request) -> web.Response:
        """``GET /services/{id}``: like the app-scoped read, neither filters by owner."""
        return await self._get_service(request)

    async def _transports(self, request: web.Request) -> web.Response:
        return _json(
            [
                {
                    "id": self._transport_id,
                    "name": "REST",
                    "description": "REST API",
                    "type": "REST_HTTP",
                    "protocol": "HTTP",
                    "version": "2.0",
                    "endpoint": {"uris": None, "addresses": None, "alternative": None},
                    "security": {
                        "oAuth2Info": {
                            "grantTypes": ["OAUTH2_CLIENT_CREDENTIALS"],
                            "tokenEndpoint": "/mep/token",
                        }
                    },
                }
            ]
        )

    # --- subscriptions and notifications ---------------------------------------------------------

    def _sub_href(self, sub: _Subscription) -> str:
        return (
            f"/mec_service_mgmt/v1/applications/{sub.app_instance_id}"
            f"/subscriptions/{sub.subscription_id}"
        )

    async def _subscribe(self, request: web.Request) -> web.Response:
        app_id = request.match_info["appInstanceId"]
        try:
            body = json.loads(request[_BODY])
        except ValueError as exc:
            return _problem(400, _C_PARSE, f"body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _problem(400, _C_PARSE, "body must be a JSON object")
        if body.get("subscriptionType") not in _SUB_TYPES:
            return _problem(400, _C_PARAM, "subscriptionType is invalid")
        if not _is_abs_uri(body.get("callbackReference")):
            return _problem(400, _C_PARAM, "callbackReference must be a URI")
        crit = body.get("filteringCriteria") or {}
        problems = [
            *(
                _check_len(i, 32, "serInstanceIds", _ID_RE)
                for i in crit.get("serInstanceIds") or []
            ),
            *(_check_len(n, 128, "serNames", _NAME_RE) for n in crit.get("serNames") or []),
            *(
                None if s in _STATES else "states has an invalid value"
                for s in crit.get("states") or []
            ),
        ]
        problem = next((p for p in problems if p), None)
        if problem is not None:
            return _problem(400, _C_PARAM, problem)
        mine = [s for s in self._subscriptions.values() if s.app_instance_id == app_id]
        if len(mine) >= MAX_SUBSCRIPTIONS:
            return _problem(400, _C_SUB, "subscription has achieve the limit")
        sub = _Subscription(str(uuid.uuid4()), app_id, body)
        body = dict(body)
        body["_links"] = {"self": {"href": self._sub_href(sub)}}
        sub.body = body
        self._subscriptions[sub.subscription_id] = sub
        reply = dict(body, subscriptionId=sub.subscription_id)
        return _json(reply, 201, {"Location": self._sub_href(sub)})

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        app_id = request.match_info["appInstanceId"]
        mine = [s for s in self._subscriptions.values() if s.app_instance_id == app_id]
        if not mine:
            return _problem(404, _C_SUB_NOT_FOUND, "subscription not found")
        return _json(
            {
                "_links": {
                    "self": {"href": f"/mec_service_mgmt/v1/applications/{app_id}/subscriptions"},
                    "subscriptions": [
                        {
                            "href": self._sub_href(s),
                            "rel": "SerAvailabilityNotificationSubscription",
                        }
                        for s in mine
                    ],
                }
            }
        )

    def _find_sub(self, request: web.Request) -> _Subscription | None:
        sub = self._subscriptions.get(request.match_info["subscriptionId"])
        if sub is None or sub.app_instance_id != request.match_info["appInstanceId"]:
            return None
        return sub

    async def _get_subscription(self, request: web.Request) -> web.Response:
        sub = self._find_sub(request)
        if sub is None:
            return _problem(404, _C_SUB_NOT_FOUND, "subscription not found")
        return _json(sub.body)

    async def _unsubscribe(self, request: web.Request) -> web.Response:
        sub = self._find_sub(request)
        if sub is None:
            return _problem(404, _C_SUB_NOT_FOUND, "subscription not found")
        del self._subscriptions[sub.subscription_id]
        return web.Response(status=204)

    @staticmethod
    def _matches(sub: _Subscription, svc: _Service) -> bool:
        """mepserver's isInFilter: ids OR names OR category; states narrows; isLocal ignored."""
        crit = sub.body.get("filteringCriteria") or {}
        states = crit.get("states") or []
        if states and svc.body["state"] not in states:
            return False
        ids = crit.get("serInstanceIds") or []
        names = crit.get("serNames") or []
        cats = crit.get("serCategories") or []
        if not (ids or names or cats or crit.get("isLocal") or states):
            return True
        if svc.ser_instance_id in ids or svc.body["serName"] in names:
            return True
        mine = svc.body.get("serCategory") or {}
        keys = ("href", "id", "name", "version")
        return any(all(c.get(k, "") == mine.get(k, "") for k in keys) for c in cats)

    def _notify(self, svc: _Service, change: str) -> None:
        if change == "STATE_CHANGED" and not self.state_changed_events:
            change = "ATTRIBUTES_CHANGED"
        ref: dict[str, Any] = {
            "serName": svc.body["serName"],
            "serInstanceId": svc.ser_instance_id,
            "state": svc.body["state"],
            "changeType": change,
        }
        if change != "REMOVED":
            ref = {"link": {"href": f"/mec_service_mgmt/v1/services/{svc.ser_instance_id}"}, **ref}
        for sub in list(self._subscriptions.values()):
            if sub.body.get("subscriptionType") != "SerAvailabilityNotificationSubscription":
                continue
            if self._matches(sub, svc):
                self._outbox.put_nowait(
                    (
                        str(sub.body["callbackReference"]),
                        {
                            "notificationType": "SerAvailabilityNotification",
                            "serviceReferences": [ref],
                            "_links": {"subscription": {"href": self._sub_href(sub)}},
                        },
                    )
                )

    async def _deliver_notifications(self) -> None:
        """One at a time, no retry, reply ignored: as mepserver does."""
        while True:
            url, body = await self._outbox.get()
            self.notifications_sent.append((url, body))
            assert self._session is not None
            try:
                async with self._session.post(
                    url,
                    data=json.dumps(body).encode(),
                    headers={
                        "Content-Type": "application/json; charset=utf-8",
                        "X-Real-Ip": self.host,
                    },
                    ssl=False,
                ) as resp:
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.info("notification to %s failed: %s", url, exc)

    # --- gateway (Kong's per-service routes) --------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        gw_name = request.match_info["gwName"]
        target = next(
            (
                uri
                for svc in self._services.values()
                for uri, g in svc.gateways.items()
                if g == gw_name
            ),
            None,
        )
        if target is None:
            return web.json_response({"message": "no Route matched with those values"}, status=404)
        if self._bearer_claims(request) is None:
            return _kong_unauthorized()
        tail = request.match_info.get("tail", "")
        url = target.rstrip("/") + ("/" + tail if tail else "")
        if request.query_string:
            url += "?" + request.query_string
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding", "connection")
        }
        headers.update(
            {
                "X-Forwarded-Proto": request.scheme,
                "X-Forwarded-Host": request.host.split(":")[0],
                "X-Forwarded-Port": str(self.port),
                "X-Forwarded-Prefix": f"/{gw_name}",
                "X-Real-IP": request.remote or "",
            }
        )
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._gateway_websocket(request, url, headers)
        assert self._session is not None
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=await request.read(),
                ssl=False,
                allow_redirects=False,
            ) as upstream:
                data = await upstream.read()
                out = web.Response(status=upstream.status, body=data)
                for key, value in upstream.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                        "server",
                        "date",
                    ):
                        out.headers.add(key, value)
                return out
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _kong_bad_gateway(exc)

    async def _gateway_websocket(
        self, request: web.Request, url: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Kong's websocket proxying: the upstream handshake first, then the caller's.

        The upstream's refusal (its status, not its body) or 502 reaches the caller as a plain
        HTTP reply; after both upgrades, frames are relayed until one side closes.
        """
        offered = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        forwarded = {
            k: v
            for k, v in headers.items()
            if k.lower() != "upgrade" and not k.lower().startswith("sec-websocket-")
        }
        assert self._session is not None
        try:
            upstream = await self._session.ws_connect(
                "ws" + url.removeprefix("http"),
                headers=forwarded,
                protocols=offered,
                ssl=False,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_WS_CLOSE_TIMEOUT),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 101:  # upgraded, but not correctly
                return _kong_bad_gateway(exc)
            return web.Response(status=exc.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _kong_bad_gateway(exc)
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else [], timeout=_WS_CLOSE_TIMEOUT
        )
        try:
            await client.prepare(request)
        except BaseException:
            await upstream.close(code=aiohttp.WSCloseCode.GOING_AWAY)
            raise
        pump = asyncio.create_task(self._pump_websocket(client, upstream), name="mep-emulator-ws")
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)
        await asyncio.wait([pump])  # the emulator's shutdown may cancel it
        if not pump.cancelled():
            pump.result()
        return client

    @staticmethod
    async def _pump_websocket(
        client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
    ) -> None:
        """Relay frames both ways until one side closes, then close the other with its code.

        Cancelled (emulator shutdown), it closes both sides with 1001. aiohttp's server socket
        skips the close handshake when closed under a pending ``receive()``, so the relay
        reading the app's side is stopped before that side is closed.
        """
        from_app = asyncio.create_task(_relay(client, upstream))
        from_provider = asyncio.create_task(_relay(upstream, client))
        try:
            done, _ = await asyncio.wait(
                (from_app, from_provider), return_when=asyncio.FIRST_COMPLETED
            )
            if from_app in done:  # closing the provider's side also ends from_provider
                code, reason = from_app.result()
                await upstream.close(code=_relayable_close_code(code), message=reason)
            else:
                code, reason = from_provider.result()
                from_app.cancel()
                await asyncio.wait([from_app])
                await client.close(code=_relayable_close_code(code), message=reason)
        finally:
            from_app.cancel()
            await asyncio.wait([from_app])
            going_away = aiohttp.WSCloseCode.GOING_AWAY
            await asyncio.gather(client.close(code=going_away), upstream.close(code=going_away))
            from_provider.cancel()
            await asyncio.wait([from_provider])

    async def _stop_websockets(self, app: web.Application) -> None:
        """On shutdown, end every proxied websocket rather than wait for it."""
        for pump in list(self._pumps):
            pump.cancel()

    # --- admin -----------------------------------------------------------------------------------

    async def _admin_key(self, request: web.Request) -> web.Response:
        return web.Response(body=self.jwt_public_key_pem, content_type="application/x-pem-file")

    async def _admin_wipe(self, request: web.Request) -> web.Response:
        self.wipe()
        return web.Response(status=204)

    async def _admin_down(self, request: web.Request) -> web.Response:
        data = await _optional_json(request)
        try:
            self.down(str(data.get("mode", "close")))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.Response(status=204)

    async def _admin_up(self, request: web.Request) -> web.Response:
        self.up()
        return web.Response(status=204)

    async def _admin_identities(self, request: web.Request) -> web.Response:
        return web.json_response([i.to_json() for i in self.identities.values()])

    async def _admin_provision(self, request: web.Request) -> web.Response:
        data = await _optional_json(request)
        try:
            generated = AppIdentity.generate(
                data.get("requiredServices", ["*"]), str(data.get("appName", ""))
            )
            ident = AppIdentity.from_json({**generated.to_json(), **data})
            self.provision(ident)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(ident.to_json(), status=201)

    async def _admin_remove_identity(self, request: web.Request) -> web.Response:
        self.remove_identity(request.match_info["appInstanceId"])
        return web.Response(status=204)

    async def _admin_reset_lockouts(self, request: web.Request) -> web.Response:
        self.reset_lockouts()
        return web.Response(status=204)

    async def _admin_calls(self, request: web.Request) -> web.Response:
        elapsed = max(time.time() - self.calls_since, 1e-9)
        mp1 = sum(n for k, n in self.calls.items() if " /mep/" in k)
        return web.json_response(
            {
                "since": self.calls_since,
                "total": self.calls_total,
                "mp1Total": mp1,
                "mp1PerMinute": mp1 * 60.0 / elapsed,
                "routes": dict(self.calls),
            }
        )

    async def _admin_reset_calls(self, request: web.Request) -> web.Response:
        self.reset_calls()
        return web.Response(status=204)

    async def _admin_services(self, request: web.Request) -> web.Response:
        return web.json_response(self.services())


async def _optional_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data


# --------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``mep-kubeedge-adapter mep-emulator``."""
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=30443, help="listen port (0 = any free)")
    parser.add_argument("--cert", help="PEM server certificate (enables HTTPS)")
    parser.add_argument("--key", help="PEM private key for --cert")
    parser.add_argument(
        "--identities",
        metavar="FILE",
        help='JSON list of {"appInstanceId","ak","sk","requiredServices"}',
    )
    parser.add_argument("--app-instance-id", default=DEMO_APP_INSTANCE_ID)
    parser.add_argument("--ak", default=DEMO_AK, help="20-character access key")
    parser.add_argument("--sk", default=DEMO_SK, help="64-character secret key")
    parser.add_argument(
        "--required-services",
        default="*",
        help="comma-separated serNames this identity may discover (* = all)",
    )
    parser.add_argument("--token-ttl", type=int, default=3600, help="token lifetime, seconds")
    parser.add_argument(
        "--liveness-seconds",
        type=float,
        default=60.0,
        help="platform heartbeat interval (EdgeGallery: 60)",
    )
    parser.add_argument("--lockout-seconds", type=float, default=900.0)
    parser.add_argument(
        "--jwt-public-key-out",
        metavar="FILE",
        help="write the token-signing public key (PEM) here at start",
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="do not check bodies against the MEC 011 OpenAPI"
    )


def _identities_from_args(args: argparse.Namespace) -> list[AppIdentity]:
    if args.identities:
        data = json.loads(Path(args.identities).read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError("--identities must hold a JSON list")
        return [AppIdentity.from_json(item) for item in data]
    required = [s.strip() for s in str(args.required_services).split(",") if s.strip()]
    return [AppIdentity(args.app_instance_id, args.ak, args.sk, required, "cli")]


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set."""
    context: ssl.SSLContext | None = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    emulator = MepEmulator(
        args.host,
        args.port,
        ssl_context=context,
        identities=_identities_from_args(args),
        token_ttl=args.token_ttl,
        liveness_seconds=args.liveness_seconds,
        lockout_seconds=args.lockout_seconds,
        validate=not args.no_validate,
    )
    async with emulator:
        if args.jwt_public_key_out:
            await asyncio.to_thread(
                Path(args.jwt_public_key_out).write_bytes, emulator.jwt_public_key_pem
            )
        log.info("MEP emulator listening on %s", emulator.url)
        for ident in emulator.identities.values():
            log.info(
                "identity appInstanceId=%s requiredServices=%s",
                ident.app_instance_id,
                ",".join(ident.required_services),
            )
        await stop.wait()


@contextlib.asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[MepEmulator]:
    """``async with running(...) as mep:`` shorthand for scripts."""
    async with MepEmulator(**kwargs) as emulator:
        yield emulator
