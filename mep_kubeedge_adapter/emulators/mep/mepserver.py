"""mepserver: MEC 011 service management with EdgeGallery's rules, liveness, discovery and
service-availability notifications, behind Kong's token check.

``/mep/mec_service_mgmt/v1/...`` needs a bearer token (else 401 ``{"message":
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

Registered endpoints are rewritten to gateway URIs ``<emulator url>/<serName><20 hex>`` (the
201 reply still echoes the provider URIs); :meth:`MepServer.gateway_target` tells the gateway
where such a URI leads. Request bodies and replies are checked against the ETSI document
(``spec``) as well as against mepserver's own rules (``rules``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from mep_kubeedge_adapter.emulators.mep.identities import UUID_RE
from mep_kubeedge_adapter.emulators.mep.mepauth import Mepauth
from mep_kubeedge_adapter.emulators.mep.replies import (
    C_APP_ID,
    C_INACTIVE,
    C_NO_LIVENESS,
    C_NOT_FOUND,
    C_PARAM,
    C_PARSE,
    C_REGISTER,
    C_SUB,
    C_SUB_NOT_FOUND,
    json_reply,
    kong_unauthorized,
    problem,
)
from mep_kubeedge_adapter.emulators.mep.rules import check_service, check_subscription, merge
from mep_kubeedge_adapter.emulators.mep.spec import spec_validator

__all__ = ["BODY_LIMIT", "MAX_SUBSCRIPTIONS", "SM", "MepServer"]

log = logging.getLogger(__name__)

SM = "/mep/mec_service_mgmt/v1"
BODY_LIMIT = 4096
MAX_SUBSCRIPTIONS = 50

_HEX32_RE = re.compile(r"[0-9a-f]{32}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_APP_ID = web.RequestKey("app_instance_id", str)
_BODY = web.RequestKey("body", bytes)


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


class MepServer:
    """The service registry and its MP1 routes (see the module docstring for the behaviour).

    ``liveness_seconds`` is the platform's heartbeat interval (EdgeGallery: 60, whatever the
    provider proposes), ``liveness_grace`` the slack before SUSPENDED. ``url`` is the
    emulator's own base URL, set once it listens (gateway URIs are built from it). Run
    :meth:`liveness_monitor` and :meth:`deliver_notifications` as tasks while it serves.
    """

    def __init__(
        self,
        mepauth: Mepauth,
        *,
        host: str,
        liveness_seconds: float,
        liveness_grace: float | None,
        max_services_per_app: int,
        validate: bool,
        state_changed_events: bool,
    ) -> None:
        self._mepauth = mepauth
        self.host = host
        self.liveness_seconds = liveness_seconds
        self.liveness_grace = (
            liveness_grace
            if liveness_grace is not None
            else float(min(math.ceil(0.05 * liveness_seconds), 5))
        )
        self.max_services_per_app = max_services_per_app
        self.validate = validate
        self.state_changed_events = state_changed_events
        self.url = ""
        self.schema_violations: list[str] = []
        self.notifications_sent: list[tuple[str, dict[str, Any]]] = []
        self._services: dict[str, _Service] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._transport_id = str(uuid.uuid4())
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(f"{SM}/services", self._discover)
        router.add_get(f"{SM}/services/{{serInstanceId}}", self._discover_one)
        router.add_get(f"{SM}/transports", self._transports)
        app_sv = f"{SM}/applications/{{appInstanceId}}/services"
        router.add_get(app_sv, self._list_services)
        router.add_post(app_sv, self._register)
        router.add_get(app_sv + "/{serInstanceId}", self._get_service)
        router.add_put(app_sv + "/{serInstanceId}", self._update_service)
        router.add_delete(app_sv + "/{serInstanceId}", self._delete_service)
        router.add_get(app_sv + "/{serInstanceId}/liveness", self._get_liveness)
        router.add_put(app_sv + "/{serInstanceId}/liveness", self._put_liveness)
        app_sub = f"{SM}/applications/{{appInstanceId}}/subscriptions"
        router.add_get(app_sub, self._list_subscriptions)
        router.add_post(app_sub, self._subscribe)
        router.add_get(app_sub + "/{subscriptionId}", self._get_subscription)
        router.add_delete(app_sub + "/{subscriptionId}", self._unsubscribe)

    # --- controls ----------------------------------------------------------------------------

    def wipe(self) -> None:
        """Forget every service and subscription, as a MEP that lost its registry."""
        self._services.clear()
        self._subscriptions.clear()

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

    def gateway_target(self, gw_name: str) -> str | None:
        """The provider URI a gateway route name leads to, if a service registered it."""
        return next(
            (
                uri
                for svc in self._services.values()
                for uri, g in svc.gateways.items()
                if g == gw_name
            ),
            None,
        )

    # --- the MP1 guard: Kong's token check, then mepserver's own ---------------------------

    @web.middleware
    async def mp1_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Token, appInstanceId, body size and ETSI schema checks of the MP1 routes."""
        if not request.path.startswith(("/mep/mec_service_mgmt/", "/mep/mec_app_support/")):
            return await handler(request)
        claims = self._mepauth.bearer_claims(request)
        if claims is None or claims.get("clientip") != request.remote:
            return kong_unauthorized()
        request[_BODY] = b""
        request[_APP_ID] = str(claims.get("sub", ""))
        path_app = request.match_info.get("appInstanceId")
        if path_app is not None:
            if not UUID_RE.match(path_app):
                return problem(400, C_PARAM, "appInstanceId must be a UUID")
            if path_app != request[_APP_ID]:
                return problem(401, C_APP_ID, "UnAuthorization to access the resource")
        body: bytes | None = None
        if request.method in ("POST", "PUT"):
            raw = await request.read()
            if len(raw) > BODY_LIMIT:
                return problem(400, C_PARAM, "request body too large")
            body = raw
            request[_BODY] = raw
        spec_checked = (
            self.validate
            and request.match_info.route.resource is not None
            and ("liveness" not in request.path)
        )
        if spec_checked and body is not None:
            found = spec_validator().check_request(request, body)
            if found is not None:
                return problem(400, C_PARAM, f"not a valid MEC 011 body: {found}")
        response = await handler(request)
        if spec_checked and isinstance(response, web.Response) and response.status < 300:
            found = spec_validator().check_response(request, body, response)
            if found is not None:
                message = f"{request.method} {request.path} -> {response.status}: {found}"
                log.error("MEP emulator reply violates MEC 011: %s", message)
                self.schema_violations.append(message)
        return response

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
            return problem(400, C_PARSE, f"body is not JSON: {exc}")
        if not isinstance(body, dict):
            return problem(400, C_PARSE, "body must be a JSON object")
        found = check_service(body)
        if found is not None:
            return problem(400, C_PARAM, found)
        return self._apply_defaults(body)

    def _find(self, request: web.Request) -> _Service | None:
        match = _HEX32_RE.search(request.match_info["serInstanceId"])
        return None if match is None else self._services.get(match.group(0))

    def _check_id(self, request: web.Request) -> web.Response | None:
        if _HEX32_RE.search(request.match_info["serInstanceId"]) is None:
            return problem(400, C_PARAM, "serInstanceId must contain 32 hex characters")
        return None

    async def _register(self, request: web.Request) -> web.Response:
        app_id = request.match_info["appInstanceId"]
        body = self._parse_service_body(request)
        if isinstance(body, web.Response):
            return body
        owned = sum(1 for s in self._services.values() if s.app_instance_id == app_id)
        if owned >= self.max_services_per_app:
            return problem(400, C_REGISTER, "registered services have achieve the limit")
        sc_service = hashlib.sha256(str(body["serName"]).encode()).hexdigest()[:16]
        ser_id = sc_service + secrets.token_hex(8)
        providers = self._provider_uris(body)
        interval = body.get("livenessInterval") or 0
        now = asyncio.get_running_loop().time()
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
        return json_reply(
            self._render(svc, provider_endpoint=True),
            201,
            {"Location": f"/mep/mp1/v1/services/{ser_id}"},
        )

    async def _list_services(self, request: web.Request) -> web.Response:
        app_id = request.match_info["appInstanceId"]
        names = request.query.getall("ser_name", [])
        return json_reply(
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
            return problem(404, C_NOT_FOUND, "service instance not found")
        return json_reply(self._render(svc))

    async def _update_service(self, request: web.Request) -> web.Response:
        bad = self._check_id(request)
        if bad is not None:
            return bad
        svc = self._find(request)
        if svc is None:
            return problem(404, C_NOT_FOUND, "service instance not found")
        body = self._parse_service_body(request)
        if isinstance(body, web.Response):
            return body
        old_state = svc.body["state"]
        merged = merge(svc.body, body)
        new_providers = self._provider_uris(body) or svc.provider_uris
        svc.gateways = {
            u: svc.gateways.get(u) or f"{merged['serName']}{uuid.uuid4().hex[:20]}"
            for u in new_providers
        }
        svc.provider_uris = new_providers
        svc.body = merged
        if "livenessInterval" in body:
            svc.liveness_on = bool(body["livenessInterval"])
        svc.last_beat = asyncio.get_running_loop().time()
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
        return json_reply(echo)

    async def _delete_service(self, request: web.Request) -> web.Response:
        bad = self._check_id(request)
        if bad is not None:
            return bad
        svc = self._find(request)
        if svc is None:
            return problem(404, C_NOT_FOUND, "service instance not found")
        del self._services[svc.ser_instance_id]
        self._notify(svc, "REMOVED")
        return web.Response(status=204)

    async def _get_liveness(self, request: web.Request) -> web.Response:
        svc = self._find(request)
        if svc is None:
            return problem(404, C_NOT_FOUND, "service instance not found")
        if not svc.liveness_on:
            return problem(404, C_NO_LIVENESS, "liveness is not enabled for this service")
        seconds = int(svc.last_beat_wall)
        return json_reply(
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
            return problem(400, C_PARAM, 'body must be {"state":"ACTIVE"}')
        svc = self._find(request)
        if svc is None:
            return problem(404, C_NOT_FOUND, "service instance not found")
        if not svc.liveness_on:
            return problem(404, C_NO_LIVENESS, "liveness is not enabled for this service")
        if svc.body["state"] == "INACTIVE":
            return problem(409, C_INACTIVE, "service is INACTIVE")
        was = svc.body["state"]
        svc.body["state"] = "ACTIVE"
        svc.last_beat = asyncio.get_running_loop().time()
        svc.last_beat_wall = time.time()
        change = "STATE_CHANGED" if was != "ACTIVE" else "ATTRIBUTES_CHANGED"
        self._notify(svc, change)
        return web.Response(status=204)

    async def liveness_monitor(self) -> None:
        """SUSPEND services whose beats stopped; runs until cancelled."""
        tick = min(1.0, max(0.05, self.liveness_seconds / 20))
        while True:
            await asyncio.sleep(tick)
            limit = self.liveness_seconds + self.liveness_grace
            now = asyncio.get_running_loop().time()
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
        ident = self._mepauth.identities.get(request[_APP_ID])
        if ident is None:
            return json_reply([])
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
        return json_reply([self._render(s) for s in found if ident.may_discover(s.body["serName"])])

    async def _discover_one(self, request: web.Request) -> web.Response:
        """``GET /services/{id}``: like the app-scoped read, neither filters by owner."""
        return await self._get_service(request)

    async def _transports(self, request: web.Request) -> web.Response:
        return json_reply(
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
            return problem(400, C_PARSE, f"body is not JSON: {exc}")
        if not isinstance(body, dict):
            return problem(400, C_PARSE, "body must be a JSON object")
        found = check_subscription(body)
        if found is not None:
            return problem(400, C_PARAM, found)
        mine = [s for s in self._subscriptions.values() if s.app_instance_id == app_id]
        if len(mine) >= MAX_SUBSCRIPTIONS:
            return problem(400, C_SUB, "subscription has achieve the limit")
        sub = _Subscription(str(uuid.uuid4()), app_id, body)
        body = dict(body)
        body["_links"] = {"self": {"href": self._sub_href(sub)}}
        sub.body = body
        self._subscriptions[sub.subscription_id] = sub
        reply = dict(body, subscriptionId=sub.subscription_id)
        return json_reply(reply, 201, {"Location": self._sub_href(sub)})

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        app_id = request.match_info["appInstanceId"]
        mine = [s for s in self._subscriptions.values() if s.app_instance_id == app_id]
        if not mine:
            return problem(404, C_SUB_NOT_FOUND, "subscription not found")
        return json_reply(
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
            return problem(404, C_SUB_NOT_FOUND, "subscription not found")
        return json_reply(sub.body)

    async def _unsubscribe(self, request: web.Request) -> web.Response:
        sub = self._find_sub(request)
        if sub is None:
            return problem(404, C_SUB_NOT_FOUND, "subscription not found")
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

    async def deliver_notifications(self, session: aiohttp.ClientSession) -> None:
        """One at a time, no retry, reply ignored: as mepserver does."""
        while True:
            url, body = await self._outbox.get()
            self.notifications_sent.append((url, body))
            try:
                async with session.post(
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
